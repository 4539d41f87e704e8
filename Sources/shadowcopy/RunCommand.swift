import ArgumentParser
import DBus

/// `shadowcopy run SCRIPT`: a diskshadow-style script (see ``Script``).
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a diskshadow-style script: begin backup, add volume, create, expose, exec, end backup.",
        discussion: """
            The whole script is checked before anything runs; an error names its line. If a step fails \
            once the backup has begun, the set is aborted and deleted: nothing half-made stays.
            """)

    @Argument(help: "The script file.")
    var script: String

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let parsed: Script
        do {
            let text = try Posix.read(script)
            parsed = try Script(text, file: script)
            try Self.checkOrder(parsed, file: script)
        } catch let error as Script.ParseError {
            throw Failure.report(CLIError.usage(error.description), json: global.json)
        } catch let error as CLIError {
            throw Failure.report(error, json: global.json)
        }
        try await global.run { client in
            var runner = ScriptRunner(client: client, file: script, json: global.json,
                                      progress: Progress(enabled: global.showsProgress))
            try await runner.run(parsed)
        }
    }

    /// The order diskshadow requires, checked before anything runs.
    static func checkOrder(_ script: Script, file: String) throws(Script.ParseError) {
        var begun = false, volumes = 0, created = false, ended = false
        for line in script.lines {
            func fail(_ message: String) -> Script.ParseError { Script.ParseError(file: file, line: line.number, message: message) }
            switch line.step {
            case .setContext, .setOption, .excludeWriter, .verifyWriter:
                if begun { throw fail("settings come before 'begin backup'") }
            case .beginBackup:
                if begun { throw fail("a backup is already begun") }
                begun = true
            case .addVolume:
                if !begun || created { throw fail("add volume belongs between 'begin backup' and 'create'") }
                volumes += 1
            case .create:
                if !begun || volumes == 0 { throw fail("create needs 'begin backup' and at least one 'add volume'") }
                if created { throw fail("create comes once") }
                created = true
            case .expose:
                if !created || ended { throw fail("expose belongs between 'create' and 'end backup'") }
            case .endBackup:
                if !created || ended { throw fail("end backup needs 'create' first, once") }
                ended = true
            case .exec, .list, .deleteShadows:
                break
            }
        }
    }
}

/// Runs a checked script against the daemon.
struct ScriptRunner {
    let client: DaemonClient
    let file: String
    let json: Bool
    let progress: Progress
    private var session: BackupSession?
    private var persistent = false, writers = true, backupType = "copy"
    private var excluded: [String] = [], verified: [String] = []
    private var exposed: [String: String] = [:]
    private var report: [String: Any] = [:]

    init(client: DaemonClient, file: String, json: Bool, progress: Progress) {
        self.client = client
        self.file = file
        self.json = json
        self.progress = progress
    }

    mutating func run(_ script: Script) async throws {
        for line in script.lines {
            do {
                try await step(line.step)
            } catch {
                await session?.abandon()
                if let failure = error as? DBusError {
                    throw DBusError(failure.name, "\(file):\(line.number): \(failure.message)")
                }
                if case .usage(let message) = error as? CLIError { throw CLIError.usage("\(file):\(line.number): \(message)") }
                throw error
            }
        }
        // A backup left open: persistent copies stay (as diskshadow keeps them), the rest go.
        if let session, session.set != nil, !(session.created && persistent) { await session.abandon() }
        if json { print(Output.json(report.merging(["exposed": exposed]) { a, _ in a })) }
    }

    private mutating func step(_ step: Script.Step) async throws {
        switch step {
        case .setContext(let p, let w): (persistent, writers) = (p, w)
        case .setOption(let type): backupType = type
        case .excludeWriter(let name): excluded.append(name)
        case .verifyWriter(let name): verified.append(name)
        case .beginBackup:
            let session = BackupSession(client: client, progress: progress)
            session.persistent = persistent
            session.writers = writers
            session.backupType = backupType
            session.excludedWriters = excluded
            self.session = session
            try await session.begin(description: "shadowcopy run \(file)")
        case .addVolume(let volume, let provider, let alias):
            try await session!.add(volume: volume, provider: provider, alias: alias)
        case .create:
            try await session!.create()
            try await verifyWriters()
            let consistency = try await client.properties(session!.set!, "SnapshotSet")["Consistency"].map(Output.text) ?? ""
            report = session!.report(consistency: consistency)
            say("Shadow copy set \(report["set"] ?? "") made (\(consistency)-consistent).")
        case .expose(let alias):
            let path = try await session!.expose(alias: alias).first ?? ""
            exposed[alias] = path
            say("%\(alias)% exposed at \(path)")
        case .exec(let command):
            try exec(command.map(substitute))
        case .endBackup:
            try await session!.end()
            if !persistent { try await session!.delete() }
            say("Backup ended\(persistent ? "; the copies are kept" : "; the copies are deleted").")
        case .deleteShadows(let target):
            try await delete(target)
        case .list(let what):
            guard !json else { return }
            switch what {
            case "writers": try await List.writers(client, json: false)
            case "providers": try await List.providers(client, json: false)
            default: try await List.shadows(client, volume: nil, set: nil, json: false)
            }
        }
    }

    private func say(_ text: String) { if !json { print(text) } }

    /// `%alias%` names the exposed path of that volume.
    private func substitute(_ word: String) -> String {
        exposed.reduce(word) { $0.replacing("%\($1.key)%", with: $1.value) }
    }

    private func verifyWriters() async throws {
        guard !verified.isEmpty, let set = session?.set else { return }
        let status = try await client.call(set, "SnapshotSet", "GatherWriterStatus").first?.arrayElements ?? []
        var seen: Set<String> = []
        for entry in status {
            guard let m = entry.structMembers, m.count == 4, let details = m[3].vardict else { continue }
            let name = details["name"]?.string ?? ""
            seen.insert(name)
            if verified.contains(name), m[2].string?.isEmpty == false {
                throw DBusError(ErrorName(m[2].string!) ?? "org.shadowcopy.ShadowCopy1.Error.Failed",
                                "writer \(name) failed: \(details["message"]?.string ?? "")")
            }
        }
        for name in verified where !seen.contains(name) {
            throw DBusError("org.shadowcopy.ShadowCopy1.Error.NotFound", "writer \(name) did not take part in the backup")
        }
    }

    private func exec(_ command: [String]) throws {
        var environment: [String: String] = [:]
        for (alias, path) in exposed { environment["SHADOWCOPY_\(alias.uppercased())"] = path }
        let status: Int32?
        do { status = try Posix.run(command, environment: environment, stdoutToStderr: json) } catch {
            throw DBusError(.failed, "\(error)")
        }
        guard status == 0 else {
            let how = status.map { "with status \($0)" } ?? "by a signal"
            throw DBusError(.failed, "exec \(command.joined(separator: " ")) ended \(how); the backup is abandoned")
        }
    }

    private mutating func delete(_ target: [String]) async throws {
        var options: [(String, Value)] = []
        switch target.first?.lowercased() {
        case "all": options = [("all", .bool(true))]
        case "set":
            guard let set = session?.set else { throw CLIError.usage("delete shadows set: no backup is begun") }
            options = [("set", .objectPath(set))]
        case "volume": options = [("volume", .string(target[1]))]
        default: options = [("volume", .string(target[1])), ("oldest", .bool(true))]
        }
        let count = try await client.coordinator("DeleteSnapshots", [.vardict(options)]).first?.uint32 ?? 0
        say("\(count) shadow cop\(count == 1 ? "y" : "ies") deleted.")
    }
}

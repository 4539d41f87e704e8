#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import DBus

/// `shadowcopy create shadow --for VOLUME...` (vssadmin create shadow).
struct Create: AsyncParsableCommand {
    enum What: String, ExpressibleByArgument { case shadow }

    static let configuration = CommandConfiguration(
        abstract: "Make a shadow copy of one or more volumes at the same instant, with the writers' help.")

    @Argument(help: "shadow")
    var what: What

    @Option(name: .customLong("for"), help: "A volume to copy (a mount point); repeat for a set of several.")
    var volumes: [String] = []

    @Option(help: "The provider to use (default: the first that supports each volume).")
    var provider: String?

    @Flag(help: "Keep the copies across a restart of shadowcopyd.")
    var persistent = false

    @Flag(name: .customLong("no-writers"), help: "Leave applications out (a crash-consistent or filesystem-consistent copy).")
    var noWriters = false

    @Flag(help: "Mount each copy read-only under /run/shadowcopy and print where.")
    var expose = false

    @Option(help: "A description stored with the set.")
    var description = ""

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard !volumes.isEmpty else { throw ValidationError("name at least one volume with --for") }
    }

    func run() async throws {
        try await global.run { client in
            let session = BackupSession(client: client, progress: Progress(enabled: global.showsProgress))
            session.writers = !noWriters
            session.persistent = persistent
            do {
                try await session.begin(description: description)
                for volume in volumes { try await session.add(volume: volume, provider: provider, alias: nil) }
                try await session.create()
                try await session.end()
                if expose { try await session.expose() }
            } catch {
                await session.abandon()
                throw error
            }
            let consistency = try await client.properties(session.set!, "SnapshotSet")["Consistency"].map(Output.text) ?? ""
            if global.json {
                print(Output.json(session.report(consistency: consistency)))
                return
            }
            print("Shadow copy set \(Output.id(session.set!)) made (\(consistency)-consistent\(persistent ? ", persistent" : "")):")
            for shadow in session.shadows {
                print("  \(Output.id(shadow.path))  \(shadow.volume)" + (shadow.exposedAt.map { "  exposed at \($0)" } ?? ""))
            }
        }
    }
}

/// `shadowcopy delete shadows ...` and `shadowcopy delete shadowstorage --for V`.
struct Delete: AsyncParsableCommand {
    enum What: String, ExpressibleByArgument { case shadows, shadowstorage }

    static let configuration = CommandConfiguration(abstract: "Delete shadow copies, or a volume's shadow storage.")

    @Argument(help: "shadows or shadowstorage")
    var what: What

    @Option(name: .customLong("for"), help: "The volume whose copies (or storage) go.")
    var volume: String?

    @Option(help: "Every copy of this set (its id).")
    var set: String?

    @Option(help: "This one shadow copy (its id).")
    var shadow: String?

    @Flag(help: "Only the oldest copy of the --for volume.")
    var oldest = false

    @Flag(help: "Every shadow copy.")
    var all = false

    @Flag(help: "Do not ask for confirmation.")
    var quiet = false

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if what == .shadowstorage {
            guard volume != nil, set == nil, shadow == nil, !oldest, !all else {
                throw ValidationError("delete shadowstorage takes --for VOLUME only")
            }
            return
        }
        let chosen = [volume != nil && !oldest, set != nil, shadow != nil, oldest, all].filter { $0 }.count
        guard chosen == 1 else {
            throw ValidationError("name exactly one of --for VOLUME, --set ID, --shadow ID, --oldest (with --for) or --all")
        }
        if oldest, volume == nil { throw ValidationError("--oldest needs --for VOLUME") }
    }

    func run() async throws {
        try await global.run { client in
            if what == .shadowstorage {
                try await Storage.delete(client, volume: volume!)
                if global.json { print(Output.json(["deleted": volume!])) } else { print("Shadow storage of \(volume!) deleted.") }
                return
            }
            guard quiet || global.json || isatty(0) == 0 || confirm() else { throw CLIError.cancelled }
            var count = 0
            if let shadow {
                try await client.call(try Output.path(shadow, kind: "snapshots"), "Snapshot", "Delete", [.vardict([])])
                count = 1
            } else {
                var options: [(String, Value)] = []
                if let volume { options.append(("volume", .string(volume))) }
                if let set { options.append(("set", .objectPath(try Output.path(set, kind: "sets")))) }
                if oldest { options.append(("oldest", .bool(true))) }
                if all { options.append(("all", .bool(true))) }
                count = Int(try await client.coordinator("DeleteSnapshots", [.vardict(options)]).first?.uint32 ?? 0)
            }
            if global.json { print(Output.json(["deleted": count])) } else { print("\(count) shadow cop\(count == 1 ? "y" : "ies") deleted.") }
        }
    }

    private func confirm() -> Bool {
        Output.stderr("Delete the shadow copies named? [y/N] ")
        return readLine()?.lowercased().hasPrefix("y") == true
    }
}

import DBus

/// One snapshot set driven from the CLI: begin, add volumes, create, expose, end, or abandon.
/// `create shadow` and `run` scripts both go through it.
final class BackupSession {
    struct Shadow {
        let volume: String
        let path: ObjectPath
        let alias: String?
        var exposedAt: String?
    }

    let client: DaemonClient
    let progress: Progress
    var writers = true
    var persistent = false
    var backupType = "copy"
    var excludedWriters: [String] = []
    private(set) var set: ObjectPath?
    private(set) var shadows: [Shadow] = []
    private(set) var created = false

    init(client: DaemonClient, progress: Progress) {
        self.client = client
        self.progress = progress
    }

    /// StartSnapshotSet (auto-release off: the set outlives this process) and, with writers,
    /// GatherWriterMetadata.
    func begin(description: String) async throws {
        guard set == nil else { throw CLIError.usage("a backup is already begun") }
        let options: [(String, Value)] = [
            ("context", .string(writers ? "backup" : "file-share-backup")), ("backup-type", .string(backupType)),
            ("persistent", .bool(persistent)), ("auto-release", .bool(false)), ("description", .string(description)),
        ]
        progress.phase("StartSnapshotSet")
        guard let path = try await client.coordinator("StartSnapshotSet", [.vardict(options)]).first?.objectPath else {
            throw CLIError.protocolError("StartSnapshotSet returned no set")
        }
        set = path
        if writers { try await client.runJob(path, "GatherWriterMetadata", progress: progress) }
    }

    /// AddVolume; `alias` names it for `expose` and `exec` in scripts.
    func add(volume: String, provider: String?, alias: String?) async throws {
        guard let set else { throw CLIError.usage("add volume needs 'begin backup' first") }
        let options: [(String, Value)] = provider.map { [("provider", .string($0))] } ?? []
        progress.phase("AddVolume \(volume)")
        guard let path = try await client.call(set, "SnapshotSet", "AddVolume", [.string(volume), .vardict(options)])
            .first?.objectPath else { throw CLIError.protocolError("AddVolume returned no snapshot") }
        shadows.append(Shadow(volume: volume, path: path, alias: alias))
    }

    /// PrepareForBackup (with writers) and DoSnapshotSet: the copies exist afterwards.
    func create() async throws {
        guard let set else { throw CLIError.usage("create needs 'begin backup' and at least one 'add volume' first") }
        guard !shadows.isEmpty else { throw CLIError.usage("create needs at least one volume") }
        if writers {
            if !excludedWriters.isEmpty { try await selectAllBut(excludedWriters, in: set) }
            try await client.runJob(set, "PrepareForBackup", progress: progress)
        }
        try await client.runJob(set, "DoSnapshotSet", progress: progress)
        created = true
        progress.done()
    }

    /// Component mode: every component of every writer but the excluded ones (VSS writer exclude).
    private func selectAllBut(_ excluded: [String], in set: ObjectPath) async throws {
        try await client.call(set, "SnapshotSet", "SetBackupState", [.vardict([("select-components", .bool(true))])])
        let metadata = try await client.call(set, "SnapshotSet", "GetWriterMetadata").first?.arrayElements ?? []
        let names = Dictionary(uniqueKeysWithValues: try await client.objects(with: "RegisteredWriter").map { path, p in
            (path, Output.text(p["Name"]))
        })
        for entry in metadata {
            guard let members = entry.structMembers, let writer = members[0].objectPath,
                !excluded.contains(names[writer] ?? "") else { continue }
            for component in members[1].vardict?["components"]?.arrayElements ?? [] {
                guard let c = component.vardict, let name = c["name"]?.string else { continue }
                try await client.call(set, "SnapshotSet", "AddComponent",
                                      [.objectPath(writer), .string(c["logical-path"]?.string ?? ""), .string(name), .vardict([])])
            }
        }
    }

    /// Exposes the copy of `alias` (or of every volume when nil), read-only under /run/shadowcopy.
    @discardableResult
    func expose(alias: String? = nil) async throws -> [String] {
        guard created else { throw CLIError.usage("expose needs 'create' first") }
        var paths: [String] = []
        for i in shadows.indices where alias == nil || shadows[i].alias == alias {
            let path = try await client.call(shadows[i].path, "Snapshot", "Expose", [.vardict([])]).first?.string ?? ""
            shadows[i].exposedAt = path
            paths.append(path)
        }
        if let alias, paths.isEmpty { throw CLIError.usage("no volume was added with alias \(alias)") }
        return paths
    }

    /// BackupComplete: writers hear the backup is over (they may truncate logs).
    func end() async throws {
        guard let set, created else { throw CLIError.usage("end backup needs 'create' first") }
        if writers { try await client.runJob(set, "BackupComplete", progress: progress) }
        progress.done()
    }

    /// Deletes the set and its copies (a non-persistent backup at its end).
    func delete() async throws {
        guard let set else { return }
        try await client.call(set, "SnapshotSet", "Delete", [.vardict([])])
        self.set = nil
    }

    /// After a failure: abort and delete, so nothing half-made stays. Errors are secondary here.
    func abandon() async {
        guard let set else { return }
        _ = try? await client.call(set, "SnapshotSet", "Abort", [.vardict([])])
        _ = try? await client.call(set, "SnapshotSet", "Delete", [.vardict([])])
        self.set = nil
        progress.done()
    }

    /// What was made, for output.
    func report(consistency: String) -> [String: Any] {
        [
            "set": set.map(Output.id) ?? "",
            "consistency": consistency,
            "persistent": persistent,
            "shadows": shadows.map { s -> [String: Any] in
                ["id": Output.id(s.path), "volume": s.volume, "exposedPath": s.exposedAt ?? ""]
            },
        ]
    }
}

import DBus
import ShadowCopyCore

/// The D-Bus adapter of one set: `SnapshotSet` at `sets/<id>`. Every method names its caller to
/// the engine, which decides whether that caller may drive the set.
struct SnapshotSetAdapter {
    let engine: SnapshotEngine
    let id: Identifier
    let authorizer: Authorizer

    func interface() -> Interface {
        let engine = self.engine
        let id = self.id
        let authorizer = self.authorizer
        let record: @Sendable () -> SnapshotSetRecord? = { engine.set(id) }
        // In order: a requester may send AddVolume and DoSnapshotSet at once and have the
        // volume added first, as VSS's synchronous calls would.
        return Interface(ShadowCopySpecs.snapshotSet, inOrder: true) { i in
            i.property("Id", get: { .string(id.description) })
            i.property("State", get: { .string(record()?.state.rawValue ?? "deleted") })
            i.property("Context", get: { .string(record()?.context.rawValue ?? "") })
            i.property("BackupType", get: { .string(record()?.backupType.rawValue ?? "") })
            i.property("Volumes", get: { .strings(record()?.volumes ?? []) })
            i.property("Snapshots", get: { .objectPaths((record()?.snapshots ?? []).map(ShadowCopyBus.snapshotPath)) })
            i.property("Requester", get: { .string(record()?.requester ?? "") })
            i.property("Persistent", get: { .bool(record()?.persistent ?? false) })
            i.property("CreationTime", get: { .uint64(record()?.creationTime ?? 0) })
            i.property("Consistency", get: { .string(record()?.consistency?.rawValue ?? "") })

            i.method("GatherWriterMetadata") { call in
                try Options.none(call[0], "GatherWriterMetadata")
                return [jobPath(try engine.gatherWriterMetadata(id, try await call.caller()))]
            }
            i.method("GetWriterMetadata") { call in
                let entries = try engine.writerMetadata(id, try await call.caller()).map { writer, metadata in
                    Value.structure([.objectPath(ShadowCopyBus.writerPath(writer)), metadata.raw as? Value ?? .vardict([])])
                }
                return [.array(element: "(oa{sv})", entries)]
            }
            i.method("SetBackupState") { call in
                let options = try Options(call[0], accepted: [
                    "select-components": "b", "bootable-system-state": "b", "backup-type": "s", "partial-file-support": "b",
                ], method: "SetBackupState")
                try engine.setBackupState(id, try await call.caller(), selectComponents: options.bool("select-components"),
                                          backupType: try options.choice("backup-type", as: BackupType.self))
                return []
            }
            i.method("AddComponent") { call in
                try Options.none(call[3], "AddComponent")
                try engine.addComponent(id, try await call.caller(), writer: try SnapshotSetAdapter.writer(call[0]),
                                        component: ComponentKey(logicalPath: call[1].string ?? "", name: call[2].string ?? ""))
                return []
            }
            i.method("AddVolume") { call in
                let options = try Options(call[1], accepted: ["provider": "s"], method: "AddVolume")
                let caller = try await call.caller()
                // The requester's own set, then the volume as its provider names it, for polkit rules.
                try engine.mayAddVolume(id, caller)
                let (provider, volume) = try await engine.provider(for: call[0].string ?? "", named: options.string("provider"))
                try await authorizer.check(call, .create, details: [
                    "volume": volume, "set": id.description, "provider": provider.info.name,
                ], options: options)
                let snapshot = try engine.addVolume(id, caller, canonical: volume, provider: provider)
                return [.objectPath(ShadowCopyBus.snapshotPath(snapshot))]
            }
            i.method("PrepareForBackup") { call in
                try Options.none(call[0], "PrepareForBackup")
                return [jobPath(try engine.prepareForBackup(id, try await call.caller()))]
            }
            i.method("DoSnapshotSet") { call in
                try Options.none(call[0], "DoSnapshotSet")
                return [jobPath(try engine.doSnapshotSet(id, try await call.caller()))]
            }
            i.method("GatherWriterStatus") { call in
                let status = try engine.writerStatus(id, try await call.caller()).map { part in
                    Value.structure([
                        .objectPath(ShadowCopyBus.writerPath(part.writer.id)), .string(part.state.rawValue),
                        .string(part.failure.map { ShadowCopyError($0, "").dbusError.name.rawValue } ?? ""),
                        .vardict([("name", .string(part.writer.registration.name)), ("message", .string(part.failureMessage))]),
                    ])
                }
                return [.array(element: "(ossa{sv})", status)]
            }
            i.method("SetBackupSucceeded") { call in
                try Options.none(call[4], "SetBackupSucceeded")
                try engine.setBackupSucceeded(
                    id, try await call.caller(), writer: try SnapshotSetAdapter.writer(call[0]),
                    component: ComponentKey(logicalPath: call[1].string ?? "", name: call[2].string ?? ""),
                    succeeded: call[3].bool ?? false)
                return []
            }
            i.method("BackupComplete") { call in
                try Options.none(call[0], "BackupComplete")
                return [jobPath(try engine.backupComplete(id, try await call.caller()))]
            }
            i.method("PreRestore") { call in
                try Options.none(call[0], "PreRestore")
                return [jobPath(try engine.restorePhase(id, try await call.caller(), post: false))]
            }
            i.method("PostRestore") { call in
                try Options.none(call[0], "PostRestore")
                return [jobPath(try engine.restorePhase(id, try await call.caller(), post: true))]
            }
            i.method("Abort") { call in
                try Options.none(call[0], "Abort")
                try await engine.abort(id, try await call.caller())
                return []
            }
            i.method("Delete") { call in
                let options = try Options.none(call[0], "Delete")
                let caller = try await call.caller()
                // Ending one's own set needs nothing more; deleting copies already made does.
                let set = try engine.mayDrive(id, caller)
                if set.snapshots.contains(where: { engine.snapshot($0)?.state != .pending }) {
                    try await authorizer.check(call, .delete, details: ["set": id.description,
                                                                        "volume": set.volumes.joined(separator: " ")],
                                               options: options)
                }
                try await engine.deleteSet(id, caller)
                return []
            }
        }
    }

    private func jobPath(_ job: Job) -> Value { .objectPath(ShadowCopyBus.jobPath(job.number)) }

    static func writer(_ value: Value) throws(ShadowCopyError) -> Identifier {
        guard let path = value.objectPath, let id = ShadowCopyBus.writerID(path) else {
            throw .notFound("\(value.objectPath?.rawValue ?? "?") is not a writer object")
        }
        return id
    }
}

extension MethodCall {
    /// The caller as the engine knows it: its unique name and uid.
    func caller() async throws -> Caller {
        Caller(name: sender.rawValue, uid: try await callerUID())
    }
}

extension Options {
    /// Options of a method that takes none yet: any key is an error.
    @discardableResult
    static func none(_ value: Value, _ method: String) throws(ShadowCopyError) -> Options {
        try Options(value, accepted: [:], method: method)
    }
}

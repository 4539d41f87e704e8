import DBus
import ShadowCopyCore

/// The D-Bus adapter of one copy: `Snapshot` at `snapshots/<id>`.
enum SnapshotAdapter {
    static func interface(_ id: Identifier, engine: SnapshotEngine, authorizer: Authorizer) -> Interface {
        let record: @Sendable () -> SnapshotRecord? = { engine.snapshot(id) }
        let set = record().map { ShadowCopyBus.setPath($0.set) } ?? .root
        return Interface(ShadowCopySpecs.snapshot) { i in
            i.property("Id", get: { .string(id.description) })
            i.property("Set", get: { .objectPath(set) })
            i.property("OriginalVolume", get: { .string(record()?.originalVolume ?? "") })
            i.property("Device", get: { .string(record()?.copy?.device ?? "") })
            i.property("Provider", get: { .string(record()?.provider ?? "") })
            i.property("Attributes", get: { .strings(record()?.attributes ?? []) })
            i.property("CreationTime", get: { .uint64(record()?.creationTime ?? 0) })
            i.property("State", get: { .string(record()?.state.rawValue ?? "deleted") })
            i.property("ExposedPath", get: { .string(record()?.exposedPath ?? "") })
            // btrfs copies share extents with their origin: only dm copies have a store.
            i.property("StorageUsed", get: { .uint64(engine.storageUse(of: id)?.used ?? 0) })
            i.property("StorageSize", get: { .uint64(engine.storageUse(of: id)?.size ?? 0) })

            /// Ownership first (a stranger is refused without a polkit prompt), then polkit.
            @Sendable func authorize(_ call: MethodCall, _ action: Action, _ options: Options) async throws -> Caller {
                let caller = try await call.caller()
                let snapshot = try engine.owned(id, caller)
                var details = ["volume": snapshot.originalVolume, "set": snapshot.set.description, "snapshot": id.description,
                               "provider": snapshot.provider]
                if !snapshot.exposedPath.isEmpty { details["mount-point"] = snapshot.exposedPath }
                try await authorizer.check(call, action, details: details, options: options)
                return caller
            }
            i.method("Expose") { call in
                let caller = try await authorize(call, .expose, try Options.none(call[0], "Expose"))
                return [.string(try engine.expose(id, caller))]
            }
            i.method("Unexpose") { call in
                let caller = try await authorize(call, .expose, try Options.none(call[0], "Unexpose"))
                try engine.unexpose(id, caller)
                return []
            }
            i.method("OpenDevice") { call in
                let caller = try await authorize(call, .expose, try Options.none(call[0], "OpenDevice"))
                return [.unixFD(UnixFD(owning: try engine.openDevice(id, caller)))]
            }
            i.method("Revert") { call in
                let caller = try await authorize(call, .revert, try Options.none(call[0], "Revert"))
                try await engine.revert(id, caller)
                return []
            }
            i.method("Delete") { call in
                let caller = try await authorize(call, .delete, try Options.none(call[0], "Delete"))
                try await engine.deleteSnapshot(id, caller)
                return []
            }
        }
    }
}

/// The D-Bus adapter of one long phase: `Job` at `jobs/<n>`.
enum JobAdapter {
    static func interface(_ job: Job, engine: SnapshotEngine) -> Interface {
        Interface(ShadowCopySpecs.job) { i in
            i.property("Operation", get: { .string(job.operation) })
            i.property("Progress", get: { .double(job.status.progress) })
            i.property("State", get: { .string(job.status.state.rawValue) })
            i.property("ErrorName", get: { .string(job.status.error?.dbusError.name.rawValue ?? "") })
            i.property("ErrorMessage", get: { .string(job.status.error?.message ?? "") })
            i.method("Wait") { call in
                [.bool(await job.wait(timeoutMs: call[0].uint32 ?? 0))]
            }
            i.method("Cancel") { call in
                try engine.mayDrive(job.set, try await call.caller())
                job.cancel()
                return []
            }
        }
    }
}

/// The D-Bus adapter of a provider: `RegisteredProvider` at `providers/<name>`.
enum ProviderAdapter {
    static func interface(_ info: ProviderInfo) -> Interface {
        Interface(ShadowCopySpecs.registeredProvider) { i in
            i.property("Name", get: { .string(info.name) })
            i.property("Id", get: { .string(info.id.description) })
            i.property("Type", get: { .string(info.type) })
            i.property("Version", get: { .string(info.version) })
        }
    }
}

import DBus
import Logging
import ShadowCopyCore

/// The D-Bus adapter of the coordinator: the `Coordinator` interface of the root object.
///
/// It turns bus arguments into domain requests and domain errors into named D-Bus errors;
/// what a writer is and who may remove it is decided by ``WriterRegistry``.
struct CoordinatorAdapter: Sendable {
    let server: ShadowCopyServer

    func interface() -> Interface {
        let settings = server.settings
        return Interface(ShadowCopySpecs.coordinator) { i in
            i.property("Version", get: { .string(shadowCopyVersion) })
            i.property("FreezeTimeoutMs", get: { .uint32(settings.freezeTimeoutMs) })
            i.property("HoldWritesTimeoutMs", get: { .uint32(settings.holdWritesTimeoutMs) })
            i.property("MaxVolumesPerSet", get: { .uint32(settings.maxVolumesPerSet) })
            i.property("MaxSnapshotsPerVolume", get: { .uint32(settings.maxSnapshotsPerVolume) })
            let engine = server.engine
            i.property("ActiveSet", get: { .objectPath(engine.activeSet.map(ShadowCopyBus.setPath) ?? .root) })

            i.method("RegisterWriter") { call in try await registerWriter(call) }
            i.method("UnregisterWriter") { call in try unregisterWriter(call) }
            i.method("RegisterProvider") { call in try await server.registerProvider(call) }
            i.method("UnregisterProvider") { call in try server.unregisterProvider(call) }
            i.method("StartSnapshotSet") { call in try await startSet(call, restore: false) }
            i.method("StartRestore") { call in try await startSet(call, restore: true) }
            i.method("Query") { call in
                let filter = try Options(call[0], accepted: ["volume": "s", "set": "o", "provider": "s"], method: "Query")
                let set = try filter.setID("set")
                let volume = try await canonical(filter.string("volume"))
                let provider = filter.string("provider")
                return [.objectPaths(engine.query(volume: volume, set: set)
                    .filter { provider == nil || $0.provider == provider }.map { ShadowCopyBus.snapshotPath($0.id) })]
            }
            i.method("DeleteSnapshots") { call in
                let options = try Options(call[0], accepted: ["volume": "s", "set": "o", "oldest": "b", "all": "b"],
                                          method: "DeleteSnapshots")
                let volume = try await canonical(options.string("volume"))
                var details: [String: String] = [:]
                if let volume { details["volume"] = volume }
                if let set = try options.setID("set") { details["set"] = set.description }
                if options.bool("all") == true { details["all"] = "true" }
                try await server.authorizer.check(call, .delete, details: details, options: options)
                let count = try await engine.deleteSnapshots(
                    try await call.caller(), volume: volume, set: try options.setID("set"),
                    oldest: options.bool("oldest") ?? false, all: options.bool("all") ?? false)
                return [.uint32(count)]
            }
            i.method("IsVolumeSupported") { call in
                try Options.none(call[1], "IsVolumeSupported")
                do throws(ShadowCopyError) {
                    let (provider, _) = try await engine.provider(for: call[0].string ?? "")
                    return [.bool(true), .string(provider.info.name)]
                } catch {
                    if error.code == .volumeNotSupported { return [.bool(false), .string("")] }
                    throw error
                }
            }

            // Authorized before the volume is looked at: a stranger learns nothing from the answer.
            i.method("AddShadowStorage") { call in
                let options = try Options(call[3], accepted: ["policy": "s"], method: "AddShadowStorage")
                let policy = try options.choice("policy", as: OverflowPolicy.self) ?? .deleteOldest
                let (volume, location) = (call[0].string ?? "", call[1].string ?? "")
                try await server.authorizer.check(call, .manageStorage, details: ["volume": volume, "location": location],
                                                  options: options)
                let (provider, canonical) = try await engine.provider(for: volume)
                let id = try engine.addStorage(forVolume: canonical, provider: provider, location: location,
                                               maxBytes: call[2].uint64 ?? 0,
                                               policy: policy)
                return [.objectPath(ShadowCopyBus.storagePath(id))]
            }
        }
    }

    /// The canonical name of a volume given as a filter, as its provider names it.
    private func canonical(_ volume: String?) async throws(ShadowCopyError) -> String? {
        guard let volume else { return nil }
        return try await server.engine.provider(for: volume).1
    }

    private func registerWriter(_ call: MethodCall) async throws -> [Value] {
        guard let path = call[0].objectPath else { throw ShadowCopyError.invalidArgs("RegisterWriter: bad path") }
        let options = try Options(call[1], accepted: [
            "name": "s", "class-id": "s", "instance-id": "s", "usage": "s", "level": "s", "freeze-timeout-ms": "u",
        ], method: "RegisterWriter")
        guard let name = options.string("name") else {
            throw ShadowCopyError.invalidArgs("RegisterWriter: option 'name' (s) is required")
        }
        try await server.authorizer.check(call, .registerWriter, details: ["writer": name], options: options)
        var registration = WriterRegistration(name: name)
        registration.classID = try options.identifier("class-id")
        if let instance = try options.identifier("instance-id") { registration.instanceID = instance }
        if let usage = try options.choice("usage", as: WriterUsage.self) { registration.usage = usage }
        if let level = try options.choice("level", as: WriterLevel.self) { registration.level = level }
        registration.freezeTimeoutMs = options.uint32("freeze-timeout-ms")
        let record = try server.registerWriter(registration, owner: call.sender, path: path)
        return [.objectPath(ShadowCopyBus.writerPath(record.id))]
    }

    private func startSet(_ call: MethodCall, restore: Bool) async throws -> [Value] {
        let method = restore ? "StartRestore" : "StartSnapshotSet"
        let options = try Options(call[0], accepted: [
            "context": "s", "backup-type": "s", "persistent": "b", "auto-release": "b", "description": "s", "wait-ms": "u",
        ], method: method)
        let context = try options.choice("context", as: SetContext.self) ?? .backup
        try await server.authorizer.check(call, .create, details: ["context": context.rawValue], options: options)
        let id = try await server.engine.startSet(
            caller: try await call.caller(), context: context,
            backupType: try options.choice("backup-type", as: BackupType.self) ?? .full,
            persistent: options.bool("persistent") ?? false, autoRelease: options.bool("auto-release") ?? true,
            description: options.string("description") ?? "", restore: restore, waitMs: options.uint32("wait-ms") ?? 0)
        return [.objectPath(ShadowCopyBus.setPath(id))]
    }

    private func unregisterWriter(_ call: MethodCall) throws -> [Value] {
        guard let path = call[0].objectPath, let id = ShadowCopyBus.writerID(path) else {
            throw ShadowCopyError.notFound("\(call[0].objectPath?.rawValue ?? "?") is not a writer object")
        }
        try server.unregisterWriter(id, caller: call.sender)
        return []
    }
}

/// The D-Bus adapter of one writer record: `RegisteredWriter` at `writers/<id>`.
struct RegisteredWriterAdapter {
    static func interface(_ id: Identifier, registry: WriterRegistry) -> Interface {
        // Constant properties are captured once; State and LastError are read live.
        guard let record = registry.writer(id) else { preconditionFailure("writer \(id) is not registered") }
        let r = record.registration
        return Interface(ShadowCopySpecs.registeredWriter) { i in
            i.property("Id", get: { .string(id.description) })
            i.property("Name", get: { .string(r.name) })
            i.property("ClassId", get: { .string(r.classID?.description ?? "") })
            i.property("InstanceId", get: { .string(r.instanceID.description) })
            i.property("Owner", get: { .string(record.owner) })
            i.property("Path", get: { .objectPath(ObjectPath(record.path) ?? .root) })
            i.property("Level", get: { .string(r.level.rawValue) })
            i.property("Usage", get: { .string(r.usage.rawValue) })
            i.property("FreezeTimeoutMs", get: { .uint32(record.freezeTimeoutMs) })
            i.property("State", get: { .string((registry.writer(id)?.state ?? .stable).rawValue) })
            i.property("LastError", get: { .string(registry.writer(id)?.lastError ?? "") })
        }
    }
}

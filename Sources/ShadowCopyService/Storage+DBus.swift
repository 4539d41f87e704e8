import DBus
import ShadowCopyCore

/// The D-Bus adapter of one diff area: `ShadowStorage` at `storage/<id>`.
enum ShadowStorageAdapter {
    static func interface(_ id: Identifier, engine: SnapshotEngine, authorizer: Authorizer) -> Interface {
        let area: @Sendable () -> ShadowStorageRecord? = { engine.storageArea(id) }
        let fixed = area()
        return Interface(ShadowCopySpecs.shadowStorage) { i in
            i.property("ForVolume", get: { .string(fixed?.forVolume ?? "") })
            i.property("Location", get: { .string(fixed?.location ?? "") })
            i.property("Used", get: { .uint64(area().map { engine.storageUse(of: $0).used } ?? 0) })
            i.property("Allocated", get: { .uint64(area().map { engine.storageUse(of: $0).allocated } ?? 0) })
            i.property("MaxSize", get: { .uint64(area()?.maxBytes ?? 0) })
            i.property("Policy", get: { .string(area()?.policy.rawValue ?? "") })

            @Sendable func authorize(_ call: MethodCall, _ options: Options) async throws {
                try await authorizer.check(call, .manageStorage, details: [
                    "volume": fixed?.forVolume ?? "", "location": fixed?.location ?? "",
                ], options: options)
            }
            i.method("Resize") { call in
                try await authorize(call, try Options(call[1], accepted: [:], method: "Resize"))
                try engine.resizeStorage(id, maxBytes: call[0].uint64 ?? 0)
                return []
            }
            i.method("Delete") { call in
                try await authorize(call, try Options.none(call[0], "Delete"))
                try engine.deleteStorage(id)
                return []
            }
        }
    }
}

import DBus
import ShadowCopyCore

/// External providers: `RegisterProvider`, `UnregisterProvider`, and their owners leaving.
extension ShadowCopyServer {
    /// Names a provider may take: short, lowercase, and never a built-in provider's.
    static func checkProviderName(_ name: String) throws(ShadowCopyError) {
        let allowed = name.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                || c == UInt8(ascii: "-")
        }
        guard (1...32).contains(name.utf8.count), allowed, name.first != "-" else {
            throw .invalidArgs("a provider name is 1 to 32 of a-z, 0-9 and '-', not starting with '-'")
        }
    }

    func registerProvider(_ call: MethodCall) async throws -> [Value] {
        guard let path = call[0].objectPath else { throw ShadowCopyError.invalidArgs("RegisterProvider: bad path") }
        let options = try Options(call[1], accepted: ["name": "s", "id": "s", "version": "s"], method: "RegisterProvider")
        guard let name = options.string("name") else {
            throw ShadowCopyError.invalidArgs("RegisterProvider: option 'name' (s) is required")
        }
        try ShadowCopyServer.checkProviderName(name)
        try await authorizer.check(call, .registerProvider, details: ["provider": name], options: options)
        let version = options.string("version") ?? ""
        guard version.utf8.count <= 64 else { throw ShadowCopyError.invalidArgs("version: at most 64 bytes") }
        let info = ProviderInfo(name: name, id: try options.identifier("id") ?? Identifier(), type: "external",
                                version: version)
        let provider = ExternalProvider(info: info, owner: call.sender, path: path, connection: connection,
                                        timeoutMs: settings.writerEventTimeoutMs, logger: logger)
        try engine.register(provider: provider)
        externalProviders.withLock { $0[name] = provider }
        do {
            try connection.objects.export(ShadowCopyBus.providerPath(name), [ProviderAdapter.interface(info)])
        } catch {
            externalProviders.withLock { $0[name] = nil }
            engine.unregister(provider: name)
            throw ShadowCopyError(.failed, "cannot export provider: \(error.message)")
        }
        // The owner may have left before the registration was recorded.
        Task { [weak self] in
            guard let self, (try? await self.connection.nameOwner(call.sender)) == nil else { return }
            self.unregisterProviders(ownedBy: call.sender.rawValue)
        }
        return [.objectPath(ShadowCopyBus.providerPath(name))]
    }

    func unregisterProvider(_ call: MethodCall) throws -> [Value] {
        guard let path = call[0].objectPath,
            let name = externalProviders.withLock({ $0.values.first { ShadowCopyBus.providerPath($0.info.name) == path } })?.info.name
        else {
            throw ShadowCopyError.notFound("\(call[0].objectPath?.rawValue ?? "?") is not an external provider")
        }
        let removed = externalProviders.withLock { providers -> Bool in
            guard providers[name]?.owner == call.sender else { return false }
            providers[name] = nil
            return true
        }
        guard removed else { throw ShadowCopyError(.notAuthorized, "only the connection that registered \(name) may unregister it") }
        engine.unregister(provider: name)
        connection.objects.unexport(ShadowCopyBus.providerPath(name))
        return []
    }

    /// A provider's connection closed: it is gone, as a writer would be.
    func unregisterProviders(ownedBy owner: String) {
        let gone = externalProviders.withLock { providers -> [String] in
            let names = providers.values.filter { $0.owner.rawValue == owner }.map(\.info.name)
            for name in names { providers[name] = nil }
            return names
        }
        for name in gone {
            engine.unregister(provider: name)
            connection.objects.unexport(ShadowCopyBus.providerPath(name))
        }
    }
}

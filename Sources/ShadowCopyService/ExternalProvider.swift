#if canImport(Glibc)
import Glibc
#endif
import DBus
import Logging
import ShadowCopyCore

/// A provider in another process, reached over D-Bus through the contract's `Provider`
/// interface (IVssProviderCreateSnapshotSet) at the path it registered, on its owner's connection.
///
/// The coordinator holds writes for it: its volumes' filesystems are frozen around
/// `CommitSnapshots` through the freeze guard, so its copies are filesystem-consistent.
final class ExternalProvider: SnapshotProvider {
    static let interface: InterfaceName = "org.shadowcopy.ShadowCopy1.Provider"

    let info: ProviderInfo
    let holdsWritesItself = false
    let owner: BusName
    let path: ObjectPath
    private let connection: Connection
    private let timeout: Duration
    private let logger: Logger

    init(info: ProviderInfo, owner: BusName, path: ObjectPath, connection: Connection, timeoutMs: UInt32, logger: Logger) {
        self.info = info
        self.owner = owner
        self.path = path
        self.connection = connection
        self.timeout = .milliseconds(Int(timeoutMs))
        self.logger = logger
    }

    func canonicalVolume(_ volume: String) async throws(ShadowCopyError) -> String? {
        guard let resolved = realpath(volume, nil) else {
            throw ShadowCopyError(.notFound, "\(volume): \(String(cString: strerror(errno)))")
        }
        let canonical = String(cString: resolved)
        free(resolved)
        let reply = try await call("IsVolumeSupported", [.string(canonical), .vardict([])])
        guard reply.count == 1, let supported = reply[0].bool else {
            throw .failed("provider \(info.name): IsVolumeSupported must return b")
        }
        return supported ? canonical : nil
    }

    func beginPrepare(set: Identifier, snapshot: Identifier, volume: String) async throws(ShadowCopyError) {
        try await call("BeginPrepareSnapshot", [.objectPath(ShadowCopyBus.setPath(set)), .string(snapshot.description),
                                                .string(volume), .vardict([])])
    }

    func endPrepare(set: Identifier) async throws(ShadowCopyError) {
        try await call("EndPrepareSnapshots", [.objectPath(ShadowCopyBus.setPath(set))])
    }

    func preCommit(set: Identifier) async throws(ShadowCopyError) {
        try await call("PreCommitSnapshots", [.objectPath(ShadowCopyBus.setPath(set))])
    }

    func commit(set: Identifier) async throws(ShadowCopyError) {
        try await call("CommitSnapshots", [.objectPath(ShadowCopyBus.setPath(set))])
    }

    func postCommit(set: Identifier) async throws(ShadowCopyError) -> [Identifier: CommittedCopy] {
        let reply = try await call("PostCommitSnapshots", [.objectPath(ShadowCopyBus.setPath(set))])
        guard reply.count == 1, case .dictionary(let key, let value, let entries) = reply[0],
            key.rawValue == "s", value.rawValue == "s"
        else { throw .failed("provider \(info.name): PostCommitSnapshots must return a{ss}") }
        var copies: [Identifier: CommittedCopy] = [:]
        for entry in entries {
            guard let id = entry.key.string.flatMap(Identifier.init), let made = entry.value.string else {
                throw .failed("provider \(info.name): PostCommitSnapshots returned a key that is not a snapshot id")
            }
            copies[id] = try ExternalProvider.copy(made, provider: info.name)
        }
        return copies
    }

    /// What an external provider made: a block device, or a directory holding the files.
    static func copy(_ made: String, provider: String) throws(ShadowCopyError) -> CommittedCopy {
        var info = stat()
        guard made.hasPrefix("/"), stat(made, &info) == 0 else {
            throw .failed("provider \(provider): its copy \(made.prefix(256)) does not exist")
        }
        switch info.st_mode & S_IFMT {
        case S_IFBLK: return CommittedCopy(device: made, location: "", consistency: .crash)
        case S_IFDIR: return CommittedCopy(device: "", location: made, consistency: .crash)
        default: throw .failed("provider \(provider): its copy \(made.prefix(256)) is neither a block device nor a directory")
        }
    }

    func abort(set: Identifier) async {
        do {
            try await call("AbortSnapshots", [.objectPath(ShadowCopyBus.setPath(set))])
        } catch {
            logger.error("external provider could not abort", metadata: [
                "provider": "\(info.name)", "set": "\(set)", "error": "\(error)",
            ])
        }
    }

    func exists(snapshot: Identifier, copy: CommittedCopy, volume: String) -> Bool {
        var info = stat()
        return stat(copy.device.isEmpty ? copy.location : copy.device, &info) == 0
    }

    func delete(snapshot: Identifier, volume: String, copy: CommittedCopy?) async throws(ShadowCopyError) {
        try await call("DeleteSnapshot", [.string(snapshot.description)])
    }

    func expose(snapshot: Identifier, copy: CommittedCopy, at path: String) throws(ShadowCopyError) {
        if copy.device.isEmpty {
            try ReadOnlyMount.bind(copy.location, at: path)
        } else {
            try ReadOnlyMount.device(copy.device, at: path)
        }
    }

    @discardableResult
    private func call(_ member: MemberName, _ arguments: [Value]) async throws(ShadowCopyError) -> [Value] {
        do {
            return try await connection.call(owner, path, ExternalProvider.interface, member, arguments, timeout: timeout)
        } catch let error as DBusError {
            switch error.name {
            case .noReply, .timeout:
                throw ShadowCopyError(.timeout, "provider \(info.name): no answer to \(member) within \(timeout)")
            case .serviceUnknown, .nameHasNoOwner, .disconnected, .unknownObject:
                throw ShadowCopyError(.failed, "provider \(info.name) is gone (\(error.name.rawValue))")
            default:
                throw ShadowCopyError(.failed, "provider \(info.name): \(member): \(error.name.rawValue): \(error.message)")
            }
        } catch {
            throw ShadowCopyError(.cancelled, "the call to provider \(info.name) was cancelled")
        }
    }
}

import DBus
import ShadowCopyCore

/// The names of the v1 D-Bus contract.
public enum ShadowCopyBus {
    /// The well-known name the daemon owns.
    public static let name: BusName = "org.shadowcopy.ShadowCopy1"
    /// The root object: Coordinator and ObjectManager.
    public static let root: ObjectPath = "/org/shadowcopy/ShadowCopy1"
    /// Prefix of every shadowcopy error name.
    public static let errorPrefix = "org.shadowcopy.ShadowCopy1.Error."

    /// The object path of writer `id`.
    public static func writerPath(_ id: Identifier) -> ObjectPath {
        ObjectPath("/org/shadowcopy/ShadowCopy1/writers/" + id.hex)!
    }

    /// The writer id of `path`, when it is a writer's path.
    public static func writerID(_ path: ObjectPath) -> Identifier? {
        let prefix = "/org/shadowcopy/ShadowCopy1/writers/"
        guard path.rawValue.hasPrefix(prefix) else { return nil }
        let hex = String(path.rawValue.dropFirst(prefix.count))
        guard hex.utf8.count == 32, let id = Identifier(hex), id.hex == hex else { return nil }
        return id
    }
}

extension ShadowCopyError: DBusErrorConvertible {
    /// Bad input uses the standard `InvalidArgs`; everything else has its own shadowcopy name.
    public var dbusError: DBusError {
        let name: ErrorName = code == .invalidArgs
            ? .invalidArgs
            : ErrorName(ShadowCopyBus.errorPrefix + code.rawValue)!
        return DBusError(name, message)
    }
}

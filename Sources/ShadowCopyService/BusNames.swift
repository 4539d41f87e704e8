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

    /// The object path of snapshot set `id`.
    public static func setPath(_ id: Identifier) -> ObjectPath { ObjectPath("/org/shadowcopy/ShadowCopy1/sets/" + id.hex)! }
    /// The object path of snapshot `id`.
    public static func snapshotPath(_ id: Identifier) -> ObjectPath {
        ObjectPath("/org/shadowcopy/ShadowCopy1/snapshots/" + id.hex)!
    }
    /// The object path of shadow storage area `id`.
    public static func storagePath(_ id: Identifier) -> ObjectPath {
        ObjectPath("/org/shadowcopy/ShadowCopy1/storage/" + id.hex)!
    }
    /// The object path of job `number`.
    public static func jobPath(_ number: UInt64) -> ObjectPath { ObjectPath("/org/shadowcopy/ShadowCopy1/jobs/\(number)")! }
    /// The object path of provider `name`.
    public static func providerPath(_ name: String) -> ObjectPath {
        ObjectPath("/org/shadowcopy/ShadowCopy1/providers/" + name.replacingDashes())!
    }

    /// The writer id of `path`, when it is a writer's path.
    public static func writerID(_ path: ObjectPath) -> Identifier? { id(path, under: "writers") }
    /// The set id of `path`, when it is a set's path.
    public static func setID(_ path: ObjectPath) -> Identifier? { id(path, under: "sets") }

    private static func id(_ path: ObjectPath, under kind: String) -> Identifier? {
        let prefix = "/org/shadowcopy/ShadowCopy1/\(kind)/"
        guard path.rawValue.hasPrefix(prefix) else { return nil }
        let hex = String(path.rawValue.dropFirst(prefix.count))
        guard hex.utf8.count == 32, let id = Identifier(hex), id.hex == hex else { return nil }
        return id
    }
}

extension String {
    /// Object path elements take `[A-Za-z0-9_]`: provider names such as `dm-snapshot` use `_`.
    func replacingDashes() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}

extension ShadowCopyError: DBusErrorConvertible {
    /// Bad input and a needed interactive authorization use the standard names; everything else
    /// has its own shadowcopy name.
    public var dbusError: DBusError {
        let name: ErrorName = switch code {
        case .invalidArgs: .invalidArgs
        case .interactiveAuthorizationRequired: "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
        default: ErrorName(ShadowCopyBus.errorPrefix + code.rawValue)!
        }
        return DBusError(name, message)
    }
}

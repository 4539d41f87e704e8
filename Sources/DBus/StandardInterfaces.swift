/// Descriptions of the standard `org.freedesktop.DBus.*` interfaces every object serves.
public enum StandardInterfaces {
    public static let peer = InterfaceSpec(
        "org.freedesktop.DBus.Peer",
        methods: [
            MethodSpec("Ping"),
            MethodSpec("GetMachineId", out: [ArgumentSpec("machine_uuid", "s")]),
        ])

    public static let introspectable = InterfaceSpec(
        "org.freedesktop.DBus.Introspectable",
        methods: [MethodSpec("Introspect", out: [ArgumentSpec("xml_data", "s")])])

    public static let properties = InterfaceSpec(
        "org.freedesktop.DBus.Properties",
        methods: [
            MethodSpec("Get", in: [ArgumentSpec("interface_name", "s"), ArgumentSpec("property_name", "s")],
                       out: [ArgumentSpec("value", "v")]),
            MethodSpec("GetAll", in: [ArgumentSpec("interface_name", "s")], out: [ArgumentSpec("props", "a{sv}")]),
            MethodSpec("Set", in: [ArgumentSpec("interface_name", "s"), ArgumentSpec("property_name", "s"),
                                   ArgumentSpec("value", "v")]),
        ],
        signals: [
            SignalSpec("PropertiesChanged", [
                ArgumentSpec("interface_name", "s"), ArgumentSpec("changed_properties", "a{sv}"),
                ArgumentSpec("invalidated_properties", "as"),
            ])
        ])

    public static let objectManager = InterfaceSpec(
        "org.freedesktop.DBus.ObjectManager",
        methods: [
            MethodSpec("GetManagedObjects", out: [ArgumentSpec("object_paths_interfaces_and_properties", "a{oa{sa{sv}}}")])
        ],
        signals: [
            SignalSpec("InterfacesAdded", [
                ArgumentSpec("object_path", "o"), ArgumentSpec("interfaces_and_properties", "a{sa{sv}}"),
            ]),
            SignalSpec("InterfacesRemoved", [ArgumentSpec("object_path", "o"), ArgumentSpec("interfaces", "as")]),
        ])

    static let names: Set<InterfaceName> = [peer.name, introspectable.name, properties.name, objectManager.name]

    /// The machine id, for `Peer.GetMachineId`.
    static let machineID: String = {
        for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
            if let text = try? readSmallFile(path) {
                let id = text.filter { $0.isHexDigit }
                if id.count == 32 { return id }
            }
        }
        return ""
    }()
}

#if canImport(Glibc)
import Glibc
#endif

func readSmallFile(_ path: String) throws(DBusError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw DBusError(.failed, "cannot open \(path)") }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = read(fd, &buffer, buffer.count)
    guard n >= 0 else { throw DBusError(.failed, "cannot read \(path)") }
    return String(decoding: buffer[0..<n], as: UTF8.self)
}

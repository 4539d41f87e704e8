import DBus

/// The descriptions of the interfaces the daemon serves; `dbus/*.xml` documents the same, and a
/// test proves the running daemon's introspection equals those files.
public enum ShadowCopySpecs {
    private static func a(_ name: String, _ type: Signature) -> ArgumentSpec { ArgumentSpec(name, type) }
    private static let options = ArgumentSpec("options", "a{sv}")

    /// `org.shadowcopy.ShadowCopy1.Coordinator`, on the root object.
    public static let coordinator = InterfaceSpec(
        "org.shadowcopy.ShadowCopy1.Coordinator",
        methods: [
            MethodSpec("StartSnapshotSet", in: [options], out: [a("set", "o")]),
            MethodSpec("StartRestore", in: [options], out: [a("set", "o")]),
            MethodSpec("RegisterWriter", in: [a("path", "o"), options], out: [a("writer", "o")]),
            MethodSpec("UnregisterWriter", in: [a("writer", "o")]),
            MethodSpec("RegisterProvider", in: [a("path", "o"), options], out: [a("provider", "o")]),
            MethodSpec("UnregisterProvider", in: [a("provider", "o")]),
            MethodSpec("Query", in: [a("filter", "a{sv}")], out: [a("snapshots", "ao")]),
            MethodSpec("DeleteSnapshots", in: [options], out: [a("count", "u")]),
            MethodSpec("IsVolumeSupported", in: [a("volume", "s"), options],
                       out: [a("supported", "b"), a("provider", "s")]),
            MethodSpec("AddShadowStorage", in: [a("for_volume", "s"), a("on_location", "s"), a("max_bytes", "t"), options],
                       out: [a("storage", "o")]),
        ],
        properties: [
            PropertySpec("Version", "s", changeSignal: .const),
            PropertySpec("FreezeTimeoutMs", "u"),
            PropertySpec("HoldWritesTimeoutMs", "u"),
            PropertySpec("MaxVolumesPerSet", "u"),
            PropertySpec("MaxSnapshotsPerVolume", "u"),
            PropertySpec("ActiveSet", "o"),
        ],
        signals: [
            SignalSpec("PrepareForSnapshot", [a("set", "o"), a("volumes", "as")]),
            SignalSpec("Freeze", [a("set", "o"), a("volumes", "as")]),
            SignalSpec("Thaw", [a("set", "o")]),
            SignalSpec("SnapshotSetDone", [a("set", "o"), a("ok", "b"), a("error", "s")]),
            SignalSpec("SnapshotInvalidated", [a("snapshot", "o"), a("reason", "s")]),
        ])

    /// `org.shadowcopy.ShadowCopy1.RegisteredWriter`, on `writers/<id>`.
    public static let registeredWriter = InterfaceSpec(
        "org.shadowcopy.ShadowCopy1.RegisteredWriter",
        properties: [
            PropertySpec("Id", "s", changeSignal: .const),
            PropertySpec("Name", "s", changeSignal: .const),
            PropertySpec("ClassId", "s", changeSignal: .const),
            PropertySpec("InstanceId", "s", changeSignal: .const),
            PropertySpec("Owner", "s", changeSignal: .const),
            PropertySpec("Path", "o", changeSignal: .const),
            PropertySpec("Level", "s", changeSignal: .const),
            PropertySpec("Usage", "s", changeSignal: .const),
            PropertySpec("FreezeTimeoutMs", "u", changeSignal: .const),
            PropertySpec("State", "s"),
            PropertySpec("LastError", "s"),
        ])
}

import DBus

/// The engine's interfaces: sets, snapshots, jobs and providers, as `dbus/*.xml` documents them.
extension ShadowCopySpecs {
    private static func a(_ name: String, _ type: Signature) -> ArgumentSpec { ArgumentSpec(name, type) }
    private static let options = ArgumentSpec("options", "a{sv}")
    private static let jobArgument = ArgumentSpec("job", "o")

    /// `org.shadowcopy.ShadowCopy1.SnapshotSet`, on `sets/<id>`.
    public static let snapshotSet = InterfaceSpec(
        "org.shadowcopy.ShadowCopy1.SnapshotSet",
        methods: [
            MethodSpec("GatherWriterMetadata", in: [options], out: [jobArgument]),
            MethodSpec("GetWriterMetadata", out: [a("writers", "a(oa{sv})")]),
            MethodSpec("SetBackupState", in: [options]),
            MethodSpec("AddComponent", in: [a("writer", "o"), a("logical_path", "s"), a("name", "s"), options]),
            MethodSpec("AddVolume", in: [a("volume", "s"), options], out: [a("snapshot", "o")]),
            MethodSpec("PrepareForBackup", in: [options], out: [jobArgument]),
            MethodSpec("DoSnapshotSet", in: [options], out: [jobArgument]),
            MethodSpec("GatherWriterStatus", out: [a("status", "a(ossa{sv})")]),
            MethodSpec("SetBackupSucceeded", in: [a("writer", "o"), a("logical_path", "s"), a("name", "s"),
                                                  a("succeeded", "b"), options]),
            MethodSpec("BackupComplete", in: [options], out: [jobArgument]),
            MethodSpec("PreRestore", in: [options], out: [jobArgument]),
            MethodSpec("PostRestore", in: [options], out: [jobArgument]),
            MethodSpec("Abort", in: [options]),
            MethodSpec("Delete", in: [options]),
        ],
        properties: [
            PropertySpec("Id", "s", changeSignal: .const),
            PropertySpec("State", "s"),
            PropertySpec("Context", "s"),
            PropertySpec("BackupType", "s"),
            PropertySpec("Volumes", "as"),
            PropertySpec("Snapshots", "ao"),
            PropertySpec("Requester", "s", changeSignal: .const),
            PropertySpec("Persistent", "b"),
            PropertySpec("CreationTime", "t"),
            PropertySpec("Consistency", "s"),
        ])

    /// `org.shadowcopy.ShadowCopy1.Snapshot`, on `snapshots/<id>`.
    public static let snapshot = InterfaceSpec(
        "org.shadowcopy.ShadowCopy1.Snapshot",
        methods: [
            MethodSpec("Expose", in: [options], out: [a("path", "s")]),
            MethodSpec("Unexpose", in: [options]),
            MethodSpec("OpenDevice", in: [options], out: [a("fd", "h")]),
            MethodSpec("Revert", in: [options]),
            MethodSpec("Delete", in: [options]),
        ],
        properties: [
            PropertySpec("Id", "s", changeSignal: .const),
            PropertySpec("Set", "o", changeSignal: .const),
            PropertySpec("OriginalVolume", "s", changeSignal: .const),
            PropertySpec("Device", "s"),
            PropertySpec("Provider", "s", changeSignal: .const),
            PropertySpec("Attributes", "as"),
            PropertySpec("CreationTime", "t", changeSignal: .const),
            PropertySpec("State", "s"),
            PropertySpec("ExposedPath", "s"),
            PropertySpec("StorageUsed", "t", changeSignal: .never),
            PropertySpec("StorageSize", "t"),
        ])

    /// `org.shadowcopy.ShadowCopy1.ShadowStorage`, on `storage/<id>`.
    public static let shadowStorage = InterfaceSpec(
        "org.shadowcopy.ShadowCopy1.ShadowStorage",
        methods: [
            MethodSpec("Resize", in: [a("max_bytes", "t"), options]),
            MethodSpec("Delete", in: [options]),
        ],
        properties: [
            PropertySpec("ForVolume", "s", changeSignal: .const),
            PropertySpec("Location", "s", changeSignal: .const),
            PropertySpec("Used", "t", changeSignal: .never),
            PropertySpec("Allocated", "t"),
            PropertySpec("MaxSize", "t"),
            PropertySpec("Policy", "s"),
        ])

    /// `org.shadowcopy.ShadowCopy1.Job`, on `jobs/<n>`.
    public static let job = InterfaceSpec(
        "org.shadowcopy.ShadowCopy1.Job",
        methods: [
            MethodSpec("Wait", in: [a("timeout_ms", "u")], out: [a("done", "b")]),
            MethodSpec("Cancel"),
        ],
        properties: [
            PropertySpec("Operation", "s", changeSignal: .const),
            PropertySpec("Progress", "d"),
            PropertySpec("State", "s"),
            PropertySpec("ErrorName", "s"),
            PropertySpec("ErrorMessage", "s"),
        ],
        signals: [SignalSpec("Completed", [a("ok", "b"), a("error_name", "s"), a("message", "s")])])

    /// `org.shadowcopy.ShadowCopy1.RegisteredProvider`, on `providers/<name>`.
    public static let registeredProvider = InterfaceSpec(
        "org.shadowcopy.ShadowCopy1.RegisteredProvider",
        properties: [
            PropertySpec("Name", "s", changeSignal: .const),
            PropertySpec("Id", "s", changeSignal: .const),
            PropertySpec("Type", "s", changeSignal: .const),
            PropertySpec("Version", "s", changeSignal: .const),
        ])
}

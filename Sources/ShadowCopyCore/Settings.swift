/// The coordinator's configuration, as the `Coordinator` properties show it.
public struct CoordinatorSettings: Sendable, Equatable {
    /// Longest a writer may stay between Freeze and Thaw, in milliseconds (VSS: 60 s).
    public var freezeTimeoutMs: UInt32 = 60_000
    /// Longest the volumes of a set may have their writes held, in milliseconds (VSS: 10 s).
    public var holdWritesTimeoutMs: UInt32 = 10_000
    /// Most volumes in one snapshot set (VSS: 64).
    public var maxVolumesPerSet: UInt32 = 64
    /// Most snapshots kept of one volume. dm-snapshot slows every origin write by one COW
    /// lookup per snapshot, so the default is far below VSS's 512.
    public var maxSnapshotsPerVolume: UInt32 = 32
    /// Most writers one connection may register.
    public var maxWritersPerOwner: Int = 64
    /// Most writers registered in all.
    public var maxWriters: Int = 1024
    /// Longest a writer may take to answer an event other than Freeze (Identify, PrepareForBackup...).
    public var writerEventTimeoutMs: UInt32 = 60_000
    /// A set whose requester does nothing with it for this long is aborted (VSS: 10 minutes).
    public var idleSetTimeoutMs: UInt32 = 600_000
    /// Where snapshots are exposed; `Expose` never mounts outside it.
    public var exposeRoot: String = "/run/shadowcopy"
    /// How often the stores of device-mapper copies are checked, to grow them before they fill.
    public var storageWatchMs: UInt32 = 1000

    public init() {}
}

/// The version of shadowcopy, reported by `--version` and the `Version` property.
public let shadowCopyVersion = "0.1.0"

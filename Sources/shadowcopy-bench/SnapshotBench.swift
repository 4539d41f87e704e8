import DBus
import Foundation
import ShadowCopyTestSupport
import ShadowCopyWriter
import Synchronization

/// The snapshot benchmarks of the engine: shadowcopy against snapper and the bare btrfs command
/// on the same loop-backed btrfs volume, writer fan-out, and the freeze window.
struct SnapshotBench {
    static let snapperName: BusName = "org.opensuse.Snapper"
    static let snapperPath: ObjectPath = "/org/opensuse/Snapper"
    static let snapperInterface: InterfaceName = "org.opensuse.Snapper"
    static let setInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.SnapshotSet"
    static let jobInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.Job"

    let bus: PrivateBus
    let client: Connection
    let volume: LoopVolume
    /// The bus's own call rate (Peer.Ping to dbus-daemon, 128 in flight): the floor under fan-out.
    let busCallsPerSecond: Double
    init(bus: PrivateBus, client: Connection, volume: LoopVolume, busCallsPerSecond: Double) {
        self.bus = bus
        self.client = client
        self.volume = volume
        self.busCallsPerSecond = busCallsPerSecond
    }

    struct Results {
        var lines: [String] = []
        var verdicts: [(String, Bool)] = []
    }

    static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    static func format(_ value: Double) -> String { String(format: "%.2f", value) }

    // MARK: shadowcopy

    /// A set through its whole making: StartSnapshotSet, (Gather, AddVolume, PrepareForBackup),
    /// then `timed` DoSnapshotSet and its job; returns the set and how long the timed part took.
    func makeSet(writers: Bool) async throws -> (ObjectPath, Duration) {
        // A requester that watches for its set's end subscribes before it starts (untimed).
        let setsDone = writers ? nil : try await client.signals(MatchRule(
            interface: "org.shadowcopy.ShadowCopy1.Coordinator", member: "SnapshotSetDone", path: Benchmark.root))
        let start = ContinuousClock.now
        let context: Value = .string(writers ? "backup" : "file-share-backup")
        let set = try unwrap(try await call("StartSnapshotSet", [.vardict([("context", context)])]).first?.objectPath)
        var timedFrom = start
        if writers {
            try await check(try await job(set, "GatherWriterMetadata"))
            _ = try await call("AddVolume", [.string(volume.mountPoint), .vardict([])], on: set)
            try await check(try await job(set, "PrepareForBackup"))
            timedFrom = ContinuousClock.now
        } else {
            // AddVolume and DoSnapshotSet at once (the set serves its requester's calls in
            // order); the set is made when SnapshotSetDone names it.
            let add = try setCall(set, "AddVolume", [.string(volume.mountPoint), .vardict([])])
            let make = try setCall(set, "DoSnapshotSet", [.vardict([])])
            let added = try client.send(call: add), made = try client.send(call: make)
            _ = try await added.values()
            let job = try unwrap(try await made.values().first?.objectPath)
            var outcome: [Value] = []
            for await signal in try unwrap(setsDone) {
                let args = try signal.arguments()
                if args.first?.objectPath == set { outcome = args; break }
            }
            let took = ContinuousClock.now - start
            guard outcome.count == 3, outcome[1].bool == true else { throw HarnessError("\(set) failed: \(outcome)") }
            _ = try await client.call(Benchmark.name, job, Self.jobInterface, "Wait", [.uint32(60_000)])
            try await check(job)
            return (set, took)
        }
        let done = try await job(set, "DoSnapshotSet")
        let took = ContinuousClock.now - timedFrom
        try await check(done)
        return (set, took)
    }

    func deleteSet(_ set: ObjectPath) async throws {
        _ = try await call("Delete", [.vardict([])], on: set)
    }

    private func call(_ member: MemberName, _ args: [Value], on set: ObjectPath? = nil) async throws -> [Value] {
        if let set {
            return try await client.call(Benchmark.name, set, Self.setInterface, member, args)
        }
        return try await client.call(Benchmark.name, Benchmark.root, "org.shadowcopy.ShadowCopy1.Coordinator", member, args)
    }

    private func setCall(_ set: ObjectPath, _ member: MemberName, _ args: [Value]) throws -> Message {
        let message = Message.methodCall(destination: Benchmark.name, path: set, interface: Self.setInterface, member: member)
        try message.append(args)
        return message
    }

    /// Starts phase `member` and waits for its job to end (as a requester does); returns the job.
    private func job(_ set: ObjectPath, _ member: MemberName) async throws -> ObjectPath {
        let job = try unwrap(try await call(member, [.vardict([])], on: set).first?.objectPath)
        _ = try await client.call(Benchmark.name, job, Self.jobInterface, "Wait", [.uint32(60_000)])
        return job
    }

    /// Throws unless `job` succeeded; outside the timed part.
    private func check(_ job: ObjectPath) async throws {
        let state = try await client.call(Benchmark.name, job, "org.freedesktop.DBus.Properties", "Get",
                                          [.string(Self.jobInterface.rawValue), .string("State")])
        guard state.first?.variantValue?.string == "succeeded" else {
            throw HarnessError("\(job) did not succeed: \(state)")
        }
    }

    // MARK: snapper and btrfs

    /// Starts snapperd on the bench's bus with a config for the volume; nil when snapper is not installed.
    func startSnapper() async throws -> (ChildProcess, String)? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/snapperd") else { return nil }
        var environment = ProcessInfo.processInfo.environment
        environment["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        let daemon = try ChildProcess("/usr/sbin/snapperd", [], environment: environment)
        let start = ContinuousClock.now
        while try await client.nameOwner(Self.snapperName) == nil {
            guard daemon.isRunning, ContinuousClock.now - start < .seconds(10) else {
                daemon.stop()
                throw HarnessError("snapperd did not take its name on the bench's bus")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let config = "shadowcopy-bench-\(UInt32.random(in: 0...UInt32.max))"
        _ = try await client.call(Self.snapperName, Self.snapperPath, Self.snapperInterface, "CreateConfig",
                                  [.string(config), .string(volume.mountPoint), .string("btrfs"), .string("default")])
        return (daemon, config)
    }

    func stopSnapper(_ daemon: ChildProcess, _ config: String) async {
        _ = try? await client.call(Self.snapperName, Self.snapperPath, Self.snapperInterface, "DeleteConfig", [.string(config)])
        daemon.stop()
    }

    func snapperCreate(_ config: String) async throws -> (UInt32, Duration) {
        let start = ContinuousClock.now
        let reply = try await client.call(Self.snapperName, Self.snapperPath, Self.snapperInterface, "CreateSingleSnapshot",
                                          [.string(config), .string("bench"), .string(""), .dictionary(key: "s", value: "s", [])])
        return (try unwrap(reply.first?.uint32), ContinuousClock.now - start)
    }

    func snapperDelete(_ config: String, _ number: UInt32) async throws {
        _ = try await client.call(Self.snapperName, Self.snapperPath, Self.snapperInterface, "DeleteSnapshots",
                                  [.string(config), .array(element: "u", [.uint32(number)])])
    }

    func btrfsCommand(_ name: String) throws -> Duration {
        let start = ContinuousClock.now
        let made = try Tool.run("/usr/bin/btrfs", ["subvolume", "snapshot", "-r", volume.mountPoint, volume.mountPoint + "/" + name])
        let elapsed = ContinuousClock.now - start
        guard made.status == 0 else { throw HarnessError("btrfs subvolume snapshot: \(made.stderr)") }
        _ = try Tool.run("/usr/bin/btrfs", ["subvolume", "delete", volume.mountPoint + "/" + name])
        return elapsed
    }
}

/// The value, or a harness error naming what was missing.
func unwrap<T>(_ value: T?, _ what: String = #function) throws -> T {
    guard let value else { throw HarnessError("missing value in \(what)") }
    return value
}

import DBus
import Foundation
import ShadowCopyTestSupport

/// `make bench`: shadowcopyd against the floor (dbus-daemon answering Peer.Ping itself), from the
/// same Swift client in the same run, on a private system-like bus.
@main
struct Benchmark {
    static let name: BusName = "org.shadowcopy.ShadowCopy1"
    static let root: ObjectPath = "/org/shadowcopy/ShadowCopy1"

    static func main() async throws {
        // snapperd runs on the same bus for the snapshot comparison, with its own policy.
        let snapperPolicy = URL(fileURLWithPath: "/usr/share/dbus-1/system.d/org.opensuse.Snapper.conf")
        let bus = try PrivateBus(policies: [ProjectPaths.busPolicy]
            + (FileManager.default.fileExists(atPath: snapperPolicy.path) ? [snapperPolicy] : []))
        defer { bus.stop() }
        let client = try Connection(address: bus.address)
        defer { client.close() }

        if CommandLine.arguments.dropFirst().first == "devicemapper" {
            // Needs a kernel with device-mapper: make bench runs it in a VM where the host has none.
            try await DeviceMapperBench.main(bus: bus, client: client)
            return
        }
        let daemon: DaemonProcess
        if CommandLine.arguments.dropFirst().first == "snapshots" {
            // Only the snapshot rows, printed and not recorded: for working on the engine.
            daemon = try await DaemonProcess(bus: bus)
            defer { _ = daemon.process.stop() }
            let volume = try LoopVolume(sizeMiB: 2048)
            defer { volume.remove() }
            let pingRate = try await throughput(10_000) {
                _ = try await client.call(.bus, "/org/freedesktop/DBus", "org.freedesktop.DBus.Peer", "Ping")
            }
            let snapshots = try await SnapshotBench(bus: bus, client: client, volume: volume, busCallsPerSecond: pingRate).run()
            print(snapshots.lines.joined(separator: "\n"))
            for (what, ok) in snapshots.verdicts { print("\(ok ? "MET" : "NOT MET"): \(what)") }
            return
        }
        let exec = try await execToNameOwned(bus: bus, client: client, runs: 10)
        daemon = try await DaemonProcess(bus: bus)
        defer { _ = daemon.process.stop() }

        let ping: @Sendable () async throws -> Void = {
            _ = try await client.call(.bus, "/org/freedesktop/DBus", "org.freedesktop.DBus.Peer", "Ping")
        }
        let get: @Sendable () async throws -> Void = {
            _ = try await client.call(name, root, "org.freedesktop.DBus.Properties", "Get",
                                      [.string("org.shadowcopy.ShadowCopy1.Coordinator"), .string("Version")])
        }
        // Warm both paths.
        for _ in 0..<2_000 { try await ping(); try await get() }
        let (pingLatency, getLatency) = try await interleavedLatency(20_000, ping, get)
        let pingRate = try await throughput(10_000, ping)
        let getRate = try await throughput(10_000, get)
        try await Task.sleep(for: .seconds(1))
        let rss = daemon.residentKiB ?? -1

        print("bus benchmarks done; snapshot benchmarks on a loop-backed btrfs volume...")
        let volume = try LoopVolume(sizeMiB: 2048)
        defer { volume.remove() }
        let snapshots = try await SnapshotBench(bus: bus, client: client, volume: volume, busCallsPerSecond: pingRate).run()

        let ratio = getLatency.median / pingLatency.median
        let lines = [
            "| measure | shadowcopyd | floor (dbus-daemon Peer.Ping) | ratio | target |",
            "| --- | --- | --- | --- | --- |",
            row("round trip, median (µs)", getLatency.median, pingLatency.median, ratio, "≤ 1.5"),
            row("round trip, p99 (µs)", getLatency.p99, pingLatency.p99, Double(getLatency.p99 / pingLatency.p99), "printed"),
            row("10,000 concurrent calls (calls/s)", getRate, pingRate, getRate / pingRate, "printed"),
            "| daemon idle RSS | \(String(format: "%.1f", Double(rss) / 1024)) MiB | | | ≤ 15 MiB |",
            "| exec to name owned, median of 10 | \(String(format: "%.1f", exec)) ms | | | ≤ 100 ms |",
        ]
        let table = (lines + snapshots.lines).joined(separator: "\n")
        print(table)
        print("""

            Get = org.freedesktop.DBus.Properties.Get(Coordinator, Version) on shadowcopyd; the floor is \
            Peer.Ping answered by dbus-daemon itself (one hop less). Calls are sequential for latency, Pings and \
            Gets alternating in blocks of 100; for \
            throughput 10,000 are issued at once and the client keeps 128 in flight (the system bus's \
            max_replies_per_connection).
            """)
        let verdicts = [
            ("round-trip ratio ≤ 1.5", ratio <= 1.5),
            ("idle RSS ≤ 15 MiB", rss > 0 && rss <= 15 * 1024),
            ("exec to name owned ≤ 100 ms", exec <= 100),
        ] + snapshots.verdicts
        for (what, ok) in verdicts { print("\(ok ? "MET" : "NOT MET"): \(what)") }
        try write(table: table, verdicts: verdicts)
    }

    struct Latency {
        var median: Double
        var p99: Double
    }

    /// Latency of `a` and of `b`, measured in alternating blocks of 100 calls so that the noise of
    /// a shared machine (other guests, frequency changes) falls on both sides of the ratio alike.
    static func interleavedLatency(
        _ n: Int, _ a: () async throws -> Void, _ b: () async throws -> Void
    ) async throws -> (Latency, Latency) {
        var samples: ([Double], [Double]) = ([], [])
        samples.0.reserveCapacity(n)
        samples.1.reserveCapacity(n)
        let clock = ContinuousClock()
        func time(_ body: () async throws -> Void) async throws -> Double {
            let start = clock.now
            try await body()
            let elapsed = clock.now - start
            return Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6
        }
        for _ in 0..<(n / 100) {
            for _ in 0..<100 { samples.0.append(try await time(a)) }
            for _ in 0..<100 { samples.1.append(try await time(b)) }
        }
        func summary(_ values: [Double]) -> Latency {
            let sorted = values.sorted()
            return Latency(median: sorted[sorted.count / 2], p99: sorted[sorted.count * 99 / 100])
        }
        return (summary(samples.0), summary(samples.1))
    }

    static func throughput(_ n: Int, _ body: @escaping @Sendable () async throws -> Void) async throws -> Double {
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<n { group.addTask { try await body() } }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        return Double(n) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// From posix_spawn to NameOwnerChanged for the daemon's name, as the bus reports it.
    static func execToNameOwned(bus: PrivateBus, client: Connection, runs: Int) async throws -> Double {
        var samples: [Double] = []
        for _ in 0..<runs {
            let owners = try await client.watchNameOwner(name)
            var iterator = owners.makeAsyncIterator()
            _ = await iterator.next()
            var environment = ProcessInfo.processInfo.environment
            environment["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
            let start = ContinuousClock.now
            let child = try ChildProcess(ProjectPaths.daemon.path, [], environment: environment)
            while let owner = await iterator.next() {
                if owner != nil { break }
            }
            let elapsed = ContinuousClock.now - start
            samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
            child.stop()
            while let owner = await iterator.next(), owner != nil {}
        }
        samples.sort()
        return samples[samples.count / 2]
    }

    static func row(_ what: String, _ ours: Double, _ floor: Double, _ ratio: Double, _ target: String) -> String {
        "| \(what) | \(String(format: "%.1f", ours)) | \(String(format: "%.1f", floor)) | \(String(format: "%.2f", ratio)) | \(target) |"
    }

    static func write(table: String, verdicts: [(String, Bool)]) throws {
        let url = ProjectPaths.root.appendingPathComponent("docs/benchmarks.md")
        let text = """
            # Benchmarks

            `make bench` (release build) prints these figures; this is the last run recorded here
            (\(Date().formatted(.iso8601)), \(ProcessInfo.processInfo.activeProcessorCount) cores).

            \(table)

            \(verdicts.map { "- \($0.1 ? "met" : "NOT met"): \($0.0)" }.joined(separator: "\n"))

            Get is `org.freedesktop.DBus.Properties.Get(Coordinator, Version)` sent to shadowcopyd; the
            floor is `org.freedesktop.DBus.Peer.Ping` answered by dbus-daemon itself, one hop less
            (client → bus → client instead of client → bus → daemon → bus → client). Latency is
            measured over 20,000 sequential calls of each kind after 2,000 warm-up calls, in alternating
            blocks of 100 Pings and 100 Gets so that a shared machine's noise falls on both alike; throughput issues 10,000
            calls at once with 128 in flight (the system bus's `max_replies_per_connection`).

            The snapshot rows use a 256 MiB loop-backed btrfs volume. shadowcopy's create is
            StartSnapshotSet (file-share-backup, no writers), then AddVolume and DoSnapshotSet sent at
            once (a set serves its requester's calls in order), until SnapshotSetDone names the set, from
            the same client as snapper's `CreateSingleSnapshot` (snapperd on the same private bus) and as
            the bare `btrfs subvolume snapshot -r` process; one of each per round, 30 rounds, each copy
            deleted untimed. Fan-out times DoSnapshotSet and its job with 1 and then 100 writers, each
            writer its own connection (the ShadowCopyWriter SDK, in the bench process). The freeze
            window is what the one writer sees between Freeze and Thaw; the ioctl is the provider's
            snapshot ioctl alone on the same volume. The real writers (shadowcopy-writer hooks with one
            script, sqlite with a process committing rows, postgresql under pgbench) each run alone for 10
            DoSnapshotSet rounds; what they add is against the same writerful set with no writer, and
            their Freeze-to-Thaw window is what each logs. Between runs on this 2-core virtual machine
            the create ratio moves by about ±0.07 (0.91 to 1.05 over eight runs): a verdict within that
            of 1 is a tie with snapper, whichever way this run's falls.

            """
        // The device-mapper section comes from another run (in a VM); keep it.
        let previous = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        let kept = previous.range(of: "\n## Device-mapper").map { String(previous[$0.lowerBound...]) } ?? ""
        try (text + kept).write(to: url, atomically: true, encoding: .utf8)
    }
}

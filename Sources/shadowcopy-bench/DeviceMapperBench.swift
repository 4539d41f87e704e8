import DBus
import Foundation
import ShadowCopyTestSupport

/// `shadowcopy-bench devicemapper`, in a kernel with device-mapper (make bench starts a VM where
/// the host has none): shadowcopy's dm providers against LVM and bare dmsetup, in one run.
struct DeviceMapperBench {
    let bus: PrivateBus
    let client: Connection
    let daemon: DaemonProcess
    let scratch: URL
    var lines: [String] = []
    var verdicts: [(String, Bool)] = []

    static let runs = 5
    /// LVM without udev, dmeventd or metadata backups (the VM's /etc is read-only).
    static let lvmConfig = "global { use_lvmetad=0 } activation { udev_sync=0 udev_rules=0 monitoring=0 } "
        + "backup { backup=0 archive=0 } devices { obtain_device_list_from_udev=0 use_devicesfile=0 }"

    static func main(bus: PrivateBus, client: Connection) async throws {
        let scratch = try ProjectPaths.makeScratch("dmbench")
        let daemon = try await DaemonProcess(bus: bus, arguments: ["--storage-watch-ms", "100"])
        defer {
            _ = daemon.process.stop()
            cleanUp(scratch.path)
            try? FileManager.default.removeItem(at: scratch)
        }
        var bench = DeviceMapperBench(bus: bus, client: client, daemon: daemon, scratch: scratch)
        try await bench.createAgainstLVM()
        try await bench.holdAgainstDmsetup()
        try await bench.throughput()
        print((["| measure | shadowcopy | peer | ratio | target |", "| --- | --- | --- | --- | --- |"] + bench.lines).joined(separator: "\n"))
        for (what, ok) in bench.verdicts { print("\(ok ? "MET" : "NOT MET"): \(what)") }
    }

    // MARK: Helpers

    static func ms(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    static func f(_ value: Double) -> String { String(format: "%.1f", value) }

    @discardableResult
    func sh(_ script: String) throws -> String {
        let result = try Tool.run("/bin/sh", ["-c", script], environment: ["DM_DISABLE_UDEV": "1"])
        guard result.status == 0 else { throw HarnessError("\(script): \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func timed(_ script: String) throws -> Double {
        let start = ContinuousClock.now
        try sh(script)
        return Self.ms(ContinuousClock.now - start)
    }

    /// A loop device over a new sparse file of `mib` MiB.
    func loop(_ name: String, mib: Int) throws -> String {
        let file = scratch.appendingPathComponent(name + ".img").path
        return try sh("truncate -s \(mib)M \(file) && losetup --find --show \(file)")
    }

    /// A linear dm volume over a new loop device; with a mounted ext4 when `mount`.
    func linear(_ name: String, mib: Int, mount: Bool) throws {
        let device = try loop(name, mib: mib)
        try sh("echo '0 \(mib * 2048) linear \(device) 0' | dmsetup create \(name)")
        if mount { try sh("mkfs.ext4 -q -F /dev/mapper/\(name) && mkdir -p \(scratch.path)/\(name) && mount /dev/mapper/\(name) \(scratch.path)/\(name)") }
    }

    func call(_ path: ObjectPath, _ interface: InterfaceName, _ member: MemberName, _ args: [Value] = [.vardict([])]) async throws -> [Value] {
        try await client.call("org.shadowcopy.ShadowCopy1", path, interface, member, args)
    }

    /// A writerless copy of `volume` in a set of its own, through the daemon; returns the set.
    func copy(_ volume: String) async throws -> ObjectPath {
        let set = try await call("/org/shadowcopy/ShadowCopy1", "org.shadowcopy.ShadowCopy1.Coordinator", "StartSnapshotSet",
                                 [.vardict([("context", .string("file-share-backup"))])])[0].objectPath!
        _ = try await call(set, "org.shadowcopy.ShadowCopy1.SnapshotSet", "AddVolume", [.string(volume), .vardict([])])
        let job = try await call(set, "org.shadowcopy.ShadowCopy1.SnapshotSet", "DoSnapshotSet")[0].objectPath!
        _ = try await call(job, "org.shadowcopy.ShadowCopy1.Job", "Wait", [.uint32(60_000)])
        let state = try await client.call("org.shadowcopy.ShadowCopy1", job, "org.freedesktop.DBus.Properties", "Get",
                                          [.string("org.shadowcopy.ShadowCopy1.Job"), .string("State")])
        guard state.first?.variantValue?.string == "succeeded" else { throw HarnessError("DoSnapshotSet on \(volume) failed") }
        return set
    }

    func delete(_ set: ObjectPath) async throws { _ = try await call(set, "org.shadowcopy.ShadowCopy1.SnapshotSet", "Delete") }

    // MARK: Create: shadowcopy against lvcreate -s

    mutating func createAgainstLVM() async throws {
        // Both 128 MiB ext4 volumes, mounted; both copies get a 16 MiB store.
        try linear("scbench-vol", mib: 128, mount: true)
        let pv = try loop("scbench-pv", mib: 256)
        let lvm = "--config '\(Self.lvmConfig)'"
        try sh("pvcreate -q \(lvm) \(pv) && vgcreate -q \(lvm) scbench \(pv) && lvcreate -q \(lvm) -y -L 128M -n lv scbench "
               + "&& mkfs.ext4 -q -F /dev/scbench/lv && mkdir -p \(scratch.path)/lv && mount /dev/scbench/lv \(scratch.path)/lv")
        defer { _ = try? sh("umount \(scratch.path)/lv; lvremove -q -f \(lvm) scbench; vgremove -q -f \(lvm) scbench; losetup -d \(pv)") }
        let cli = ProjectPaths.products.appendingPathComponent("shadowcopy").path
        var ours: [Double] = [], theirs: [Double] = [], viaBus: [Double] = [], startCLI: [Double] = [], startLVM: [Double] = []
        for run in 0..<Self.runs {
            startCLI.append(try timed("\(cli) --version"))
            startLVM.append(try timed("lvcreate --version"))
            theirs.append(try timed("lvcreate -q \(lvm) -s -L 16M -n snap\(run) scbench/lv"))
            try sh("lvremove -q -f \(lvm) scbench/snap\(run)")
            ours.append(try timed("DBUS_SYSTEM_BUS_ADDRESS=\(bus.address) \(cli) create shadow --for \(scratch.path)/scbench-vol --no-writers --persistent"))
            try sh("DBUS_SYSTEM_BUS_ADDRESS=\(bus.address) \(cli) delete shadows --all --quiet")
            let start = ContinuousClock.now
            let set = try await copy("/dev/mapper/scbench-vol")
            viaBus.append(Self.ms(ContinuousClock.now - start))
            try await delete(set)
        }
        let lvcreate = Self.median(theirs)
        let ratio = Self.median(viaBus) / lvcreate, cliRatio = Self.median(ours) / lvcreate
        lines.append("| create one copy: a requester on the bus (StartSnapshotSet, AddVolume, DoSnapshotSet, Wait) against `lvcreate -s` (ms, median of \(Self.runs)) | \(Self.f(Self.median(viaBus))) | \(Self.f(lvcreate)) | \(String(format: "%.2f", ratio)) | ≤ 0.5 |")
        lines.append("| create one copy: `shadowcopy create`, a new process each time, against `lvcreate -s` (ms) | \(Self.f(Self.median(ours))) | \(Self.f(lvcreate)) | \(String(format: "%.2f", cliRatio)) | printed |")
        lines.append("| of which process start: `shadowcopy --version` against `lvcreate --version` (ms) | \(Self.f(Self.median(startCLI))) | \(Self.f(Self.median(startLVM))) | \(String(format: "%.2f", Self.median(startCLI) / Self.median(startLVM))) | printed |")
        verdicts.append(("create through shadowcopyd against lvcreate -s ≤ 0.5 (\(String(format: "%.2f", ratio)))", ratio <= 0.5))
        verdicts.append(("create through a new `shadowcopy create` process against lvcreate -s ≤ 0.5 (\(String(format: "%.2f", cliRatio)))", cliRatio <= 0.5))
    }

    // MARK: Hold window: shadowcopy against a bare dmsetup sequence

    mutating func holdAgainstDmsetup() async throws {
        try linear("scbench-bare", mib: 128, mount: true)
        let table = try sh("dmsetup table scbench-bare")
        var ours: [Double] = [], theirs: [Double] = []
        for run in 0..<Self.runs {
            let set = try await copy("/dev/mapper/scbench-vol")
            let held = daemon.log.split(separator: "\n").last { $0.contains("origins held") }
                .flatMap { $0.split(separator: " ").first { $0.hasPrefix("held-us=") } }
                .flatMap { Double($0.dropFirst("held-us=".count)) }
            ours.append((held ?? .nan) / 1000)
            try await delete(set)

            // The same steps as the provider, one dmsetup process each.
            let cow = try loop("scbench-cow\(run)", mib: 16)
            let real = "scbench-bare-real"
            theirs.append(try timed("""
                dmsetup suspend scbench-bare && echo '\(table)' | dmsetup create \(real) \
                && echo "0 262144 snapshot $(dmsetup info -c --noheadings -o major,minor --separator : \(real)) \
                $(cat /sys/class/block/$(basename \(cow))/dev) P 8" | dmsetup create --readonly scbench-bare-snap \
                && echo "0 262144 snapshot-origin $(dmsetup info -c --noheadings -o major,minor --separator : \(real))" \
                | dmsetup load scbench-bare && dmsetup resume scbench-bare
                """))
            try sh("dmsetup remove scbench-bare-snap && dmsetup suspend scbench-bare && echo '\(table)' | dmsetup load scbench-bare "
                   + "&& dmsetup resume scbench-bare && dmsetup remove \(real) && losetup -d \(cow)")
        }
        let ratio = Self.median(ours) / Self.median(theirs)
        lines.append("| hold window, first suspend to last resume (ms, median of \(Self.runs)), against dmsetup suspend/create/create/load/resume | \(Self.f(Self.median(ours))) | \(Self.f(Self.median(theirs))) | \(String(format: "%.2f", ratio)) | ≤ 1.5 |")
        verdicts.append(("hold window against bare dmsetup ≤ 1.5 (\(String(format: "%.2f", ratio)))", ratio <= 1.5))
    }

    // MARK: Origin write throughput under 1 and 8 copies

    mutating func throughput() async throws {
        try linear("scbench-tput", mib: 512, mount: false)
        let meta = try loop("scbench-meta", mib: 16), data = try loop("scbench-data", mib: 1024)
        try sh("echo \"0 2097152 thin-pool $(cat /sys/class/block/$(basename \(meta))/dev) $(cat /sys/class/block/$(basename \(data))/dev) 128 1024\" "
               + "| dmsetup create scbench-pool && dmsetup message scbench-pool 0 'create_thin 0' "
               + "&& echo \"0 1048576 thin $(dmsetup info -c --noheadings -o major,minor --separator : scbench-pool) 0\" | dmsetup create scbench-thin")
        var cells: [String: Double] = [:]
        for (provider, volume) in [("dm-snapshot", "scbench-tput"), ("dm-thin", "scbench-thin")] {
            for copies in [1, 8] {
                // Written once before the copies, so that dm-thin has blocks to share and unshare.
                let region = "of=/dev/mapper/\(volume) bs=1M count=32 seek=\(copies == 1 ? 64 : 192) oflag=direct status=none"
                try sh("dd if=/dev/urandom \(region)")
                var sets: [ObjectPath] = []
                for _ in 0..<copies { sets.append(try await copy("/dev/mapper/" + volume)) }
                // 32 MiB rewritten, straight to the device: every chunk is copied once per copy
                // (dm-snapshot), or each block unshared once in all (dm-thin).
                let seconds = try timed("dd if=/dev/zero \(region)") / 1000
                cells["\(provider) \(copies)"] = 32 / seconds
                for set in sets { try await delete(set) }
            }
        }
        for copies in [1, 8] {
            lines.append("| origin writes with \(copies) cop\(copies == 1 ? "y" : "ies") (MiB/s), dm-snapshot against dm-thin | \(Self.f(cells["dm-snapshot \(copies)"]!)) | \(Self.f(cells["dm-thin \(copies)"]!)) | \(String(format: "%.2f", cells["dm-snapshot \(copies)"]! / cells["dm-thin \(copies)"]!)) | printed |")
        }
    }

    /// Everything the benchmark made, whatever happened.
    static func cleanUp(_ scratch: String) {
        _ = try? Tool.run("/bin/sh", ["-c", """
            for m in $(awk '$2 ~ "^\(scratch)" {print $2}' /proc/mounts); do umount $m; done
            for d in $(dmsetup ls | awk '/^sc-/ {print $1}'); do dmsetup remove $d; done
            for d in scbench-thin scbench-pool scbench-bare-snap scbench-bare scbench-bare-real scbench-tput scbench-vol scbench-vol-screal; do
              dmsetup remove $d 2>/dev/null; done
            losetup -a | awk -F: '/\(scratch.replacingOccurrences(of: "/", with: "\\/"))/ {print $1}' | xargs -r -n1 losetup -d
            """], environment: ["DM_DISABLE_UDEV": "1"])
    }
}

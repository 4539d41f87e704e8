import DBus
import Foundation
import ShadowCopyTestSupport
import Synchronization
import Testing

/// Randomised hostile calls (Sources/shadowcopy-fuzz), as root and as an unprivileged user that
/// polkit grants everything: every one must be answered with an error, nothing may be mounted,
/// registered or created, and the daemon must stay up with flat memory.
@Suite("Hostile input", .serialized)
struct HostileInputTests {
    static let expectedErrors: Set<String> = [
        ErrorName.invalidArgs.rawValue, ErrorName.unknownMethod.rawValue, ErrorName.unknownObject.rawValue,
        ErrorName.unknownInterface.rawValue, ErrorName.unknownProperty.rawValue, ErrorName.propertyReadOnly.rawValue,
        "org.shadowcopy.ShadowCopy1.Error.NotSupported", "org.shadowcopy.ShadowCopy1.Error.NotFound",
        "org.shadowcopy.ShadowCopy1.Error.NotAuthorized", "org.shadowcopy.ShadowCopy1.Error.VolumeNotSupported",
        "org.shadowcopy.ShadowCopy1.Error.BadState", "IsVolumeSupported=false",
    ]

    /// Runs the fuzzer as `user` (root when nil); returns its summary's fields.
    static func fuzz(_ bus: PrivateBus, as user: TestAccounts.User?, seed: Int, count: Int, set: ObjectPath,
                     snapshot: ObjectPath, symlinks: [String]) throws -> [String: String] {
        var command = [ProjectPaths.products.appendingPathComponent("shadowcopy-fuzz").path, "--seed", "\(seed)",
                       "--count", "\(count)", "--set", set.rawValue, "--snapshot", snapshot.rawValue]
        for link in symlinks { command += ["--symlink", link] }
        if let user { command = ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups"] + command }
        let result = try Tool.run(command[0], Array(command.dropFirst()), environment: ["DBUS_SYSTEM_BUS_ADDRESS": bus.address])
        guard result.status == 0, let line = result.stdout.split(separator: "\n").last else {
            throw HarnessError("shadowcopy-fuzz: \(result.status) \(result.stdout) \(result.stderr)")
        }
        var fields: [String: String] = [:]
        for field in line.split(separator: " ", maxSplits: 3) {
            let parts = field.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        return fields
    }

    static func check(_ fields: [String: String], count: Int, who: String) {
        #expect(fields["answered"] == "\(count)", "\(who): \(fields)")
        #expect(fields["successes"] == "0", Comment(rawValue: "\(who): a hostile call succeeded: \(fields["first-success"] ?? "")"))
        let names = (fields["errors"] ?? "").split(separator: ",").compactMap { $0.split(separator: ":").first.map(String.init) }
        let unexpected = names.filter { !expectedErrors.contains($0) }
        #expect(unexpected.isEmpty, Comment(rawValue: "\(who): unexpected errors \(unexpected) in \(fields["errors"] ?? "") \(fields["first-success"] ?? "")"))
    }

    @Test func twentyThousandHostileCallsAsRootAndAsAUserAllGetErrors() async throws {
        let accounts = try TestAccounts(roles: ["fuzzer"], members: ["fuzzer"])
        defer { accounts.remove() }
        let links = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-links-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: links, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: links) }
        try await LoopVolume.with { volume in
            try await DaemonFixture.with(morePolicies: [PolkitDaemon.busPolicy]) { f in
                chmod(f.bus.directory.path, 0o755)
                // The user may do everything polkit decides: only validation and ownership stop it.
                let polkit = try await PolkitDaemon(bus: f.bus, rules: """
                    polkit.addRule(function(action, subject) {
                        if (action.id.indexOf("org.shadowcopy.") === 0 && subject.isInGroup("\(accounts.group)")) return polkit.Result.YES;
                        return polkit.Result.NOT_HANDLED;
                    });
                    """)
                defer { polkit.stop() }
                let c = try f.client()
                defer { c.close() }
                // A made copy (set B), then a set in creation (A) that takes volumes.
                let made = try await RequesterSet.start(c, [("context", .string("file-share-backup")), ("auto-release", .bool(false))])
                let snapshot = try #require(try await made.call("AddVolume", [.string(volume.mountPoint), .vardict([])]).first?.objectPath)
                #expect(try await made.run("DoSnapshotSet") == ("succeeded", ""))
                let open = try await RequesterSet.start(c, [("context", .string("file-share-backup")), ("auto-release", .bool(false))])

                // Symlinks that lead to what is not a volume: a copy, system directories, nowhere, a loop.
                let copy = volume.mountPoint + "/.shadowcopy/" + String(snapshot.rawValue.split(separator: "/").last!)
                let targets = ["etc": "/etc", "copy": copy, "expose-root": f.daemon.exposeRoot, "dangling": "/nonexistent/x",
                               "proc-root": "/proc/self/root/etc", "loop-a": links + "/loop-b", "loop-b": links + "/loop-a"]
                for (name, target) in targets { try FileManager.default.createSymbolicLink(atPath: links + "/" + name, withDestinationPath: target) }
                let symlinks = targets.keys.sorted().map { links + "/" + $0 }

                _ = try Self.fuzz(f.bus, as: nil, seed: 7, count: 2_000, set: open.path, snapshot: snapshot, symlinks: symlinks)
                let before = try #require(f.daemon.residentKiB)
                let asRoot = try Self.fuzz(f.bus, as: nil, seed: 0x5EED, count: 10_000, set: open.path, snapshot: snapshot, symlinks: symlinks)
                let asUser = try Self.fuzz(f.bus, as: accounts["fuzzer"], seed: 0xF00D, count: 10_000, set: open.path,
                                           snapshot: snapshot, symlinks: symlinks)
                let after = try #require(f.daemon.residentKiB)
                Self.check(asRoot, count: 10_000, who: "root")
                Self.check(asUser, count: 10_000, who: "user")
                print("hostile input: root \(asRoot["errors"] ?? "")")
                print("hostile input: user \(asUser["errors"] ?? "")")

                // Up, flat, and nothing made: the same two sets, one copy, no writer, no provider, no mount.
                #expect(f.daemon.process.isRunning)
                #expect(after - before < 4 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
                let objects = try await SC.managedObjects(c).keys.map(\.rawValue)
                #expect(Set(objects.filter { $0.contains("/sets/") }) == [made.path.rawValue, open.path.rawValue])
                #expect(objects.filter { $0.contains("/snapshots/") } == [snapshot.rawValue])
                #expect(objects.filter { $0.contains("/writers/") }.isEmpty)
                #expect(Set(objects.filter { $0.contains("/providers/") })
                        == ["/org/shadowcopy/ShadowCopy1/providers/btrfs", "/org/shadowcopy/ShadowCopy1/providers/dm_snapshot",
                            "/org/shadowcopy/ShadowCopy1/providers/dm_thin"],
                        "the built-in providers only")
                #expect(try await open.property(open.path, RequesterSet.interface, "Volumes") == "")
                #expect(f.daemon.exposed.isEmpty, "nothing exposed")
                #expect(try volume.subvolumes().count == 1)
                _ = try await open.call("Delete")
                _ = try await made.call("Delete")
                #expect(try volume.untouched())
            }
        }
    }

    @Test func clientRefusesWhatLibdbusWouldAbortOn() {
        let message = Message.methodCall(destination: "org.shadowcopy.ShadowCopy1", path: "/", interface: nil, member: "X")
        var deep = Value.string("deep")
        for level in 0..<70 { deep = level % 2 == 0 ? .variant(deep) : .structure([deep]) }
        #expect(throws: DBusError.self) { try message.append([deep]) }
        #expect(throws: DBusError.self) { try message.append([.string("a\0b")]) }
    }
}

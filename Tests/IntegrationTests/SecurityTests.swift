import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// polkit authorization with a real polkitd, real users and the project's policy; ownership.
@Suite("polkit and ownership, as real users", .serialized)
struct SecurityTests {
    static let root = "/org/shadowcopy/ShadowCopy1"
    static let coordinator = "org.shadowcopy.ShadowCopy1.Coordinator"
    static let setInterface = "org.shadowcopy.ShadowCopy1.SnapshotSet"
    static let snapshotInterface = "org.shadowcopy.ShadowCopy1.Snapshot"
    static let jobInterface = "org.shadowcopy.ShadowCopy1.Job"
    static let iar = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
    static let notAuthorized = "org.shadowcopy.ShadowCopy1.Error.NotAuthorized"

    /// The rules a site would write: the group gets everything, `denied` nothing, `limited` may
    /// only create copies, and only of one volume (matched through the request's details).
    static func rules(_ accounts: TestAccounts, volume: String) -> String {
        """
        polkit.addRule(function(action, subject) {
            if (action.id.indexOf("org.shadowcopy.") !== 0) return polkit.Result.NOT_HANDLED;
            if (subject.user === "\(accounts["denied"].name)") return polkit.Result.NO;
            if (subject.isInGroup("\(accounts.group)")) return polkit.Result.YES;
            if (subject.user === "\(accounts["limited"].name)" && action.id === "org.shadowcopy.create") {
                var volume = action.lookup("volume");
                return (volume === undefined || volume === "\(volume)") ? polkit.Result.YES : polkit.Result.NO;
            }
            return polkit.Result.NOT_HANDLED;
        });
        """
    }

    struct World {
        let f: DaemonFixture
        let accounts: TestAccounts
        let polkit: PolkitDaemon
        let volume: LoopVolume

        func call(_ role: String?, _ path: String, _ interface: String, _ method: String, _ signature: String = "",
                  _ arguments: String = "[]", interactive: Bool = false) throws -> BusCall.Outcome {
            try BusCall.call(f.bus, as: role.map { accounts[$0] }, path, interface, method, signature, arguments,
                             interactive: interactive)
        }

        /// A writerless set of the volume made by `role` through DoSnapshotSet; its set and snapshot paths.
        func makeCopy(as role: String) throws -> (String, String) {
            let set = try call(role, SecurityTests.root, SecurityTests.coordinator, "StartSnapshotSet", "a{sv}",
                               #"[{"context": "file-share-backup", "auto-release": false}]"#)
            let setPath = try #require(set.reply.first, "\(set)")
            let added = try call(role, setPath, SecurityTests.setInterface, "AddVolume", "sa{sv}", #"["\#(volume.mountPoint)", {}]"#)
            let snapshot = try #require(added.reply.first, "\(added)")
            let job = try #require(try call(role, setPath, SecurityTests.setInterface, "DoSnapshotSet", "a{sv}", "[{}]").reply.first)
            let waited = try call(role, job, SecurityTests.jobInterface, "Wait", "u", "[30000]")
            #expect(waited.reply == ["1"], "\(waited)")
            return (setPath, snapshot)
        }

        /// The set objects the daemon shows.
        func sets() async throws -> [ObjectPath] {
            let client = try f.client()
            defer { client.close() }
            return try await SC.managedObjects(client).keys.filter { $0.rawValue.contains("/sets/") }
        }
    }

    static func withWorld(_ body: (World) async throws -> Void) async throws {
        let accounts = try TestAccounts(roles: ["granted", "limited", "denied", "plain"], members: ["granted"])
        defer { accounts.remove() }
        try await LoopVolume.with { volume in
            try await DaemonFixture.with(morePolicies: [PolkitDaemon.busPolicy]) { f in
                // Unprivileged users reach the socket; the bus policy and polkit decide the rest.
                chmod(f.bus.directory.path, 0o755)
                let polkit = try await PolkitDaemon(bus: f.bus, rules: rules(accounts, volume: volume.mountPoint))
                defer { polkit.stop() }
                try await body(World(f: f, accounts: accounts, polkit: polkit, volume: volume))
            }
        }
    }

    @Test func createIsRefusedWithoutRightsAndLeavesNoTrace() async throws {
        try await Self.withWorld { w in
            let start = { (role: String, interactive: Bool) throws -> BusCall.Outcome in
                try w.call(role, Self.root, Self.coordinator, "StartSnapshotSet", "a{sv}", "[{}]", interactive: interactive)
            }
            #expect(try start("plain", false).error == Self.iar, "a challenge without interaction")
            #expect(try start("plain", true).error == "org.shadowcopy.ShadowCopy1.Error.NotAuthorizedCanObtain",
                    "a challenge with interaction but no authentication agent")
            #expect(try start("denied", false).error == Self.notAuthorized)
            // auth.no_user_interaction wins over the message's flag.
            let noInteraction = try w.call("plain", Self.root, Self.coordinator, "StartSnapshotSet", "a{sv}",
                                           #"[{"auth.no_user_interaction": true}]"#, interactive: true)
            #expect(noInteraction.error == Self.iar)
            #expect(try await w.sets().isEmpty, "no refused call made a set")

            // The rule sees the volume: `limited` may copy this volume and no other.
            try await LoopVolume.with { other in
                // auto-release off: each of these calls is a connection of its own.
                let started = try w.call("limited", Self.root, Self.coordinator, "StartSnapshotSet", "a{sv}",
                                         #"[{"auto-release": false}]"#)
                let set = try #require(started.reply.first, "\(started)")
                let refused = try w.call("limited", set, Self.setInterface, "AddVolume", "sa{sv}", #"["\#(other.mountPoint)", {}]"#)
                #expect(refused.error == Self.notAuthorized, "\(refused)")
                #expect(try await w.sets().count == 1)
                let client = try w.f.client()
                defer { client.close() }
                let volumes = try await SC.call(client, "Get", [.string(Self.setInterface), .string("Volumes")],
                                                path: try #require(ObjectPath(set)), interface: SC.properties)
                #expect(volumes.first?.variantValue?.stringArray == [], "the refused volume was not added")
                #expect(try other.untouched())
                _ = try w.call(nil, set, Self.setInterface, "Delete", "a{sv}", "[{}]")
            }
        }
    }

    @Test func exposeAndDeleteNeedTheirOwnRightsAndOwnership() async throws {
        try await Self.withWorld { w in
            let (set, snapshot) = try w.makeCopy(as: "limited")
            // limited may create, not expose or delete: polkit challenges.
            #expect(try w.call("limited", snapshot, Self.snapshotInterface, "Expose", "a{sv}", "[{}]").error == Self.iar)
            #expect(try w.call("limited", snapshot, Self.snapshotInterface, "Delete", "a{sv}", "[{}]").error == Self.iar)
            #expect(try w.call("limited", set, Self.setInterface, "Delete", "a{sv}", "[{}]").error == Self.iar)
            #expect(try w.call("limited", Self.root, Self.coordinator, "DeleteSnapshots", "a{sv}", #"[{"all": true}]"#).error
                    == Self.iar)
            #expect(w.f.daemon.exposed.isEmpty, "a refused Expose mounted nothing")

            // granted has every right, but not over limited's set.
            for (path, interface, method) in [(snapshot, Self.snapshotInterface, "Expose"), (snapshot, Self.snapshotInterface, "Delete"),
                                              (set, Self.setInterface, "Delete"), (set, Self.setInterface, "Abort"),
                                              (set, Self.setInterface, "BackupComplete")] {
                let outcome = try w.call("granted", path, interface, method, "a{sv}", "[{}]")
                #expect(outcome.error == Self.notAuthorized, "granted \(method): \(outcome)")
            }
            #expect(try w.call("granted", Self.root, Self.coordinator, "DeleteSnapshots", "a{sv}", #"[{"all": true}]"#).error
                    == Self.notAuthorized, "DeleteSnapshots is refused whole when one copy is another's")
            #expect(try w.volume.subvolumes().count == 1, "nothing refused was deleted")

            // granted on its own copy: expose (read-only, under the expose root), unexpose, delete.
            let (ownSet, own) = try w.makeCopy(as: "granted")
            let exposed = try w.call("granted", own, Self.snapshotInterface, "Expose", "a{sv}", "[{}]")
            let path = try #require(exposed.reply.first, "\(exposed)")
            #expect(path.hasPrefix(w.f.daemon.exposeRoot + "/"))
            let options = try #require(Self.mountOptions(path))
            for flag in ["ro", "nosuid", "nodev", "noexec"] { #expect(options.contains(flag), "\(options)") }
            #expect(try w.call("granted", own, Self.snapshotInterface, "Unexpose", "a{sv}", "[{}]").error == nil)
            #expect(try w.call("granted", ownSet, Self.setInterface, "Delete", "a{sv}", "[{}]").error == nil)
            // Root may end any set.
            #expect(try w.call(nil, set, Self.setInterface, "Delete", "a{sv}", "[{}]").error == nil)
            #expect(try w.volume.untouched())
        }
    }

    @Test func registeringWritersAndProvidersFollowsThePolicy() async throws {
        try await Self.withWorld { w in
            let register = { (role: String, method: String) throws -> BusCall.Outcome in
                try w.call(role, Self.root, Self.coordinator, method, "oa{sv}", #"["/p", {"name": "from-\#(role)"}]"#)
            }
            #expect(try register("plain", "RegisterWriter").error == nil, "register-writer is allowed to anyone by default")
            #expect(try register("denied", "RegisterWriter").error == Self.notAuthorized)
            #expect(try register("plain", "RegisterProvider").error == Self.iar, "register-provider needs an administrator")
            #expect(try register("denied", "RegisterProvider").error == Self.notAuthorized)
            let granted = try register("granted", "RegisterProvider")
            #expect(granted.error == nil && granted.reply.first?.hasSuffix("/providers/from_granted") == true, "\(granted)")
        }
    }

    @Test func revertAndStorageNeedAnAdministratorBeforeAnythingElse() async throws {
        try await Self.withWorld { w in
            let notSupported = "org.shadowcopy.ShadowCopy1.Error.NotSupported"
            let storage = { (role: String) throws -> BusCall.Outcome in
                try w.call(role, Self.root, Self.coordinator, "AddShadowStorage", "ssta{sv}",
                           #"["\#(w.volume.mountPoint)", "/var/tmp", 1048576, {}]"#)
            }
            #expect(try storage("plain").error == Self.iar)
            #expect(try storage("denied").error == Self.notAuthorized)
            #expect(try storage("granted").error == notSupported, "authorized, then told btrfs copies keep no shadow storage")

            let (set, snapshot) = try w.makeCopy(as: "limited")
            #expect(try w.call("limited", snapshot, Self.snapshotInterface, "Revert", "a{sv}", "[{}]").error == Self.iar)
            #expect(try w.call("granted", snapshot, Self.snapshotInterface, "Revert", "a{sv}", "[{}]").error == Self.notAuthorized,
                    "not granted's copy")
            #expect(try w.call(nil, snapshot, Self.snapshotInterface, "Revert", "a{sv}", "[{}]").error == notSupported)
            _ = try w.call(nil, set, Self.setInterface, "Delete", "a{sv}", "[{}]")
        }
    }

    @Test func withPolkitDownOnlyRootIsAllowed() async throws {
        try await Self.withWorld { w in
            w.polkit.kill()
            for role in ["granted", "plain"] {
                let outcome = try w.call(role, Self.root, Self.coordinator, "StartSnapshotSet", "a{sv}", "[{}]")
                #expect(outcome.error == Self.notAuthorized && outcome.message.contains("polkit cannot be reached"), "\(outcome)")
                #expect(try w.call(role, Self.root, Self.coordinator, "RegisterWriter", "oa{sv}", #"["/w", {"name": "w"}]"#).error
                        == Self.notAuthorized)
            }
            #expect(try await w.sets().isEmpty)
            let asRoot = try w.call(nil, Self.root, Self.coordinator, "StartSnapshotSet", "a{sv}", "[{}]")
            let set = try #require(asRoot.reply.first, "\(asRoot)")
            #expect(w.f.daemon.log.contains("polkit cannot be reached; only root is allowed"))
            _ = try w.call(nil, set, Self.setInterface, "Delete", "a{sv}", "[{}]")
        }
    }

    /// The per-mount options of the mount at `path` (mountinfo's sixth field).
    static func mountOptions(_ path: String) -> [String]? {
        let lines = ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").split(separator: "\n")
        guard let line = lines.last(where: { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }) else { return nil }
        return line.split(separator: " ")[5].split(separator: ",").map(String.init)
    }

    @Test func exposeNeverFollowsASymlinkedExposeRoot() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-root-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: scratch + "/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: scratch + "/root", withDestinationPath: scratch + "/elsewhere")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try await LoopVolume.with { volume in
            try await DaemonFixture.with(arguments: ["--expose-root", scratch + "/root"]) { f in
                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client, [("context", .string("file-share-backup"))])
                let snapshot = try #require(try await set.call("AddVolume", [.string(volume.mountPoint), .vardict([])]).first?.objectPath)
                #expect(try await set.run("DoSnapshotSet") == ("succeeded", ""))
                let error = await SC.errorName {
                    _ = try await SC.call(client, "Expose", [.vardict([])], path: snapshot,
                                          interface: InterfaceName(Self.snapshotInterface)!)
                }
                #expect(error == "org.shadowcopy.ShadowCopy1.Error.Failed")
                #expect(try FileManager.default.contentsOfDirectory(atPath: scratch + "/elsewhere").isEmpty, "nothing made through the link")
                #expect(!Mounts.isMounted(scratch + "/elsewhere"))
                _ = try await set.call("Delete")
            }
        }
    }
}

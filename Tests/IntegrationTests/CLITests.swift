import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// The `shadowcopy` CLI against the real daemon on a private bus, in human and JSON form.
@Suite("The shadowcopy CLI", .serialized)
struct CLITests {
    /// Runs the CLI of this build with `arguments` against `bus`.
    static func cli(_ bus: PrivateBus, _ arguments: [String]) throws -> ToolResult {
        try Tool.run(ProjectPaths.products.appendingPathComponent("shadowcopy").path, arguments,
                     environment: ["DBUS_SYSTEM_BUS_ADDRESS": bus.address])
    }

    static func json(_ result: ToolResult) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        return try #require(object as? [String: Any], "\(result.stdout) \(result.stderr)")
    }

    static func sets(_ f: DaemonFixture) async throws -> [ObjectPath] {
        let c = try f.client()
        defer { c.close() }
        return try await SC.managedObjects(c).keys.filter { $0.rawValue.contains("/sets/") }
    }

    @Test func listsWritersProvidersAndShadowsAsTablesAndJSON() async throws {
        try await DaemonFixture.with { f in
            let writer = try await PythonWriter(bus: f.bus, name: "listed", level: "back-end")
            defer { writer.stop() }
            let writers = try Self.cli(f.bus, ["list", "writers"])
            #expect(writers.status == 0)
            let header = try #require(writers.stdout.split(separator: "\n").first)
            #expect(header.hasPrefix("NAME") && header.contains("LEVEL") && header.contains("STATE"))
            #expect(writers.stdout.contains("listed") && writers.stdout.contains("back-end") && writers.stdout.contains("stable"))
            let writersJSON = try Self.json(try Self.cli(f.bus, ["list", "writers", "--json"]))
            let first = try #require((writersJSON["writers"] as? [[String: Any]])?.first)
            #expect(first["name"] as? String == "listed" && first["level"] as? String == "back-end" && first["state"] as? String == "stable")

            let providers = try Self.json(try Self.cli(f.bus, ["list", "providers", "--json"]))
            #expect((providers["providers"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted() == ["btrfs", "dm-snapshot", "dm-thin"])
            #expect(try Self.cli(f.bus, ["list", "providers"]).stdout.contains("btrfs"))
            #expect(try Self.cli(f.bus, ["list", "shadows"]).stdout == "No shadow copies.\n")
            #expect((try Self.json(try Self.cli(f.bus, ["list", "shadows", "--json"]))["shadows"] as? [Any])?.isEmpty == true)
            #expect(try Self.cli(f.bus, ["list", "shadowstorage"]).stdout.hasPrefix("No shadow storage"))

            let status = try Self.cli(f.bus, ["status"])
            #expect(status.stdout.contains("Writer name: 'listed'") && status.stdout.contains("State: stable")
                    && status.stdout.contains("Last error: No error"), "\(status.stdout)")
            let statusJSON = try Self.json(try Self.cli(f.bus, ["status", "--json"]))
            #expect((statusJSON["coordinator"] as? [String: Any])?["version"] as? String == "0.1.0")
        }
    }

    @Test func createExposeUnexposeAndDeleteAShadowCopyWithAWriter() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with(arguments: ["--expose-root", "/run/shadowcopy"]) { f in
                let data = volume.mountPoint + "/records"
                let writer = try await PythonWriter(bus: f.bus, name: "app", extra: ["--data", data])
                defer { writer.stop() }
                try await Task.sleep(for: .milliseconds(200))
                let created = try Self.cli(f.bus, ["create", "shadow", "--for", volume.mountPoint, "--expose", "--json"])
                #expect(created.status == 0, "\(created.stderr)")
                let report = try Self.json(created)
                #expect(report["consistency"] as? String == "application")
                let shadow = try #require((report["shadows"] as? [[String: Any]])?.first)
                let id = try #require(shadow["id"] as? String)
                let exposed = try #require(shadow["exposedPath"] as? String)
                #expect(exposed.hasPrefix("/run/shadowcopy/"))
                let frozenAfter = try #require(writer.events.first { $0.hasPrefix("frozen-after") }.flatMap { Int($0.split(separator: " ")[1]) })
                #expect(try String(contentsOfFile: exposed + "/records", encoding: .utf8) == (1...frozenAfter).map { "\($0)\n" }.joined())
                #expect(writer.calls.suffix(2) == ["PostSnapshot", "BackupComplete"])

                let listed = try Self.cli(f.bus, ["list", "shadows", "--for", volume.mountPoint])
                #expect(listed.stdout.contains(id) && listed.stdout.contains(exposed))
                #expect(try Self.cli(f.bus, ["unexpose", id]).status == 0)
                #expect(!Mounts.isMounted(exposed))
                let again = try Self.cli(f.bus, ["expose", id])
                #expect(again.status == 0 && again.stdout.hasPrefix("/run/shadowcopy/"))
                let deleted = try Self.cli(f.bus, ["delete", "shadows", "--shadow", id, "--quiet"])
                #expect(deleted.stdout == "1 shadow copy deleted.\n", "\(deleted.stderr)")
                #expect(!Mounts.isMounted(again.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
                #expect(try volume.untouched())
            }
        }
    }

    @Test func deleteByOldestSetAndAll() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                var ids: [String] = []
                var sets: [String] = []
                for _ in 0..<3 {
                    let report = try Self.json(try Self.cli(f.bus, ["create", "shadow", "--for", volume.mountPoint, "--no-writers", "--json"]))
                    #expect(report["consistency"] as? String == "filesystem")
                    ids.append(try #require((report["shadows"] as? [[String: Any]])?.first?["id"] as? String))
                    sets.append(try #require(report["set"] as? String))
                }
                let oldest = try Self.json(try Self.cli(f.bus, ["delete", "shadows", "--oldest", "--for", volume.mountPoint, "--json"]))
                #expect(oldest["deleted"] as? Int == 1)
                let left = try Self.json(try Self.cli(f.bus, ["list", "shadows", "--json"]))["shadows"] as? [[String: Any]]
                #expect(left?.compactMap { $0["id"] as? String } == Array(ids.dropFirst()), "the oldest went first")
                #expect(try Self.json(try Self.cli(f.bus, ["delete", "shadows", "--set", sets[1], "--json"]))["deleted"] as? Int == 1)
                #expect(try Self.json(try Self.cli(f.bus, ["delete", "shadows", "--all", "--json"]))["deleted"] as? Int == 1)
                #expect(try volume.untouched())
            }
        }
    }

    @Test func badArgumentsAreUsageErrorsAndChangeNothing() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                for arguments in [["create", "shadow"], ["create", "snapshot", "--for", volume.mountPoint], ["delete", "shadows"],
                                  ["delete", "shadows", "--all", "--set", "x"], ["delete", "shadows", "--oldest"],
                                  ["list", "nonsense"], ["list", "writers", "--for", "/srv"], ["--bogus"]] {
                    let result = try Self.cli(f.bus, arguments)
                    #expect(result.status == 64, "\(arguments): \(result.status) \(result.stderr)")
                    #expect(result.stderr.contains("Usage") || result.stderr.contains("Error"), "\(arguments): \(result.stderr)")
                }
                let badID = try Self.cli(f.bus, ["expose", "not-an-id"])
                #expect(badID.status == 64 && badID.stderr.contains("not a shadow copy id"))

                // The daemon's refusal: its error name, a hint, an exit code, and nothing half-made.
                let refused = try Self.cli(f.bus, ["create", "shadow", "--for", volume.mountPoint, "--for", "/etc", "--no-writers"])
                #expect(refused.status == 6, "\(refused.stderr)")
                #expect(refused.stderr.contains("org.shadowcopy.ShadowCopy1.Error.VolumeNotSupported") && refused.stderr.contains("hint:"))
                let refusedJSON = try Self.json(try Self.cli(f.bus, ["create", "shadow", "--for", "/etc", "--json"]))
                #expect((refusedJSON["error"] as? [String: Any])?["name"] as? String == "org.shadowcopy.ShadowCopy1.Error.VolumeNotSupported")
                #expect(try await Self.sets(f).isEmpty, "the set of a failed create is gone")
                #expect(try volume.untouched())
                let missing = try Self.cli(f.bus, ["delete", "shadows", "--shadow", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "--quiet"])
                #expect(missing.status == 3, "\(missing.stderr)")
            }
        }
    }

    @Test func itsVersionIsTheDaemons() throws {
        let cli = try Tool.run(ProjectPaths.products.appendingPathComponent("shadowcopy").path, ["--version"])
        let daemon = try Tool.run(ProjectPaths.daemon.path, ["--version"])
        #expect(cli.status == 0 && daemon.status == 0)
        #expect(!cli.stdout.isEmpty && cli.stdout == daemon.stdout, "\(cli.stdout) \(daemon.stdout)")
    }

    @Test func withoutTheDaemonItSaysSo() async throws {
        let bus = try PrivateBus()
        defer { bus.stop() }
        let result = try Self.cli(bus, ["list", "writers"])
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("is shadowcopyd running?"))
    }

    @Test func aScriptRunsABackupAndAnErrorNamesItsLine() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let writer = try await PythonWriter(bus: f.bus, name: "app", extra: ["--data", volume.mountPoint + "/records"])
                defer { writer.stop() }
                let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-test-script-\(UInt32.random(in: 0...UInt32.max))")
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(at: dir) }
                let script = dir.appendingPathComponent("backup.dsh").path
                try """
                    # A nightly backup, diskshadow style.
                    set context nonpersistent
                    set option full
                    begin backup
                    add volume \(volume.mountPoint) alias data
                    create
                    expose %data%
                    exec /bin/cp %data%/records \(dir.path)/copied
                    end backup
                    list shadows
                    """.write(toFile: script, atomically: true, encoding: .utf8)
                let result = try Self.cli(f.bus, ["run", script])
                #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
                #expect(result.stdout.contains("made (application-consistent)") && result.stdout.contains("%data% exposed at"))
                #expect(result.stdout.contains("the copies are deleted") && result.stdout.contains("No shadow copies."))
                let copied = try String(contentsOfFile: dir.appendingPathComponent("copied").path, encoding: .utf8)
                #expect(!copied.isEmpty)
                #expect(writer.events.contains("detail PrepareForBackup backup-type=full components="))
                #expect(try volume.untouched())

                // A mistake on line 3 is reported before anything runs.
                try "set context nonpersistent\nbegin backup\nadd volum \(volume.mountPoint)\ncreate\n".write(toFile: script, atomically: true, encoding: .utf8)
                let typo = try Self.cli(f.bus, ["run", script])
                #expect(typo.status == 64 && typo.stderr.contains("backup.dsh:3: add takes 'volume PATH"), "\(typo.stderr)")
                #expect(try await Self.sets(f).isEmpty)

                // A failing exec abandons the backup: nothing stays.
                try "begin backup\nadd volume \(volume.mountPoint) alias v\ncreate\nexpose %v%\nexec /bin/false\nend backup\n"
                    .write(toFile: script, atomically: true, encoding: .utf8)
                let failing = try Self.cli(f.bus, ["run", script])
                #expect(failing.status == 1 && failing.stderr.contains("backup.dsh:5: exec /bin/false ended with status 1"), "\(failing.stderr)")
                #expect(try await Self.sets(f).isEmpty)
                #expect(f.daemon.exposed.isEmpty)
                #expect(try volume.untouched())
            }
        }
    }

    @Test func theBusctlExampleRunsAWholeBackup() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let writer = try await PythonWriter(bus: f.bus, name: "app", extra: ["--data", volume.mountPoint + "/records"])
                defer { writer.stop() }
                let script = ProjectPaths.root.appendingPathComponent("examples/busctl-backup.sh").path
                let result = try Tool.run(script, [volume.mountPoint, "/bin/ls"], environment: ["DBUS_SYSTEM_BUS_ADDRESS": f.bus.address])
                #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
                for line in ["GatherWriterMetadata: succeeded", "DoSnapshotSet: succeeded", "consistency: application",
                             "records", "BackupComplete: succeeded", "done"] {
                    #expect(result.stdout.contains(line), "\(line) in \(result.stdout)")
                }
                #expect(writer.calls == ["Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot",
                                         "BackupComplete", "BackupShutdown"])
                #expect(try await Self.sets(f).isEmpty)
                #expect(try volume.untouched())

                // A volume no provider takes: the script fails and leaves no set behind.
                let failed = try Tool.run(script, ["/etc"], environment: ["DBUS_SYSTEM_BUS_ADDRESS": f.bus.address])
                #expect(failed.status != 0)
                #expect(try await Self.sets(f).isEmpty)
            }
        }
    }

    @Test func btrfsCopiesHaveNoShadowStorageAndNoRevert() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let add = try Self.cli(f.bus, ["add", "shadowstorage", "--for", volume.mountPoint, "--on", "/var/tmp", "--maxsize", "1048576"])
                #expect(add.status == 1 && add.stderr.contains("org.shadowcopy.ShadowCopy1.Error.NotSupported"), "\(add.stderr)")
                let addJSON = try Self.json(try Self.cli(f.bus, ["add", "shadowstorage", "--for", volume.mountPoint, "--on", "/var/tmp", "--json"]))
                #expect((addJSON["error"] as? [String: Any])?["name"] as? String == "org.shadowcopy.ShadowCopy1.Error.NotSupported")
                for arguments in [["delete", "shadowstorage", "--for", volume.mountPoint], ["resize", "shadowstorage", "--for", volume.mountPoint, "--maxsize", "1"]] {
                    let result = try Self.cli(f.bus, arguments)
                    #expect(result.status == 3 && result.stderr.contains("has no shadow storage"), "\(arguments): \(result.stderr)")
                }
                let made = try Self.json(try Self.cli(f.bus, ["create", "shadow", "--for", volume.mountPoint, "--no-writers", "--json"]))
                let id = try #require((made["shadows"] as? [[String: Any]])?.first?["id"] as? String)
                let revert = try Self.cli(f.bus, ["revert", id])
                #expect(revert.status == 1 && revert.stderr.contains("NotSupported"), "\(revert.stderr)")
                let exposed = try Self.json(try Self.cli(f.bus, ["expose", id, "--json"]))
                #expect((exposed["exposedPath"] as? String)?.hasPrefix(f.daemon.exposeRoot) == true)
                #expect(try Self.cli(f.bus, ["delete", "shadows", "--all", "--quiet"]).status == 0)
                #expect(f.daemon.exposed.isEmpty)
                #expect(try volume.untouched())
            }
        }
    }
}

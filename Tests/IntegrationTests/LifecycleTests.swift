import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

@Suite("Daemon lifecycle")
struct LifecycleTests {
    @Test func sigtermStopsGracefullyAndReleasesTheName() async throws {
        let bus = try PrivateBus()
        defer { bus.stop() }
        let daemon = try await DaemonProcess(bus: bus)
        let c = try Connection(address: bus.address)
        defer { c.close() }
        #expect(try await c.nameOwner(SC.name) != nil)
        let status = await daemon.stop(signal: SIGTERM)
        #expect(status == 0, "\(daemon.log)")
        #expect(daemon.log.contains("stopped"))
        #expect(try await c.nameOwner(SC.name) == nil)
    }

    @Test func aSecondDaemonRefusesToStart() async throws {
        try await DaemonFixture.with { fixture in
            // Its own files, so that only the bus name stands in its way.
            let own = fixture.bus.directory.appendingPathComponent("second").path
            let second = try ChildProcess(ProjectPaths.daemon.path, ["--catalog", own + "/catalog.db", "--shadow-storage", own + "/storage",
                                                                     "--expose-root", own + "/expose"],
                                          environment: ["DBUS_SYSTEM_BUS_ADDRESS": fixture.bus.address],
                                          stderr: fixture.bus.directory.appendingPathComponent("second.log").path)
            let status = second.wait(timeout: .seconds(10))
            #expect(status != nil && status != 0)
            let log = try String(contentsOf: fixture.bus.directory.appendingPathComponent("second.log"), encoding: .utf8)
            #expect(log.contains("already owned"), "\(log)")
        }
    }

    @Test func versionAndHelp() throws {
        let version = try Tool.run(ProjectPaths.daemon.path, ["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let help = try Tool.run(ProjectPaths.daemon.path, ["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("USAGE: shadowcopyd"))
        #expect(help.stdout.contains("--address"))
        let bad = try Tool.run(ProjectPaths.daemon.path, ["--bogus"])
        #expect(bad.status != 0)
    }

    @Test func onlyRootMayOwnTheName() async throws {
        try await DaemonFixture.with { fixture in
            // Make the socket reachable for an unprivileged user, then try to own the name as nobody.
            chmod(fixture.bus.directory.path, 0o755)
            let script = """
                import dbus, sys
                bus = dbus.SystemBus()
                props = dbus.Interface(bus.get_object('org.shadowcopy.ShadowCopy1', '/org/shadowcopy/ShadowCopy1'),
                                       'org.freedesktop.DBus.Properties')
                print('version', props.Get('org.shadowcopy.ShadowCopy1.Coordinator', 'Version'))
                try:
                    bus.request_name('org.shadowcopy.ShadowCopy1', dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
                    print('owned')
                except dbus.exceptions.DBusException as e:
                    print('refused', e.get_dbus_name())
                """
            let result = try Tool.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                          ProjectPaths.systemPython, "-c", script],
                                      environment: ["DBUS_SYSTEM_BUS_ADDRESS": fixture.bus.address])
            #expect(result.stdout.contains("version 0.1.0"), "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("refused org.freedesktop.DBus.Error.AccessDenied"), "\(result.stdout) \(result.stderr)")
        }
    }

    @Test func theBusStartsTheDaemonFromTheProjectsActivationFile() async throws {
        let services = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-services-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: services, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: services) }
        // The project's file as installed, with Exec pointing at this build.
        let shipped = try String(contentsOf: ProjectPaths.root.appendingPathComponent("dbus/org.shadowcopy.ShadowCopy1.service"),
                                 encoding: .utf8)
        let exec = "Exec=\(ProjectPaths.daemon.path) --catalog \(services.path)/catalog.db"
        try shipped.replacingOccurrences(of: "Exec=/usr/libexec/shadowcopyd", with: exec)
            .write(to: services.appendingPathComponent("org.shadowcopy.ShadowCopy1.service"), atomically: true, encoding: .utf8)
        let bus = try PrivateBus(extraConfig: "<servicedir>\(services.path)</servicedir>")
        defer { bus.stop() }
        let c = try Connection(address: bus.address)
        defer { c.close() }
        #expect(try await c.nameOwner("org.shadowcopy.ShadowCopy1") == nil)
        let version = try await SC.call(c, "Get", [.string("org.shadowcopy.ShadowCopy1.Coordinator"), .string("Version")],
                                        interface: SC.properties)
        #expect(version.first?.variantValue?.string == "0.1.0", "the first call started the daemon")
        let pid = try await c.call(.bus, "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionUnixProcessID",
                                   [.string("org.shadowcopy.ShadowCopy1")]).first?.uint32
        let daemon = try #require(pid.map { pid_t($0) })
        kill(daemon, SIGTERM)
        #expect(try await SC.eventually(.seconds(10)) { try await c.nameOwner("org.shadowcopy.ShadowCopy1") == nil })
    }

    @Test func theSystemdUnitIsValid() throws {
        let unit = try String(contentsOf: ProjectPaths.root.appendingPathComponent("systemd/shadowcopyd.service"), encoding: .utf8)
        #expect(unit.contains("BusName=org.shadowcopy.ShadowCopy1") && unit.contains("Type=dbus"))
        let activation = try String(contentsOf: ProjectPaths.root.appendingPathComponent("dbus/org.shadowcopy.ShadowCopy1.service"),
                                    encoding: .utf8)
        #expect(activation.contains("SystemdService=shadowcopyd.service"))
        // systemd-analyze checks every directive; ExecStart must exist, so it names this build.
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopyd.service")
        try unit.replacingOccurrences(of: "/usr/libexec/shadowcopyd", with: ProjectPaths.daemon.path)
            .write(to: copy, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: copy) }
        let verify = try Tool.run("/usr/bin/systemd-analyze", ["verify", copy.path])
        #expect(verify.status == 0 && verify.stderr.isEmpty, "\(verify.stdout) \(verify.stderr)")
    }
}

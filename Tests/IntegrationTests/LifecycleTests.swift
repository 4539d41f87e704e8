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
            let second = try ChildProcess(ProjectPaths.daemon.path, [],
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
}

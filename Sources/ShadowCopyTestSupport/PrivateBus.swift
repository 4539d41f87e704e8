import Foundation

/// A private `dbus-daemon` configured like the system bus, with the project's own policy.
///
/// Its socket, config and log live in a scratch folder under /tmp that ``stop()`` removes.
public final class PrivateBus: @unchecked Sendable {
    public let directory: URL
    /// The bus address, for `DBUS_SYSTEM_BUS_ADDRESS` or `Connection(address:)`.
    public let address: String
    private let process: ChildProcess

    /// Starts a bus that includes `policies` (the project's policy file by default) and
    /// `extraConfig` (limits, more policies).
    public init(policies: [URL] = [ProjectPaths.busPolicy], extraConfig: String = "") throws {
        directory = try ProjectPaths.makeScratch("bus")
        let socket = directory.appendingPathComponent("system_bus_socket").path
        let includes = policies.map { "  <include>\($0.path)</include>" }.joined(separator: "\n")
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>unix:path=\(socket)</listen>
              <auth>EXTERNAL</auth>
              <!-- The default policy of Debian's system.conf: deny by default, services punch holes. -->
              <policy context="default">
                <allow user="*"/>
                <deny own="*"/>
                <deny send_type="method_call"/>
                <allow send_type="signal"/>
                <allow send_requested_reply="true" send_type="method_return"/>
                <allow send_requested_reply="true" send_type="error"/>
                <allow receive_type="method_call"/>
                <allow receive_type="method_return"/>
                <allow receive_type="error"/>
                <allow receive_type="signal"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
                <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
                <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
                      send_member="UpdateActivationEnvironment"/>
              </policy>
            \(includes)
            \(extraConfig)
            </busconfig>
            """
        let configURL = directory.appendingPathComponent("bus.conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/dbus-daemon") else {
            throw HarnessError("dbus-daemon is not installed (apt-get install dbus-daemon)")
        }
        let addressFile = directory.appendingPathComponent("address").path
        let process = try ChildProcess("/usr/bin/dbus-daemon",
                                       ["--config-file=\(configURL.path)", "--nofork", "--print-address=1"],
                                       stdout: addressFile, stderr: directory.appendingPathComponent("bus.log").path)
        self.process = process
        // The address is printed once the socket listens.
        var text = ""
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let content = (try? String(contentsOfFile: addressFile, encoding: .utf8)) ?? ""
            if content.hasSuffix("\n") {
                text = content.trimmingCharacters(in: .whitespacesAndNewlines)
                break
            }
            guard process.isRunning else { break }
            usleep(2_000)
        }
        guard text.hasPrefix("unix:") else {
            process.stop(signal: SIGKILL)
            let log = (try? String(contentsOf: directory.appendingPathComponent("bus.log"), encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(at: directory)
            throw HarnessError("dbus-daemon did not start (config \(configURL.path)): \(log)")
        }
        address = text
    }

    /// Stops the bus and removes its folder.
    public func stop() {
        process.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

import DBus
import Foundation

/// A real `polkitd` on a private bus, with the project's actions and a test's own rules
/// installed where polkitd reads them, all removed again by ``stop()``.
public final class PolkitDaemon: @unchecked Sendable {
    public static let binary = "/usr/lib/polkit-1/polkitd"
    /// polkit's own bus policy: the private bus must include it for polkitd to take its name.
    public static let busPolicy = URL(fileURLWithPath: "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf")
    static let actionsFile = "/usr/share/polkit-1/actions/org.shadowcopy.policy"

    private var process: ChildProcess?
    private let rulesFile: String
    private let bus: PrivateBus
    /// A policy file that was installed before the test (by `make install`), put back afterwards.
    private let savedActions: Data?

    /// Installs the policy and `rules` (JavaScript), then starts polkitd and waits for its name.
    public init(bus: PrivateBus, rules: String) async throws {
        self.bus = bus
        rulesFile = "/etc/polkit-1/rules.d/10-shadowcopy-test-\(UInt32.random(in: 0...UInt32.max)).rules"
        savedActions = FileManager.default.contents(atPath: Self.actionsFile)
        let policy = ProjectPaths.root.appendingPathComponent("polkit/org.shadowcopy.policy")
        _ = FileManager.default.createFile(atPath: Self.actionsFile, contents: try Data(contentsOf: policy),
                                           attributes: [.posixPermissions: 0o644])
        _ = FileManager.default.createFile(atPath: rulesFile, contents: Data(rules.utf8), attributes: [.posixPermissions: 0o644])
        do {
            try await start()
        } catch {
            stop()
            throw error
        }
    }

    /// Starts polkitd (again) and waits until it owns org.freedesktop.PolicyKit1.
    public func start() async throws {
        process = try ChildProcess(Self.binary, ["--no-debug"], environment: ["DBUS_SYSTEM_BUS_ADDRESS": bus.address,
                                                                            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
                                   stdout: bus.directory.appendingPathComponent("polkitd.log").path,
                                   stderr: bus.directory.appendingPathComponent("polkitd.log").path)
        let probe = try Connection(address: bus.address)
        defer { probe.close() }
        let start = ContinuousClock.now
        while try await probe.nameOwner("org.freedesktop.PolicyKit1") == nil {
            guard process?.isRunning == true, ContinuousClock.now - start < .seconds(15) else {
                throw HarnessError("polkitd did not take its name: \(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops polkitd only (the files stay), as when polkit is down.
    public func kill() {
        _ = process?.stop()
        process = nil
    }

    /// Stops polkitd and removes the rules and the policy it was given.
    public func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: rulesFile)
        if let savedActions {
            _ = FileManager.default.createFile(atPath: Self.actionsFile, contents: savedActions)
        } else {
            try? FileManager.default.removeItem(atPath: Self.actionsFile)
        }
    }

    public var log: String {
        (try? String(contentsOf: bus.directory.appendingPathComponent("polkitd.log"), encoding: .utf8)) ?? ""
    }
}

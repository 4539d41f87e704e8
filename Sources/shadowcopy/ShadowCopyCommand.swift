#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import DBus

/// `shadowcopy`: vssadmin and diskshadow for Linux, a client of shadowcopyd over D-Bus.
@main
struct ShadowCopyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadowcopy",
        abstract: "Make, list, expose and delete volume shadow copies through shadowcopyd.",
        discussion: """
            Every command is a D-Bus client of shadowcopyd (org.shadowcopy.ShadowCopy1 on the system bus); \
            whatever it does, busctl can do too. --json prints one JSON document whose shape docs/cli.md \
            documents.

            Exit codes: 0 success; 1 failure; 2 the daemon refused the input; 3 not found; 4 not \
            authorized; 5 busy (another set in creation, or a call out of order); 6 volume not supported; \
            64 usage error; 69 shadowcopyd not reachable.
            """,
        // The daemon's version (ShadowCopyCore's shadowCopyVersion; a test keeps them equal).
        version: "0.1.0",
        subcommands: [List.self, Create.self, Delete.self, Add.self, Resize.self, Expose.self, Unexpose.self,
                      Revert.self, Status.self, Run.self])
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Flag(help: "Print one JSON document instead of text.")
    var json = false

    @Option(help: "Bus address (default: the system bus, or DBUS_SYSTEM_BUS_ADDRESS).")
    var address: String?

    @Flag(name: .customLong("no-ask"), help: "Never let polkit ask for a password (for scripts).")
    var noAsk = false

    /// Whether progress goes to the terminal: on a terminal, and not for JSON.
    var showsProgress: Bool { !json && isatty(2) == 1 }

    /// Runs `body` with a client, turning D-Bus errors into a message, a hint and an exit code.
    func run(_ body: (DaemonClient) async throws -> Void) async throws {
        let client: DaemonClient
        do {
            client = try DaemonClient(address: address, interactive: !noAsk && isatty(0) == 1)
        } catch {
            throw Failure.report(DBusError(.failed, "cannot connect to the bus: \(error)"), json: json)
        }
        defer { client.close() }
        do {
            try await body(client)
        } catch let error as DBusError {
            throw Failure.report(error, json: json)
        } catch let error as CLIError {
            throw Failure.report(error, json: json)
        }
    }
}

/// How a failed command ends: the D-Bus error's name, its message, a hint, an exit code.
enum Failure {
    static func exitCode(_ name: String) -> Int32 {
        switch name {
        case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
             "org.freedesktop.DBus.Error.Disconnected", "org.freedesktop.DBus.Error.NoServer":
            return 69
        case "org.freedesktop.DBus.Error.InvalidArgs": return 2
        case "org.shadowcopy.ShadowCopy1.Error.NotFound", "org.freedesktop.DBus.Error.UnknownObject": return 3
        case "org.shadowcopy.ShadowCopy1.Error.NotAuthorized", "org.shadowcopy.ShadowCopy1.Error.NotAuthorizedCanObtain",
             "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", "org.freedesktop.DBus.Error.AccessDenied":
            return 4
        case "org.shadowcopy.ShadowCopy1.Error.SnapshotSetInProgress", "org.shadowcopy.ShadowCopy1.Error.BadState": return 5
        case "org.shadowcopy.ShadowCopy1.Error.VolumeNotSupported": return 6
        default: return 1
        }
    }

    static func hint(_ name: String) -> String {
        switch exitCode(name) {
        case 69: return "is shadowcopyd running? (systemctl status shadowcopyd, or D-Bus activation)"
        case 2: return "check the command's arguments: shadowcopy help"
        case 3: return "shadowcopy list shadows shows what exists"
        case 4: return "ask an administrator, or run it as a user polkit allows (see polkit/50-shadowcopy-backup-group.rules)"
        case 5: return "another set is being made or this one is busy; try again, or wait for it"
        case 6: return "shadowcopy list providers shows what can be copied (btrfs subvolumes, external providers)"
        default: return "shadowcopyd's log says more (journalctl -u shadowcopyd)"
        }
    }

    static func report(_ error: DBusError, json: Bool) -> ExitCode {
        let name = error.name.rawValue
        if json {
            print(Output.json(["error": ["name": name, "message": error.message, "hint": hint(name)]]))
        } else {
            Output.stderr("error: \(name): \(error.message)\nhint: \(hint(name))\n")
        }
        return ExitCode(exitCode(name))
    }

    static func report(_ error: CLIError, json: Bool) -> ExitCode {
        let message: String
        let code: Int32
        switch error {
        case .usage(let text): (message, code) = (text, 64)
        case .protocolError(let text): (message, code) = ("shadowcopyd answered something unexpected: \(text)", 1)
        case .cancelled: (message, code) = ("cancelled", 1)
        }
        if json {
            print(Output.json(["error": ["name": code == 64 ? "usage" : "failed", "message": message]]))
        } else {
            Output.stderr("error: \(message)\n")
        }
        return ExitCode(code)
    }
}

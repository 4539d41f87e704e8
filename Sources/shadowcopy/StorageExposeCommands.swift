import ArgumentParser
import DBus

/// Shadow storage (the VSS diff area) through the Coordinator and `storage/<id>` objects.
enum Storage {
    /// The storage object serving `volume`.
    static func find(_ client: DaemonClient, volume: String) async throws -> ObjectPath {
        let areas = try await client.objects(with: "ShadowStorage")
        guard let (path, _) = areas.first(where: { _, p in Output.text(p["ForVolume"]) == volume }) else {
            throw DBusError("org.shadowcopy.ShadowCopy1.Error.NotFound", "\(volume) has no shadow storage")
        }
        return path
    }

    static func delete(_ client: DaemonClient, volume: String) async throws {
        try await client.call(try await find(client, volume: volume), "ShadowStorage", "Delete", [.vardict([])])
    }
}

/// `shadowcopy add shadowstorage --for V --on LOCATION [--maxsize BYTES]`.
struct Add: AsyncParsableCommand {
    enum What: String, ExpressibleByArgument { case shadowstorage }
    static let configuration = CommandConfiguration(abstract: "Give a volume shadow storage (for device-mapper copies).")

    @Argument(help: "shadowstorage") var what: What
    @Option(name: .customLong("for"), help: "The volume the storage serves.") var volume: String
    @Option(help: "A directory on another filesystem (each copy's store a sparse file there), or a block device nothing else uses.")
    var on: String
    @Option(help: "The most all the volume's stores may take, in bytes (default: unbounded).") var maxsize: UInt64 = 0
    @Option(help: "Past --maxsize: delete-oldest (the oldest copies go, the default) or invalidate (the copy that fills is lost).")
    var policy: String?
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { client in
            let options: [(String, Value)] = policy.map { [("policy", .string($0))] } ?? []
            let path = try await client.coordinator("AddShadowStorage", [.string(volume), .string(on), .uint64(maxsize), .vardict(options)])
            if global.json { print(Output.json(["storage": path.first.map(Output.plain) ?? Output.null])) } else { print("Shadow storage added.") }
        }
    }
}

/// `shadowcopy resize shadowstorage --for V --maxsize BYTES`.
struct Resize: AsyncParsableCommand {
    enum What: String, ExpressibleByArgument { case shadowstorage }
    static let configuration = CommandConfiguration(abstract: "Change how large a volume's shadow storage may grow.")

    @Argument(help: "shadowstorage") var what: What
    @Option(name: .customLong("for"), help: "The volume the storage serves.") var volume: String
    @Option(help: "The most it may grow to, in bytes.") var maxsize: UInt64
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { client in
            try await client.call(try await Storage.find(client, volume: volume), "ShadowStorage", "Resize", [.uint64(maxsize), .vardict([])])
            if global.json { print(Output.json(["resized": volume])) } else { print("Shadow storage of \(volume) resized.") }
        }
    }
}

/// `shadowcopy expose SHADOW`: mounts the copy read-only under /run/shadowcopy.
struct Expose: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mount a shadow copy read-only under /run/shadowcopy.")
    @Argument(help: "The shadow copy's id.") var shadow: String
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { client in
            let path = try await client.call(try Output.path(shadow, kind: "snapshots"), "Snapshot", "Expose", [.vardict([])])
                .first?.string ?? ""
            if global.json { print(Output.json(["exposedPath": path])) } else { print(path) }
        }
    }
}

/// `shadowcopy unexpose SHADOW`.
struct Unexpose: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Unmount an exposed shadow copy.")
    @Argument(help: "The shadow copy's id.") var shadow: String
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { client in
            try await client.call(try Output.path(shadow, kind: "snapshots"), "Snapshot", "Unexpose", [.vardict([])])
            if global.json { print(Output.json(["unexposed": shadow])) } else { print("Unexposed.") }
        }
    }
}

/// `shadowcopy revert SHADOW`: the volume goes back to the copy (a scheduled merge).
struct Revert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revert a volume to one of its shadow copies.")
    @Argument(help: "The shadow copy's id.") var shadow: String
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { client in
            try await client.call(try Output.path(shadow, kind: "snapshots"), "Snapshot", "Revert", [.vardict([])])
            if global.json { print(Output.json(["reverting": shadow])) } else { print("Revert scheduled.") }
        }
    }
}

import ArgumentParser
import DBus

/// `shadowcopy list writers|providers|shadows|shadowstorage` (vssadmin list ...).
struct List: AsyncParsableCommand {
    enum What: String, ExpressibleByArgument, CaseIterable {
        case writers, providers, shadows, shadowstorage
    }

    static let configuration = CommandConfiguration(abstract: "List writers, providers, shadow copies or shadow storage.")

    @Argument(help: "What to list: writers, providers, shadows or shadowstorage.")
    var what: What

    @Option(name: .customLong("for"), help: "Only the shadow copies of this volume.")
    var volume: String?

    @Option(help: "Only the shadow copies of this set (its id).")
    var set: String?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if what != .shadows, volume != nil || set != nil {
            throw ValidationError("--for and --set filter shadow copies: use them with 'list shadows'")
        }
    }

    func run() async throws {
        try await global.run { client in
            switch what {
            case .writers: try await Self.writers(client, json: global.json)
            case .providers: try await Self.providers(client, json: global.json)
            case .shadows: try await Self.shadows(client, volume: volume, set: set, json: global.json)
            case .shadowstorage: try await Self.storage(client, json: global.json)
            }
        }
    }

    static func writers(_ client: DaemonClient, json: Bool) async throws {
        let writers = try await client.objects(with: "RegisteredWriter")
        let fields = ["Name", "Id", "ClassId", "InstanceId", "Level", "Usage", "State", "LastError", "Owner"]
        if json {
            print(Output.json(["writers": writers.map { _, p in record(p, fields) }]))
        } else {
            print(Output.table(["NAME", "LEVEL", "STATE", "LAST ERROR", "ID"],
                               writers.map { _, p in [p["Name"], p["Level"], p["State"], p["LastError"], p["Id"]].map(Output.text) },
                               empty: "No writers are registered."))
        }
    }

    static func providers(_ client: DaemonClient, json: Bool) async throws {
        let providers = try await client.objects(with: "RegisteredProvider")
        if json {
            print(Output.json(["providers": providers.map { _, p in record(p, ["Name", "Id", "Type", "Version"]) }]))
        } else {
            print(Output.table(["NAME", "TYPE", "VERSION", "ID"],
                               providers.map { _, p in [p["Name"], p["Type"], p["Version"], p["Id"]].map(Output.text) },
                               empty: "No providers."))
        }
    }

    static func shadows(_ client: DaemonClient, volume: String?, set: String?, json: Bool) async throws {
        var filter: [(String, Value)] = []
        if let volume { filter.append(("volume", .string(volume))) }
        if let set { filter.append(("set", .objectPath(try Output.path(set, kind: "sets")))) }
        let paths = try await client.coordinator("Query", [.vardict(filter)]).first?.arrayElements?.compactMap(\.objectPath) ?? []
        var shadows: [[String: Value]] = []
        for path in paths { shadows.append(try await client.properties(path, "Snapshot")) }
        let fields = ["Id", "Set", "OriginalVolume", "Provider", "State", "Device", "ExposedPath", "Attributes", "CreationTime"]
        if json {
            print(Output.json(["shadows": shadows.map { record($0, fields) }]))
        } else {
            print(Output.table(["SHADOW COPY ID", "VOLUME", "PROVIDER", "STATE", "CREATED", "EXPOSED AT"],
                               shadows.map { p in
                                   [Output.text(p["Id"]), Output.text(p["OriginalVolume"]), Output.text(p["Provider"]),
                                    Output.text(p["State"]), Output.time(p["CreationTime"]), Output.text(p["ExposedPath"])]
                               },
                               empty: "No shadow copies."))
        }
    }

    static func storage(_ client: DaemonClient, json: Bool) async throws {
        let areas = try await client.objects(with: "ShadowStorage")
        let fields = ["ForVolume", "Location", "Used", "Allocated", "MaxSize", "Policy"]
        if json {
            print(Output.json(["shadowstorage": areas.map { _, p in record(p, fields) }]))
        } else {
            print(Output.table(["FOR VOLUME", "LOCATION", "USED", "ALLOCATED", "MAX SIZE", "POLICY"],
                               areas.map { _, p in fields.map { Output.text(p[$0]) } },
                               empty: "No shadow storage (the btrfs provider keeps its copies on the volume itself)."))
        }
    }

    /// The named properties as a JSON object with lowerCamelCase keys.
    static func record(_ properties: [String: Value], _ fields: [String]) -> [String: Any] {
        var out: [String: Any] = [:]
        for field in fields {
            let key = field.prefix(1).lowercased() + field.dropFirst()
            out[key] = properties[field].map(Output.plain) ?? Output.null
        }
        return out
    }
}

/// `shadowcopy status`: each writer's state and last error, as `vssadmin list writers` shows them.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the coordinator, the set being made, and every writer's state and last error.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.run { client in
            let coordinator = try await client.properties(DaemonClient.root, "Coordinator")
            let writers = try await client.objects(with: "RegisteredWriter")
            if global.json {
                print(Output.json([
                    "coordinator": List.record(coordinator, ["Version", "ActiveSet", "FreezeTimeoutMs", "HoldWritesTimeoutMs",
                                                             "MaxVolumesPerSet", "MaxSnapshotsPerVolume"]),
                    "writers": writers.map { _, p in List.record(p, ["Name", "Id", "Level", "State", "LastError"]) },
                ]))
                return
            }
            let active = Output.text(coordinator["ActiveSet"])
            print("shadowcopyd \(Output.text(coordinator["Version"])); set being made: \(active == "/" ? "none" : Output.id(ObjectPath(active)!))")
            for (_, writer) in writers {
                print("""

                    Writer name: '\(Output.text(writer["Name"]))'
                       Writer Id: \(Output.text(writer["Id"]))
                       Level: \(Output.text(writer["Level"]))
                       State: \(Output.text(writer["State"]))
                       Last error: \(Output.text(writer["LastError"]).isEmpty ? "No error" : Output.text(writer["LastError"]))
                    """)
            }
            if writers.isEmpty { print("No writers are registered.") }
        }
    }
}

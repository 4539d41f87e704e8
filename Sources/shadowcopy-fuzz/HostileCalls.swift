import DBus

/// A deterministic generator, so a failure can be replayed from its seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Hostile calls to shadowcopyd: wrong types, unknown options, huge and deeply nested values,
/// and well-formed calls whose strings attack what they name (path traversal, device-mapper
/// table lines, control characters, symlinks). None is a valid request.
struct HostileCalls {
    /// Objects of the run: a set in state `created` that the fuzzing user does not own or that
    /// takes no valid volume, a made snapshot, and paths that lead through symlinks.
    let set: ObjectPath
    let snapshot: ObjectPath
    let symlinks: [String]

    static let hostileStrings = [
        "../../etc/shadow", "/org/shadowcopy/ShadowCopy1/../../x", "0 100 linear /dev/sda 0\n0 1 zero",
        "shadowcopy-x\nsnapshot /dev/sda", "'; DROP TABLE sets; --", "%s%s%s%n", "\u{202E}evil", "/dev/mapper/../sda",
        String(repeating: "A", count: 4096), "", " ", "\u{7}\u{1b}[2J", "/proc/self/root/etc", "/dev/mapper/x 0 1 linear",
        "/run/shadowcopy/../../etc", "/etc/passwd", "/dev/null", "/nonexistent/volume", "relative/volume",
        "/tmp/" + String(repeating: "../", count: 200) + "etc",
    ]

    func hostileVolume(_ rng: inout SplitMix) -> String {
        Bool.random(using: &rng) || symlinks.isEmpty
            ? Self.hostileStrings.randomElement(using: &rng)! : symlinks.randomElement(using: &rng)!
    }

    static func randomValue(_ rng: inout SplitMix, depth: Int = 0) -> Value {
        switch Int.random(in: 0..<(depth > 3 ? 8 : 12), using: &rng) {
        case 0: return .string(hostileStrings.randomElement(using: &rng)!)
        case 1: return .uint32(UInt32.random(in: 0...UInt32.max, using: &rng))
        case 2: return .int64(Int64.random(in: .min ... .max, using: &rng))
        case 3: return .objectPath(["/", "/org/shadowcopy/ShadowCopy1/writers/00", "/a/b/c"].randomElement(using: &rng)!)
        case 4: return .bool(Bool.random(using: &rng))
        case 5: return .double([Double.nan, .infinity, -0.0, 1e308].randomElement(using: &rng)!)
        case 6: return .byte(UInt8.random(in: 0...255, using: &rng))
        case 7: return .signature("a{sv}")
        case 8: return .variant(randomValue(&rng, depth: depth + 1))
        case 9: return .strings((0..<Int.random(in: 0..<5, using: &rng)).map { _ in hostileStrings.randomElement(using: &rng)! })
        case 10: return .structure([randomValue(&rng, depth: depth + 1), randomValue(&rng, depth: depth + 1)])
        default: return hostileOptions(&rng, depth: depth + 1)
        }
    }

    /// An a{sv} that always holds at least one unknown key or a wrongly typed known one.
    static func hostileOptions(_ rng: inout SplitMix, depth: Int = 0) -> Value {
        var entries: [(String, Value)] = [(["name", "level", "context", "persistent", "volume", "provider"]
            .randomElement(using: &rng)!, .uint64(1))]
        for _ in 0..<Int.random(in: 0..<4, using: &rng) {
            entries.append((hostileStrings.randomElement(using: &rng)!, randomValue(&rng, depth: depth + 1)))
        }
        entries.shuffle(using: &rng)
        return .vardict(entries)
    }

    static func nested(_ depth: Int) -> Value {
        var value = Value.string("deep")
        for level in 0..<depth { value = level % 2 == 0 ? .variant(value) : .structure([value]) }
        return value
    }

    static let coordinator: InterfaceName = "org.shadowcopy.ShadowCopy1.Coordinator"
    static let root: ObjectPath = "/org/shadowcopy/ShadowCopy1"

    /// Call number `index`: a well-formed call with hostile content every third time, a
    /// malformed one otherwise.
    func call(_ rng: inout SplitMix, index: Int) -> Message {
        index % 3 == 0 ? wellFormed(&rng, index: index) : malformed(&rng, index: index)
    }

    private func wellFormed(_ rng: inout SplitMix, index: Int) -> Message {
        let volume = Value.string(hostileVolume(&rng))
        let empty = Value.vardict([])
        let calls: [(ObjectPath, InterfaceName, MemberName, [Value])] = [
            (set, "org.shadowcopy.ShadowCopy1.SnapshotSet", "AddVolume", [volume, empty]),
            (Self.root, Self.coordinator, "IsVolumeSupported", [volume, empty]),
            (Self.root, Self.coordinator, "Query", [.vardict([("volume", volume)])]),
            (Self.root, Self.coordinator, "DeleteSnapshots", [.vardict([("volume", volume)])]),
            (Self.root, Self.coordinator, "StartSnapshotSet", [Self.hostileOptions(&rng)]),
            (Self.root, Self.coordinator, "RegisterProvider", [.objectPath("/p"), .vardict([("name", volume)])]),
            (Self.root, Self.coordinator, "RegisterWriter", [.objectPath("/w"), Self.hostileOptions(&rng)]),
            (snapshot, "org.shadowcopy.ShadowCopy1.Snapshot", "Expose", [Self.hostileOptions(&rng)]),
            (set, "org.shadowcopy.ShadowCopy1.SnapshotSet", "SetBackupState", [Self.hostileOptions(&rng)]),
            (set, "org.shadowcopy.ShadowCopy1.SnapshotSet", "AddComponent",
             [.objectPath("/org/shadowcopy/ShadowCopy1/writers/00"), volume, volume, empty]),
        ]
        let (path, interface, member, args) = calls.randomElement(using: &rng)!
        let message = Message.methodCall(destination: "org.shadowcopy.ShadowCopy1", path: path, interface: interface, member: member)
        try! message.append(args)
        return message
    }

    private func malformed(_ rng: inout SplitMix, index: Int) -> Message {
        let members: [MemberName] = ["RegisterWriter", "UnregisterWriter", "StartSnapshotSet", "Query", "AddShadowStorage",
                                     "IsVolumeSupported", "DeleteSnapshots", "AddVolume", "Expose", "DoSnapshotSet", "Abort",
                                     "Delete", "Wait", "Nope", "Get", "Set", "GetAll", "Introspect", "GetManagedObjects", "Ping"]
        let interfaces: [InterfaceName?] = [
            Self.coordinator, "org.shadowcopy.ShadowCopy1.SnapshotSet", "org.shadowcopy.ShadowCopy1.Snapshot",
            "org.freedesktop.DBus.Properties", "org.example.Unknown", "org.freedesktop.DBus.Introspectable",
            "org.freedesktop.DBus.ObjectManager", "org.freedesktop.DBus.Peer", nil,
        ]
        let paths: [ObjectPath] = [Self.root, "/org/shadowcopy/ShadowCopy1/writers/0123", set, snapshot,
                                   "/org/shadowcopy/ShadowCopy1/sets/x", "/org/shadowcopy/ShadowCopy1/jobs/99999", "/elsewhere"]
        let member = members.randomElement(using: &rng)!
        let message = Message.methodCall(destination: "org.shadowcopy.ShadowCopy1", path: paths.randomElement(using: &rng)!,
                                         interface: interfaces.randomElement(using: &rng)!, member: member)
        var args: [Value]
        switch index % 10 {
        case 1 where index % 500 == 1:
            args = [.string(String(repeating: "x", count: 1 << 20)), Self.hostileOptions(&rng)]   // 1 MiB
        case 1:
            args = [Self.nested(Int.random(in: 20...60, using: &rng))]
        case 2:
            args = [.objectPath("/w"), Self.hostileOptions(&rng)]
        case 4:
            args = [.string("org.shadowcopy.ShadowCopy1.Coordinator"), .string(Self.hostileStrings.randomElement(using: &rng)!)]
        default:
            args = (0..<Int.random(in: 1..<5, using: &rng)).map { _ in Self.randomValue(&rng) }
        }
        // A call that would be valid by chance (Ping(), Introspect(), GetManagedObjects() on the
        // right path) gets a surplus argument so it never is.
        args.append(.uint32(0xDEAD))
        try! message.append(args)
        return message
    }
}

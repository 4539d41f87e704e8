#if canImport(Glibc)
import Glibc
#endif
import DBus
import Testing

@Suite("Values and message bodies")
struct ValueTests {
    static func roundTrip(_ values: [Value]) throws -> [Value] {
        let message = Message.methodCall(destination: "org.example.X", path: "/x", interface: "org.example.X", member: "M")
        try message.append(values)
        return try message.arguments()
    }

    @Test func everyTypeRoundTrips() throws {
        let values: [Value] = [
            .byte(255), .bool(true), .bool(false), .int16(-2), .uint16(65535), .int32(.min), .uint32(.max),
            .int64(.min), .uint64(.max), .double(3.25), .string("héllo ✓"), .string(""),
            .objectPath("/org/x"), .signature("a{sv}"),
            .array(element: "s", []), .array(element: "a{sv}", [.vardict([])]),
            .strings(["a", "b"]), .objectPaths(["/a", "/b"]),
            .vardict([("name", .string("w")), ("n", .uint32(7)), ("nested", .vardict([("x", .bool(true))]))]),
            .dictionary(key: "o", value: "a{sa{sv}}", [.init(.objectPath("/o"), .dictionary(key: "s", value: "a{sv}", []))]),
            .structure([.string("s"), .int32(1), .variant(.variant(.byte(1)))]),
            .array(element: "(ossa{sv})", [.structure([.objectPath("/w"), .string("stable"), .string(""), .vardict([])])]),
        ]
        let decoded = try Self.roundTrip(values)
        #expect(decoded == values)
        #expect(decoded.map(\.signature.rawValue).joined() == values.map(\.signature.rawValue).joined())
    }

    @Test func emptyArraysKeepTheirType() throws {
        let decoded = try Self.roundTrip([.array(element: "(ii)", []), .dictionary(key: "s", value: "v", [])])
        #expect(decoded[0].signature == "a(ii)")
        #expect(decoded[1].signature == "a{sv}")
    }

    @Test func fileDescriptorsAreDuplicatedAndOwned() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let writeEnd = UnixFD(owning: fds[1])
        defer { close(fds[0]) }
        let decoded = try Self.roundTrip([.unixFD(writeEnd)])
        let received = try #require(decoded.first?.unixFD)
        #expect(received.rawValue != writeEnd.rawValue)
        // The received copy writes into the same pipe.
        var byte: UInt8 = 42
        #expect(write(received.rawValue, &byte, 1) == 1)
        var got: UInt8 = 0
        #expect(read(fds[0], &got, 1) == 1)
        #expect(got == 42)
        let raw = received.take()
        #expect(received.rawValue == -1)
        #expect(close(raw) == 0)
    }

    @Test func invalidValuesAreRefusedBeforeLibdbus() {
        let bad: [Value] = [
            .string("nul\0inside"),
            .array(element: "s", [.int32(1)]),
            .array(element: "ss", []),
            .dictionary(key: "v", value: "s", []),
            .dictionary(key: "s", value: "v", [.init(.string("k"), .string("not a variant"))]),
            .structure([]),
            Self.nestedArrays(33),
            Self.nestedVariants(70),
        ]
        for value in bad {
            #expect(throws: DBusError.self, "\(value.signature)") { _ = try Self.roundTrip([value]) }
        }
    }

    @Test func refusedValuesLeaveTheMessageEmpty() throws {
        let message = Message.methodCall(destination: nil, path: "/x", interface: nil, member: "M")
        #expect(throws: DBusError.self) { try message.append([.string("ok"), .string("bad\0")]) }
        #expect(message.signature == "")
    }

    @Test func deepButLegalNestingWorks() throws {
        let decoded = try Self.roundTrip([Self.nestedArrays(32)])
        #expect(decoded.first?.signature.rawValue == String(repeating: "a", count: 32) + "i")
    }

    @Test func vardictAccessor() {
        let dict = Value.vardict([("a", .string("x")), ("b", .uint32(2))])
        #expect(dict.vardict?["a"] == .string("x"))
        #expect(dict.vardict?["b"]?.uint32 == 2)
        let repeated = Value.vardict([("a", .string("x")), ("a", .string("y"))])
        #expect(repeated.vardict == nil)
        #expect(Value.strings(["x"]).vardict == nil)
    }

    static func nestedArrays(_ depth: Int) -> Value {
        var value = Value.int32(1)
        for _ in 0..<depth { value = .array(element: value.signature, [value]) }
        return value
    }

    static func nestedVariants(_ depth: Int) -> Value {
        var value = Value.int32(1)
        for _ in 0..<depth { value = .variant(value) }
        return value
    }
}

/// A random (version 4) UUID identifying a set, snapshot, writer or storage area.
///
/// Its canonical form (`Id` properties) is the usual 8-4-4-4-12 string; object paths use the
/// 32 lowercase hex digits (``hex``).
public struct Identifier: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// A fresh random identifier from the kernel's CSPRNG.
    public init() {
        // The standard library's generator reads the kernel's getrandom() on Linux.
        var generator = SystemRandomNumberGenerator()
        var buffer = (0..<2).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
        buffer[6] = (buffer[6] & 0x0F) | 0x40
        buffer[8] = (buffer[8] & 0x3F) | 0x80
        bytes = buffer
    }

    /// Parses the canonical form or 32 hex digits; nil for anything else.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        let hexDigits: [UInt8]
        if utf8.count == 36 {
            for i in [8, 13, 18, 23] where utf8[i] != UInt8(ascii: "-") { return nil }
            hexDigits = utf8.enumerated().filter { ![8, 13, 18, 23].contains($0.offset) }.map(\.element)
        } else if utf8.count == 32 {
            hexDigits = utf8
        } else {
            return nil
        }
        var out: [UInt8] = []
        out.reserveCapacity(16)
        var i = 0
        while i < 32 {
            guard let hi = Identifier.nibble(hexDigits[i]), let lo = Identifier.nibble(hexDigits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        bytes = out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// 32 lowercase hex digits, as used in object paths.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canonical 8-4-4-4-12 form.
    public var description: String {
        let h = Array(hex)
        return String(h[0..<8]) + "-" + String(h[8..<12]) + "-" + String(h[12..<16]) + "-"
            + String(h[16..<20]) + "-" + String(h[20..<32])
    }
}

#if canImport(Glibc)
import Glibc
#endif
import DBus

/// How the CLI prints: aligned tables for people, one JSON document for programs (`--json`).
enum Output {
    /// Columns padded to their widest cell; an empty table says so.
    static func table(_ columns: [String], _ rows: [[String]], empty: String) -> String {
        guard !rows.isEmpty else { return empty }
        var widths = columns.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[i] - cell.count))
            }.joined(separator: "  ")
        }
        return ([line(columns)] + rows.map(line)).joined(separator: "\n")
    }

    /// JSON's null, in the dictionaries and arrays ``json(_:)`` prints.
    enum Null { case null }
    static let null = Null.null

    /// A JSON document with sorted keys, as the documented shapes promise (docs/cli.md), from
    /// strings, numbers, booleans, ``null``, arrays and string-keyed dictionaries.
    ///
    /// Written here rather than with Foundation's JSONSerialization: Foundation (and the ICU
    /// data it loads) would double the CLI's memory and its start time, for this alone.
    static func json(_ object: Any) -> String {
        var out = ""
        write(object, to: &out, indent: "")
        return out
    }

    private static func write(_ object: Any, to out: inout String, indent: String) {
        let inner = indent + "  "
        switch object {
        case let text as String: quote(text, to: &out)
        case let flag as Bool: out += flag ? "true" : "false"
        case let number as Int: out += String(number)
        case let number as Int64: out += String(number)
        case let number as UInt64: out += String(number)
        case let number as UInt32: out += String(number)
        case let number as Double: out += number.isFinite ? String(number) : "null"
        case let items as [Any]:
            guard !items.isEmpty else { out += "[]"; return }
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += inner
                write(item, to: &out, indent: inner)
                out += i == items.count - 1 ? "\n" : ",\n"
            }
            out += indent + "]"
        case let fields as [String: Any]:
            guard !fields.isEmpty else { out += "{}"; return }
            out += "{\n"
            let keys = fields.keys.sorted()
            for (i, key) in keys.enumerated() {
                out += inner
                quote(key, to: &out)
                out += " : "
                write(fields[key]!, to: &out, indent: inner)
                out += i == keys.count - 1 ? "\n" : ",\n"
            }
            out += indent + "}"
        default: out += "null"
        }
    }

    private static func quote(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Writes `text` to standard error as it is (no newline added).
    static func stderr(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            bytes = bytes.dropFirst(n)
        }
    }

    /// A D-Bus value as plain JSON (variants unwrapped, object paths as strings).
    static func plain(_ value: Value) -> Any {
        switch value {
        case .byte(let v): return Int(v)
        case .bool(let v): return v
        case .int16(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int64(let v): return v
        case .uint64(let v): return v
        case .double(let v): return v
        case .string(let v): return v
        case .objectPath(let v): return v.rawValue
        case .signature(let v): return v.rawValue
        case .unixFD: return null
        case .array(_, let items): return items.map(plain)
        case .dictionary(_, _, let entries):
            var out: [String: Any] = [:]
            for entry in entries { out[entry.key.string ?? "\(plain(entry.key))"] = plain(entry.value) }
            return out
        case .structure(let members): return members.map(plain)
        case .variant(let inner): return plain(inner)
        }
    }

    static func text(_ value: Value?) -> String {
        guard let value else { return "" }
        switch value {
        case .string(let v): return v
        case .objectPath(let v): return v.rawValue
        case .bool(let v): return v ? "yes" : "no"
        case .array(_, let items): return items.map { text($0) }.joined(separator: ",")
        case .variant(let inner): return text(inner)
        default: return "\(plain(value))"
        }
    }

    /// Seconds since the epoch as an ISO 8601 time.
    static func time(_ value: Value?) -> String {
        guard let seconds = value?.uint64, seconds > 0 else { return "" }
        var t = time_t(seconds), parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return "" }
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The id at the end of an object path (`snapshots/<hex>`), in canonical UUID form.
    static func id(_ path: ObjectPath) -> String {
        let hex = Array(path.rawValue.split(separator: "/").last ?? "")
        guard hex.count == 32 else { return String(hex) }
        return [String(hex[0..<8]), String(hex[8..<12]), String(hex[12..<16]), String(hex[16..<20]), String(hex[20..<32])]
            .joined(separator: "-")
    }

    /// The object path of a snapshot or set named by its id (UUID) or its path.
    static func path(_ text: String, kind: String) throws -> ObjectPath {
        if text.hasPrefix("/"), let path = ObjectPath(text) { return path }
        let hex = text.lowercased().filter { $0 != "-" }
        guard hex.count == 32, hex.allSatisfy(\.isHexDigit), let path = ObjectPath("/org/shadowcopy/ShadowCopy1/\(kind)/\(hex)") else {
            throw CLIError.usage("'\(text)' is not a \(kind == "sets" ? "set" : "shadow copy") id (a UUID) or object path")
        }
        return path
    }
}

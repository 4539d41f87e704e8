import DBus
import Foundation

/// How the CLI prints: aligned tables for people, one JSON document for programs (`--json`).
enum Output {
    /// Columns padded to their widest cell; an empty table says so.
    static func table(_ columns: [String], _ rows: [[String]], empty: String) -> String {
        guard !rows.isEmpty else { return empty }
        var widths = columns.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(columns)] + rows.map(line)).joined(separator: "\n")
    }

    /// A JSON document with sorted keys, as the documented shapes promise (docs/cli.md).
    static func json(_ object: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
            ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
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
        case .unixFD: return NSNull()
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
        return Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
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

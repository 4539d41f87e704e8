import CDBus

/// Writes validated ``Value``s through libdbus's append iterators.
///
/// Callers validate first (``Value/validate()``): with a valid value libdbus can only fail for
/// lack of memory, which is fatal in libdbus itself as well.
enum MessageEncoder {
    static func append(_ value: Value, to iter: inout DBusMessageIter) {
        switch value {
        case .byte(var v): basic(&iter, TypeCode.byte, &v)
        case .bool(let b):
            var v: dbus_bool_t = b ? 1 : 0
            basic(&iter, TypeCode.boolean, &v)
        case .int16(var v): basic(&iter, TypeCode.int16, &v)
        case .uint16(var v): basic(&iter, TypeCode.uint16, &v)
        case .int32(var v): basic(&iter, TypeCode.int32, &v)
        case .uint32(var v): basic(&iter, TypeCode.uint32, &v)
        case .int64(var v): basic(&iter, TypeCode.int64, &v)
        case .uint64(var v): basic(&iter, TypeCode.uint64, &v)
        case .double(var v): basic(&iter, TypeCode.double, &v)
        case .string(let s): string(&iter, TypeCode.string, s)
        case .objectPath(let p): string(&iter, TypeCode.objectPath, p.rawValue)
        case .signature(let g): string(&iter, TypeCode.signature, g.rawValue)
        case .unixFD(let fd):
            // libdbus duplicates the descriptor; ours stays open and owned by `fd`.
            var v = fd.rawValue
            basic(&iter, TypeCode.unixFD, &v)
        case .array(let element, let items):
            container(&iter, TypeCode.array, element.rawValue) { sub in
                for item in items { append(item, to: &sub) }
            }
        case .dictionary(let key, let valueType, let entries):
            container(&iter, TypeCode.array, "{" + key.rawValue + valueType.rawValue + "}") { sub in
                for entry in entries {
                    container(&sub, TypeCode.dictEntryIter, nil) { pair in
                        append(entry.key, to: &pair)
                        append(entry.value, to: &pair)
                    }
                }
            }
        case .structure(let members):
            container(&iter, TypeCode.structIter, nil) { sub in
                for member in members { append(member, to: &sub) }
            }
        case .variant(let inner):
            container(&iter, TypeCode.variant, inner.signatureString) { sub in append(inner, to: &sub) }
        }
    }

    private static func basic<T>(_ iter: inout DBusMessageIter, _ code: UInt8, _ value: inout T) {
        guard withUnsafePointer(to: &value, { dbus_message_iter_append_basic(&iter, Int32(code), $0) }) != 0 else {
            fatalError("libdbus is out of memory")
        }
    }

    private static func string(_ iter: inout DBusMessageIter, _ code: UInt8, _ text: String) {
        text.withCString { cString in
            var pointer: UnsafePointer<CChar>? = cString
            basic(&iter, code, &pointer)
        }
    }

    private static func container(
        _ iter: inout DBusMessageIter, _ code: UInt8, _ contained: String?, _ body: (inout DBusMessageIter) -> Void
    ) {
        var sub = DBusMessageIter()
        let opened: dbus_bool_t
        if let contained {
            opened = contained.withCString { dbus_message_iter_open_container(&iter, Int32(code), $0, &sub) }
        } else {
            opened = dbus_message_iter_open_container(&iter, Int32(code), nil, &sub)
        }
        guard opened != 0 else { fatalError("libdbus is out of memory") }
        body(&sub)
        guard dbus_message_iter_close_container(&iter, &sub) != 0 else { fatalError("libdbus is out of memory") }
    }
}

/// Reads a message body into ``Value``s through libdbus's read iterators.
enum MessageDecoder {
    static func readAll(_ iter: inout DBusMessageIter) throws(DBusError) -> [Value] {
        var values: [Value] = []
        while dbus_message_iter_get_arg_type(&iter) != 0 {
            values.append(try read(&iter))
            dbus_message_iter_next(&iter)
        }
        return values
    }

    static func read(_ iter: inout DBusMessageIter) throws(DBusError) -> Value {
        let code = UInt8(truncatingIfNeeded: dbus_message_iter_get_arg_type(&iter))
        switch code {
        case TypeCode.byte: return .byte(basic(&iter, UInt8(0)))
        case TypeCode.boolean: return .bool(basic(&iter, dbus_bool_t(0)) != 0)
        case TypeCode.int16: return .int16(basic(&iter, Int16(0)))
        case TypeCode.uint16: return .uint16(basic(&iter, UInt16(0)))
        case TypeCode.int32: return .int32(basic(&iter, Int32(0)))
        case TypeCode.uint32: return .uint32(basic(&iter, UInt32(0)))
        case TypeCode.int64: return .int64(basic(&iter, Int64(0)))
        case TypeCode.uint64: return .uint64(basic(&iter, UInt64(0)))
        case TypeCode.double: return .double(basic(&iter, Double(0)))
        case TypeCode.string: return .string(string(&iter))
        case TypeCode.objectPath: return .objectPath(ObjectPath(unchecked: string(&iter)))
        case TypeCode.signature: return .signature(Signature(unchecked: string(&iter)))
        case TypeCode.unixFD:
            // libdbus hands out a duplicate; it is ours to close.
            let fd = basic(&iter, Int32(-1))
            guard fd >= 0 else { throw DBusError(.failed, "message carried an unreadable file descriptor") }
            return .unixFD(UnixFD(owning: fd))
        case TypeCode.variant:
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            return .variant(try read(&sub))
        case TypeCode.structIter:
            var sub = DBusMessageIter()
            dbus_message_iter_recurse(&iter, &sub)
            return .structure(try readAll(&sub))
        case TypeCode.array:
            return try array(&iter)
        default:
            throw DBusError(.invalidSignature, "unexpected type code \(code) in message")
        }
    }

    private static func array(_ iter: inout DBusMessageIter) throws(DBusError) -> Value {
        let full = signature(of: &iter)
        let element = String(full.dropFirst())
        var sub = DBusMessageIter()
        dbus_message_iter_recurse(&iter, &sub)
        if element.hasPrefix("{") {
            let inner = Array(element.utf8.dropFirst().dropLast())
            let key = Signature(unchecked: String(decoding: inner.prefix(1), as: UTF8.self))
            let value = Signature(unchecked: String(decoding: inner.dropFirst(), as: UTF8.self))
            var entries: [Value.DictEntry] = []
            while dbus_message_iter_get_arg_type(&sub) != 0 {
                var pair = DBusMessageIter()
                dbus_message_iter_recurse(&sub, &pair)
                let k = try read(&pair)
                dbus_message_iter_next(&pair)
                let v = try read(&pair)
                entries.append(Value.DictEntry(k, v))
                dbus_message_iter_next(&sub)
            }
            return .dictionary(key: key, value: value, entries)
        }
        return .array(element: Signature(unchecked: element), try readAll(&sub))
    }

    private static func basic<T>(_ iter: inout DBusMessageIter, _ initial: T) -> T {
        var value = initial
        withUnsafeMutablePointer(to: &value) { dbus_message_iter_get_basic(&iter, $0) }
        return value
    }

    private static func string(_ iter: inout DBusMessageIter) -> String {
        let pointer = basic(&iter, UnsafePointer<CChar>?.none)
        return pointer.map { String(cString: $0) } ?? ""
    }

    private static func signature(of iter: inout DBusMessageIter) -> String {
        guard let raw = dbus_message_iter_get_signature(&iter) else { fatalError("libdbus is out of memory") }
        defer { dbus_free(raw) }
        return String(cString: raw)
    }
}

import CDBus

/// A D-Bus message: a method call, a reply, an error or a signal.
///
/// Owns one reference to the libdbus message. A message is built (its arguments appended) by one
/// owner and is immutable once it has been sent or received, which is what makes it `Sendable`.
public final class Message: @unchecked Sendable {
    let raw: OpaquePointer

    /// The kind of message.
    public enum Kind: Sendable, Equatable {
        case methodCall, methodReturn, error, signal, invalid
    }

    init(adopting raw: OpaquePointer) { self.raw = raw }

    init(retaining raw: OpaquePointer) {
        dbus_message_ref(raw)
        self.raw = raw
    }

    deinit { dbus_message_unref(raw) }

    /// A method call to `member` on `path` at `destination`.
    public static func methodCall(
        destination: BusName?, path: ObjectPath, interface: InterfaceName?, member: MemberName
    ) -> Message {
        guard let raw = dbus_message_new_method_call(
            destination?.rawValue, path.rawValue, interface?.rawValue, member.rawValue)
        else { fatalError("libdbus is out of memory") }
        return Message(adopting: raw)
    }

    /// A signal `interface.member` emitted from `path`.
    public static func signal(path: ObjectPath, interface: InterfaceName, member: MemberName) -> Message {
        guard let raw = dbus_message_new_signal(path.rawValue, interface.rawValue, member.rawValue) else {
            fatalError("libdbus is out of memory")
        }
        return Message(adopting: raw)
    }

    /// The successful reply to `call`.
    public static func methodReturn(replyingTo call: Message) -> Message {
        guard let raw = dbus_message_new_method_return(call.raw) else { fatalError("libdbus is out of memory") }
        return Message(adopting: raw)
    }

    /// The error reply to `call`.
    public static func error(replyingTo call: Message, _ error: DBusError) -> Message {
        // libdbus requires valid UTF-8 without NUL; a Swift String is UTF-8, NUL is replaced.
        let text = String(error.message.map { $0 == "\0" ? "?" : $0 })
        guard let raw = dbus_message_new_error(call.raw, error.name.rawValue, text) else {
            fatalError("libdbus is out of memory")
        }
        return Message(adopting: raw)
    }

    // MARK: Header fields

    /// The kind of message.
    public var kind: Kind {
        switch dbus_message_get_type(raw) {
        case DBUS_MESSAGE_TYPE_METHOD_CALL: .methodCall
        case DBUS_MESSAGE_TYPE_METHOD_RETURN: .methodReturn
        case DBUS_MESSAGE_TYPE_ERROR: .error
        case DBUS_MESSAGE_TYPE_SIGNAL: .signal
        default: .invalid
        }
    }

    // libdbus validates every header field of a message it receives or builds, so the names
    // below need no second check; a per-call check was a measurable share of a round trip.
    /// The object path (calls and signals).
    public var path: ObjectPath? { dbus_message_get_path(raw).map { ObjectPath(unchecked: String(cString: $0)) } }
    /// The interface (calls, optional; signals).
    public var interface: InterfaceName? { dbus_message_get_interface(raw).map { InterfaceName(unchecked: String(cString: $0)) } }
    /// The member name (calls and signals).
    public var member: MemberName? { dbus_message_get_member(raw).map { MemberName(unchecked: String(cString: $0)) } }
    /// The sender's unique name, set by the bus.
    public var sender: BusName? { dbus_message_get_sender(raw).map { BusName(unchecked: String(cString: $0)) } }
    /// The destination bus name.
    public var destination: BusName? { dbus_message_get_destination(raw).map { BusName(unchecked: String(cString: $0)) } }
    /// The error name of an error reply.
    public var errorName: ErrorName? { dbus_message_get_error_name(raw).map { ErrorName(unchecked: String(cString: $0)) } }
    /// The signature of the body.
    public var signature: Signature {
        dbus_message_get_signature(raw).map { Signature(unchecked: String(cString: $0)) } ?? .empty
    }
    /// The serial the connection gave the message when it was sent.
    public var serial: UInt32 { dbus_message_get_serial(raw) }
    /// For replies, the serial of the call they answer.
    public var replySerial: UInt32 { dbus_message_get_reply_serial(raw) }

    /// Whether the caller said it wants no reply.
    public var noReplyExpected: Bool {
        get { dbus_message_get_no_reply(raw) != 0 }
        set { dbus_message_set_no_reply(raw, newValue ? 1 : 0) }
    }

    /// Whether the caller allows interactive authorization (polkit dialogs) for this call.
    public var allowInteractiveAuthorization: Bool {
        get { dbus_message_get_allow_interactive_authorization(raw) != 0 }
        set { dbus_message_set_allow_interactive_authorization(raw, newValue ? 1 : 0) }
    }

    /// For an error reply, the error it carries (name and first string argument).
    public var asError: DBusError? {
        guard kind == .error, let name = errorName else { return nil }
        let text = (try? arguments().first?.string) ?? nil
        return DBusError(name, text ?? "")
    }

    // MARK: Body

    /// Appends `values` to the body after checking every one of them.
    ///
    /// Nothing is appended when any value is invalid, so a refused message is never half-built.
    public func append(_ values: [Value]) throws(DBusError) {
        for value in values {
            do { try value.validate() } catch { throw DBusError(.invalidArgs, error.description) }
        }
        var iter = DBusMessageIter()
        dbus_message_iter_init_append(raw, &iter)
        for value in values { MessageEncoder.append(value, to: &iter) }
    }

    /// Decodes the body.
    ///
    /// Received messages were fully validated by libdbus, so decoding does not fail on them;
    /// unix fds are duplicated and owned by the returned values.
    public func arguments() throws(DBusError) -> [Value] {
        var iter = DBusMessageIter()
        guard dbus_message_iter_init(raw, &iter) != 0 else { return [] }
        return try MessageDecoder.readAll(&iter)
    }
}

extension Message: CustomStringConvertible {
    public var description: String {
        "\(kind) \(path?.rawValue ?? "") \(interface?.rawValue ?? "").\(member?.rawValue ?? errorName?.rawValue ?? "") (\(signature))"
    }
}

/// Why a shadowcopy operation failed.
///
/// The service layer maps each ``Code`` to a named D-Bus error
/// (`org.shadowcopy.ShadowCopy1.Error.<Code>`, or `org.freedesktop.DBus.Error.InvalidArgs`).
public struct ShadowCopyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure; stable, part of the D-Bus contract.
    public enum Code: String, Sendable, CaseIterable {
        /// Bad input: an unknown option, a wrong type, a value out of range.
        case invalidArgs = "InvalidArgs"
        /// The operation exists in the contract but this version does not provide it.
        case notSupported = "NotSupported"
        /// No such object (writer, set, snapshot...).
        case notFound = "NotFound"
        /// The caller may not do this (not the owner, not authorized).
        case notAuthorized = "NotAuthorized"
        /// The object is already there (the same writer registered twice).
        case alreadyExists = "AlreadyExists"
        /// A configured limit would be exceeded.
        case limitExceeded = "LimitExceeded"
        /// Something failed that the caller could not have prevented.
        case failed = "Failed"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func invalidArgs(_ message: String) -> Self { Self(.invalidArgs, message) }
    public static func notSupported(_ message: String) -> Self { Self(.notSupported, message) }
    public static func notFound(_ message: String) -> Self { Self(.notFound, message) }
}

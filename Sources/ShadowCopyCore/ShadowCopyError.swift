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
        /// polkit would authorize the caller after authentication, which did not happen (dismissed,
        /// or no authentication agent).
        case notAuthorizedCanObtain = "NotAuthorizedCanObtain"
        /// polkit needs the user to authenticate, and the caller did not allow interaction
        /// (`org.freedesktop.DBus.Error.InteractiveAuthorizationRequired` on the bus).
        case interactiveAuthorizationRequired = "InteractiveAuthorizationRequired"
        /// The object is already there (the same writer registered twice).
        case alreadyExists = "AlreadyExists"
        /// A configured limit would be exceeded.
        case limitExceeded = "LimitExceeded"
        /// Another set is between StartSnapshotSet and the end of its DoSnapshotSet.
        case snapshotSetInProgress = "SnapshotSetInProgress"
        /// No provider can copy this volume.
        case volumeNotSupported = "VolumeNotSupported"
        /// The call does not fit the set's state (VSS_E_BAD_STATE): out of order, or the set is busy.
        case badState = "BadState"
        /// The job was cancelled by its requester.
        case cancelled = "Cancelled"
        /// A writer or a provider did not answer in time; the set was aborted.
        case timeout = "Timeout"
        /// A writer vetoed, asking for a retry later (VSS_E_WRITERERROR_RETRYABLE).
        case writerRetryable = "WriterRetryable"
        /// A writer vetoed for good (VSS_E_WRITERERROR_NONRETRYABLE).
        case writerNonRetryable = "WriterNonRetryable"
        /// A writer lacked memory or another resource (VSS_E_WRITERERROR_OUTOFRESOURCES).
        case writerOutOfResources = "WriterOutOfResources"
        /// A writer's data would not be consistent in the copy (VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT).
        case writerInconsistentSnapshot = "WriterInconsistentSnapshot"
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
    public static func alreadyExists(_ message: String) -> Self { Self(.alreadyExists, message) }
    public static func badState(_ message: String) -> Self { Self(.badState, message) }
    public static func failed(_ message: String) -> Self { Self(.failed, message) }
}

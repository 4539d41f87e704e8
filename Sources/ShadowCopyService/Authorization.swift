import DBus
import Logging
import ShadowCopyCore
import Synchronization

/// The polkit actions of `polkit/org.shadowcopy.policy`.
enum Action: String, Sendable {
    case create = "org.shadowcopy.create"
    case delete = "org.shadowcopy.delete"
    case expose = "org.shadowcopy.expose"
    case revert = "org.shadowcopy.revert"
    case manageStorage = "org.shadowcopy.manage-storage"
    case registerProvider = "org.shadowcopy.register-provider"
    case registerWriter = "org.shadowcopy.register-writer"
}

/// Asks polkit whether a caller may do an action, the way systemd and udisks do: the subject is
/// the caller's unique bus name, root needs no question, interaction only when the message
/// allows it and the options do not forbid it, and no polkit means root only.
///
/// Every check happens before the operation changes anything.
struct Authorizer: Sendable {
    static let authority: BusName = "org.freedesktop.PolicyKit1"
    static let authorityPath: ObjectPath = "/org/freedesktop/PolicyKit1/Authority"
    static let authorityInterface: InterfaceName = "org.freedesktop.PolicyKit1.Authority"
    /// An interactive check waits for a person typing a password.
    static let interactiveTimeout: Duration = .seconds(600)
    static let timeout: Duration = .seconds(25)

    let connection: Connection
    let logger: Logger

    /// Throws unless the caller of `call` may do `action`; `details` are for polkit rules
    /// (`action.lookup("volume")`).
    func check(_ call: MethodCall, _ action: Action, details: [String: String] = [:], options: Options? = nil)
        async throws(ShadowCopyError)
    {
        let uid: UInt32
        do {
            uid = try await call.callerUID()
        } catch {
            throw ShadowCopyError(.notAuthorized, "cannot tell who the caller is: \(error)")
        }
        if uid == 0 { return }
        let interactive = call.allowsInteraction && !(options?.noUserInteraction ?? false)
        let subject = Value.structure([.string("system-bus-name"), .vardict([("name", .string(call.sender.rawValue))])])
        let entries = details.sorted { $0.key < $1.key }.map { Value.DictEntry(.string($0.key), .string($0.value)) }
        let reply: [Value]
        do {
            reply = try await connection.call(
                Authorizer.authority, Authorizer.authorityPath, Authorizer.authorityInterface, "CheckAuthorization",
                [subject, .string(action.rawValue), .dictionary(key: "s", value: "s", entries), .uint32(interactive ? 1 : 0),
                 .string("")],
                timeout: interactive ? Authorizer.interactiveTimeout : Authorizer.timeout)
        } catch {
            // No polkit (not installed, not running, not answering): only root, as udisks does.
            logger.warning("polkit cannot be reached; only root is allowed", metadata: [
                "action": "\(action.rawValue)", "caller": "\(call.sender)", "uid": "\(uid)", "error": "\(error)",
            ])
            throw ShadowCopyError(.notAuthorized, "\(action.rawValue): polkit cannot be reached, so only root is allowed")
        }
        guard let result = reply.first?.structMembers, result.count == 3,
            let authorized = result[0].bool, let challenge = result[1].bool
        else {
            throw ShadowCopyError(.notAuthorized, "\(action.rawValue): polkit gave an answer shadowcopyd cannot read")
        }
        if authorized { return }
        logger.info("not authorized", metadata: [
            "action": "\(action.rawValue)", "caller": "\(call.sender)", "uid": "\(uid)", "challenge": "\(challenge)",
        ])
        if challenge, !interactive {
            throw ShadowCopyError(.interactiveAuthorizationRequired,
                                  "\(action.rawValue) needs authentication; allow interactive authorization to be asked")
        }
        if challenge {
            throw ShadowCopyError(.notAuthorizedCanObtain, "\(action.rawValue): authentication did not succeed")
        }
        throw ShadowCopyError(.notAuthorized, "\(action.rawValue) is not allowed for uid \(uid)")
    }
}

import DBus
import ShadowCopyCore

/// Reaches writers over D-Bus: the `Writer` interface at the path each registered, on its
/// owner's connection.
struct DBusWriterTransport: WriterTransport {
    let connection: Connection
    static let interface: InterfaceName = "org.shadowcopy.ShadowCopy1.Writer"

    func identify(_ writer: WriterRecord, timeoutMs: UInt32) async -> Result<WriterMetadata, ShadowCopyError> {
        switch await call(writer, "Identify", [], timeoutMs: timeoutMs) {
        case .failure(let error):
            // A writer that does not implement Identify has no components to declare.
            if error.code == .notSupported { return .success(WriterMetadata(components: [], raw: Value.vardict([]))) }
            return .failure(error)
        case .success(let values):
            guard values.count == 1, let dict = values[0].vardict else {
                return .failure(.init(.writerNonRetryable, "Identify must return a{sv}"))
            }
            do {
                return .success(WriterMetadata(components: try DBusWriterTransport.components(dict), raw: values[0]))
            } catch {
                return .failure(error)
            }
        }
    }

    func send(_ event: WriterEvent, set: Identifier, to writer: WriterRecord, timeoutMs: UInt32) async -> WriterAnswer {
        let setPath = Value.objectPath(ShadowCopyBus.setPath(set))
        let arguments: [Value]
        switch event {
        case .prepareForBackup(let details), .backupComplete(let details):
            arguments = [setPath, DBusWriterTransport.options(details, for: writer.id)]
        case .preRestore, .postRestore:
            arguments = [setPath, .vardict([])]
        case .prepareForSnapshot(let volumes):
            arguments = [setPath, .strings(volumes)]
        case .postSnapshot(let devices):
            arguments = [setPath, .dictionary(key: "s", value: "s", devices.sorted { $0.key < $1.key }
                .map { Value.DictEntry(.string($0.key), .string($0.value)) })]
        case .freeze, .thaw, .abort, .backupShutdown:
            arguments = [setPath]
        }
        switch await call(writer, MemberName(event.method)!, arguments, timeoutMs: timeoutMs) {
        case .success: return .ok
        // A writer may leave out events it has nothing to do for (VSS writers' default handlers).
        case .failure(let error) where error.code == .notSupported: return .ok
        case .failure(let error): return .failed(error.code, error.message)
        }
    }

    private func call(_ writer: WriterRecord, _ member: MemberName, _ arguments: [Value], timeoutMs: UInt32) async
        -> Result<[Value], ShadowCopyError>
    {
        guard let owner = BusName(writer.owner), let path = ObjectPath(writer.path) else {
            return .failure(.init(.failed, "writer record is damaged"))
        }
        do {
            let values = try await connection.call(owner, path, DBusWriterTransport.interface, member, arguments,
                                                   timeout: .milliseconds(Int(timeoutMs)))
            return .success(values)
        } catch let error as DBusError {
            return .failure(DBusWriterTransport.map(error, timeoutMs: timeoutMs))
        } catch {
            return .failure(.init(.cancelled, "the call to the writer was cancelled"))
        }
    }

    /// PrepareForBackup's and BackupComplete's options for one writer: `backup-type s` and
    /// `components aa{sv}` (its selected components: `logical-path s`, `name s`, and
    /// `succeeded b` once the requester said).
    static func options(_ details: BackupDetails, for writer: Identifier) -> Value {
        let components = (details.selected[writer] ?? [:]).sorted { ($0.key.logicalPath, $0.key.name) < ($1.key.logicalPath, $1.key.name) }
            .map { key, succeeded -> Value in
                var entries: [(String, Value)] = [("logical-path", .string(key.logicalPath)), ("name", .string(key.name))]
                if let succeeded { entries.append(("succeeded", .bool(succeeded))) }
                return .vardict(entries)
            }
        return .vardict([("backup-type", .string(details.backupType.rawValue)), ("components", .array(element: "a{sv}", components))])
    }

    /// A writer's error reply, as the engine understands it.
    static func map(_ error: DBusError, timeoutMs: UInt32) -> ShadowCopyError {
        let name = error.name.rawValue
        if name.hasPrefix(ShadowCopyBus.errorPrefix),
            let code = ShadowCopyError.Code(rawValue: String(name.dropFirst(ShadowCopyBus.errorPrefix.count))),
            [.writerRetryable, .writerNonRetryable, .writerOutOfResources, .writerInconsistentSnapshot].contains(code)
        {
            return ShadowCopyError(code, error.message)
        }
        switch error.name {
        case .noReply, .timeout:
            return ShadowCopyError(.timeout, "no answer within \(timeoutMs) ms")
        case .unknownMethod, .unknownInterface:
            return ShadowCopyError(.notSupported, error.message)
        case .serviceUnknown, .nameHasNoOwner, .disconnected, .unknownObject:
            return ShadowCopyError(.failed, "the writer is gone (\(error.name.rawValue))")
        default:
            // Any other error is a veto the writer did not classify: treat it as final.
            return ShadowCopyError(.writerNonRetryable, "\(error.name.rawValue): \(error.message)")
        }
    }

    /// The components of Identify's metadata; a wrongly typed entry fails Identify.
    static func components(_ metadata: [String: Value]) throws(ShadowCopyError) -> [WriterComponent] {
        guard let list = metadata["components"] else { return [] }
        guard case .array(let element, let items) = list, element.rawValue == "a{sv}" else {
            throw .init(.writerNonRetryable, "metadata 'components' must be aa{sv}")
        }
        var components: [WriterComponent] = []
        for item in items {
            guard let dict = item.vardict, let name = dict["name"]?.string else {
                throw .init(.writerNonRetryable, "every component needs 'name' (s)")
            }
            let logicalPath = dict["logical-path"]?.string ?? ""
            components.append(WriterComponent(
                logicalPath: logicalPath, name: name, selectable: dict["selectable"]?.bool ?? true,
                paths: dict["paths"]?.stringArray ?? []))
        }
        return components
    }
}

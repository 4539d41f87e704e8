import Synchronization

/// The writers currently registered with the coordinator.
///
/// A writer belongs to the connection that registered it: only that owner may unregister it, and
/// all of an owner's writers go when its connection closes (``removeAll(ownedBy:)``).
public final class WriterRegistry: Sendable {
    private struct State: ~Copyable {
        var writers: [Identifier: WriterRecord] = [:]
    }

    private let state = Mutex(State())
    private let settings: CoordinatorSettings

    public init(settings: CoordinatorSettings) {
        self.settings = settings
    }

    /// Records a writer served at `path` by `owner`.
    ///
    /// Refuses a second registration of the same path by the same owner, an instance id already
    /// in use, and registrations past the per-owner and total limits.
    public func register(_ registration: WriterRegistration, owner: String, path: String) throws(ShadowCopyError)
        -> WriterRecord
    {
        let name = registration.name
        guard !name.isEmpty, name.utf8.count <= 255 else {
            throw .invalidArgs("a writer name must have 1 to 255 bytes")
        }
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalidArgs("a writer name must not contain control characters")
        }
        let timeout = registration.freezeTimeoutMs ?? settings.freezeTimeoutMs
        guard timeout >= 1, timeout <= settings.freezeTimeoutMs else {
            throw .invalidArgs("freeze-timeout-ms must be between 1 and \(settings.freezeTimeoutMs)")
        }
        let record = WriterRecord(id: Identifier(), owner: owner, path: path, registration: registration,
                                  freezeTimeoutMs: timeout)
        try state.withLock { s throws(ShadowCopyError) in
            let owned = s.writers.values.filter { $0.owner == owner }
            if owned.contains(where: { $0.path == path }) {
                throw ShadowCopyError(.alreadyExists, "\(owner) already registered a writer at \(path)")
            }
            if s.writers.values.contains(where: { $0.registration.instanceID == registration.instanceID }) {
                throw ShadowCopyError(.alreadyExists, "writer instance \(registration.instanceID) is already registered")
            }
            guard owned.count < settings.maxWritersPerOwner else {
                throw ShadowCopyError(.limitExceeded, "one connection may register at most \(settings.maxWritersPerOwner) writers")
            }
            guard s.writers.count < settings.maxWriters else {
                throw ShadowCopyError(.limitExceeded, "at most \(settings.maxWriters) writers may be registered")
            }
            s.writers[record.id] = record
        }
        return record
    }

    /// Removes writer `id` at the request of `caller`, who must be its owner.
    public func unregister(_ id: Identifier, caller: String) throws(ShadowCopyError) -> WriterRecord {
        try state.withLock { s throws(ShadowCopyError) in
            guard let record = s.writers[id] else { throw ShadowCopyError.notFound("no writer \(id)") }
            guard record.owner == caller else {
                throw ShadowCopyError(.notAuthorized, "writer \(id) belongs to \(record.owner), not to \(caller)")
            }
            s.writers[id] = nil
            return record
        }
    }

    /// Removes every writer of `owner` (its connection closed); returns what was removed.
    public func removeAll(ownedBy owner: String) -> [WriterRecord] {
        state.withLock { s in
            let gone = s.writers.values.filter { $0.owner == owner }
            for record in gone { s.writers[record.id] = nil }
            return gone
        }
    }

    /// Records writer `id`'s state in the sequence and its last failure (kept until the next one).
    public func update(_ id: Identifier, state: WriterState, error: String? = nil) {
        self.state.withLock { s in
            s.writers[id]?.state = state
            if let error { s.writers[id]?.lastError = error }
        }
    }

    /// The record of writer `id`.
    public func writer(_ id: Identifier) -> WriterRecord? { state.withLock { $0.writers[id] } }

    /// All writers, in registration-independent but stable order (by id).
    public var all: [WriterRecord] {
        state.withLock { s in s.writers.values.sorted { $0.id.hex < $1.id.hex } }
    }
}

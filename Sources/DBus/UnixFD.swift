#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// An owned Unix file descriptor carried in a message (`h`).
///
/// Ownership is explicit: a `UnixFD` closes its descriptor when it is released, unless the
/// descriptor was taken out with ``take()``. Descriptors read from a message are duplicates
/// made by libdbus (close-on-exec), so every received `UnixFD` is the caller's to keep or drop.
/// Appending a `UnixFD` to a message duplicates it again; the original stays owned here.
public final class UnixFD: Sendable, Hashable, CustomStringConvertible {
    private let state: Mutex<Int32>

    /// Takes ownership of `descriptor`; it is closed when this object goes away.
    public init(owning descriptor: Int32) {
        state = Mutex(descriptor)
    }

    /// Duplicates `descriptor` (close-on-exec); the caller keeps its own.
    public init(duplicating descriptor: Int32) throws(DBusError) {
        let copy = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            throw DBusError(.failed, "cannot duplicate file descriptor \(descriptor): errno \(errno)")
        }
        state = Mutex(copy)
    }

    /// The descriptor, or -1 once taken or closed. Valid only while this object lives.
    public var rawValue: Int32 { state.withLock { $0 } }

    /// Gives up ownership: returns the descriptor, which the caller must close.
    public func take() -> Int32 {
        state.withLock { fd in
            defer { fd = -1 }
            return fd
        }
    }

    /// Closes the descriptor now.
    public func close() {
        let fd = take()
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    deinit {
        let fd = state.withLock { $0 }
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    public static func == (lhs: UnixFD, rhs: UnixFD) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    public var description: String { "fd(\(rawValue))" }
}

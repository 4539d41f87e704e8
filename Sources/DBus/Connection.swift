#if canImport(Glibc)
import Glibc
#endif
import CDBus
import Synchronization

/// A private connection to a message bus, driven by its own loop thread.
///
/// Open one with ``system()``, ``session()`` or ``init(address:)``. The connection is private
/// (never shared with other code in the process) and does not exit the process when the bus goes
/// away; ``closed()`` tells when that happens. Call ``close()`` when done: the loop thread keeps
/// the connection alive until then.
///
/// Thread safety: libdbus is put in thread-safe mode before the first connection; the loop
/// thread does all reading and dispatching, other threads only queue outgoing messages.
public final class Connection: @unchecked Sendable {
    let raw: OpaquePointer
    let loop: BusLoop
    let routing = Mutex(Routing())
    let loopThread = Mutex<pthread_t?>(nil)
    private let closedEvent = OneShotEvent()

    /// This connection's unique name on the bus (`:1.42`).
    public let uniqueName: BusName
    /// The objects this connection serves.
    public let objects: ObjectServer

    /// At most this many calls wait for a reply at once; more wait their turn. The system bus
    /// refuses more than 128 pending replies per connection (`max_replies_per_connection`).
    public let maxPendingCalls: Int

    /// Connects to the system bus, at `DBUS_SYSTEM_BUS_ADDRESS` when that is set.
    public static func system(maxPendingCalls: Int = 128) throws(DBusError) -> Connection {
        try Connection(bus: DBUS_BUS_SYSTEM, maxPendingCalls: maxPendingCalls)
    }

    /// Connects to the session bus (`DBUS_SESSION_BUS_ADDRESS`).
    public static func session(maxPendingCalls: Int = 128) throws(DBusError) -> Connection {
        try Connection(bus: DBUS_BUS_SESSION, maxPendingCalls: maxPendingCalls)
    }

    /// Connects to the bus at `address` (`unix:path=/run/dbus/system_bus_socket`) and registers.
    public convenience init(address: String, maxPendingCalls: Int = 128) throws(DBusError) {
        guard !address.utf8.contains(0), !address.isEmpty else { throw DBusError(.invalidArgs, "empty bus address") }
        Connection.initThreads()
        var error = CDBus.DBusError()
        dbus_error_init(&error)
        defer { dbus_error_free(&error) }
        guard let raw = dbus_connection_open_private(address, &error) else {
            throw Connection.convert(&error, fallback: "cannot connect to \(address)")
        }
        guard dbus_bus_register(raw, &error) != 0 else {
            dbus_connection_close(raw)
            dbus_connection_unref(raw)
            throw Connection.convert(&error, fallback: "cannot register on \(address)")
        }
        try self.init(adopting: raw, maxPendingCalls: maxPendingCalls)
    }

    private convenience init(bus: DBusBusType, maxPendingCalls: Int) throws(DBusError) {
        Connection.initThreads()
        var error = CDBus.DBusError()
        dbus_error_init(&error)
        defer { dbus_error_free(&error) }
        guard let raw = dbus_bus_get_private(bus, &error) else {
            throw Connection.convert(&error, fallback: "cannot connect to the bus")
        }
        try self.init(adopting: raw, maxPendingCalls: maxPendingCalls)
    }

    private init(adopting raw: OpaquePointer, maxPendingCalls: Int) throws(DBusError) {
        self.raw = raw
        self.maxPendingCalls = max(1, maxPendingCalls)
        dbus_connection_set_exit_on_disconnect(raw, 0)
        guard let unique = dbus_bus_get_unique_name(raw).flatMap({ BusName(String(cString: $0)) }) else {
            dbus_connection_close(raw)
            dbus_connection_unref(raw)
            throw DBusError(.failed, "the bus gave no unique name")
        }
        uniqueName = unique
        do {
            loop = try BusLoop()
        } catch {
            dbus_connection_close(raw)
            dbus_connection_unref(raw)
            throw error
        }
        objects = ObjectServer()
        objects.attach(self)
        try loop.install(on: raw)
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard dbus_connection_add_filter(raw, { _, message, ctx in
            let connection = Unmanaged<Connection>.fromOpaque(ctx!).takeUnretainedValue()
            return connection.route(Message(retaining: message!))
        }, context, nil) != 0 else { throw DBusError(.noMemory, "cannot add message filter") }
        startLoopThread()
    }

    deinit {
        // A private connection must be closed before its last reference goes.
        dbus_connection_close(raw)
        dbus_connection_unref(raw)
    }

    private static let threadsReady: Bool = { dbus_threads_init_default() != 0 }()

    private static func initThreads() {
        precondition(threadsReady, "libdbus could not initialise threads")
    }

    static func convert(_ error: inout CDBus.DBusError, fallback: String) -> DBusError {
        guard dbus_error_is_set(&error) != 0, let namePointer = error.name else {
            return DBusError(.failed, fallback)
        }
        let name = ErrorName(String(cString: namePointer)) ?? .failed
        let text = error.message.map { String(cString: $0) } ?? fallback
        return DBusError(name, text)
    }

    // MARK: Loop thread

    private final class ThreadBox {
        let connection: Connection
        init(_ connection: Connection) { self.connection = connection }
    }

    private func startLoopThread() {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(ThreadBox(self)).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let box = Unmanaged<ThreadBox>.fromOpaque(arg!).takeRetainedValue()
            box.connection.runLoop()
            return nil
        }, box)
        precondition(rc == 0, "cannot start the D-Bus loop thread: \(rc)")
        loopThread.withLock { $0 = thread }
    }

    private func runLoop() {
        loop.run {
            while dbus_connection_dispatch(raw) == DBUS_DISPATCH_DATA_REMAINS {}
            let sleep = sweepExpiredCalls(now: BusLoop.now())
            resumeAnswered()
            return sleep
        }
        // Flush what was queued (last replies, ReleaseName) before the socket closes.
        dbus_connection_flush(raw)
        dbus_connection_close(raw)
        while dbus_connection_dispatch(raw) == DBUS_DISPATCH_DATA_REMAINS {}
        failEverything(DBusError(.disconnected, "connection closed"))
        closedEvent.signal()
    }

    /// Whether the connection is still open.
    public var isConnected: Bool { dbus_connection_get_is_connected(raw) != 0 && !closedEvent.isSignalled }

    /// Waits until the connection is closed, by ``close()`` or by the bus.
    public func closed() async { await closedEvent.wait() }

    /// Flushes outgoing messages, closes the connection and stops its loop thread.
    public func close() {
        loop.requestStop()
        let thread = loopThread.withLock { t -> pthread_t? in
            defer { t = nil }
            return t
        }
        guard let thread else { return }
        if pthread_equal(thread, pthread_self()) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }

    // MARK: Sending

    /// Queues `message` for sending (signals, replies, calls that expect no reply).
    public func send(_ message: Message) throws(DBusError) {
        guard message.serial == 0 else { throw DBusError(.invalidArgs, "message was already sent") }
        guard isConnected else { throw DBusError(.disconnected, "not connected") }
        guard loop.coalescingWakes({ dbus_connection_send(raw, message.raw, nil) }) != 0 else {
            throw DBusError(.noMemory, "cannot queue message")
        }
    }
}

/// A one-time event that any number of tasks can wait for.
final class OneShotEvent: Sendable {
    private let state = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    var isSignalled: Bool { state.withLock { $0.done } }

    func signal() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.done = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                if s.done { return true }
                s.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}

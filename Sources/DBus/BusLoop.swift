#if canImport(Glibc)
import Glibc
#endif
import CDBus
import Synchronization

/// The one thread that drives a connection: a `poll()` loop over libdbus's watches, its
/// repeating timeouts and an eventfd that other threads write to wake it.
///
/// libdbus calls the watch, timeout, wake-up and dispatch-status functions with its connection
/// lock held, sometimes from other threads (a send toggles the write watch), so those functions
/// only record state under ``state`` and wake the loop; they never call back into libdbus.
/// Messages are dispatched by the loop itself, never from the dispatch-status function.
final class BusLoop: Sendable {
    /// A libdbus watch or timeout handle; libdbus owns it, we only compare and pass it back.
    struct Handle: @unchecked Sendable, Equatable {
        let raw: OpaquePointer
    }

    struct Watch {
        let pointer: Handle
        var fd: Int32
        var flags: UInt32
        var enabled: Bool
    }

    struct Timer {
        let pointer: Handle
        var intervalMs: Int32
        var enabled: Bool
        var deadline: UInt64
    }

    /// One entry of the poll set, as the loop last built it.
    struct Polled: Equatable {
        let fd: Int32
        let events: Int16
    }

    struct State: ~Copyable {
        var watches: [Watch] = []
        var timers: [Timer] = []
        var stopping = false
        /// What the loop polls right now; a held wake-up is only needed if this would change.
        var polled: [Polled] = []
        var timersChanged = false
        /// Threads inside ``coalescingWakes(_:)``, and whether a change arrived meanwhile.
        var holders: [UInt] = []
        var wakeHeld = false
        /// Bumped by every watch change, so the loop rebuilds its fd set only when it changed.
        var generation: UInt64 = 1

        /// The poll set the current watches call for.
        func wanted() -> [Polled] {
            watches.filter(\.enabled).map { w in
                var events: Int16 = 0
                if w.flags & DBUS_WATCH_READABLE.rawValue != 0 { events |= Int16(POLLIN) }
                if w.flags & DBUS_WATCH_WRITABLE.rawValue != 0 { events |= Int16(POLLOUT) }
                return Polled(fd: w.fd, events: events)
            }
        }

        /// Records a change; returns whether the loop must be woken now.
        mutating func changed(timer: Bool) -> Bool {
            if timer { timersChanged = true } else { generation &+= 1 }
            guard !holders.isEmpty, holders.contains(UInt(pthread_self())) else { return true }
            wakeHeld = true
            return false
        }
    }

    let state = Mutex(State())
    let wakeFD: Int32
    /// The loop thread's `pthread_self()`, 0 before it runs; it never needs waking by itself.
    private let loopThread = Atomic<UInt>(0)

    init() throws(DBusError) {
        wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeFD >= 0 else { throw DBusError(.failed, "eventfd failed: errno \(errno)") }
    }

    deinit { close(wakeFD) }

    /// Wakes the loop from any other thread.
    ///
    /// On the loop thread itself this does nothing: after every round of I/O the loop dispatches
    /// and rebuilds its poll set from ``state``, so a write there would only cost a syscall and a
    /// spurious poll round on every message.
    func wake() {
        if loopThread.load(ordering: .relaxed) == UInt(pthread_self()) { return }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Runs `body`, a libdbus call made off the loop thread, holding back the wake-ups its watch
    /// changes ask for; afterwards wakes the loop only if its poll set really changed.
    ///
    /// A send toggles the write watch on and, once the message is written, off again: waking
    /// the loop for that costs a thread switch per call and buys nothing.
    func coalescingWakes<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        let me = UInt(pthread_self())
        state.withLock { $0.holders.append(me) }
        defer {
            let mustWake = state.withLock { s -> Bool in
                if let i = s.holders.firstIndex(of: me) { s.holders.remove(at: i) }
                guard s.wakeHeld else { return false }
                if s.holders.isEmpty { s.wakeHeld = false }
                return s.timersChanged || s.wanted() != s.polled
            }
            if mustWake { wake() }
        }
        return try body()
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// Installs the loop's functions on a connection; `context` is the unretained loop.
    func install(on connection: OpaquePointer) throws(DBusError) {
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard dbus_connection_set_watch_functions(connection, { w, ctx in
            BusLoop.from(ctx).addWatch(w!)
        }, { w, ctx in
            BusLoop.from(ctx).removeWatch(w!)
        }, { w, ctx in
            BusLoop.from(ctx).toggleWatch(w!)
        }, context, nil) != 0,
            dbus_connection_set_timeout_functions(connection, { t, ctx in
                BusLoop.from(ctx).addTimer(t!)
            }, { t, ctx in
                BusLoop.from(ctx).removeTimer(t!)
            }, { t, ctx in
                BusLoop.from(ctx).toggleTimer(t!)
            }, context, nil) != 0
        else { throw DBusError(.noMemory, "cannot install main loop functions") }
        dbus_connection_set_wakeup_main_function(connection, { ctx in BusLoop.from(ctx).wake() }, context, nil)
        dbus_connection_set_dispatch_status_function(connection, { _, status, ctx in
            // Only note it: dispatching from here is forbidden by libdbus.
            if status == DBUS_DISPATCH_DATA_REMAINS { BusLoop.from(ctx).wake() }
        }, context, nil)
    }

    private static func from(_ context: UnsafeMutableRawPointer?) -> BusLoop {
        Unmanaged<BusLoop>.fromOpaque(context!).takeUnretainedValue()
    }

    // MARK: libdbus callbacks (connection lock held: record and wake only)

    private func addWatch(_ w: OpaquePointer) -> dbus_bool_t {
        let watch = Watch(pointer: Handle(raw: w), fd: dbus_watch_get_unix_fd(w), flags: dbus_watch_get_flags(w),
                          enabled: dbus_watch_get_enabled(w) != 0)
        if state.withLock({ s in s.watches.append(watch); return s.changed(timer: false) }) { wake() }
        return 1
    }

    private func removeWatch(_ w: OpaquePointer) {
        if state.withLock({ s in s.watches.removeAll { $0.pointer.raw == w }; return s.changed(timer: false) }) {
            wake()
        }
    }

    private func toggleWatch(_ w: OpaquePointer) {
        let enabled = dbus_watch_get_enabled(w) != 0
        let flags = dbus_watch_get_flags(w)
        let now = state.withLock { s in
            if let i = s.watches.firstIndex(where: { $0.pointer.raw == w }) {
                s.watches[i].enabled = enabled
                s.watches[i].flags = flags
            }
            return s.changed(timer: false)
        }
        if now { wake() }
    }

    private func addTimer(_ t: OpaquePointer) -> dbus_bool_t {
        let interval = dbus_timeout_get_interval(t)
        let timer = Timer(pointer: Handle(raw: t), intervalMs: interval, enabled: dbus_timeout_get_enabled(t) != 0,
                          deadline: BusLoop.now() + UInt64(max(interval, 0)))
        if state.withLock({ s in s.timers.append(timer); return s.changed(timer: true) }) { wake() }
        return 1
    }

    private func removeTimer(_ t: OpaquePointer) {
        if state.withLock({ s in s.timers.removeAll { $0.pointer.raw == t }; return s.changed(timer: true) }) {
            wake()
        }
    }

    private func toggleTimer(_ t: OpaquePointer) {
        let interval = dbus_timeout_get_interval(t)
        let enabled = dbus_timeout_get_enabled(t) != 0
        let now = state.withLock { s in
            if let i = s.timers.firstIndex(where: { $0.pointer.raw == t }) {
                // The interval may change on toggle; the count restarts from now.
                s.timers[i].intervalMs = interval
                s.timers[i].enabled = enabled
                s.timers[i].deadline = BusLoop.now() + UInt64(max(interval, 0))
            }
            return s.changed(timer: true)
        }
        if now { wake() }
    }

    // MARK: The loop

    /// Runs until ``requestStop()``; `iteration` runs after each round of I/O (dispatch, sweeps)
    /// and returns the longest the next wait may sleep, in milliseconds (-1: no limit).
    ///
    /// The loop waits with epoll rather than poll: the set of fds rarely changes, and poll would
    /// add and remove the thread on every fd's wait queue per round, a measurable share of a
    /// round trip on a virtual machine.
    func run(iteration: () -> Int32) {
        loopThread.store(UInt(pthread_self()), ordering: .relaxed)
        defer { loopThread.store(0, ordering: .relaxed) }
        var epoll = EpollSet(wakeFD: wakeFD)
        defer { epoll.close() }
        var waitLimit: Int32 = 0
        var wanted: [Polled] = []
        var pointers: [Handle] = []
        var generation: UInt64 = 0
        while true {
            let (rebuilt, timeout, stop) = state.withLock { s -> (Bool, Int32, Bool) in
                s.timersChanged = false
                let rebuild = s.generation != generation
                if rebuild {
                    s.polled = s.wanted()
                    wanted = s.polled
                    pointers = s.watches.filter(\.enabled).map(\.pointer)
                    generation = s.generation
                }
                let now = BusLoop.now()
                var wait: Int32 = -1
                for t in s.timers where t.enabled {
                    let ms = t.deadline > now ? Int32(clamping: t.deadline - now) : 0
                    wait = wait < 0 ? ms : min(wait, ms)
                }
                return (rebuild, wait, s.stopping)
            }
            if stop { return }
            if rebuilt { epoll.update(wanted) }
            var limit = timeout
            if waitLimit >= 0 { limit = limit < 0 ? waitLimit : min(limit, waitLimit) }
            for (fd, revents) in epoll.wait(limitMs: limit) {
                if fd == wakeFD {
                    var counter: UInt64 = 0
                    _ = read(wakeFD, &counter, 8)
                    continue
                }
                // libdbus keeps a read and a write watch on the same socket: each sees its own events.
                for (entry, pointer) in zip(wanted, pointers) where entry.fd == fd {
                    let mine = revents & (UInt32(bitPattern: Int32(entry.events)) | UInt32(EPOLLHUP.rawValue)
                        | UInt32(EPOLLERR.rawValue))
                    if mine != 0 { handle(pointer, events: mine) }
                }
            }
            fireTimers()
            waitLimit = iteration()
        }
    }

    func requestStop() {
        state.withLock { $0.stopping = true }
        wake()
    }

    private func handle(_ watch: Handle, events: UInt32) {
        // A watch can be removed by a callback of an earlier handle; only touch live ones.
        let live = state.withLock { s in s.watches.contains { $0.pointer == watch && $0.enabled } }
        guard live else { return }
        var flags: UInt32 = 0
        if events & UInt32(EPOLLIN.rawValue) != 0 { flags |= DBUS_WATCH_READABLE.rawValue }
        if events & UInt32(EPOLLOUT.rawValue) != 0 { flags |= DBUS_WATCH_WRITABLE.rawValue }
        if events & UInt32(EPOLLHUP.rawValue) != 0 { flags |= DBUS_WATCH_HANGUP.rawValue }
        if events & UInt32(EPOLLERR.rawValue) != 0 { flags |= DBUS_WATCH_ERROR.rawValue }
        _ = dbus_watch_handle(watch.raw, flags)
    }

    private func fireTimers() {
        let now = BusLoop.now()
        let due: [Handle] = state.withLock { s in
            var due: [Handle] = []
            for i in s.timers.indices where s.timers[i].enabled && s.timers[i].deadline <= now {
                due.append(s.timers[i].pointer)
                // libdbus timeouts repeat until removed.
                s.timers[i].deadline = now + UInt64(max(s.timers[i].intervalMs, 1))
            }
            return due
        }
        for t in due {
            let live = state.withLock { s in s.timers.contains { $0.pointer == t && $0.enabled } }
            if live { _ = dbus_timeout_handle(t.raw) }
        }
    }
}

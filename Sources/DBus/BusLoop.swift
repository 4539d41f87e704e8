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

    struct State: ~Copyable {
        var watches: [Watch] = []
        var timers: [Timer] = []
        var stopping = false
    }

    let state = Mutex(State())
    let wakeFD: Int32

    init() throws(DBusError) {
        wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeFD >= 0 else { throw DBusError(.failed, "eventfd failed: errno \(errno)") }
    }

    deinit { close(wakeFD) }

    /// Wakes the loop from any thread.
    func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
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
        state.withLock { $0.watches.append(watch) }
        wake()
        return 1
    }

    private func removeWatch(_ w: OpaquePointer) {
        state.withLock { $0.watches.removeAll { $0.pointer.raw == w } }
        wake()
    }

    private func toggleWatch(_ w: OpaquePointer) {
        let enabled = dbus_watch_get_enabled(w) != 0
        let flags = dbus_watch_get_flags(w)
        state.withLock { s in
            if let i = s.watches.firstIndex(where: { $0.pointer.raw == w }) {
                s.watches[i].enabled = enabled
                s.watches[i].flags = flags
            }
        }
        wake()
    }

    private func addTimer(_ t: OpaquePointer) -> dbus_bool_t {
        let interval = dbus_timeout_get_interval(t)
        let timer = Timer(pointer: Handle(raw: t), intervalMs: interval, enabled: dbus_timeout_get_enabled(t) != 0,
                          deadline: BusLoop.now() + UInt64(max(interval, 0)))
        state.withLock { $0.timers.append(timer) }
        wake()
        return 1
    }

    private func removeTimer(_ t: OpaquePointer) {
        state.withLock { $0.timers.removeAll { $0.pointer.raw == t } }
        wake()
    }

    private func toggleTimer(_ t: OpaquePointer) {
        let interval = dbus_timeout_get_interval(t)
        let enabled = dbus_timeout_get_enabled(t) != 0
        state.withLock { s in
            if let i = s.timers.firstIndex(where: { $0.pointer.raw == t }) {
                // The interval may change on toggle; the count restarts from now.
                s.timers[i].intervalMs = interval
                s.timers[i].enabled = enabled
                s.timers[i].deadline = BusLoop.now() + UInt64(max(interval, 0))
            }
        }
        wake()
    }

    // MARK: The loop

    /// Runs until ``requestStop()``; `iteration` runs after each round of I/O (dispatch, sweeps)
    /// and returns the longest the next poll may sleep, in milliseconds (-1: no limit).
    func run(iteration: () -> Int32) {
        var pollLimit: Int32 = 0
        while true {
            var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            var pointers: [Handle?] = [nil]
            let (timeout, stop): (Int32, Bool) = state.withLock { s in
                for w in s.watches where w.enabled {
                    var events: Int16 = 0
                    if w.flags & DBUS_WATCH_READABLE.rawValue != 0 { events |= Int16(POLLIN) }
                    if w.flags & DBUS_WATCH_WRITABLE.rawValue != 0 { events |= Int16(POLLOUT) }
                    fds.append(pollfd(fd: w.fd, events: events, revents: 0))
                    pointers.append(w.pointer)
                }
                let now = BusLoop.now()
                var wait: Int32 = -1
                for t in s.timers where t.enabled {
                    let ms = t.deadline > now ? Int32(clamping: t.deadline - now) : 0
                    wait = wait < 0 ? ms : min(wait, ms)
                }
                return (wait, s.stopping)
            }
            if stop { return }
            var limit = timeout
            if pollLimit >= 0 { limit = limit < 0 ? pollLimit : min(limit, pollLimit) }
            let ready = poll(&fds, nfds_t(fds.count), limit)
            if ready > 0 {
                if fds[0].revents != 0 {
                    var counter: UInt64 = 0
                    _ = read(wakeFD, &counter, 8)
                }
                for i in 1..<fds.count where fds[i].revents != 0 {
                    handle(pointers[i]!, revents: fds[i].revents)
                }
            }
            fireTimers()
            pollLimit = iteration()
        }
    }

    func requestStop() {
        state.withLock { $0.stopping = true }
        wake()
    }

    private func handle(_ watch: Handle, revents: Int16) {
        // A watch can be removed by a callback of an earlier handle; only touch live ones.
        let live = state.withLock { s in s.watches.contains { $0.pointer == watch && $0.enabled } }
        guard live else { return }
        var flags: UInt32 = 0
        if revents & Int16(POLLIN) != 0 { flags |= DBUS_WATCH_READABLE.rawValue }
        if revents & Int16(POLLOUT) != 0 { flags |= DBUS_WATCH_WRITABLE.rawValue }
        if revents & Int16(POLLHUP) != 0 { flags |= DBUS_WATCH_HANGUP.rawValue }
        if revents & Int16(POLLERR) != 0 { flags |= DBUS_WATCH_ERROR.rawValue }
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

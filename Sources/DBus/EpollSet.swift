#if canImport(Glibc)
import Glibc
#endif
import CDBus

/// The loop thread's epoll instance: the wake-up eventfd plus libdbus's enabled watches, merged
/// per fd (epoll takes each fd once; libdbus may watch one socket for reading and for writing).
struct EpollSet: ~Copyable {
    private let fd: Int32
    /// What each fd is registered for now.
    private var registered: [Int32: UInt32] = [:]
    private var buffer = [epoll_event](repeating: epoll_event(), count: 16)

    init(wakeFD: Int32) {
        fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(fd >= 0, "epoll_create1 failed: errno \(errno)")
        control(EPOLL_CTL_ADD, wakeFD, UInt32(EPOLLIN.rawValue))
    }

    func close() { _ = Glibc.close(fd) }

    /// Registers exactly the fds and events of `wanted` (poll-style event bits).
    mutating func update(_ wanted: [BusLoop.Polled]) {
        var merged: [Int32: UInt32] = [:]
        for entry in wanted {
            merged[entry.fd, default: 0] |= UInt32(bitPattern: Int32(entry.events))
        }
        guard merged != registered else { return }
        for (watched, _) in registered where merged[watched] == nil {
            // The fd may already be closed (and epoll then forgot it by itself): EBADF is fine.
            _ = epoll_ctl(fd, EPOLL_CTL_DEL, watched, nil)
        }
        for (watched, events) in merged where registered[watched] != events {
            let op = registered[watched] == nil ? EPOLL_CTL_ADD : EPOLL_CTL_MOD
            if !control(op, watched, events) {
                // A closed-and-reused fd number: epoll forgot the old one, or still holds it.
                _ = control(errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, watched, events)
            }
        }
        registered = merged
    }

    /// Waits up to `limitMs` (-1: no limit); returns the ready fds and their epoll events.
    mutating func wait(limitMs: Int32) -> [(Int32, UInt32)] {
        let count = buffer.withUnsafeMutableBufferPointer { events in
            epoll_wait(fd, events.baseAddress, Int32(events.count), limitMs)
        }
        guard count > 0 else { return [] }
        return (0..<Int(count)).map { (buffer[$0].data.fd, buffer[$0].events) }
    }

    @discardableResult
    private func control(_ op: Int32, _ target: Int32, _ events: UInt32) -> Bool {
        var event = epoll_event(events: events, data: epoll_data_t(fd: target))
        return epoll_ctl(fd, op, target, &event) == 0
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Btrfs
import DeviceMapper

/// The freeze guard: a small process apart from shadowcopyd that freezes filesystems for it and
/// thaws them when shadowcopyd says so, when the hold-writes deadline passes, or when
/// shadowcopyd dies (its end of the socket closes, SIGKILL included).
///
/// It is `shadowcopyd --freeze-guard`, started by ``FreezeGuard`` with the socket as fd 3. The
/// protocol is one text message per datagram: `hold <limit-ms> <path>` answered `ok`, `skip`
/// (btrfs, never frozen) or `err <errno>`; `release` answered `ok` once everything is thawed;
/// `watch-dm <limit-ms> <name>` and `unwatch-dm` for device-mapper devices a provider suspends
/// itself, which the guard resumes if the daemon dies or the limit passes first.
public enum GuardServer {
    static let fifreeze: UInt = 0xC004_5877  // _IOWR('X', 119, int)
    static let fithaw: UInt = 0xC004_5878  // _IOWR('X', 120, int)

    private struct Held {
        let path: String
        let fd: Int32
    }

    /// Serves the daemon on `socket` until it goes away; never returns.
    public static func run(socket: Int32) -> Never {
        // A stop request is for the daemon: the guard stays until the daemon's end of the socket
        // closes (after it thawed), or its own deadline thaws what is held.
        for signal in [SIGTERM, SIGINT, SIGHUP] { _ = Glibc.signal(signal, SIG_IGN) }
        var held: [Held] = []
        var watched: [String] = []
        var deadline: UInt64?
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            var fds = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0)]
            let timeout = deadline.map { Int32(clamping: Int64($0) - Int64(now())) } ?? -1
            let ready = poll(&fds, 1, deadline == nil ? -1 : max(timeout, 0))
            if ready < 0, errno == EINTR { continue }
            if ready == 0, deadline != nil {
                thawAll(&held, reason: "the hold-writes deadline passed")
                resumeAll(&watched, reason: "the hold-writes deadline passed")
                deadline = nil
                continue
            }
            guard fds[0].revents != 0 else { continue }
            let n = recv(socket, &buffer, buffer.count, 0)
            if n < 0, errno == EINTR { continue }
            if n <= 0 {
                thawAll(&held, reason: "shadowcopyd went away")
                resumeAll(&watched, reason: "shadowcopyd went away")
                exit(0)
            }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            let reply: String
            if message == "release" {
                thawAll(&held, reason: nil)
                if watched.isEmpty { deadline = nil }
                reply = "ok"
            } else if message == "unwatch-dm" {
                watched.removeAll()
                if held.isEmpty { deadline = nil }
                reply = "ok"
            } else if message.hasPrefix("watch-dm "), let (limit, name) = parseWatch(message) {
                watched.append(name)
                if deadline == nil { deadline = now() + limit }
                reply = "ok"
            } else if message.hasPrefix("hold "), let (limit, path) = parseHold(message) {
                reply = hold(path, into: &held)
                if reply == "ok", deadline == nil { deadline = now() + limit }
            } else {
                reply = "err \(EINVAL)"
            }
            _ = reply.withCString { send(socket, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }
    }

    private static func parseWatch(_ message: String) -> (UInt64, String)? {
        let parts = message.split(separator: " ", maxSplits: 2)
        guard parts.count == 3, let limit = UInt64(parts[1]), (try? DeviceMapper.checkName(String(parts[2]))) != nil else { return nil }
        return (limit, String(parts[2]))
    }

    /// A table loaded but not live is dropped first: the device comes back as it was.
    private static func resumeAll(_ watched: inout [String], reason: String) {
        for name in watched.reversed() {
            try? DeviceMapper.clear(name)
            do {
                try DeviceMapper.resume(name)
                log("resumed \(name): \(reason)")
            } catch {
                log("cannot resume \(name): \(error)")
            }
        }
        watched.removeAll()
    }

    private static func parseHold(_ message: String) -> (UInt64, String)? {
        let parts = message.split(separator: " ", maxSplits: 2)
        guard parts.count == 3, let limit = UInt64(parts[1]), parts[2].hasPrefix("/") else { return nil }
        return (limit, String(parts[2]))
    }

    private static func hold(_ path: String, into held: inout [Held]) -> String {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return "err \(errno)" }
        // A btrfs snapshot on a frozen btrfs blocks until thaw: btrfs is never frozen.
        let onBtrfs: Bool
        do { onBtrfs = try Btrfs.isBtrfs(fd: fd) } catch {
            close(fd)
            return "err \(error.errno)"
        }
        if onBtrfs {
            close(fd)
            return "skip"
        }
        guard ioctl(fd, fifreeze, 0) == 0 else {
            let error = errno
            close(fd)
            return "err \(error)"
        }
        held.append(Held(path: path, fd: fd))
        return "ok"
    }

    private static func thawAll(_ held: inout [Held], reason: String?) {
        for volume in held.reversed() {
            if ioctl(volume.fd, fithaw, 0) != 0 {
                log("cannot thaw \(volume.path): \(String(cString: strerror(errno)))")
            } else if let reason {
                log("thawed \(volume.path): \(reason)")
            }
            close(volume.fd)
        }
        held.removeAll()
    }

    private static func log(_ text: String) {
        var bytes = Array("shadowcopyd freeze guard: \(text)\n".utf8)
        _ = write(2, &bytes, bytes.count)
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}

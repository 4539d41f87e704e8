#if canImport(Glibc)
import Glibc
#endif
import ShadowCopyCore
import Synchronization

/// The daemon's side of the freeze guard: starts `shadowcopyd --freeze-guard` on first use and
/// asks it to freeze and thaw filesystems (see ``GuardServer``).
///
/// Freezing syncs the filesystem and may take seconds, so every exchange runs on a thread of its
/// own rather than on the cooperative pool.
public final class FreezeGuard: WriteHolder {
    private struct Child {
        var pid: pid_t
        var socket: Int32
    }

    private let child = Mutex<Child?>(nil)
    private let executable: String

    /// A guard that runs `executable --freeze-guard` (by default this very program).
    public init(executable: String = "/proc/self/exe") {
        self.executable = executable
    }

    public func hold(_ volumes: [String], limitMs: UInt32) async throws(ShadowCopyError) -> [String] {
        let outcome = await offThread { [self] () -> Result<[String], ShadowCopyError> in
            child.withLock { child in
                var frozen: [String] = []
                for volume in volumes {
                    do throws(ShadowCopyError) {
                        switch try exchange("hold \(limitMs) \(volume)", &child) {
                        case "ok": frozen.append(volume)
                        case "skip": break
                        case let reply:
                            let code = Int32(reply.split(separator: " ").last ?? "") ?? EIO
                            throw ShadowCopyError.failed("cannot freeze \(volume): \(String(cString: strerror(code)))")
                        }
                    } catch {
                        _ = try? exchange("release", &child)
                        return .failure(error)
                    }
                }
                return .success(frozen)
            }
        }
        return try outcome.get()
    }

    public func watchSuspended(_ devices: [String], limitMs: UInt32) async throws(ShadowCopyError) {
        let outcome = await offThread { [self] () -> ShadowCopyError? in
            child.withLock { child in
                for device in devices {
                    do throws(ShadowCopyError) {
                        let reply = try exchange("watch-dm \(limitMs) \(device)", &child)
                        guard reply == "ok" else { throw ShadowCopyError.failed("the freeze guard refused to watch \(device)") }
                    } catch {
                        _ = try? exchange("unwatch-dm", &child)
                        return error
                    }
                }
                return nil
            }
        }
        if let outcome { throw outcome }
    }

    public func unwatchSuspended() async {
        await offThread { [self] in
            child.withLock { child in _ = try? exchange("unwatch-dm", &child) }
        }
    }

    public func release() async {
        await offThread { [self] in
            child.withLock { child in _ = try? exchange("release", &child) }
        }
    }

    /// Sends one message and returns the reply, starting the guard when none runs.
    private func exchange(_ message: String, _ child: inout Child?) throws(ShadowCopyError) -> String {
        if child == nil { child = try spawn() }
        guard let running = child else { throw .failed("the freeze guard is not running") }
        var buffer = [UInt8](repeating: 0, count: 256)
        let sent = message.withCString { send(running.socket, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        let received = sent < 0 ? -1 : recv(running.socket, &buffer, buffer.count, 0)
        guard received > 0 else {
            // The guard died: reap it; the next exchange starts a new one.
            close(running.socket)
            var status: Int32 = 0
            waitpid(running.pid, &status, 0)
            child = nil
            throw .failed("the freeze guard stopped answering")
        }
        return String(decoding: buffer[0..<received], as: UTF8.self)
    }

    private func spawn() throws(ShadowCopyError) -> Child {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw .failed("cannot make the freeze guard's socket: \(String(cString: strerror(errno)))")
        }
        // Above fd 3, so that dup2 onto 3 always makes a new descriptor without close-on-exec.
        let theirs = fcntl(pair[1], F_DUPFD_CLOEXEC, 10)
        close(pair[1])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, theirs, 3)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(executable), strdup("--freeze-guard"), nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        close(theirs)
        guard rc == 0 else {
            close(pair[0])
            throw .failed("cannot start the freeze guard \(executable): \(String(cString: strerror(rc)))")
        }
        return Child(pid: pid, socket: pair[0])
    }

    /// Stops the guard (it thaws anything still held as it sees the socket close).
    public func stop() {
        child.withLock { child in
            guard let running = child else { return }
            close(running.socket)
            var status: Int32 = 0
            waitpid(running.pid, &status, 0)
            child = nil
        }
    }
}

/// A closure handed to a new thread.
private final class ThreadBody: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs `body` on a new thread and waits for it without holding a cooperative thread.
func offThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let box = ThreadBody { continuation.resume(returning: body()) }
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { context in
            Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, Unmanaged.passRetained(box).toOpaque())
        if started == 0 {
            pthread_detach(thread)
        } else {
            // No thread to be had: run here rather than never.
            Unmanaged.passUnretained(box).release()
            box.run()
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Makes the catalog's committed writes durable apart from the writes themselves.
///
/// A write that only needs to be durable later (before a provider makes a copy, say) is
/// committed at once without waiting for the disk; ``start()`` then flushes the write-ahead
/// log in the background and ``wait()`` returns once everything committed before it is on
/// disk. The flush overlaps whatever the caller does meanwhile (replying on the bus, preparing
/// the providers) instead of standing in its way.
final class LogSync: Sendable {
    private struct State {
        /// Commits so far, and how many of them are known to be on disk.
        var written: UInt64 = 0
        var synced: UInt64 = 0
        /// The flush under way, and the commits it covers.
        var running: (upTo: UInt64, task: Task<Result<Void, ShadowCopyError>, Never>)?
    }

    private let state = Mutex(State())
    /// SQLite's write-ahead log: commits go there, and checkpoints sync the database themselves.
    private let logPath: String

    init(databasePath: String) {
        logPath = databasePath + "-wal"
    }

    /// Counts a commit; a `durable` one was flushed by SQLite, with everything before it.
    func committed(durable: Bool) {
        state.withLock { s in
            s.written += 1
            if durable { s.synced = s.written }
        }
    }

    /// Whether every commit so far is known to be on disk.
    var isSynced: Bool { state.withLock { $0.synced >= $0.written } }

    /// Starts flushing what is committed so far, unless that is done or under way.
    func start() { _ = flush(covering: nil) }

    /// Returns once every commit made before the call is on disk.
    func wait() async throws(ShadowCopyError) {
        let target = state.withLock { $0.written }
        while let task = flush(covering: target) {
            try await task.value.get()
        }
    }

    /// The flush to wait for before `target` (nil: all commits so far) is on disk, starting
    /// one when none runs; nil once it is on disk.
    private func flush(covering target: UInt64?) -> Task<Result<Void, ShadowCopyError>, Never>? {
        state.withLock { s in
            let target = target ?? s.written
            if s.synced >= target { return nil }
            // A flush that started before the commit may not cover it: wait, then look again.
            if let running = s.running { return running.task }
            let upTo = s.written
            let path = logPath
            let task = Task.detached { [weak self] () -> Result<Void, ShadowCopyError> in
                let outcome = LogSync.flush(path)
                self?.state.withLock { s in
                    if case .success = outcome { s.synced = max(s.synced, upTo) }
                    s.running = nil
                }
                return outcome
            }
            s.running = (upTo, task)
            return task
        }
    }

    private static func flush(_ path: String) -> Result<Void, ShadowCopyError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            // No log: a checkpoint moved every commit into the database and synced it.
            if errno == ENOENT { return .success(()) }
            return .failure(.failed("cannot open the catalog's log \(path): \(String(cString: strerror(errno)))"))
        }
        defer { close(fd) }
        guard fdatasync(fd) == 0 else {
            return .failure(.failed("cannot flush the catalog's log \(path): \(String(cString: strerror(errno)))"))
        }
        return .success(())
    }
}

import Synchronization

/// A long phase of a set (IVssAsync): it runs on its own, whatever the caller's reply timeout,
/// and can be waited for, watched and cancelled.
public final class Job: Sendable {
    public enum State: String, Sendable {
        case running, succeeded, failed, cancelled
    }

    /// What the job has reached so far.
    public struct Status: Sendable, Equatable {
        public var state: State = .running
        public var progress: Double = 0
        public var error: ShadowCopyError?
    }

    private struct Inner: ~Copyable {
        var status = Status()
        var waiters: [UInt64: (continuation: CheckedContinuation<Bool, Never>, timer: Task<Void, Never>)] = [:]
        var nextWaiter: UInt64 = 0
        var task: Task<Void, Never>?
        /// When progress was last announced (monotonic ms).
        var announced: UInt64 = 0
    }

    public let number: UInt64
    public let operation: String
    /// The set the job works on.
    public let set: Identifier
    private let inner = Mutex(Inner())
    private let onChange: @Sendable (Job) -> Void

    init(number: UInt64, operation: String, set: Identifier, onChange: @escaping @Sendable (Job) -> Void) {
        self.number = number
        self.operation = operation
        self.set = set
        self.onChange = onChange
    }

    public var status: Status { inner.withLock { $0.status } }

    /// Runs `body` as the job; its error (a `CancellationError` included) ends the job failed or cancelled.
    func start(_ body: @escaping @Sendable (Job) async throws(ShadowCopyError) -> Void) {
        inner.withLock { $0.announced = Clock.monotonicMs() }
        let task = Task {
            do throws(ShadowCopyError) {
                try await body(self)
                finish(.succeeded, nil)
            } catch {
                finish(error.code == .cancelled ? .cancelled : .failed, error)
            }
        }
        inner.withLock { $0.task = task }
    }

    /// Records progress, 0 to 1. It is announced at most every 100 ms: a phase of a few
    /// milliseconds would otherwise put a signal per step on the bus ahead of its own end.
    func report(_ progress: Double) {
        let now = Clock.monotonicMs()
        let announce = inner.withLock { s -> Bool in
            s.status.progress = min(1, max(0, progress))
            guard now - s.announced >= 100 else { return false }
            s.announced = now
            return true
        }
        if announce { onChange(self) }
    }

    /// Asks the job to stop; the phase decides what can still be undone.
    public func cancel() {
        inner.withLock { $0.task }?.cancel()
    }

    /// Waits until the job ends or `timeoutMs` passes; true when it ended.
    public func wait(timeoutMs: UInt32) async -> Bool {
        let key = inner.withLock { s -> UInt64 in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let ended = inner.withLock { s -> Bool in
                if s.status.state != .running { return true }
                let timer = Task { [weak self] in
                    guard (try? await Task.sleep(for: .milliseconds(Int(timeoutMs)))) != nil else { return }
                    self?.inner.withLock { $0.waiters.removeValue(forKey: key) }?.continuation.resume(returning: false)
                }
                s.waiters[key] = (continuation, timer)
                return false
            }
            if ended { continuation.resume(returning: true) }
        }
    }

    private func finish(_ state: State, _ error: ShadowCopyError?) {
        let waiters = inner.withLock { s -> [(continuation: CheckedContinuation<Bool, Never>, timer: Task<Void, Never>)] in
            s.status.state = state
            s.status.error = error
            if state == .succeeded { s.status.progress = 1 }
            s.task = nil
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in waiters {
            waiter.timer.cancel()
            waiter.continuation.resume(returning: true)
        }
        onChange(self)
    }
}

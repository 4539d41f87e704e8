import CDBus
import Synchronization

/// What the loop thread routes replies and signals with.
struct Routing: ~Copyable {
    /// Who waits for a reply: a caller suspended in ``Connection/call(_:timeout:)``, or the
    /// slot of a call sent ahead with ``Connection/send(call:timeout:)``.
    enum Waiter {
        case caller(CheckedContinuation<Message, any Error>)
        case slot(ReplySlot)
    }

    struct PendingCall {
        let waiter: Waiter
        let deadline: UInt64
        let timeoutMs: UInt64
    }

    struct Subscription {
        let rule: MatchRule
        let continuation: AsyncStream<Message>.Continuation
    }

    var pending: [UInt32: PendingCall] = [:]
    /// Replies routed during this dispatch round, resumed once the round's libdbus work is done.
    var answered: [(Waiter, Message)] = []
    var subscriptions: [UInt64: Subscription] = [:]
    var nextSubscription: UInt64 = 1
    var inFlight = 0
    var slotWaiters: [CheckedContinuation<Void, Never>] = []
    var slotWaitersHead = 0
    var lastSweep: UInt64 = 0
    /// When the last call was sent; deadline checks stay on for a while after it.
    var lastCall: UInt64 = 0
    /// Whether the loop wakes by itself to check call deadlines; when not, a new call wakes it.
    var loopWatchesDeadlines = false
    var closed = false
}

extension Connection {
    /// Sends a method call and waits for its reply.
    ///
    /// Throws ``DBusError`` for an error reply (with the remote error's name and message), for a
    /// missing reply after `timeout` (`NoReply`) and for a lost connection (`Disconnected`);
    /// throws `CancellationError` when the calling task is cancelled, and then forgets the call.
    public func call(_ message: Message, timeout: Duration = .seconds(25)) async throws -> Message {
        guard message.serial == 0 else { throw DBusError(.invalidArgs, "message was already sent") }
        await acquireSlot()
        defer { releaseSlot() }
        let timeoutMs = UInt64(max(0, timeout.components.seconds)) * 1000
            + UInt64(max(0, timeout.components.attoseconds / 1_000_000_000_000_000))
        let serialBox = Mutex<UInt32>(0)
        let reply: Message = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Message, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                var wakeLoop = false
                let failure: DBusError? = routing.withLock { r in
                    if r.closed { return DBusError(.disconnected, "not connected") }
                    var serial: UInt32 = 0
                    // Registered under the lock, so the reply cannot be routed before we know of it.
                    guard loop.coalescingWakes({ dbus_connection_send(raw, message.raw, &serial) }) != 0 else {
                        return DBusError(.noMemory, "cannot queue message")
                    }
                    r.pending[serial] = Routing.PendingCall(
                        waiter: .caller(continuation), deadline: BusLoop.now() + timeoutMs, timeoutMs: timeoutMs)
                    serialBox.withLock { $0 = serial }
                    r.lastCall = BusLoop.now()
                    wakeLoop = !r.loopWatchesDeadlines
                    return nil
                }
                if let failure { continuation.resume(throwing: failure) }
                if wakeLoop { loop.wake() }
            }
        } onCancel: {
            let serial = serialBox.withLock { $0 }
            guard serial != 0, let call = routing.withLock({ $0.pending.removeValue(forKey: serial) }) else { return }
            deliver(call.waiter, .failure(CancellationError()))
        }
        if reply.kind == .error {
            throw reply.asError ?? DBusError(.failed, "error reply without a name")
        }
        return reply
    }

    /// Calls `interface.member` on `path` at `destination` with `arguments`; returns the reply's values.
    public func call(
        _ destination: BusName, _ path: ObjectPath, _ interface: InterfaceName, _ member: MemberName,
        _ arguments: [Value] = [], timeout: Duration = .seconds(25)
    ) async throws -> [Value] {
        let message = Message.methodCall(destination: destination, path: path, interface: interface, member: member)
        try message.append(arguments)
        return try await call(message, timeout: timeout).arguments()
    }

    // MARK: Pending-call window

    private func acquireSlot() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = routing.withLock { r -> Bool in
                if r.inFlight < maxPendingCalls {
                    r.inFlight += 1
                    return true
                }
                r.slotWaiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func releaseSlot() {
        let next = routing.withLock { r -> CheckedContinuation<Void, Never>? in
            guard r.slotWaitersHead < r.slotWaiters.count else {
                r.inFlight -= 1
                return nil
            }
            // The slot passes straight to the next waiter.
            let waiter = r.slotWaiters[r.slotWaitersHead]
            r.slotWaitersHead += 1
            if r.slotWaitersHead > 1024, r.slotWaitersHead * 2 > r.slotWaiters.count {
                r.slotWaiters.removeFirst(r.slotWaitersHead)
                r.slotWaitersHead = 0
            }
            return waiter
        }
        next?.resume()
    }

    // MARK: Loop-thread side

    /// Fails calls past their deadline; returns how long the loop may sleep before the next check.
    func sweepExpiredCalls(now: UInt64) -> Int32 {
        let expired = routing.withLock { r -> [Routing.PendingCall] in
            guard !r.pending.isEmpty else { return [] }
            guard now >= r.lastSweep + 20 else { return [] }
            r.lastSweep = now
            let keys = r.pending.filter { $0.value.deadline <= now }.map(\.key)
            return keys.compactMap { r.pending.removeValue(forKey: $0) }
        }
        for call in expired {
            deliver(call.waiter, .failure(DBusError(
                .noReply, "no reply within \(call.timeoutMs) ms (the peer did not answer, or the bus dropped the call)")))
        }
        return routing.withLock { r in
            // Checks stay on for a second after the last call, so sequential calls do not each
            // have to wake the loop; an idle connection then sleeps until it has work.
            r.loopWatchesDeadlines = !r.pending.isEmpty || now < r.lastCall + 1_000
            return r.loopWatchesDeadlines ? 25 : -1
        }
    }

    /// Routes one incoming message; runs on the loop thread inside `dbus_connection_dispatch`.
    func route(_ message: Message) -> DBusHandlerResult {
        switch message.kind {
        case .methodReturn, .error:
            let serial = message.replySerial
            routing.withLock { r in
                if let call = r.pending.removeValue(forKey: serial) { r.answered.append((call.waiter, message)) }
            }
        case .signal:
            if message.interface?.rawValue == "org.freedesktop.DBus.Local", message.member?.rawValue == "Disconnected" {
                failEverything(DBusError(.disconnected, "the bus closed the connection"))
                loop.requestStop()
                return DBUS_HANDLER_RESULT_HANDLED
            }
            let targets = routing.withLock { r in
                r.subscriptions.values.filter { $0.rule.matches(message) }.map(\.continuation)
            }
            for target in targets { target.yield(message) }
        case .methodCall:
            objects.dispatch(message)
        case .invalid:
            break
        }
        return DBUS_HANDLER_RESULT_HANDLED
    }

    /// Resumes the callers whose replies this dispatch round routed.
    ///
    /// Done after the round, not from inside `dbus_connection_dispatch`: a resumed caller sends
    /// its next call at once, and would otherwise contend with the loop for libdbus's connection
    /// lock, a futex sleep and wake per call.
    func resumeAnswered() {
        let answered = routing.withLock { r -> [(Routing.Waiter, Message)] in
            guard !r.answered.isEmpty else { return [] }
            defer { r.answered.removeAll(keepingCapacity: true) }
            return r.answered
        }
        for (waiter, message) in answered { deliver(waiter, .success(message)) }
    }

    /// Hands a reply or a failure to whoever waits for it; a slot's call gives back its window place.
    private func deliver(_ waiter: Routing.Waiter, _ result: Result<Message, any Error>) {
        switch waiter {
        case .caller(let continuation): continuation.resume(with: result)
        case .slot(let slot):
            slot.deliver(result)
            releaseSlot()
        }
    }

    /// Ends every call, subscription and waiter: the connection is gone.
    func failEverything(_ error: DBusError) {
        resumeAnswered()
        let (calls, subscriptions, waiters) = routing.withLock { r in
            r.closed = true
            defer {
                r.pending = [:]
                r.subscriptions = [:]
                r.slotWaiters = []
                r.slotWaitersHead = 0
            }
            return (Array(r.pending.values), Array(r.subscriptions.values),
                    Array(r.slotWaiters[r.slotWaitersHead...]))
        }
        for call in calls { deliver(call.waiter, .failure(error)) }
        for subscription in subscriptions { subscription.continuation.finish() }
        // Waiting callers proceed and find the connection closed.
        for waiter in waiters { waiter.resume() }
    }
}

import CDBus
import Synchronization

/// A method call already sent, whose reply is awaited later.
///
/// Calls sent one after another with ``Connection/send(call:timeout:)`` leave in that order
/// without waiting for each other's replies (pipelining): a peer that serves them in order
/// (``Interface/init(_:inOrder:_:)``) answers a sequence in one round trip instead of one each.
public struct PendingReply: Sendable {
    let slot: ReplySlot

    /// Waits for the reply; throws as ``Connection/call(_:timeout:)`` does.
    public func reply() async throws -> Message {
        let reply = try await slot.wait()
        if reply.kind == .error {
            throw reply.asError ?? DBusError(.failed, "error reply without a name")
        }
        return reply
    }

    /// Waits for the reply and returns its values.
    public func values() async throws -> [Value] { try await reply().arguments() }
}

/// Where a sent call's reply waits until its caller asks for it.
final class ReplySlot: Sendable {
    private struct State {
        var result: Result<Message, any Error>?
        var waiter: CheckedContinuation<Message, any Error>?
    }

    private let state = Mutex(State())

    func deliver(_ result: Result<Message, any Error>) {
        let waiter = state.withLock { s -> CheckedContinuation<Message, any Error>? in
            guard s.result == nil else { return nil }
            s.result = result
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(with: result)
    }

    func wait() async throws -> Message {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Message, any Error>) in
                let ready = state.withLock { s -> Result<Message, any Error>? in
                    if s.result == nil { s.waiter = continuation }
                    return s.result
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            // The call stays sent; only this wait ends.
            let waiter = state.withLock { s -> CheckedContinuation<Message, any Error>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}

extension Connection {
    /// Sends a method call now and returns at once; its reply is awaited with ``PendingReply/reply()``.
    ///
    /// The call takes a place in the window of calls in flight without waiting for one: with the
    /// window full it throws `LimitsExceeded` (the bus itself would refuse the call).
    public func send(call message: Message, timeout: Duration = .seconds(25)) throws(DBusError) -> PendingReply {
        guard message.serial == 0 else { throw DBusError(.invalidArgs, "message was already sent") }
        guard message.kind == .methodCall else { throw DBusError(.invalidArgs, "only a method call has a reply to wait for") }
        let timeoutMs = UInt64(max(0, timeout.components.seconds)) * 1000
            + UInt64(max(0, timeout.components.attoseconds / 1_000_000_000_000_000))
        let slot = ReplySlot()
        var wakeLoop = false
        let failure: DBusError? = routing.withLock { r in
            if r.closed { return DBusError(.disconnected, "not connected") }
            guard r.inFlight < maxPendingCalls else {
                return DBusError(.limitsExceeded, "\(maxPendingCalls) calls are already waiting for replies")
            }
            var serial: UInt32 = 0
            guard loop.coalescingWakes({ dbus_connection_send(raw, message.raw, &serial) }) != 0 else {
                return DBusError(.noMemory, "cannot queue message")
            }
            r.inFlight += 1
            r.pending[serial] = Routing.PendingCall(
                waiter: .slot(slot), deadline: BusLoop.now() + timeoutMs, timeoutMs: timeoutMs)
            r.lastCall = BusLoop.now()
            wakeLoop = !r.loopWatchesDeadlines
            return nil
        }
        if let failure { throw failure }
        if wakeLoop { loop.wake() }
        return PendingReply(slot: slot)
    }
}

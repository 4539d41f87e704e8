#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// Watches a service's stop signals (SIGTERM, SIGINT): their default action (ending the
/// process at once) is replaced by `handler`, called once per signal on a dispatch queue.
public final class StopSignals: Sendable {
    // Dispatch sources are thread-safe; they only lack the annotation.
    nonisolated(unsafe) private let sources: [any DispatchSourceSignal]

    /// Replaces the default action of `signals` with `handler`.
    public init(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) {
        sources = signals.map { number in
            _ = signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            return source
        }
    }

    /// Stops watching (the signals stay ignored).
    public func cancel() {
        for source in sources { source.cancel() }
    }
}

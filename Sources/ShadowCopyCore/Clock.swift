#if canImport(Glibc)
import Glibc
#endif

/// The two clocks the engine needs, without Foundation.
enum Clock {
    /// Milliseconds of CLOCK_MONOTONIC, for deadlines.
    static func monotonicMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// Nanoseconds since the epoch: copies made within one second still have an order.
    static func wallNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Seconds since the epoch, for creation times shown to people.
    static func wallSeconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec)
    }
}

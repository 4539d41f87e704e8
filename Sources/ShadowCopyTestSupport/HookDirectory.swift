#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A scratch directory of hook scripts for `shadowcopy-writer hooks`; ``remove()`` deletes it.
public struct HookDirectory: Sendable {
    public let path: String
    /// Where the scripts made by ``logging`` append `<script> <argument> <SHADOWCOPY_EVENT>`.
    public var orderLog: String { path + ".order" }

    /// A qemu-ga fsfreeze-hook.d style script (a `case "$1"` on freeze and thaw) that logs each call.
    public static let logging = """
        #!/bin/sh
        # Written the way qemu-ga's fsfreeze-hook.d scripts are.
        case "$1" in
            freeze) echo "$(basename "$0") freeze $SHADOWCOPY_EVENT" >> "$ORDER_LOG" ;;
            thaw) echo "$(basename "$0") thaw $SHADOWCOPY_EVENT" >> "$ORDER_LOG" ;;
            *) echo "unknown argument $1" >&2; exit 1 ;;
        esac
        """

    /// Makes the directory with `scripts` (name to body), each executable; `ORDER_LOG` in a
    /// script's body is replaced by ``orderLog``.
    public init(_ scripts: [String: String]) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-hooks-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: orderLog, contents: nil)
        for (name, body) in scripts {
            try HookDirectory.write(body.replacingOccurrences(of: "\"$ORDER_LOG\"", with: "'\(orderLog)'"),
                                    to: path + "/" + name)
        }
    }

    /// Writes an executable script through a close-on-exec descriptor. Other tests in this
    /// process start children all the time; one that inherited a descriptor open for writing
    /// on the script would make running it fail with ETXTBSY for as long as that child lives.
    private static func write(_ body: String, to file: String) throws {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard fd >= 0 else { throw HarnessError("cannot write \(file): errno \(errno)") }
        defer { close(fd) }
        let bytes = Array(body.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count, fchmod(fd, 0o755) == 0 else {
            throw HarnessError("cannot write \(file): errno \(errno)")
        }
    }

    /// The lines the scripts logged, in order.
    public var order: [String] {
        ((try? String(contentsOfFile: orderLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: orderLog)
    }
}

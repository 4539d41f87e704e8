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
            let file = path + "/" + name
            try body.replacingOccurrences(of: "\"$ORDER_LOG\"", with: "'\(orderLog)'").write(toFile: file, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file)
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

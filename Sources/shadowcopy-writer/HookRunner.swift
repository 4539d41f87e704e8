import Foundation
import Synchronization

/// Runs the hook scripts of a directory the way qemu-ga's fsfreeze-hook does: every executable
/// in sorted order with `freeze`, and in reverse order with `thaw` for every script that froze.
///
/// An Abort thaws too: the scripts are given `thaw` (qemu-ga scripts know no other word) and
/// `SHADOWCOPY_EVENT` says `abort`, for scripts that care.
struct HookRunner: Sendable {
    /// How one script's failure counts.
    enum Policy: String, Sendable {
        /// A failed freeze vetoes the snapshot (the default).
        case require
        /// A failure is logged and the others go on.
        case ignore
    }

    struct Failure: Error, Sendable, CustomStringConvertible {
        let script: String
        let why: String
        let output: String

        var description: String {
            "\(script): \(why)" + (output.isEmpty ? "" : ": " + output.trimmingCharacters(in: .whitespacesAndNewlines).suffix(512))
        }
    }

    let directory: String
    let defaultTimeoutMs: UInt32
    let timeouts: [String: UInt32]
    let policies: [String: Policy]

    /// The executables of the directory, sorted by name (hidden files and backups left out).
    func scripts() throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        return names.filter { name in
            !name.hasPrefix(".") && !name.hasSuffix("~") && !name.hasSuffix(".dpkg-old") && !name.hasSuffix(".dpkg-new")
                && FileManager.default.isExecutableFile(atPath: directory + "/" + name)
                && !isDirectory(directory + "/" + name)
        }.sorted()
    }

    private func isDirectory(_ path: String) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
    }

    func policy(of script: String) -> Policy { policies[script] ?? .require }

    /// Why a script could not start, in the system's words: Foundation's own message ("The
    /// operation could not be completed") hides the errno (ETXTBSY, EACCES, ENOEXEC...).
    static func describe(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError,
            underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return error.localizedDescription
    }

    /// Runs `script` with `argument`; throws a ``Failure`` for a non-zero exit or a time-out.
    func run(_ script: String, _ argument: String, event: String) async throws(Failure) {
        let timeout = timeouts[script] ?? defaultTimeoutMs
        let process = Process()
        process.executableURL = URL(fileURLWithPath: directory + "/" + script)
        process.arguments = [argument]
        var environment = ProcessInfo.processInfo.environment
        environment["SHADOWCOPY_EVENT"] = event
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let exited = AsyncStream<Void> { continuation in
            process.terminationHandler = { _ in continuation.yield(); continuation.finish() }
        }
        do {
            try process.run()
        } catch {
            throw Failure(script: script, why: "cannot run: \(HookRunner.describe(error))", output: "")
        }
        // Read while it runs, so a script that fills the pipe never blocks on it; and never wait
        // for end-of-file: a freeze script may leave a child holding a lock (and the pipe).
        let collected = Collected()
        output.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData) }
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask { for await _ in exited { return true }; return true }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int(timeout)))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !finished {
            process.terminate()
            try? await Task.sleep(for: .milliseconds(500))
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        // What the script wrote last may not have reached the handler yet: take it without
        // waiting (a child it left behind may hold the pipe open for good).
        output.fileHandleForReading.readabilityHandler = nil
        let fd = output.fileHandleForReading.fileDescriptor
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { break }
            collected.append(Data(chunk[0..<n]))
        }
        let text = collected.text
        guard finished else { throw Failure(script: script, why: "no answer within \(timeout) ms, killed", output: text) }
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let how = process.terminationReason == .exit ? "exit status \(process.terminationStatus)" : "killed by signal \(process.terminationStatus)"
            throw Failure(script: script, why: how, output: text)
        }
    }
}

/// A script's output, gathered as it comes (at most 64 KiB kept).
final class Collected: Sendable {
    private let data = Mutex(Data())

    func append(_ chunk: Data) {
        data.withLock { if $0.count < 65_536 { $0.append(chunk.prefix(65_536 - $0.count)) } }
    }

    var text: String { data.withLock { String(decoding: $0, as: UTF8.self) } }
}

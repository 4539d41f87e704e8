import DBus
import Foundation
import ShadowCopyWriter
import Synchronization

/// The hook-scripts writer: Freeze runs every script with `freeze`; Thaw and Abort run `thaw`,
/// in reverse order, for each script that froze. A required script's failed freeze vetoes the
/// snapshot, after the scripts that froze before it are thawed.
final class HooksWriter: WriterHandlers {
    let runner: HookRunner
    let log: EventLog
    /// The scripts that froze, in the order they did, per set.
    private let frozen = Mutex<[ObjectPath: [String]]>([:])

    init(runner: HookRunner, log: EventLog) {
        self.runner = runner
        self.log = log
    }

    func identify() async throws -> [WriterComponent] {
        log.note("Identify")
        return [WriterComponent(name: "hooks", type: "file-group", paths: [runner.directory])]
    }

    func freeze(set: ObjectPath) async throws {
        log.note("Freeze")
        let scripts: [String]
        do {
            scripts = try runner.scripts()
        } catch {
            throw WriterVeto(.nonRetryable, "cannot read \(runner.directory): \(error.localizedDescription)")
        }
        var done: [String] = []
        for script in scripts {
            do throws(HookRunner.Failure) {
                try await runner.run(script, "freeze", event: "freeze")
                done.append(script)
                log.note("froze \(script)")
            } catch {
                log.note("failed \(error)")
                guard runner.policy(of: script) == .require else { continue }
                await thaw(done, event: "abort")
                throw WriterVeto(.retryable, "freeze hook \(error)")
            }
        }
        frozen.withLock { $0[set] = done }
    }

    func thaw(set: ObjectPath) async throws {
        log.note("Thaw")
        let failures = await thaw(frozen.withLock { $0.removeValue(forKey: set) } ?? [], event: "thaw")
        if !failures.isEmpty {
            throw WriterVeto(.nonRetryable, "thaw hooks failed: " + failures.map(\.description).joined(separator: "; "))
        }
    }

    func abort(set: ObjectPath) async throws {
        log.note("Abort")
        await thaw(frozen.withLock { $0.removeValue(forKey: set) } ?? [], event: "abort")
    }

    /// Runs `thaw` for `scripts` in reverse order, every one whatever the others do.
    @discardableResult
    private func thaw(_ scripts: [String], event: String) async -> [HookRunner.Failure] {
        var failures: [HookRunner.Failure] = []
        for script in scripts.reversed() {
            do throws(HookRunner.Failure) {
                try await runner.run(script, "thaw", event: event)
                log.note("thawed \(script)")
            } catch {
                log.note("failed \(error)")
                failures.append(error)
            }
        }
        return failures
    }

    func prepareForBackup(set: ObjectPath, backup: BackupInfo) async throws { log.note("PrepareForBackup") }
    func prepareForSnapshot(set: ObjectPath, volumes: [String]) async throws { log.note("PrepareForSnapshot") }
    func postSnapshot(set: ObjectPath, devices: [String: String]) async throws { log.note("PostSnapshot") }
    func backupComplete(set: ObjectPath, backup: BackupInfo) async throws { log.note("BackupComplete") }
    func backupShutdown(set: ObjectPath) async throws {
        log.note("BackupShutdown")
        // A set that ends without Thaw or Abort (the requester vanished) still thaws.
        await thaw(frozen.withLock { $0.removeValue(forKey: set) } ?? [], event: "abort")
    }
}

/// Lines `<monotonic ns> <event>` appended to a file, for people and tests that follow a writer.
final class EventLog: Sendable {
    private let handle: FileHandle?

    init(path: String?) {
        if let path {
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            handle = FileHandle(forWritingAtPath: path)
            handle?.seekToEndOfFile()
        } else {
            handle = nil
        }
    }

    func note(_ text: String) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let line = "\(Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)) \(text)\n"
        if let handle { handle.write(Data(line.utf8)) } else { FileHandle.standardError.write(Data(line.utf8)) }
    }
}

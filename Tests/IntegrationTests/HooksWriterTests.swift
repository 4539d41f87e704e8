import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// `shadowcopy-writer hooks`: qemu-ga-style hook scripts around the freeze, for real.
@Suite("The hook-scripts writer", .serialized)
struct HooksWriterTests {
    /// A writerful set of `volume` through DoSnapshotSet; returns the job's (State, ErrorName) and
    /// its error message.
    static func snapshot(_ f: DaemonFixture, _ volume: LoopVolume) async throws -> (String, String, String) {
        let client = try f.client()
        defer { client.close() }
        let set = try await RequesterSet.start(client)
        _ = try await set.prepare(volume: volume.mountPoint)
        let job = try #require(try await set.call("DoSnapshotSet").first?.objectPath)
        _ = try await SC.call(client, "Wait", [.uint32(60_000)], path: job, interface: RequesterSet.job)
        let outcome = (try await set.property(job, RequesterSet.job, "State"),
                       try await set.property(job, RequesterSet.job, "ErrorName"),
                       try await set.property(job, RequesterSet.job, "ErrorMessage"))
        _ = try await set.call("Delete")
        return outcome
    }

    @Test func scriptsFreezeInOrderAndThawInReverse() async throws {
        let hooks = try HookDirectory(["10-db": HookDirectory.logging, "20-app": HookDirectory.logging,
                                       "30-cache": HookDirectory.logging, "README": "not a script"])
        defer { hooks.remove() }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: hooks.path + "/README")
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let writer = try await HooksWriterProcess(bus: f.bus, name: "hooks", directory: hooks.path)
                defer { writer.stop() }
                let (state, error, message) = try await Self.snapshot(f, volume)
                #expect(state == "succeeded", "\(error): \(message)")
                #expect(hooks.order == [
                    "10-db freeze freeze", "20-app freeze freeze", "30-cache freeze freeze",
                    "30-cache thaw thaw", "20-app thaw thaw", "10-db thaw thaw",
                ])
            }
        }
    }

    @Test func aFailingFreezeScriptVetoesAndThoseThatFrozeAreThawed() async throws {
        let failing = "#!/bin/sh\n[ \"$1\" = freeze ] && { echo 'cannot take the lock'; exit 3; }\nexit 0\n"
        let hooks = try HookDirectory(["10-db": HookDirectory.logging, "20-broken": failing, "30-cache": HookDirectory.logging])
        defer { hooks.remove() }
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let writer = try await HooksWriterProcess(bus: f.bus, name: "hooks", directory: hooks.path)
                defer { writer.stop() }
                let (state, error, message) = try await Self.snapshot(f, volume)
                #expect(state == "failed")
                #expect(error == "org.shadowcopy.ShadowCopy1.Error.WriterRetryable")
                #expect(message.contains("20-broken") && message.contains("exit status 3") && message.contains("cannot take the lock"),
                        "\(message)")
                // 10-db froze and is thawed (as an abort); 30-cache never ran.
                #expect(hooks.order == ["10-db freeze freeze", "10-db thaw abort"])
                #expect(try volume.untouched())
            }
        }
    }

    @Test func aScriptPastItsTimeoutIsKilledAndVetoes() async throws {
        let slow = "#!/bin/sh\n[ \"$1\" = freeze ] && exec sleep 30\nexit 0\n"
        let hooks = try HookDirectory(["10-db": HookDirectory.logging, "20-slow": slow])
        defer { hooks.remove() }
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let writer = try await HooksWriterProcess(bus: f.bus, name: "hooks", directory: hooks.path,
                                                          extra: ["--script-timeout", "20-slow=300"])
                defer { writer.stop() }
                let start = ContinuousClock.now
                let (state, _, message) = try await Self.snapshot(f, volume)
                #expect(state == "failed")
                #expect(message.contains("20-slow") && message.contains("300 ms"), "\(message)")
                #expect(ContinuousClock.now - start < .seconds(10))
                #expect(hooks.order == ["10-db freeze freeze", "10-db thaw abort"])
            }
        }
    }

    @Test func anIgnoredScriptsFailureIsNoVeto() async throws {
        let failing = "#!/bin/sh\nexit 1\n"
        let hooks = try HookDirectory(["10-db": HookDirectory.logging, "20-optional": failing, "30-cache": HookDirectory.logging])
        defer { hooks.remove() }
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let writer = try await HooksWriterProcess(bus: f.bus, name: "hooks", directory: hooks.path,
                                                          extra: ["--ignore-failure", "20-optional"])
                defer { writer.stop() }
                let (state, _, _) = try await Self.snapshot(f, volume)
                #expect(state == "succeeded")
                #expect(hooks.order == ["10-db freeze freeze", "30-cache freeze freeze", "30-cache thaw thaw", "10-db thaw thaw"])
            }
        }
    }

    @Test func swiftWritersRegisterAgainWhenTheDaemonRestarts() async throws {
        let hooks = try HookDirectory(["10-db": HookDirectory.logging])
        defer { hooks.remove() }
        try await DaemonFixture.with { f in
            let writer = try await HooksWriterProcess(bus: f.bus, name: "returning", directory: hooks.path)
            defer { writer.stop() }
            await f.daemon.stop(signal: SIGKILL)
            try await DaemonProcess.with(bus: f.bus) { _ in
                let client = try f.client()
                defer { client.close() }
                #expect(try await SC.eventually(.seconds(10)) {
                    try await SC.managedObjects(client).values.contains { $0[SC.writer.rawValue]?["Name"]?.string == "returning" }
                }, "the writer registered with the new daemon by itself")
            }
        }
    }
}

import DBus
import Foundation
import ShadowCopyTestSupport
import Testing

/// A requester's view of one set, through the Swift client.
struct RequesterSet {
    static let interface: InterfaceName = "org.shadowcopy.ShadowCopy1.SnapshotSet"
    static let job: InterfaceName = "org.shadowcopy.ShadowCopy1.Job"
    let client: Connection
    let path: ObjectPath

    static func start(_ client: Connection, _ options: [(String, Value)] = []) async throws -> RequesterSet {
        let reply = try await SC.call(client, "StartSnapshotSet", [.vardict(options)])
        return RequesterSet(client: client, path: try #require(reply.first?.objectPath))
    }

    func call(_ member: MemberName, _ args: [Value] = [.vardict([])]) async throws -> [Value] {
        try await SC.call(client, member, args, path: path, interface: RequesterSet.interface)
    }

    /// Runs a phase that returns a Job and waits for it; returns the job's (State, ErrorName).
    func run(_ member: MemberName) async throws -> (String, String) {
        let job = try #require(try await call(member).first?.objectPath)
        let done = try await SC.call(client, "Wait", [.uint32(60_000)], path: job, interface: RequesterSet.job)
        #expect(done.first?.bool == true, "\(member) ended within 60 s")
        let outcome = (try await property(job, RequesterSet.job, "State"), try await property(job, RequesterSet.job, "ErrorName"))
        if outcome.0 != "succeeded" {
            // Said where it happened, so a failure that was not expected explains itself.
            print("\(member) \(outcome.0): \(outcome.1): \(try await property(job, RequesterSet.job, "ErrorMessage"))")
        }
        return outcome
    }

    func property(_ object: ObjectPath, _ interface: InterfaceName, _ name: String) async throws -> String {
        let value = try await SC.call(client, "Get", [.string(interface.rawValue), .string(name)],
                                      path: object, interface: SC.properties).first?.variantValue
        return value?.string ?? value?.objectPath?.rawValue ?? ""
    }

    func state() async throws -> String { try await property(path, RequesterSet.interface, "State") }

    /// Gather, add the volume, prepare: everything before DoSnapshotSet.
    func prepare(volume: String) async throws -> ObjectPath {
        #expect(try await run("GatherWriterMetadata") == ("succeeded", ""))
        let snapshot = try #require(try await call("AddVolume", [.string(volume), .vardict([])]).first?.objectPath)
        #expect(try await run("PrepareForBackup") == ("succeeded", ""))
        return snapshot
    }
}

@Suite("Snapshot sets on btrfs, with writers", .serialized)
struct SnapshotSetTests {
    static let snapshotInterface: InterfaceName = "org.shadowcopy.ShadowCopy1.Snapshot"

    @Test func fullBackupWithThreeWritersCopiesExactlyWhatWasWrittenBeforeFreeze() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let data = volume.mountPoint + "/records"
                // Two writers in Swift (shadowcopy-writer, the SDK) and one in Python: the contract
                // is language-neutral.
                let hooks = try HookDirectory(["10-note": HookDirectory.logging])
                defer { hooks.remove() }
                let front = try await PythonWriter(bus: f.bus, name: "front", level: "front-end", extra: ["--data", data])
                let back = try await HooksWriterProcess(bus: f.bus, name: "back", directory: hooks.path, level: "back-end")
                let system = try await HooksWriterProcess(bus: f.bus, name: "system", directory: hooks.path, level: "system")
                let writers: [PeerProcess] = [front, back, system]
                defer { for w in writers { w.stop() } }
                let client = try f.client()
                defer { client.close() }
                try await Task.sleep(for: .milliseconds(300))  // some records before the copy

                let set = try await RequesterSet.start(client)
                let snapshot = try await set.prepare(volume: volume.mountPoint)
                #expect(try await set.run("DoSnapshotSet") == ("succeeded", ""))
                #expect(try await set.state() == "snapshotted")
                #expect(try await set.property(set.path, RequesterSet.interface, "Consistency") == "application")
                #expect(try await set.property(snapshot, Self.snapshotInterface, "State") == "created")

                // Level order: front-end freezes first and thaws last.
                let f1 = try #require(front.time(of: "Freeze")), b1 = try #require(back.time(of: "Freeze"))
                let s1 = try #require(system.time(of: "Freeze"))
                #expect(f1 < b1 && b1 < s1)
                let f2 = try #require(front.time(of: "Thaw")), b2 = try #require(back.time(of: "Thaw"))
                let s2 = try #require(system.time(of: "Thaw"))
                #expect(s2 < b2 && b2 < f2)
                for writer in writers {
                    #expect(writer.calls ==
                            ["Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot"])
                }

                // The copy holds exactly the records written before Freeze.
                let exposed = try #require(try await SC.call(client, "Expose", [.vardict([])], path: snapshot,
                                                             interface: Self.snapshotInterface).first?.string)
                #expect(exposed.hasPrefix(f.daemon.exposeRoot + "/"), "under the expose root (/run/shadowcopy by default)")
                let frozenAfter = try #require(front.events.first { $0.hasPrefix("frozen-after") }.flatMap { Int($0.split(separator: " ")[1]) })
                let copied = try String(contentsOfFile: exposed + "/records", encoding: .utf8)
                #expect(frozenAfter > 0)
                #expect(copied == (1...frozenAfter).map { "\($0)\n" }.joined())
                #expect(FileManager.default.createFile(atPath: exposed + "/new", contents: nil) == false, "read-only")
                try await Task.sleep(for: .milliseconds(100))
                let live = try String(contentsOfFile: data, encoding: .utf8).split(separator: "\n").count
                #expect(live > frozenAfter, "the writer went on after Thaw")

                #expect(try await set.run("BackupComplete") == ("succeeded", ""))
                let status = try await set.call("GatherWriterStatus", []).first?.arrayElements ?? []
                #expect(status.count == 3)
                #expect(status.allSatisfy { $0.structMembers?[1].string == "stable" && $0.structMembers?[2].string == "" })

                _ = try await set.call("Delete")
                #expect(try volume.untouched(), "Delete removes the copy")
                #expect(!(try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(exposed))
                #expect(front.events.contains("BackupShutdown"))
            }
        }
    }

    @Test(arguments: ["PrepareForBackup", "PrepareForSnapshot", "Freeze"])
    func aVetoAbortsTheSetAndLeavesNothing(phase: String) async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let good = try await PythonWriter(bus: f.bus, name: "good", level: "front-end")
                let vetoer = try await PythonWriter(bus: f.bus, name: "vetoer", level: "back-end", extra: ["--veto", phase])
                defer { good.stop(); vetoer.stop() }
                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client)
                #expect(try await set.run("GatherWriterMetadata") == ("succeeded", ""))
                _ = try await set.call("AddVolume", [.string(volume.mountPoint), .vardict([])])
                let failed = ("failed", "org.shadowcopy.ShadowCopy1.Error.WriterRetryable")
                if phase == "PrepareForBackup" {
                    #expect(try await set.run("PrepareForBackup") == failed)
                } else {
                    #expect(try await set.run("PrepareForBackup") == ("succeeded", ""))
                    #expect(try await set.run("DoSnapshotSet") == failed)
                }
                #expect(try await set.state() == "aborted")
                #expect(good.events.last == "Abort", "every writer that heard of the set gets Abort")
                if phase == "Freeze" { #expect(good.events.contains("Freeze")) }
                #expect(try volume.untouched())
                var writer: ObjectPath?
                for path in try await SC.writerPaths(client) where try await set.property(path, SC.writer, "Name") == "vetoer" {
                    writer = path
                }
                let vetoerPath = try #require(writer)
                let failedState = ["PrepareForBackup": "failed-at-prepare-backup",
                                   "PrepareForSnapshot": "failed-at-prepare-snapshot", "Freeze": "failed-at-freeze"][phase]!
                #expect(try await set.property(vetoerPath, SC.writer, "State") == failedState)
                #expect(try await SC.call(client, "Query", [.vardict([])]).first?.arrayElements?.isEmpty == true)
            }
        }
    }

    @Test func aWriterHangingInFreezeEndsInTimeoutAndAbort() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let good = try await PythonWriter(bus: f.bus, name: "good")
                let hung = try await PythonWriter(bus: f.bus, name: "hung", level: "back-end",
                                                  extra: ["--hang", "Freeze", "--freeze-timeout-ms", "1500"])
                defer { good.stop(); hung.stop() }
                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client)
                _ = try await set.prepare(volume: volume.mountPoint)
                let start = ContinuousClock.now
                #expect(try await set.run("DoSnapshotSet") == ("failed", "org.shadowcopy.ShadowCopy1.Error.Timeout"))
                let took = ContinuousClock.now - start
                #expect(took >= .milliseconds(1400) && took < .seconds(10))
                #expect(good.events.suffix(2) == ["Freeze", "Abort"] || good.events.last == "Abort")
                #expect(hung.events.last == "Abort", "the hung writer is told to abort too")
                #expect(try volume.untouched())
            }
        }
    }

    @Test func aWriterKilledDuringFreezeAbortsTheSet() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let good = try await PythonWriter(bus: f.bus, name: "good")
                let doomed = try await PythonWriter(bus: f.bus, name: "doomed", level: "back-end", extra: ["--hang", "Freeze"])
                defer { good.stop(); doomed.stop() }
                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client)
                _ = try await set.prepare(volume: volume.mountPoint)
                let job = try #require(try await set.call("DoSnapshotSet").first?.objectPath)
                #expect(try await SC.eventually(.seconds(10)) { doomed.events.contains("Freeze") })
                doomed.stop(signal: SIGKILL)
                _ = try await SC.call(client, "Wait", [.uint32(20_000)], path: job, interface: RequesterSet.job)
                #expect(try await set.property(job, RequesterSet.job, "State") == "failed")
                #expect(good.events.last == "Abort")
                #expect(try await set.state() == "aborted")
                #expect(try volume.untouched())
            }
        }
    }

    @Test func aRequesterThatLeavesDuringDoSnapshotSetHasItsSetAborted() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let good = try await PythonWriter(bus: f.bus, name: "good")
                let slow = try await PythonWriter(bus: f.bus, name: "slow", level: "back-end", extra: ["--hang", "Freeze"])
                defer { good.stop(); slow.stop() }
                let requester = try f.client()
                let set = try await RequesterSet.start(requester)
                _ = try await set.prepare(volume: volume.mountPoint)
                _ = try await set.call("DoSnapshotSet")
                #expect(try await SC.eventually(.seconds(10)) { slow.events.contains("Freeze") })
                requester.close()

                let observer = try f.client()
                defer { observer.close() }
                #expect(try await SC.eventually(.seconds(10)) { good.events.last == "BackupShutdown" })
                #expect(good.events.contains("Abort"))
                #expect(try await SC.eventually { try await SC.managedObjects(observer)[set.path] == nil })
                #expect(try volume.untouched())
                // The slot is free again.
                let next = try await RequesterSet.start(observer)
                _ = try await next.call("Delete")
            }
        }
    }

    /// A requester may send AddVolume and DoSnapshotSet at once: the set applies its
    /// requester's calls in the order sent, so the volume is in the set before the copy is made.
    @Test func aRequesterMaySendItsCallsAtOnce() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let c = try f.client()
                defer { c.close() }
                let set = try await RequesterSet.start(c, [("context", .string("file-share-backup"))])
                func message(_ member: MemberName, _ args: [Value]) throws -> Message {
                    let m = Message.methodCall(destination: SC.name, path: set.path, interface: RequesterSet.interface, member: member)
                    try m.append(args)
                    return m
                }
                let added = try c.send(call: try message("AddVolume", [.string(volume.mountPoint), .vardict([])]))
                let made = try c.send(call: try message("DoSnapshotSet", [.vardict([])]))
                let snapshot = try #require(try await added.values().first?.objectPath)
                let job = try #require(try await made.values().first?.objectPath)
                _ = try await SC.call(c, "Wait", [.uint32(60_000)], path: job, interface: RequesterSet.job)
                #expect(try await set.property(job, RequesterSet.job, "State") == "succeeded")
                #expect(try await set.property(snapshot, "org.shadowcopy.ShadowCopy1.Snapshot", "State") == "created")
                _ = try await set.call("Delete")
            }
        }
    }

    @Test func oneSetInCreationAtATime() async throws {
        try await DaemonFixture.with { f in
            let first = try f.client(), second = try f.client()
            defer { first.close(); second.close() }
            let set = try await RequesterSet.start(first)
            #expect(await SC.errorName { _ = try await RequesterSet.start(second) }
                    == "org.shadowcopy.ShadowCopy1.Error.SnapshotSetInProgress")
            #expect(await SC.errorName { _ = try await set.call("DoSnapshotSet") } == "org.shadowcopy.ShadowCopy1.Error.BadState")
            // Only the requester drives its set (root may only abort it).
            #expect(await SC.errorName { _ = try await SC.call(second, "GatherWriterMetadata", [.vardict([])], path: set.path,
                                                                interface: RequesterSet.interface) }
                    == "org.shadowcopy.ShadowCopy1.Error.NotAuthorized")
            async let waiting = RequesterSet.start(second, [("wait-ms", .uint32(10_000))])
            try await Task.sleep(for: .milliseconds(200))
            _ = try await set.call("Abort")
            let granted = try await waiting
            #expect(try await granted.state() == "created")
        }
    }

    @Test func aSetLeftIdleIsAbortedAndFreesTheSlot() async throws {
        try await DaemonFixture.with(arguments: ["--idle-set-timeout-ms", "400"]) { f in
            let first = try f.client(), second = try f.client()
            defer { first.close(); second.close() }
            let set = try await RequesterSet.start(first)
            #expect(try await SC.eventually(.seconds(5)) { try await set.state() == "aborted" })
            let next = try await RequesterSet.start(second)
            #expect(try await next.state() == "created", "the idle set gave the creation slot back")
            _ = try await next.call("Delete")
        }
    }

    @Test func lightSubscribersHearPrepareFreezeThawAndDoneInOrder() async throws {
        try await LoopVolume.with { volume in
            try await DaemonFixture.with { f in
                let subscriber = try await PythonSubscriber(bus: f.bus, name: "listener")
                let writer = try await PythonWriter(bus: f.bus, name: "app")
                defer { subscriber.stop(); writer.stop() }
                let client = try f.client()
                defer { client.close() }
                let set = try await RequesterSet.start(client)
                _ = try await set.prepare(volume: volume.mountPoint)
                #expect(try await set.run("DoSnapshotSet") == ("succeeded", ""))
                #expect(try await SC.eventually { subscriber.events.contains { $0.hasPrefix("SnapshotSetDone") } })
                let heard = subscriber.events.filter { !$0.hasPrefix("registered") }
                #expect(heard.map { String($0.split(separator: " ")[0]) } == ["PrepareForSnapshot", "Freeze", "Thaw", "SnapshotSetDone"])
                #expect(heard.allSatisfy { $0.contains(set.path.rawValue) })
                #expect(heard[1].hasSuffix(volume.mountPoint), "Freeze names the volumes")
                #expect(heard[3].hasSuffix("1 "), "SnapshotSetDone says ok with no error")
                _ = try await set.call("Delete")

                // A writerless set leaves applications out: subscribers hear only that it is done.
                let writerless = try await RequesterSet.start(client, [("context", .string("file-share-backup"))])
                _ = try await writerless.call("AddVolume", [.string(volume.mountPoint), .vardict([])])
                #expect(try await writerless.run("DoSnapshotSet") == ("succeeded", ""))
                #expect(try await SC.eventually {
                    subscriber.events.contains { $0.hasPrefix("SnapshotSetDone") && $0.contains(writerless.path.rawValue) }
                })
                let second = subscriber.events.filter { !$0.hasPrefix("registered") }.dropFirst(heard.count)
                #expect(second.map { String($0.split(separator: " ")[0]) } == ["SnapshotSetDone"])
                _ = try await writerless.call("Delete")
            }
        }
    }
}

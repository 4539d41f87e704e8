/// Writers' side of the sequence: Identify, and events fanned out to writers concurrently.
extension SnapshotEngine {
    /// GatherWriterMetadata: Identify to every registered writer, each within its deadline.
    public func gatherWriterMetadata(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError) -> Job {
        let context = try withSet(id, caller) { set throws(ShadowCopyError) in
            try SnapshotEngine.require(set, [.created], for: "GatherWriterMetadata")
            return set.context
        }
        return startJob(id, "GatherWriterMetadata") { [self] job throws(ShadowCopyError) in
            // Writerless contexts (file-share-backup, client-accessible) skip writers altogether.
            let everyone = context.involvesWriters ? writers.all : []
            var done = 0
            let answers = await withTaskGroup(of: (WriterRecord, Result<WriterMetadata, ShadowCopyError>).self) { group in
                for writer in everyone {
                    group.addTask { (writer, await self.transport.identify(writer, timeoutMs: self.settings.writerEventTimeoutMs)) }
                }
                var answers: [(WriterRecord, Result<WriterMetadata, ShadowCopyError>)] = []
                for await answer in group {
                    answers.append(answer)
                    done += 1
                    job.report(Double(done) / Double(max(everyone.count, 1)))
                }
                return answers
            }
            try Task.checkCancellation(or: .cancelled)
            state.withLock { s in
                guard var set = s.sets[id] else { return }
                for (writer, answer) in answers {
                    var part = SetWriter(writer: writer)
                    switch answer {
                    case .success(let metadata):
                        part.metadata = metadata
                    case .failure(let error):
                        part.state = .failedAtIdentify
                        part.failure = error.code
                        part.failureMessage = error.message
                    }
                    set.writers[writer.id] = part
                }
                set.state = .metadataGathered
                s.sets[id] = set
            }
            for (writer, answer) in answers {
                if case .failure(let error) = answer {
                    writers.update(writer.id, state: .failedAtIdentify, error: error.message)
                    observer.writerChanged(writer.id)
                    logger.warning("writer failed Identify", metadata: ["writer": "\(writer.registration.name)", "error": "\(error)"])
                }
            }
        }
    }

    /// GetWriterMetadata: what each writer of the set answered to Identify.
    public func writerMetadata(_ id: Identifier, _ caller: Caller) throws(ShadowCopyError)
        -> [(Identifier, WriterMetadata)]
    {
        try withSet(id, caller) { set throws(ShadowCopyError) in
            guard set.state != .created || set.busyWith == nil else { throw .badState("GatherWriterMetadata is still running") }
            return set.writers.values.compactMap { part in part.metadata.map { (part.writer.id, $0) } }
                .sorted { $0.0.hex < $1.0.hex }
        }
    }

    /// The writers that take part in the set's next events: identified, still registered, and,
    /// when components are selected one by one, with at least one selected (VSS rule).
    func participants(_ set: SnapshotSetRecord) -> [WriterRecord] {
        guard set.context.involvesWriters else { return [] }
        return set.writers.values.filter { part in
            part.metadata != nil && part.failure == nil && (!set.selectComponents || !part.selected.isEmpty)
        }.compactMap { writers.writer($0.writer.id) }.sorted { $0.id.hex < $1.id.hex }
    }

    /// Sends `event` to `targets` at once, each within `timeoutMs`; records every answer in the
    /// set and in the writer's record, and returns the failures. With `announce` false the
    /// writers' new states are not signalled (the caller announces them once, later).
    @discardableResult
    func deliver(_ event: WriterEvent, set id: Identifier, to targets: [WriterRecord], timeoutMs: UInt32,
                 announce: Bool = true) async -> [(WriterRecord, ShadowCopyError)]
    {
        guard !targets.isEmpty else { return [] }
        state.withLock { s in
            for writer in targets { s.sets[id]?.writers[writer.id]?.sent.append(event.method) }
        }
        let answers = await withTaskGroup(of: (WriterRecord, WriterAnswer).self) { group in
            for writer in targets {
                group.addTask { (writer, await self.transport.send(event, set: id, to: writer, timeoutMs: timeoutMs)) }
            }
            var answers: [(WriterRecord, WriterAnswer)] = []
            for await answer in group { answers.append(answer) }
            return answers
        }
        var failures: [(WriterRecord, ShadowCopyError)] = []
        for (writer, answer) in answers {
            let newState: WriterState
            var error: ShadowCopyError?
            switch answer {
            case .ok:
                newState = SnapshotEngine.stateAfter(event)
            case .failed(let code, let message):
                newState = event.failedState
                error = ShadowCopyError(code, "\(writer.registration.name): \(event.method): \(message)")
                failures.append((writer, error!))
            }
            let recorded = state.withLock { s -> WriterState in
                guard var part = s.sets[id]?.writers[writer.id] else { return newState }
                // A failure stays on record for the rest of the set (VSS keeps FAILED_AT_*).
                if part.failure == nil || error != nil {
                    part.state = newState
                    if let error {
                        part.failure = error.code
                        part.failureMessage = error.message
                    }
                }
                s.sets[id]?.writers[writer.id] = part
                return part.state
            }
            writers.update(writer.id, state: recorded, error: error?.message)
            if announce { observer.writerChanged(writer.id) }
            if let error {
                logger.warning("writer failed", metadata: [
                    "set": "\(id)", "writer": "\(writer.registration.name)", "event": "\(event.method)", "error": "\(error)",
                ])
            }
        }
        return failures
    }

    static func stateAfter(_ event: WriterEvent) -> WriterState {
        switch event {
        case .prepareForSnapshot: .waitingForFreeze
        case .freeze: .waitingForThaw
        case .thaw: .waitingForPostSnapshot
        case .postSnapshot: .waitingForBackupComplete
        case .prepareForBackup, .abort, .backupComplete, .backupShutdown, .preRestore, .postRestore: .stable
        }
    }

    /// The failure a veto turns into for the requester: the first writer's, by name.
    static func veto(_ failures: [(WriterRecord, ShadowCopyError)], at event: WriterEvent) -> ShadowCopyError? {
        guard let (_, first) = failures.min(by: { $0.0.registration.name < $1.0.registration.name }) else { return nil }
        let others = failures.count > 1 ? " (and \(failures.count - 1) more writers)" : ""
        return ShadowCopyError(first.code, "\(event.method) vetoed: \(first.message)\(others)")
    }
}

extension Task where Success == Never, Failure == Never {
    /// Throws `code` as a ``ShadowCopyError`` when the current task is cancelled.
    static func checkCancellation(or code: ShadowCopyError.Code) throws(ShadowCopyError) {
        if Task.isCancelled { throw ShadowCopyError(code, "the job was cancelled") }
    }
}

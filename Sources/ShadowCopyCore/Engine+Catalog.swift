#if canImport(Glibc)
import Glibc
#endif

/// Taking the catalog back at start, and the providers that come and go.
extension SnapshotEngine {
    /// Loads the catalog and reconciles it with what the providers find; returns what it fixed,
    /// one line per fix. Copies half made by a daemon that died, non-persistent copies (they do
    /// not outlive the service, as in VSS), rows whose copy is gone and exposures no longer
    /// mounted are all dropped; what survives is back on the bus.
    public func restoreFromCatalog() async throws(ShadowCopyError) -> [String] {
        var fixes: [String] = []
        let (contents, unreadable) = try catalog.load()
        for case let provider as any DiffAreaProvider in providers {
            for area in contents.storage { provider.remember(location: area.location) }
        }
        for provider in providers { fixes += await provider.recover().map { "\(provider.info.name): \($0)" } }
        for provider in providers {
            let lost = contents.snapshots.compactMap { s -> LostCopy? in
                guard s.provider == provider.info.name, s.state == .created, let copy = s.copy,
                    contents.sets.first(where: { $0.id == s.set })?.persistent == true,
                    !provider.exists(snapshot: s.id, copy: copy, volume: s.originalVolume)
                else { return nil }
                return LostCopy(snapshot: s.id, volume: s.originalVolume, copy: copy)
            }
            if !lost.isEmpty { fixes += await provider.reassemble(lost).map { "\(provider.info.name): \($0)" } }
        }
        fixes += unreadable.map { "ignored an unreadable catalog row (\($0))" }
        let mounted = Mounts.mountPoints()
        var kept: [SnapshotRecord] = []
        for var snapshot in contents.snapshots {
            guard let set = contents.sets.first(where: { $0.id == snapshot.set }) else { continue }
            let provider = providers.first { $0.info.name == snapshot.provider }
            let what = "snapshot \(snapshot.id) of \(snapshot.originalVolume)"
            if snapshot.state == .pending || !set.persistent {
                let why = snapshot.state == .pending ? "half made when shadowcopyd stopped" : "not persistent"
                if let provider {
                    do {
                        try await provider.delete(snapshot: snapshot.id, volume: snapshot.originalVolume, copy: snapshot.copy)
                    } catch {
                        fixes.append("could not delete \(what) (\(why)): \(error.message); kept")
                        kept.append(snapshot)
                        continue
                    }
                }
                if !snapshot.exposedPath.isEmpty { unmount(snapshot.exposedPath) }
                try forget(snapshot.id)
                fixes.append("deleted \(what): \(why)")
                continue
            }
            // A merging copy's device is gone by design; the merge itself is what remains.
            if snapshot.state != .merging, let provider, let copy = snapshot.copy, !provider.exists(snapshot: snapshot.id, copy: copy, volume: snapshot.originalVolume) {
                if !snapshot.exposedPath.isEmpty { unmount(snapshot.exposedPath) }
                try forget(snapshot.id)
                fixes.append("dropped \(what): its copy is gone")
                continue
            }
            if !snapshot.exposedPath.isEmpty, !mounted.contains(snapshot.exposedPath) {
                fixes.append("\(what) is no longer exposed at \(snapshot.exposedPath)")
                rmdir(snapshot.exposedPath)
                snapshot.exposedPath = ""
                try catalog.update(snapshot)
            }
            kept.append(snapshot)
        }
        var sets: [SnapshotSetRecord] = []
        for var set in contents.sets {
            set.snapshots = kept.filter { $0.set == set.id }.sorted { $0.creationNs < $1.creationNs }.map(\.id)
            set.volumes = kept.filter { $0.set == set.id }.map(\.originalVolume)
            guard !set.snapshots.isEmpty else {
                try catalog.forget(set: set.id)
                continue
            }
            // The requester's bus name died with the old daemon's connections; the same uid
            // may still drive the set, as for sets made with auto-release off.
            set.autoRelease = false
            sets.append(set)
        }
        state.withLock { s in
            for set in sets { s.sets[set.id] = set }
            for snapshot in kept { s.snapshots[snapshot.id] = snapshot }
            for area in contents.storage { s.storage[area.id] = area }
        }
        for area in contents.storage { observer.storageAdded(area.id) }
        for set in sets { observer.setAdded(set.id) }
        for snapshot in kept { observer.snapshotAdded(snapshot.id) }
        logger.info("catalog loaded", metadata: [
            "path": "\(catalog.path)", "sets": "\(sets.count)", "snapshots": "\(kept.count)", "fixed": "\(fixes.count)",
        ])
        for fix in fixes { logger.notice("catalog reconciled", metadata: ["fix": "\(fix)"]) }
        return fixes
    }

    private func forget(_ snapshot: Identifier) throws(ShadowCopyError) {
        try catalog.forget(snapshot: snapshot)
    }

    // MARK: Providers

    /// Adds an external provider; its name must be new.
    public func register(provider: any SnapshotProvider) throws(ShadowCopyError) {
        try providerList.withLock { list throws(ShadowCopyError) in
            guard !list.contains(where: { $0.info.name == provider.info.name }) else {
                throw .alreadyExists("a provider named '\(provider.info.name)' is registered")
            }
            list.append(provider)
        }
        logger.info("provider registered", metadata: ["provider": "\(provider.info.name)"])
    }

    /// Removes a provider; sets that use it fail at their next step with it.
    public func unregister(provider name: String) {
        providerList.withLock { $0.removeAll { $0.info.name == name } }
        logger.info("provider unregistered", metadata: ["provider": "\(name)"])
    }
}

/// The mount table, as the kernel shows this process.
public enum Mounts {
    /// Every mount point in /proc/self/mountinfo, with its octal escapes decoded.
    public static func mountPoints() -> Set<String> { Set(entries().map(\.point)) }

    /// The `major:minor` of every mounted device.
    public static func mountedDevices() -> Set<String> { Set(entries().map(\.device)) }

    private static func entries() -> [(device: String, point: String)] {
        guard let file = fopen("/proc/self/mountinfo", "r") else { return [] }
        defer { fclose(file) }
        var entries: [(String, String)] = []
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let fields = String(cString: line).split(separator: " ")
            if fields.count > 4 { entries.append((String(fields[2]), unescape(fields[4]))) }
        }
        return entries
    }

    /// mountinfo writes space, tab, newline and backslash as `\ooo`.
    private static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
                let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

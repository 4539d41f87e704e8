/// Parsers for the status lines of the targets shadowcopy uses, as the kernel prints them
/// (Documentation/admin-guide/device-mapper/snapshot.rst and thin-provisioning.rst).
extension DeviceMapper {
    /// A `snapshot` (or `snapshot-merge`) target's status.
    public enum SnapshotStatus: Sendable, Equatable {
        /// `<sectors_allocated>/<total_sectors> <metadata_sectors>`: COW use of the store.
        case active(allocated: UInt64, total: UInt64, metadata: UInt64)
        /// The store filled up or an I/O error hit it: the copy is lost, the origin is not.
        case invalid
        /// The store filled up (newer kernels say so rather than Invalid).
        case overflow
        /// A merge back into the origin failed.
        case mergeFailed

        public init?(_ text: String) {
            let words = text.split(separator: " ")
            switch words.first {
            case "Invalid": self = .invalid
            case "Overflow": self = .overflow
            case "Merge" where words.dropFirst().first == "failed": self = .mergeFailed
            default:
                guard words.count == 2 else { return nil }
                let parts = words[0].split(separator: "/")
                guard parts.count == 2, let allocated = UInt64(parts[0]), let total = UInt64(parts[1]),
                    let metadata = UInt64(words[1]), allocated <= total
                else { return nil }
                self = .active(allocated: allocated, total: total, metadata: metadata)
            }
        }

        /// How full the store is, 0 to 1; nil when the copy is no longer valid.
        public var fill: Double? {
            guard case .active(let allocated, let total, _) = self, total > 0 else { return nil }
            return Double(allocated) / Double(total)
        }
    }

    /// A `thin-pool` target's status.
    public struct ThinPoolStatus: Sendable, Equatable {
        public var transaction: UInt64
        public var usedMetadataBlocks: UInt64
        public var totalMetadataBlocks: UInt64
        public var usedDataBlocks: UInt64
        public var totalDataBlocks: UInt64
        /// `rw`, `ro` or `out_of_data_space`.
        public var mode: String
        public var needsCheck: Bool

        /// Parses `<transaction> <used>/<total metadata> <used>/<total data> <held root> <mode>
        /// <discard> <no-space policy> <needs_check|-> [<metadata low watermark>]`; nil for
        /// `Fail`, `Error` or anything else.
        public init?(_ text: String) {
            let words = text.split(separator: " ").map(String.init)
            guard words.count >= 8, let transaction = UInt64(words[0]) else { return nil }
            let metadata = words[1].split(separator: "/"), data = words[2].split(separator: "/")
            guard metadata.count == 2, data.count == 2, let um = UInt64(metadata[0]), let tm = UInt64(metadata[1]),
                let ud = UInt64(data[0]), let td = UInt64(data[1]), ["rw", "ro", "out_of_data_space"].contains(words[4])
            else { return nil }
            self.transaction = transaction
            usedMetadataBlocks = um
            totalMetadataBlocks = tm
            usedDataBlocks = ud
            totalDataBlocks = td
            mode = words[4]
            needsCheck = words[7] == "needs_check"
        }
    }

    /// A `thin` target's status.
    public enum ThinStatus: Sendable, Equatable {
        /// `<mapped sectors> <highest mapped sector>`; `highest` is nil when nothing is mapped (`-`).
        case active(mapped: UInt64, highest: UInt64?)
        case failed

        public init?(_ text: String) {
            let words = text.split(separator: " ")
            if words.first == "Fail" { self = .failed; return }
            guard words.count == 2, let mapped = UInt64(words[0]) else { return nil }
            if words[1] == "-" { self = .active(mapped: mapped, highest: nil); return }
            guard let highest = UInt64(words[1]) else { return nil }
            self = .active(mapped: mapped, highest: highest)
        }
    }
}

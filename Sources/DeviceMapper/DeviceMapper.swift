#if canImport(Glibc)
import Glibc
#endif
import CDevMapper
import Synchronization

/// The libdevmapper binding: create, load, suspend, resume, remove, and read info, tables,
/// status and target messages of device-mapper devices.
///
/// libdevmapper is not thread-safe: every call goes through one lock, which makes all of them
/// one serial sequence whichever thread or task calls. Device nodes under /dev/mapper are made
/// by the library's own node operations (each task ends with `dm_udev_wait`, which runs them),
/// so it works where no udev runs (`DM_DISABLE_UDEV=1` in the environment) and where udev does.
public enum DeviceMapper {
    /// A failed device-mapper operation: what was attempted, on which device.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let operation: String
        public let device: String
        public let reason: String

        public var description: String { "device-mapper \(operation) \(device): \(reason)" }
    }

    /// One line of a table: `start length target params`, validated so that no value can carry
    /// a second line or another target into the kernel.
    public struct TableLine: Sendable, Equatable, CustomStringConvertible {
        public let start: UInt64
        public let length: UInt64
        public let target: String
        public let params: String

        public init(start: UInt64, length: UInt64, target: String, params: String) throws(Failure) {
            guard length > 0, !target.isEmpty, target.utf8.count <= 15,
                target.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || ($0 >= 0x30 && $0 <= 0x39) })
            else { throw Failure(operation: "table", device: "", reason: "bad target '\(target.prefix(32))'") }
            // Printable ASCII only: no newline, no control character, nothing the kernel's table
            // parser could read as a second line.
            guard params.utf8.count < 4096, params.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                throw Failure(operation: "table", device: "", reason: "bad parameters for \(target)")
            }
            self.start = start
            self.length = length
            self.target = target
            self.params = params
        }

        public var description: String { "\(start) \(length) \(target) \(params)" }
    }

    /// What the kernel says of a device.
    public struct Info: Sendable, Equatable {
        public let name: String
        public let uuid: String
        public let suspended: Bool
        public let liveTable: Bool
        public let inactiveTable: Bool
        public let openCount: Int32
        public let eventNumber: UInt32
        public let major: UInt32
        public let minor: UInt32
        public let readOnly: Bool
        public let targetCount: Int32

        /// `major:minor`, as tables name devices.
        public var deviceNumber: String { "\(major):\(minor)" }
    }

    /// The one lock every libdevmapper call holds.
    private static let serial = Mutex(())

    /// The libdevmapper library version, e.g. `1.02.185 (2022-05-18)`.
    public static func libraryVersion() -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        guard serial.withLock({ _ in dm_get_library_version(&buffer, buffer.count) }) != 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether this kernel offers device-mapper (its misc device is registered).
    ///
    /// Asked of sysfs, not of /dev/mapper/control: libdevmapper makes that node by itself
    /// (any dmsetup or lvm run does) even where the kernel has no device-mapper.
    public static var kernelSupport: Bool {
        access("/sys/class/misc/device-mapper", F_OK) == 0
    }

    /// A device name libdevmapper and the kernel accept: 1-127 of `A-Za-z0-9._+-`, never a path.
    public static func checkName(_ name: String) throws(Failure) {
        guard (1...127).contains(name.utf8.count), name != ".", name != "..",
            name.utf8.allSatisfy({ c in
                (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
                    || c == 0x2E || c == 0x5F || c == 0x2B || c == 0x2D
            })
        else { throw Failure(operation: "name", device: String(name.prefix(64)), reason: "not a valid device-mapper name") }
    }

    // MARK: Operations

    /// Creates `name` with `table` and makes it live (libdevmapper's create, load and resume,
    /// with a remove if the load fails).
    public static func create(_ name: String, uuid: String, table: [TableLine], readOnly: Bool = false) throws(Failure) {
        try checkName(name)
        try checkName(uuid)
        try run(cdm_task_create_kind(), name, operation: "create", udev: true) { task throws(Failure) in
            guard dm_task_set_uuid(task, uuid) != 0 else { throw Failure(operation: "create", device: name, reason: "bad uuid") }
            if readOnly { dm_task_set_ro(task) }
            try add(table, to: task, device: name)
        }
    }

    /// Loads `table` as the inactive table of `name`; the next resume makes it live.
    public static func load(_ name: String, table: [TableLine]) throws(Failure) {
        try checkName(name)
        try run(cdm_task_reload_kind(), name, operation: "load", udev: false) { task throws(Failure) in
            try add(table, to: task, device: name)
        }
    }

    /// Suspends `name`. With `lockfs` the kernel freezes a filesystem mounted on it first (what
    /// a snapshot needs); with `flush` queued I/O completes before the suspend returns.
    public static func suspend(_ name: String, lockfs: Bool = true, flush: Bool = true) throws(Failure) {
        try checkName(name)
        try run(cdm_task_suspend_kind(), name, operation: "suspend", udev: false) { task throws(Failure) in
            if !lockfs { dm_task_skip_lockfs(task) }
            if !flush { dm_task_no_flush(task) }
        }
    }

    /// Resumes `name`, making a loaded inactive table live. `waitForUdev` false skips waiting
    /// for udev's rules, for a device whose node does not change (a store resized while its
    /// copy fills it, where udev's probing under load costs time the copy does not have).
    public static func resume(_ name: String, waitForUdev: Bool = true) throws(Failure) {
        try checkName(name)
        try run(cdm_task_resume_kind(), name, operation: "resume", udev: waitForUdev) { _ throws(Failure) in }
    }

    /// Drops the inactive table of `name`, if one was loaded: a resume then keeps the live one.
    public static func clear(_ name: String) throws(Failure) {
        try checkName(name)
        try run(cdm_task_clear_kind(), name, operation: "clear", udev: false) { _ throws(Failure) in }
    }

    /// Removes `name` (its node too). Where udev runs, its rules open a device for a moment
    /// after each change: a removal that meets such an open is retried for a few seconds (as
    /// `dmsetup remove --retry`).
    public static func remove(_ name: String) throws(Failure) {
        try checkName(name)
        try run(cdm_task_remove_kind(), name, operation: "remove", udev: true) { task throws(Failure) in
            guard dm_task_retry_remove(task) != 0 else {
                throw Failure(operation: "remove", device: name, reason: "cannot ask for retries")
            }
        }
    }

    /// What the kernel says of `name`; nil when there is no such device.
    public static func info(_ name: String) throws(Failure) -> Info? {
        try checkName(name)
        return try serial.withLock { _ throws(Failure) -> Info? in
            let task = try makeTask(cdm_task_info_kind(), name, operation: "info")
            defer { dm_task_destroy(task) }
            guard dm_task_run(task) != 0 else { throw Failure(operation: "info", device: name, reason: "the ioctl failed") }
            var info = dm_info()
            guard dm_task_get_info(task, &info) != 0 else { throw Failure(operation: "info", device: name, reason: "no info") }
            guard info.exists != 0 else { return nil }
            return Info(name: name, uuid: dm_task_get_uuid(task).map { String(cString: $0) } ?? "",
                        suspended: info.suspended != 0, liveTable: info.live_table != 0, inactiveTable: info.inactive_table != 0,
                        openCount: info.open_count, eventNumber: info.event_nr, major: info.major, minor: info.minor,
                        readOnly: info.read_only != 0, targetCount: info.target_count)
        }
    }

    /// The live table of `name`.
    public static func table(_ name: String) throws(Failure) -> [TableLine] {
        try targets(cdm_task_table_kind(), name, operation: "table").map { line throws(Failure) in
            try TableLine(start: line.0, length: line.1, target: line.2, params: line.3)
        }
    }

    /// The status of each target of `name`: `(start, length, target, status)`.
    public static func status(_ name: String) throws(Failure) -> [(start: UInt64, length: UInt64, target: String, status: String)] {
        try targets(cdm_task_status_kind(), name, operation: "status").map { ($0.0, $0.1, $0.2, $0.3) }
    }

    /// Sends `message` to the target at `sector` of `name` (thin pools take `create_snap`,
    /// `delete`...); returns what the target answered, if anything.
    @discardableResult
    public static func message(_ name: String, sector: UInt64 = 0, _ message: String) throws(Failure) -> String {
        try checkName(name)
        guard message.utf8.count < 1024, message.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw Failure(operation: "message", device: name, reason: "bad message")
        }
        return try serial.withLock { _ throws(Failure) -> String in
            let task = try makeTask(cdm_task_message_kind(), name, operation: "message")
            defer { dm_task_destroy(task) }
            guard dm_task_set_sector(task, sector) != 0, dm_task_set_message(task, message) != 0 else {
                throw Failure(operation: "message", device: name, reason: "cannot prepare the message")
            }
            guard dm_task_run(task) != 0 else {
                throw Failure(operation: "message", device: name, reason: "the target refused '\(message)'")
            }
            return dm_task_get_message_response(task).map { String(cString: $0) } ?? ""
        }
    }

    /// Every device-mapper device: name and `major:minor`.
    public static func list() throws(Failure) -> [(name: String, device: String)] {
        try serial.withLock { _ throws(Failure) -> [(name: String, device: String)] in
            guard let task = dm_task_create(Int32(cdm_task_list_kind())) else {
                throw Failure(operation: "list", device: "", reason: "out of memory")
            }
            defer { dm_task_destroy(task) }
            guard dm_task_run(task) != 0 else { throw Failure(operation: "list", device: "", reason: "the ioctl failed") }
            var out: [(name: String, device: String)] = []
            var names = dm_task_get_names(task)
            // An empty list is one entry with dev 0.
            guard let first = names, first.pointee.dev != 0 else { return out }
            while let current = names {
                let dev = current.pointee.dev
                out.append((String(cString: cdm_names_name(current)), "\(cdm_major(dev)):\(cdm_minor(dev))"))
                names = cdm_names_next(current)
            }
            return out
        }
    }

    // MARK: Plumbing

    private static func makeTask(_ kind: Int32, _ name: String, operation: String) throws(Failure) -> OpaquePointer {
        guard let task = dm_task_create(kind) else { throw Failure(operation: operation, device: name, reason: "out of memory") }
        guard dm_task_set_name(task, name) != 0 else {
            dm_task_destroy(task)
            throw Failure(operation: operation, device: name, reason: "bad name")
        }
        return task
    }

    /// Runs one task under the lock. Tasks that make, change or remove a node carry a cookie,
    /// and `dm_udev_wait` always follows: it waits for udev where udev runs, and it is also where
    /// libdevmapper makes its own /dev/mapper nodes where udev does not.
    private static func run(_ kind: Int32, _ name: String, operation: String, udev: Bool,
                            _ configure: (OpaquePointer) throws(Failure) -> Void) throws(Failure) {
        try serial.withLock { _ throws(Failure) in
            let task = try makeTask(kind, name, operation: operation)
            defer { dm_task_destroy(task) }
            try configure(task)
            var cookie: UInt32 = 0
            if udev {
                guard dm_task_set_cookie(task, &cookie, 0) != 0 else {
                    throw Failure(operation: operation, device: name, reason: "cannot set a udev cookie")
                }
            }
            let ok = dm_task_run(task) != 0
            if udev { _ = dm_udev_wait(cookie) } else { dm_task_update_nodes() }
            guard ok else { throw Failure(operation: operation, device: name, reason: "the ioctl failed (see the kernel log)") }
        }
    }

    private static func add(_ table: [TableLine], to task: OpaquePointer, device: String) throws(Failure) {
        guard !table.isEmpty else { throw Failure(operation: "table", device: device, reason: "an empty table") }
        for line in table {
            guard dm_task_add_target(task, line.start, line.length, line.target, line.params) != 0 else {
                throw Failure(operation: "table", device: device, reason: "cannot add target \(line.target)")
            }
        }
    }

    private static func targets(_ kind: Int32, _ name: String, operation: String) throws(Failure)
        -> [(UInt64, UInt64, String, String)]
    {
        try checkName(name)
        return try serial.withLock { _ throws(Failure) -> [(UInt64, UInt64, String, String)] in
            let task = try makeTask(kind, name, operation: operation)
            defer { dm_task_destroy(task) }
            guard dm_task_run(task) != 0 else { throw Failure(operation: operation, device: name, reason: "the ioctl failed") }
            var lines: [(UInt64, UInt64, String, String)] = []
            var next: UnsafeMutableRawPointer?
            repeat {
                var start: UInt64 = 0, length: UInt64 = 0
                var target: UnsafeMutablePointer<CChar>?, params: UnsafeMutablePointer<CChar>?
                next = dm_get_next_target(task, next, &start, &length, &target, &params)
                if let target {
                    lines.append((start, length, String(cString: target), params.map { String(cString: $0) } ?? ""))
                }
            } while next != nil
            return lines
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CDevMapper

extension DeviceMapper {
    /// A file attached to a loop device by the daemon itself, with autoclear: the device goes
    /// away by itself once nothing holds it, so a COW store never outlives its copy.
    public struct LoopDevice: Sendable {
        public let path: String
        /// Holds the device until a device-mapper table does; ``release()`` lets go.
        let fd: Int32

        /// Attaches `file` (it must exist) to a free loop device.
        public init(file: String) throws(Failure) {
            var buffer = [CChar](repeating: 0, count: 64)
            let rc = cdm_loop_attach(file, &buffer, buffer.count)
            guard rc >= 0 else {
                throw Failure(operation: "loop attach", device: file, reason: String(cString: strerror(-rc)))
            }
            fd = rc
            path = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        /// The loop device with number `major:minor` and its backing file, when it is one.
        public static func backing(of deviceNumber: String) -> (device: String, file: String)? {
            guard let name = readLink("/sys/dev/block/\(deviceNumber)")?.split(separator: "/").last, name.hasPrefix("loop"),
                let file = readLine("/sys/block/\(name)/loop/backing_file")
            else { return nil }
            return ("/dev/\(name)", file)
        }

        /// Grows the backing `file` of loop `device` to `bytes`, and the device with it.
        public static func grow(_ device: String, file: String, to bytes: UInt64) throws(Failure) {
            let rc = cdm_loop_grow(device, file, bytes)
            guard rc == 0 else { throw Failure(operation: "loop grow", device: device, reason: String(cString: strerror(-rc))) }
        }

        private static func readLink(_ path: String) -> String? {
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink(path, &buffer, buffer.count - 1)
            guard n > 0 else { return nil }
            return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        private static func readLine(_ path: String) -> String? {
            guard let file = fopen(path, "r") else { return nil }
            defer { fclose(file) }
            var buffer = [CChar](repeating: 0, count: 4096)
            guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingCharacters(in: "\n")
        }

        /// Lets go of the device: it detaches once the device-mapper table using it is gone.
        public func release() { close(fd) }

        /// `major:minor` of the device, as tables name it.
        public var deviceNumber: String {
            let name = path.split(separator: "/").last.map(String.init) ?? ""
            guard let file = fopen("/sys/class/block/\(name)/dev", "r") else { return "" }
            defer { fclose(file) }
            var buffer = [CChar](repeating: 0, count: 32)
            guard fgets(&buffer, 32, file) != nil else { return "" }
            let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: "\n")
        }
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}

import CDevMapper

/// The libdevmapper binding. Device-mapper providers build on it (snapshot tables, suspend and
/// resume, status parsers); for now it reports what the library and the kernel driver are.
///
/// libdevmapper is not thread-safe: every call must come from one serial executor, which is why
/// these entry points are plain synchronous functions for the caller to serialise.
public enum DeviceMapper {
    /// The libdevmapper library version, e.g. `1.02.185 (2022-05-18)`.
    public static func libraryVersion() -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        guard dm_get_library_version(&buffer, buffer.count) != 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether this kernel offers device-mapper (its control node exists).
    public static var kernelSupport: Bool {
        access("/dev/mapper/control", F_OK) == 0
    }
}

#if canImport(Glibc)
import Glibc
#endif

import DeviceMapper
import Testing

/// Every suite that touches the kernel's device-mapper, run one test at a time: they share one
/// kernel, and each checks that no shadowcopy device is left, which another test's copies in
/// flight would contradict.
@Suite("Device-mapper, one test at a time", .serialized)
enum DeviceMapperSuites {}

import DeviceMapper
import Testing

@Suite("Device-mapper status parsers")
struct TargetStatusTests {
    @Test func snapshotStatusAsTheKernelPrintsIt() {
        // dmsetup status of a fresh copy on an 8 MiB store, of one that took writes, and the ends.
        #expect(DeviceMapper.SnapshotStatus("16/16384 16") == .active(allocated: 16, total: 16384, metadata: 16))
        #expect(DeviceMapper.SnapshotStatus("8208/16384 24")?.fill == 8208.0 / 16384.0)
        #expect(DeviceMapper.SnapshotStatus("Invalid") == .invalid)
        #expect(DeviceMapper.SnapshotStatus("Overflow") == .overflow)
        #expect(DeviceMapper.SnapshotStatus("Merge failed") == .mergeFailed)
        #expect(DeviceMapper.SnapshotStatus("Invalid")?.fill == nil)
        for bad in ["", "16/16384", "x/16384 16", "20/10 1", "16/16384 16 extra", "Merge"] {
            #expect(DeviceMapper.SnapshotStatus(bad) == nil, "\(bad)")
        }
    }

    @Test func thinPoolStatusAsTheKernelPrintsIt() throws {
        let pool = try #require(DeviceMapper.ThinPoolStatus("0 141/4161600 0/12288 - rw discard_passdown queue_if_no_space - 1024"))
        #expect(pool.transaction == 0 && pool.usedMetadataBlocks == 141 && pool.totalMetadataBlocks == 4_161_600)
        #expect(pool.usedDataBlocks == 0 && pool.totalDataBlocks == 12288 && pool.mode == "rw" && !pool.needsCheck)
        let full = try #require(DeviceMapper.ThinPoolStatus("3 200/4096 12288/12288 - out_of_data_space no_discard_passdown error_if_no_space needs_check 512"))
        #expect(full.mode == "out_of_data_space" && full.needsCheck && full.transaction == 3)
        for bad in ["Fail", "Error", "", "0 141/4161600 0/12288 - rw", "0 141 0/12288 - rw discard_passdown queue_if_no_space -"] {
            #expect(DeviceMapper.ThinPoolStatus(bad) == nil, "\(bad)")
        }
    }

    @Test func thinStatusAsTheKernelPrintsIt() {
        #expect(DeviceMapper.ThinStatus("0 -") == .active(mapped: 0, highest: nil))
        #expect(DeviceMapper.ThinStatus("2048 4095") == .active(mapped: 2048, highest: 4095))
        #expect(DeviceMapper.ThinStatus("Fail") == .failed)
        for bad in ["", "12", "a b", "1 2 3"] { #expect(DeviceMapper.ThinStatus(bad) == nil, "\(bad)") }
    }

    @Test func tableLinesCannotCarryASecondLine() throws {
        let line = try DeviceMapper.TableLine(start: 0, length: 2048, target: "linear", params: "7:0 0")
        #expect(line.description == "0 2048 linear 7:0 0")
        for params in ["7:0 0\n0 2048 zero", "7:0\t0", "7:0 0\u{0}", String(repeating: "a", count: 5000)] {
            #expect(throws: DeviceMapper.Failure.self) { try DeviceMapper.TableLine(start: 0, length: 1, target: "linear", params: params) }
        }
        for target in ["", "Linear", "linear\n", "a b", "averyveryverylongtarget"] {
            #expect(throws: DeviceMapper.Failure.self) { try DeviceMapper.TableLine(start: 0, length: 1, target: target, params: "") }
        }
        #expect(throws: DeviceMapper.Failure.self) { try DeviceMapper.TableLine(start: 0, length: 0, target: "zero", params: "") }
        for name in ["", "../x", "a/b", "a b", "x\n", String(repeating: "n", count: 128)] {
            #expect(throws: DeviceMapper.Failure.self) { try DeviceMapper.checkName(name) }
        }
        try DeviceMapper.checkName("SHADOWCOPY-3f2504e04f8911d39a0c0305e82c3301")
    }
}

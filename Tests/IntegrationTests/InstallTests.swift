import Foundation
import ShadowCopyTestSupport
import Testing

/// `make install` into a DESTDIR, every file checked; `make uninstall` takes them all back.
@Suite("make install and uninstall")
struct InstallTests {
    static let expected: [String: Int] = [
        "usr/libexec/shadowcopyd": 0o755, "usr/bin/shadowcopy": 0o755, "usr/bin/shadowcopy-writer": 0o755,
        "usr/share/dbus-1/system.d/org.shadowcopy.ShadowCopy1.conf": 0o644,
        "usr/share/dbus-1/system-services/org.shadowcopy.ShadowCopy1.service": 0o644,
        "usr/share/polkit-1/actions/org.shadowcopy.policy": 0o644,
        "usr/share/doc/shadowcopy/examples/50-shadowcopy-backup-group.rules": 0o644,
        "usr/lib/systemd/system/shadowcopyd.service": 0o644,
        "usr/share/man/man8/shadowcopyd.8": 0o644, "usr/share/man/man8/shadowcopy.8": 0o644,
        "usr/share/man/man8/shadowcopy-writer.8": 0o644,
        "usr/share/bash-completion/completions/shadowcopy": 0o644,
        "usr/share/zsh/vendor-completions/_shadowcopy": 0o644,
        "usr/share/fish/vendor_completions.d/shadowcopy.fish": 0o644,
    ]

    static func make(_ target: String, destdir: String, prefix: String) throws -> ToolResult {
        try Tool.run("/usr/bin/make", ["-C", ProjectPaths.root.path, target, "BIN=\(ProjectPaths.products.path)",
                                       "DESTDIR=\(destdir)", "PREFIX=\(prefix)"])
    }

    static func files(under root: String) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: root)
        var files: [String] = []
        while let path = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                files.append(path)
            }
        }
        return files.sorted()
    }

    @Test func installPutsEveryFileWhereDebianExpectsItAndUninstallRemovesThem() throws {
        let destdir = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-test-install-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: destdir) }
        let installed = try Self.make("install-files", destdir: destdir, prefix: "/usr")
        #expect(installed.status == 0, "\(installed.stderr)")

        let interfaces = try FileManager.default.contentsOfDirectory(atPath: ProjectPaths.root.appendingPathComponent("dbus").path)
            .filter { $0.hasSuffix(".xml") }.map { "usr/share/dbus-1/interfaces/" + $0 }
        #expect(Self.files(under: destdir) == (Array(Self.expected.keys) + interfaces).sorted())
        for (file, mode) in Self.expected {
            let attributes = try FileManager.default.attributesOfItem(atPath: destdir + "/" + file)
            #expect((attributes[.posixPermissions] as? Int) == mode, "\(file)")
            #expect((attributes[.size] as? Int ?? 0) > 0, "\(file) is empty")
        }
        #expect(FileManager.default.fileExists(atPath: destdir + "/etc/shadowcopy/hooks.d"))

        // The files name the installed daemon, and the pages and completions are what they say.
        let activation = try String(contentsOfFile: destdir + "/usr/share/dbus-1/system-services/org.shadowcopy.ShadowCopy1.service", encoding: .utf8)
        #expect(activation.contains("Exec=/usr/libexec/shadowcopyd") && activation.contains("SystemdService=shadowcopyd.service"))
        let unit = try String(contentsOfFile: destdir + "/usr/lib/systemd/system/shadowcopyd.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/libexec/shadowcopyd"))
        for page in ["shadowcopyd.8", "shadowcopy.8", "shadowcopy-writer.8"] {
            let rendered = try Tool.run("/usr/bin/groff", ["-man", "-Tutf8", "-ww", "-z", destdir + "/usr/share/man/man8/" + page])
            #expect(rendered.status == 0 && rendered.stderr.isEmpty, "\(page): \(rendered.stderr)")
        }
        let manual = try String(contentsOfFile: destdir + "/usr/share/man/man8/shadowcopy.8", encoding: .utf8)
        for command in ["list", "create", "delete", "expose", "status", "run"] { #expect(manual.contains("shadowcopy \(command)")) }
        let bash = try String(contentsOfFile: destdir + "/usr/share/bash-completion/completions/shadowcopy", encoding: .utf8)
        #expect(bash.contains("complete") && bash.contains("shadowstorage"))
        let syntax = try Tool.run("/bin/bash", ["-n", destdir + "/usr/share/bash-completion/completions/shadowcopy"])
        #expect(syntax.status == 0, "\(syntax.stderr)")

        let removed = try Self.make("uninstall", destdir: destdir, prefix: "/usr")
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(Self.files(under: destdir).isEmpty, "left behind: \(Self.files(under: destdir))")
    }

    @Test func anotherPrefixIsFollowedInsideTheFiles() throws {
        let destdir = FileManager.default.temporaryDirectory.appendingPathComponent("shadowcopy-test-install-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: destdir) }
        #expect(try Self.make("install-files", destdir: destdir, prefix: "/usr/local").status == 0)
        let unit = try String(contentsOfFile: destdir + "/usr/local/lib/systemd/system/shadowcopyd.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/libexec/shadowcopyd"))
        let activation = try String(contentsOfFile: destdir + "/usr/local/share/dbus-1/system-services/org.shadowcopy.ShadowCopy1.service", encoding: .utf8)
        #expect(activation.contains("Exec=/usr/local/libexec/shadowcopyd"))
        #expect(try Self.make("uninstall", destdir: destdir, prefix: "/usr/local").status == 0)
        #expect(Self.files(under: destdir).isEmpty)
    }
}

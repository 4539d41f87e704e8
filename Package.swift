// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "shadowcopy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "shadowcopyd", targets: ["shadowcopyd"]),
        .executable(name: "shadowcopy-writer", targets: ["shadowcopy-writer"]),
        .executable(name: "shadowcopy", targets: ["shadowcopy"]),
        .library(name: "DBus", targets: ["DBus"]),
        .library(name: "ShadowCopyWriter", targets: ["ShadowCopyWriter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        // C libraries: imported only by their one wrapper module each.
        .systemLibrary(name: "CDBus", pkgConfig: "dbus-1", providers: [.apt(["libdbus-1-dev"])]),
        .systemLibrary(name: "CDevMapper", pkgConfig: "devmapper", providers: [.apt(["libdevmapper-dev"])]),
        .systemLibrary(name: "CBtrfs"),
        // No pkgConfig: its -lsqlite3 would link what the SQLite module loads with dlopen.
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),

        .target(name: "DBus", dependencies: ["CDBus"], swiftSettings: strict),
        .target(name: "DeviceMapper", dependencies: ["CDevMapper"], swiftSettings: strict),
        .target(name: "Btrfs", dependencies: ["CBtrfs"], swiftSettings: strict),
        .target(name: "SQLite", dependencies: ["CSQLite"], swiftSettings: strict),
        .target(
            name: "ShadowCopyCore",
            dependencies: ["SQLite", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The process apart from the daemon that freezes filesystems and thaws them if it dies.
        .target(name: "FreezeGuard", dependencies: ["ShadowCopyCore", "Btrfs", "DeviceMapper"], swiftSettings: strict),
        // The built-in providers: btrfs today, device-mapper next.
        .target(
            name: "ShadowCopyProviders",
            dependencies: ["ShadowCopyCore", "Btrfs", "DeviceMapper", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "ShadowCopyService",
            dependencies: [
                "DBus", "ShadowCopyCore", "ShadowCopyProviders", "DeviceMapper",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The SDK for Swift applications that take part in backups as writers.
        .target(name: "ShadowCopyWriter", dependencies: ["DBus"], swiftSettings: strict),
        // The CLI: vssadmin and diskshadow for Linux, a D-Bus client of the daemon.
        .executableTarget(
            name: "shadowcopy",
            dependencies: ["DBus", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // The writers shipped with shadowcopy (hook scripts today).
        .executableTarget(
            name: "shadowcopy-writer",
            dependencies: ["ShadowCopyWriter", "DBus", "SQLite", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "shadowcopyd",
            dependencies: [
                "ShadowCopyService", "DBus", "ShadowCopyCore", "ShadowCopyProviders", "FreezeGuard",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Starts private buses and the real daemon for tests and benchmarks.
        .target(name: "ShadowCopyTestSupport", dependencies: ["DBus"], swiftSettings: strict),
        .executableTarget(
            name: "shadowcopy-bench",
            dependencies: ["DBus", "ShadowCopyTestSupport", "ShadowCopyWriter", "Btrfs"],
            swiftSettings: strict
        ),

        // Hostile calls for the security tests, run as root and as unprivileged users.
        .executableTarget(name: "shadowcopy-fuzz", dependencies: ["DBus"], swiftSettings: strict),

        .testTarget(name: "DBusTests", dependencies: ["DBus", "ShadowCopyTestSupport"], swiftSettings: strict),
        .testTarget(name: "DeviceMapperTests", dependencies: ["DeviceMapper", "DBus", "ShadowCopyTestSupport", "FreezeGuard"], swiftSettings: strict),
        .testTarget(name: "ShadowCopyCoreTests", dependencies: ["ShadowCopyCore", "SQLite"], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["DBus", "ShadowCopyTestSupport", "SQLite"],
            swiftSettings: strict
        ),
    ]
)

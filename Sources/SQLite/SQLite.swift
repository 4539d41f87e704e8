import CSQLite
import Synchronization

/// A small, typed binding over libsqlite3: one connection, prepared statements, transactions.
///
/// The catalog needs a handful of tables and nothing of an ORM; GRDB would bring full
/// Foundation into a daemon whose idle RSS target is 15 MiB (measured: a GRDB program that
/// opens one database sits at 21 MiB). libsqlite3 itself is loaded when a database is opened
/// and unloaded when the last one closes, so a daemon at rest keeps none of it resident.
///
/// The connection is opened in SQLite's serialized mode, so using it from several threads is
/// safe; a caller that needs several statements to be atomic uses ``transaction(_:)`` under
/// its own lock.
public final class SQLiteDatabase: @unchecked Sendable {
    /// A failed SQLite call: what was attempted, SQLite's result code and its message.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let operation: String
        public let code: Int32
        public let message: String

        public init(operation: String, code: Int32, message: String) {
            self.operation = operation
            self.code = code
            self.message = message
        }

        public var description: String { "\(operation): \(message) (sqlite \(code))" }
    }

    /// A value to bind or read: SQLite's storage classes that the catalog uses.
    public enum Value: Sendable, Equatable {
        case integer(Int64)
        case text(String)
        case null
    }

    private var handle: OpaquePointer?
    private var api = csqlite_api()
    /// Prepared statements by their text, kept for the life of the connection: the catalog runs
    /// the same few statements on every save, and preparing one costs more than running it.
    /// A statement in use is taken out, so two threads never step the same one.
    private let statements = Mutex<[String: Statement]>([:])

    /// The catalog has a few dozen statements; a caller building SQL text could have many more.
    private static let cachedStatements = 64

    private struct Statement: @unchecked Sendable {
        let raw: OpaquePointer
    }

    /// Opens (creating if needed) the database at `path`; `":memory:"` is a private in-memory one.
    public init(path: String) throws(Failure) {
        guard csqlite_load(&api) == 0 else {
            let why = csqlite_dlerror().map { String(cString: $0) } ?? "unknown error"
            throw Failure(operation: "load libsqlite3.so.0", code: SQLITE_ERROR, message: why)
        }
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX
        let rc = api.open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK else {
            let message = handle.flatMap { api.errmsg($0) }.map { String(cString: $0) } ?? "out of memory"
            _ = api.close(handle)
            handle = nil
            csqlite_unload(&api)
            throw Failure(operation: "open \(path)", code: rc, message: message)
        }
        _ = api.busy_timeout(handle, 5_000)
    }

    deinit {
        for statement in statements.withLock({ $0.values }) { _ = api.finalize(statement.raw) }
        _ = api.close(handle)
        csqlite_unload(&api)
    }

    /// Keeps the write-ahead log file, at its size, when the last connection closes.
    ///
    /// A durable commit then overwrites blocks the log already has instead of growing the
    /// file: fdatasync need not commit the filesystem's metadata too (on ext4 here, 0.22 ms
    /// against 0.36 ms).
    public func keepWriteAheadLog() throws(Failure) {
        var on: Int32 = 1
        let rc = api.file_control(handle, "main", SQLITE_FCNTL_PERSIST_WAL, &on)
        guard rc == SQLITE_OK else { throw failure("keep the write-ahead log", rc) }
    }

    /// Runs one or more statements that take no parameters and return no rows.
    public func execute(_ sql: String) throws(Failure) {
        var error: UnsafeMutablePointer<CChar>?
        let rc = api.exec(handle, sql, nil, nil, &error)
        guard rc == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? "unknown error"
            api.free(error)
            throw Failure(operation: "execute", code: rc, message: message)
        }
    }

    /// Runs one statement with `parameters`; returns its rows.
    @discardableResult
    public func run(_ sql: String, _ parameters: [Value] = []) throws(Failure) -> [[Value]] {
        let statement = try prepared(sql)
        defer {
            _ = api.reset(statement)
            _ = api.clear_bindings(statement)
            let kept = Statement(raw: statement)
            let spare = statements.withLock { cache -> Statement? in
                guard cache[sql] == nil, cache.count < SQLiteDatabase.cachedStatements else { return kept }
                cache[sql] = kept
                return nil
            }
            if let spare { _ = api.finalize(spare.raw) }
        }
        var rc: Int32
        for (offset, parameter) in parameters.enumerated() {
            let index = Int32(offset + 1)
            switch parameter {
            case .integer(let value): rc = api.bind_int64(statement, index, value)
            case .text(let value): rc = csqlite_bind_text(&api, statement, index, value, Int32(value.utf8.count))
            case .null: rc = api.bind_null(statement, index)
            }
            guard rc == SQLITE_OK else { throw failure("bind", rc) }
        }
        var rows: [[Value]] = []
        while true {
            rc = api.step(statement)
            if rc == SQLITE_DONE { return rows }
            guard rc == SQLITE_ROW else { throw failure("step", rc) }
            rows.append((0..<api.column_count(statement)).map { column in
                switch api.column_type(statement, column) {
                case SQLITE_INTEGER: .integer(api.column_int64(statement, column))
                case SQLITE_NULL: .null
                default: .text(api.column_text(statement, column).map { String(cString: $0) } ?? "")
                }
            })
        }
    }

    /// The cached statement for `sql`, taken out of the cache, or a newly prepared one.
    private func prepared(_ sql: String) throws(Failure) -> OpaquePointer {
        if let cached = statements.withLock({ $0.removeValue(forKey: sql) }) { return cached.raw }
        var statement: OpaquePointer?
        let rc = api.prepare_v2(handle, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw failure("prepare", rc) }
        return statement
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    public func transaction<R>(_ body: () throws(Failure) -> R) throws(Failure) -> R {
        try run("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try run("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func failure(_ operation: String, _ rc: Int32) -> Failure {
        Failure(operation: operation, code: rc, message: api.errmsg(handle).map { String(cString: $0) } ?? "unknown error")
    }
}

extension SQLiteDatabase.Value {
    /// The integer, or nil for another storage class.
    public var integer: Int64? { if case .integer(let v) = self { v } else { nil } }
    /// The text, or nil for another storage class.
    public var text: String? { if case .text(let v) = self { v } else { nil } }
}

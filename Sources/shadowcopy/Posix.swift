#if canImport(Glibc)
import Glibc
#endif

/// The few system services the CLI needs, straight from libc (no Foundation, see Output.json).
enum Posix {
    /// The whole of a text file.
    static func read(_ path: String) throws(CLIError) -> String {
        guard let file = fopen(path, "r") else { throw .usage("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n > 0 { bytes += buffer[0..<n] }
            if n < buffer.count { break }
        }
        guard ferror(file) == 0 else { throw .usage("cannot read \(path): \(String(cString: strerror(errno)))") }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Runs `command` (a path, or a name looked up in PATH) with this process's environment
    /// plus `environment`, standard output sent to standard error when `stdoutToStderr`; waits
    /// and returns its exit status, or nil when it was killed by a signal.
    static func run(_ command: [String], environment: [String: String], stdoutToStderr: Bool) throws(CLIError) -> Int32? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdoutToStderr { posix_spawn_file_actions_adddup2(&actions, 2, 1) }
        var variables: [String] = []
        var index = 0
        while let entry = environ[index] {
            let text = String(cString: entry)
            if let key = text.split(separator: "=", maxSplits: 1).first, environment[String(key)] == nil { variables.append(text) }
            index += 1
        }
        variables += environment.map { "\($0.key)=\($0.value)" }
        let argv = command.map { strdup($0) } + [nil]
        let envp = variables.map { strdup($0) } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, command[0], &actions, nil, argv, envp)
        guard rc == 0 else { throw .protocolError("exec \(command[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : nil
    }
}

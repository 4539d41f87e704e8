
/// A diskshadow-style script, parsed whole before anything runs: a script with an error
/// changes nothing, and says at which line.
///
/// ```
/// # comments start with '#'
/// set context persistent | nonpersistent | nowriters
/// set option copy | full | incremental | differential | log
/// writer exclude NAME          writer verify NAME
/// begin backup
/// add volume /srv [provider btrfs] [alias data]
/// create
/// expose %data%                (mounts read-only under /run/shadowcopy; %data% then names that path)
/// exec /usr/local/bin/backup %data%
/// end backup
/// delete shadows all | set | volume /srv | oldest /srv
/// list writers | providers | shadows
/// ```
struct Script {
    enum Step: Equatable {
        case setContext(persistent: Bool, writers: Bool)
        case setOption(String)
        case excludeWriter(String)
        case verifyWriter(String)
        case beginBackup
        case addVolume(volume: String, provider: String?, alias: String?)
        case create
        case expose(alias: String)
        case exec([String])
        case endBackup
        case deleteShadows([String])
        case list(String)
    }

    struct Line: Equatable {
        let number: Int
        let step: Step
    }

    struct ParseError: Error, CustomStringConvertible {
        let file: String
        let line: Int
        let message: String
        var description: String { "\(file):\(line): \(message)" }
    }

    let lines: [Line]

    /// Parses `text`; `file` names it in errors.
    init(_ text: String, file: String) throws(ParseError) {
        var lines: [Line] = []
        var aliases: Set<String> = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let words = Script.words(raw)
            guard let first = words.first else { continue }
            func fail(_ message: String) -> ParseError { ParseError(file: file, line: number, message: message) }
            let rest = Array(words.dropFirst()).map { $0.lowercased() }
            let step: Step
            switch first.lowercased() {
            case "set":
                switch (rest.first, rest.count) {
                case ("context", 2):
                    switch rest[1] {
                    case "persistent": step = .setContext(persistent: true, writers: true)
                    case "nonpersistent", "volatile": step = .setContext(persistent: false, writers: true)
                    case "nowriters": step = .setContext(persistent: false, writers: false)
                    default: throw fail("set context takes persistent, nonpersistent or nowriters, not '\(rest[1])'")
                    }
                case ("option", 2):
                    guard ["copy", "full", "incremental", "differential", "log"].contains(rest[1]) else {
                        throw fail("set option takes copy, full, incremental, differential or log, not '\(rest[1])'")
                    }
                    step = .setOption(rest[1])
                default: throw fail("set takes 'context VALUE' or 'option VALUE'")
                }
            case "writer":
                guard words.count == 3, ["exclude", "verify"].contains(rest[0]) else { throw fail("writer takes 'exclude NAME' or 'verify NAME'") }
                step = rest[0] == "exclude" ? .excludeWriter(words[2]) : .verifyWriter(words[2])
            case "begin", "end":
                guard rest == ["backup"] else { throw fail("\(first) takes 'backup'") }
                step = first.lowercased() == "begin" ? .beginBackup : .endBackup
            case "add":
                guard rest.first == "volume", words.count >= 3 else { throw fail("add takes 'volume PATH [provider NAME] [alias NAME]'") }
                var provider: String?, alias: String?
                var options = words.dropFirst(3)
                while let key = options.popFirst() {
                    guard let value = options.popFirst(), ["provider", "alias"].contains(key.lowercased()) else {
                        throw fail("add volume takes 'provider NAME' and 'alias NAME' after the volume, not '\(key)'")
                    }
                    if key.lowercased() == "alias" {
                        guard value.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), !aliases.contains(value) else {
                            throw fail("alias '\(value)' must be letters, digits and '_', and new")
                        }
                        aliases.insert(value)
                        alias = value
                    } else {
                        provider = value
                    }
                }
                step = .addVolume(volume: words[2], provider: provider, alias: alias)
            case "create":
                guard rest.isEmpty else { throw fail("create takes nothing") }
                step = .create
            case "expose":
                guard words.count == 2, words[1].hasPrefix("%"), words[1].hasSuffix("%"), words[1].count > 2 else {
                    throw fail("expose takes %ALIAS% of a volume added with an alias")
                }
                let alias = String(words[1].dropFirst().dropLast())
                guard aliases.contains(alias) else { throw fail("no volume was added with alias \(alias)") }
                step = .expose(alias: alias)
            case "exec":
                guard words.count >= 2 else { throw fail("exec takes a command and its arguments") }
                step = .exec(Array(words.dropFirst()))
            case "delete":
                guard rest.first == "shadows", rest.count >= 2 else { throw fail("delete takes 'shadows all|set|volume PATH|oldest PATH'") }
                let target = rest[1]
                guard (["all", "set"].contains(target) && rest.count == 2) || (["volume", "oldest"].contains(target) && rest.count == 3) else {
                    throw fail("delete shadows takes all, set, volume PATH or oldest PATH")
                }
                step = .deleteShadows(Array(words.dropFirst(2)))
            case "list":
                guard rest.count == 1, ["writers", "providers", "shadows"].contains(rest[0]) else {
                    throw fail("list takes writers, providers or shadows")
                }
                step = .list(rest[0])
            default:
                throw fail("unknown command '\(first)'")
            }
            lines.append(Line(number: number, step: step))
        }
        self.lines = lines
    }

    /// A line's words: blanks separate them, double quotes group them, '#' starts a comment.
    static func words(_ line: Substring) -> [String] {
        var words: [String] = [], current = "", quoted = false, started = false
        for c in line {
            if c == "\"" { quoted.toggle(); started = true; continue }
            if !quoted, c == "#" { break }
            if !quoted, c == " " || c == "\t" {
                if started { words.append(current) }
                current = ""
                started = false
                continue
            }
            current.append(c)
            started = true
        }
        if started { words.append(current) }
        return words
    }
}

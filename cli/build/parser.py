"""Stage 1 of the Dockerfile front end: text → ``Node`` values with line numbers.

Follows BuildKit's ``frontend/dockerfile/parser``:

* Parser directives (``# escape=`` and ``# syntax=``) are recognised only while every line
  so far was a directive; the first other line (comment, blank, instruction) ends them.
* A line ending in the escape token (trailing blanks allowed) continues on the next line;
  comment lines and blank lines inside a continuation are skipped (blank ones with a
  warning, as BuildKit does). Leading whitespace is stripped from the first line only.
* RUN, COPY and ADD (also as ONBUILD triggers) may carry heredocs: ``<<EOF``, ``<<-EOF``
  (strip leading tabs), ``<<"EOF"``/``<<'EOF'`` (no expansion), several per line; their
  bodies follow the instruction line, raw, newlines kept.
* Arguments are split per instruction as Docker does (JSON array or shell string,
  whitespace lists, ``k=v`` pairs) but quotes are *kept*: removing them belongs to
  variable expansion (``cli.build.expand``), which runs later with the build's variables.

Nothing here knows what an instruction means; ``cli.build.instructions`` does that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from cli.build.errors import DockerfileError, LocatedReason
from cli.build.expand import ExpansionError, ShellLex

DEFAULT_ESCAPE = "\\"
HEREDOC_INSTRUCTIONS = frozenset({"run", "copy", "add"})

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A here-document: ``name`` is the delimiter word without quotes; ``content`` the body
    with its newlines (tabs still there when ``chomp``: see ``body``)."""

    name: str
    content: str
    expand: bool
    chomp: bool
    fd: int = 0

    @property
    def body(self) -> str:
        """The content as the consumer should see it: leading tabs gone for ``<<-``."""
        return re.sub(r"(?m)^\t+", "", self.content) if self.chomp else self.content


@dataclass(frozen=True, slots=True)
class Node:
    """One logical instruction line.

    ``keyword`` is lower case; ``args`` are the words as Docker's line parser splits them
    for this keyword (quotes kept); ``json`` says the arguments came from a JSON array;
    ``child`` holds the trigger of an ONBUILD.
    """

    keyword: str
    original: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    start_line: int
    end_line: int
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    child: Node | None = None
    comments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParseResult:
    nodes: tuple[Node, ...]
    escape: str
    directives: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class _Directives:
    def __init__(self) -> None:
        self.escape = DEFAULT_ESCAPE
        self.values: dict[str, str] = {}
        self.done = False
        self._continuation = _continuation_regex(DEFAULT_ESCAPE)

    def consider(self, line: str) -> bool:
        """Take ``line`` as a directive if directives are still allowed; say if it was one."""
        if self.done:
            return False
        match = _DIRECTIVE.match(line)
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            self.done = True
            return False
        key, value = match.group(1).lower(), match.group(2)
        if key in self.values:
            raise LocatedReason(f"only one {key} parser directive can be used")
        self.values[key] = value
        if key == "escape":
            if value not in ("`", "\\"):
                raise LocatedReason(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self._continuation = _continuation_regex(value)
        return True

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Strip a trailing escape token; return the line and whether it ended there."""
        if self._continuation.search(line):
            return self._continuation.sub(r"\1", line, count=1), False
        return line, True


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*$|^(){e}[ \t]*$")


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(text: str, filename: str = "Dockerfile") -> ParseResult:
    """Split a Dockerfile into nodes. Raises ``DockerfileError`` with the line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    # Only "\n" ends a line (as Go's scanner); a "\r" before it is dropped, other control
    # characters (form feeds, vertical tabs) stay part of the line.
    raw_lines = text.split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    lines = [line.rstrip("\r") for line in raw_lines]
    directives = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    comments: list[str] = []
    i = 0
    while i < len(lines):
        raw = lines[i]
        line_no = i + 1
        stripped = raw.lstrip()
        try:
            is_directive = directives.consider(stripped)
        except LocatedReason as exc:
            raise DockerfileError(str(exc), filename, line_no) from None
        i += 1
        if _is_comment(stripped):
            if not is_directive:
                comment = stripped[1:].strip()
                comments = comments + [comment] if comment else []
            continue
        start = line_no
        line, ended = directives.trim_continuation(stripped)
        if ended and not line.strip():
            continue
        parts = [line]
        empty_continuation = False
        while not ended and i < len(lines):
            raw = lines[i]
            i += 1
            if _is_comment(raw):
                continue
            if not raw.strip():
                empty_continuation = True
                continue
            piece, ended = directives.trim_continuation(raw)
            parts.append(piece)
        end = i
        logical = "".join(parts)
        if empty_continuation:
            warnings.append(f"{filename}:{start}: Empty continuation line found in: {logical}")
        try:
            node = _node_from_line(logical, directives.escape, start, end, tuple(comments))
        except LocatedReason as exc:
            raise DockerfileError(str(exc), filename, start, end) from None
        if _json_looking_shell_form(node):
            warnings.append(f"{filename}:{start}: {node.keyword.upper()} argument looks like a JSON "
                            "array but is not valid JSON; it is run as a shell command")
        if _can_contain_heredoc(node) and "<<" in logical:
            try:
                specs = _heredocs_in_line(logical)
            except LocatedReason as exc:
                raise DockerfileError(str(exc), filename, start, end) from None
            docs = []
            for spec in specs:
                body, i, terminated = _read_heredoc(raw_lines, text.endswith("\n"), i, spec)
                if not terminated:
                    raise DockerfileError("unterminated heredoc", filename, start, i)
                docs.append(Heredoc(spec.name, body, spec.expand, spec.chomp, spec.fd))
            node = _with_heredocs(node, tuple(docs), i)
        nodes.append(node)
        comments = []
    if not nodes:
        raise DockerfileError("file with no instructions", filename, len(lines))
    return ParseResult(tuple(nodes), directives.escape, dict(directives.values), tuple(warnings))


def _read_heredoc(raw_lines: list[str], ends_with_newline: bool, i: int,
                  spec: Heredoc) -> tuple[str, int, bool]:
    """Read a heredoc body from line index ``i``: lines kept byte for byte (a CRLF file keeps
    its "\r"), up to the terminator line."""
    body: list[str] = []
    while i < len(raw_lines):
        raw = raw_lines[i]
        i += 1
        candidate = raw.rstrip("\r")
        if spec.chomp:
            candidate = candidate.lstrip("\t")
        if candidate == spec.name:
            return "".join(body), i, True
        has_newline = i < len(raw_lines) or ends_with_newline
        body.append(raw + ("\n" if has_newline else ""))
    return "".join(body), i, False


def _with_heredocs(node: Node, docs: tuple[Heredoc, ...], end_line: int) -> Node:
    child = node.child
    if child is not None:
        child = Node(child.keyword, child.original, child.flags, child.args, child.start_line,
                     end_line, child.json, docs, None, ())
    return Node(node.keyword, node.original, node.flags, node.args, node.start_line, end_line,
                node.json, docs if child is None else (), child, node.comments)


def _json_looking_shell_form(node: Node) -> bool:
    return (node.keyword in ("run", "cmd", "entrypoint", "shell") and not node.json
            and len(node.args) == 1 and node.args[0].lstrip().startswith("["))


def _can_contain_heredoc(node: Node) -> bool:
    if node.child is not None:
        return node.child.keyword in HEREDOC_INSTRUCTIONS
    return node.keyword in HEREDOC_INSTRUCTIONS


def parse_heredoc_word(word: str) -> Heredoc | None:
    """``<<EOF``, ``<<-"EOF"``, ``3<<EOF`` → a content-less Heredoc; other words → None."""
    match = _HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    fd = int(match.group(1) or 0)
    chomp = match.group(2) == "-"
    rest = match.group(3)
    try:
        plain = ShellLex(skip_unset=True).process_words(rest, {})
        if len(plain) != 1:
            return None
        raw = ShellLex(raw_quotes=True, skip_unset=True).process_words(rest, {})
    except ExpansionError as exc:
        raise LocatedReason(str(exc)) from None
    if len(raw) != 1:
        raise LocatedReason(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    return Heredoc(plain[0], "", quotes(plain[0]) == quotes(raw[0]), chomp, fd)


def _heredocs_in_line(line: str) -> list[Heredoc]:
    lex = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lex.process_words(line, {})
    except ExpansionError:
        return []
    return [doc for doc in map(parse_heredoc_word, words) if doc is not None]


# -- splitting one logical line ------------------------------------------------------


def _node_from_line(line: str, escape: str, start: int, end: int,
                    comments: tuple[str, ...]) -> Node:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword = parts[0].lower()
    rest = parts[1] if len(parts) > 1 else ""
    flags: tuple[str, ...] = ()
    if rest:
        rest, flag_list = _extract_flags(rest)
        flags = tuple(flag_list)
    child = None
    is_json = False
    args: list[str]
    if keyword == "onbuild":
        args = []
        if rest:
            child = _node_from_line(rest, escape, start, end, ())
    else:
        args, is_json = _split_args(keyword, rest, escape)
    return Node(keyword, line, flags, tuple(args), start, end, is_json, (), child, comments)


def _split_args(keyword: str, rest: str, escape: str) -> tuple[list[str], bool]:
    if keyword in ("run", "cmd", "entrypoint", "shell"):
        return _maybe_json(rest)
    if keyword in ("add", "copy", "volume"):
        parsed = _json_array(rest)
        if parsed is not None:
            return parsed, True
        return _whitespace_list(rest), False
    if keyword in ("expose", "from"):
        return _whitespace_list(rest), False
    if keyword in ("maintainer", "stopsignal", "user", "workdir"):
        return ([rest] if rest else []), False
    if keyword in ("env", "label"):
        return _name_values(rest, keyword.upper(), escape), False
    if keyword == "arg":
        return _words(rest, escape), False
    if keyword == "healthcheck":
        return _health_args(rest)
    return [], False  # unknown instructions are reported in stage 2, with suggestions


def _json_array(rest: str) -> list[str] | None:
    """The strings of a JSON array, or None when ``rest`` is not one (shell form)."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise LocatedReason("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(name)  # Go's decoder knows no NaN/Infinity


def _maybe_json(rest: str) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    parsed = _json_array(rest)
    if parsed is not None:
        return parsed, True
    return [rest], False


def _whitespace_list(rest: str) -> list[str]:
    if not rest:
        return []
    return _WHITESPACE.split(rest)


def _health_args(rest: str) -> tuple[list[str], bool]:
    match = re.match(r"(\S+)\s*(.*)$", rest, re.S)
    if not match:
        return [], False
    cmd, is_json = _maybe_json(match.group(2))
    return [match.group(1), *cmd], is_json


def _words(rest: str, escape: str) -> list[str]:
    """Docker's ``parseWords``: split on blanks outside quotes, keeping quotes and escapes."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    in_word = False
    i = 0
    while i < len(rest):
        ch = rest[i]
        if not in_word and not quote:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == len(rest):
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        if ch == escape:
            if i + 1 == len(rest):
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _name_values(rest: str, keyword: str, escape: str) -> list[str]:
    words = _words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise LocatedReason(f"{keyword} must have two arguments")
        return [parts[0], parts[1]]
    flat: list[str] = []
    for word in words:
        if "=" not in word:
            raise LocatedReason(f"Syntax error - can't find = in {json.dumps(word)}. "
                                "Must be of the form: name=value")
        key, value = word.split("=", 1)
        flat += [key, value]
    return flat


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Docker's ``extractBuilderFlags``: leading ``--name[=value]`` words; ``--`` ends them."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = False
    blank_ok = False
    pos = 0
    n = len(line)
    while pos <= n:
        ch = line[pos] if pos < n else ""
        if not in_word:
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            if ch != "-" or pos + 1 == n or line[pos + 1] != "-":
                return line[pos:], words
            in_word = True
        if pos == n:
            if "".join(word) != "--" and (blank_ok or word):
                words.append("".join(word))
            break
        if quote:
            if ch == quote:
                quote = ""
            else:
                if ch == "\\" and pos + 1 < n:
                    pos += 1
                    ch = line[pos]
                word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            if "".join(word) == "--":
                return line[pos:].lstrip(), words
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote, blank_ok = ch, True
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == n:
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return "", words

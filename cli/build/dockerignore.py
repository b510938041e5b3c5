""".dockerignore: which files of the build context are sent, with Docker's rules.

Reading (moby ``patternmatcher/ignorefile``): lines starting with ``#`` are comments;
blanks are trimmed; ``!`` marks an exception; each pattern is path-cleaned (``./a`` → ``a``,
``a//b/../c`` → ``a/c``) and a leading ``/`` is dropped.

Matching (moby ``patternmatcher``): ``*`` and ``?`` stay within one path component,
``**`` spans any number of components, ``[a-z]``/``[^a-z]`` are classes and ``\\`` escapes.
A pattern matching a directory matches everything below it. Patterns are applied in
order and the last one that matches decides, so ``!`` lines re-include what earlier lines
excluded.

Walking: an excluded directory is pruned (not descended) unless some exception pattern
could re-include something inside it — the same shortcut Docker takes, so ``!**/*.go``
does not resurrect files inside an excluded directory, exactly as with Docker.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cli.build.errors import DockerfileError

IGNORE_FILE = ".dockerignore"
_REGEX_SPECIALS = set(".+()|{}$")


class PatternError(ValueError):
    """A malformed pattern (Go's ``filepath.ErrBadPattern``)."""


def clean_path(path: str) -> str:
    """Go's ``filepath.Clean`` for slash paths."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


@dataclass(frozen=True, slots=True)
class Pattern:
    """One compiled pattern; ``text`` is the cleaned pattern without its ``!``."""

    text: str
    exclusion: bool
    kind: str  # "exact", "prefix", "suffix" or "regex"
    regex: re.Pattern[str] | None

    @property
    def component_count(self) -> int:
        return len(self.text.split("/"))

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


def _validate(pattern: str) -> None:
    """Raise PatternError where Go's ``filepath.Match`` reports ErrBadPattern."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise PatternError("syntax error in pattern")
            i += 2
            continue
        if ch != "[":
            i += 1
            continue
        i += 1
        if i < n and pattern[i] == "^":
            i += 1
        first = True
        while True:
            if i >= n:
                raise PatternError("syntax error in pattern")
            if pattern[i] == "]" and not first:
                i += 1
                break
            first = False
            i = _class_char(pattern, i)
            if i < n and pattern[i] == "-":
                i = _class_char(pattern, i + 1)


def _class_char(pattern: str, i: int) -> int:
    if i >= len(pattern) or pattern[i] in "-]":
        raise PatternError("syntax error in pattern")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise PatternError("syntax error in pattern")
    return i + 1


def compile_pattern(raw: str) -> Pattern:
    """Clean and compile one pattern line (``!`` allowed)."""
    text = raw.strip()
    exclusion = text.startswith("!")
    if exclusion:
        text = text[1:]
        if not text:
            raise PatternError('illegal exclusion pattern: "!"')
    text = clean_path(text)
    _validate(text)
    regex_parts = ["^"]
    kind = "exact"
    i, n = 0, len(text)
    at_start = True
    while i < n:
        ch = text[i]
        if ch == "*":
            if i + 1 < n and text[i + 1] == "*":
                i += 2
                if i < n and text[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex_parts.append(".*")
                        kind = "regex"
                else:
                    regex_parts.append("(.*/)?")
                    kind = "regex"
                if at_start:
                    kind = "suffix"
                at_start = False
                continue
            regex_parts.append("[^/]*")
            kind = "regex"
        elif ch == "?":
            regex_parts.append("[^/]")
            kind = "regex"
        elif ch in _REGEX_SPECIALS:
            regex_parts.append("\\" + ch)
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                regex_parts.append(re.escape(text[i]))
                kind = "regex"
            else:
                regex_parts.append("\\\\")
        elif ch in "[]":
            regex_parts.append(ch)
            kind = "regex"
        elif ch == "^" and (i == 0 or text[i - 1] != "["):
            regex_parts.append("\\^")  # literal outside a class, as in filepath.Match
        else:
            regex_parts.append(re.escape(ch) if not ch.isalnum() and ch not in "/-_^" else ch)
        at_start = False
        i += 1
    regex = None
    if kind == "regex":
        regex_parts.append("$")
        try:
            regex = re.compile("".join(regex_parts), re.S)
        except re.error as exc:
            raise PatternError(f"syntax error in pattern: {exc}") from None
    return Pattern(text, exclusion, kind, regex)


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalised as moby's ``ReadAll`` does."""
    if text.startswith("\ufeff"):
        text = text[1:]
    patterns = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True, slots=True)
class ContextEntry:
    """One included context entry: slash path relative to the context, and its type."""

    path: str
    kind: str  # "dir", "file", "symlink" or "other"


class DockerIgnore:
    """A compiled pattern list: ``matches(path)`` says whether the path is excluded."""

    def __init__(self, patterns: Iterable[str] = ()):
        self.patterns: tuple[Pattern, ...] = tuple(
            compile_pattern(p) for p in patterns if p.strip())
        self.has_exceptions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_text(cls, text: str, filename: str = IGNORE_FILE) -> DockerIgnore:
        try:
            return cls(read_patterns(text))
        except PatternError as exc:
            raise DockerfileError(f"error parsing ignore file: {exc}", filename) from None

    @classmethod
    def load(cls, context_dir: str) -> DockerIgnore:
        """The context's .dockerignore, or an empty matcher when it has none."""
        path = os.path.join(context_dir, IGNORE_FILE)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except FileNotFoundError:
            return cls()
        return cls.from_text(text, path)

    def matches(self, path: str) -> bool:
        """True when ``path`` (slash-separated, relative to the context) is excluded:
        the last pattern matching it or one of its parent directories decides."""
        path = clean_path(path)
        if path.startswith("/"):
            path = path.lstrip("/") or "."
        if path == ".":
            return False
        return self.match_path(path)

    def match_path(self, path: str) -> bool:
        """``matches`` without cleaning the path first (moby's ``MatchesOrParentMatches``)."""
        parents = path.split("/")[:-1]
        prefixes = ["/".join(parents[:i + 1]) for i in range(len(parents))]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # only an exception can undo a match, only a pattern can make one
            hit = pattern.match(path) or any(pattern.match(p) for p in prefixes)
            if hit:
                matched = not pattern.exclusion
        return matched

    def can_prune(self, dir_path: str) -> bool:
        """True when an excluded directory needs no walking: no exception can reach inside."""
        if not self.matches(dir_path):
            return False
        if not self.has_exceptions:
            return True
        dir_slash = clean_path(dir_path) + "/"
        return not any(p.exclusion and (p.text + "/").startswith(dir_slash)
                       for p in self.patterns)

    def walk(self, context_dir: str) -> Iterator[ContextEntry]:
        """Included entries of ``context_dir``, sorted, each directory before its contents.

        An excluded directory that must still be walked (an exception may re-include
        something inside) is not itself yielded; its included descendants are.
        """
        yield from self._walk(context_dir, "")

    def _walk(self, root: str, rel_dir: str) -> Iterator[ContextEntry]:
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = posixpath.join(rel_dir, entry.name) if rel_dir else entry.name
            mode = entry.stat(follow_symlinks=False).st_mode
            kind = ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
                    else "symlink" if stat.S_ISLNK(mode) else "other")
            excluded = self.matches(rel)
            if kind == "dir":
                if excluded and self.can_prune(rel):
                    continue
                if not excluded:
                    yield ContextEntry(rel, kind)
                yield from self._walk(root, rel)
            elif not excluded:
                yield ContextEntry(rel, kind)

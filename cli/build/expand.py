"""Shell-like word processing of Dockerfile arguments: quotes, escapes and ``$VAR``.

This is BuildKit's ``frontend/dockerfile/shell`` lexer, not a shell: it removes quotes,
honours the escape token, and substitutes variables; nothing is executed and no globbing
happens. Supported forms::

    $V  ${V}  ${V:-word} ${V-word}  ${V:+word} ${V+word}  ${V:?msg} ${V?msg}
    ${V#pat} ${V##pat} ${V%pat} ${V%%pat}  ${V/pat/repl} ${V//pat/repl}

Single quotes keep everything literal; inside double quotes only ``$`` expands and the
escape token escapes ``"``, ``$`` and itself. An unset variable expands to the empty string
(or stays as written with ``skip_unset``, which the heredoc detector needs).

``process_word`` gives one string (ENV values keep their spaces); ``process_words`` splits
on unquoted whitespace, including whitespace that an unquoted expansion produced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from cli.build.errors import LocatedReason

_SPECIAL_PARAMS = "@*#?-$!0"


class ExpansionError(LocatedReason):
    """A word that cannot be processed (unclosed quote, bad ``${...}``, ``${V:?}`` unset)."""


@dataclass
class _Words:
    """Accumulates characters into words; knows which characters may split a word."""

    words: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    in_word: bool = False  # a quoted empty string still makes a word

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            self._end_word()
        else:
            self.current.append(ch)
            self.in_word = True

    def add_raw(self, text: str) -> None:
        self.current.append(text)
        self.in_word = True

    def add_expansion(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def _end_word(self) -> None:
        if self.in_word:
            self.words.append("".join(self.current))
        self.current = []
        self.in_word = False

    def finish(self) -> list[str]:
        self._end_word()
        return self.words


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch


class ShellLex:
    """One configured lexer; ``used`` collects every variable name looked up."""

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_unset: bool = False, skip_quotes: bool = False):
        self.escape = escape
        self.skip_quotes = skip_quotes  # quotes are plain text (COPY heredoc bodies)
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.used: set[str] = set()

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        text, _ = self._process(word, env)
        return text

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        _, words = self._process(word, env)
        return words

    # -- internals ---------------------------------------------------------------------

    def _process(self, word: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        state = _Run(self, _Scanner(word), env)
        text, _ = state.process_until("")
        return text, state.words.finish()


class _Run:
    """State of one ``process_word(s)`` call."""

    def __init__(self, lex: ShellLex, scanner: _Scanner, env: Mapping[str, str]):
        self.lex = lex
        self.s = scanner
        self.env = env
        self.words = _Words()
        self.depth = 0  # >0 while inside ${...}: words are not split there

    def process_until(self, stop: str) -> tuple[str, bool]:
        """Process up to ``stop`` (consumed) or the end; return text and whether found."""
        out: list[str] = []
        top = self.depth == 0
        while self.s.peek():
            ch = self.s.peek()
            if stop and ch == stop:
                self.s.next()
                return "".join(out), True
            if ch in "'\"" and self.lex.skip_quotes:
                self.s.next()
                out.append(ch)
                if top:
                    self.words.add_char(ch)
            elif ch == "'":
                text = self._single_quote()
                out.append(text)
                if top:
                    self.words.add_raw(text)
            elif ch == '"':
                text = self._double_quote()
                out.append(text)
                if top:
                    self.words.add_raw(text)
            elif ch == "$":
                text = self._dollar()
                out.append(text)
                if top:
                    self.words.add_expansion(text)
            else:
                ch = self.s.next()
                if ch == self.lex.escape:
                    if self.lex.raw_escapes:
                        out.append(ch)
                        if top:
                            self.words.add_raw(ch)
                    if not self.s.peek():
                        break  # a trailing escape token is dropped
                    ch = self.s.next()
                    out.append(ch)
                    if top:
                        self.words.add_raw(ch)  # an escaped space does not split
                    continue
                out.append(ch)
                if top:
                    self.words.add_char(ch)
        return "".join(out), False

    def _single_quote(self) -> str:
        self.s.next()
        out = ["'"] if self.lex.raw_quotes else []
        while True:
            ch = self.s.next()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                break
            out.append(ch)
        if self.lex.raw_quotes:
            out.append("'")
        return "".join(out)

    def _double_quote(self) -> str:
        self.s.next()
        out = ['"'] if self.lex.raw_quotes else []
        while True:
            ch = self.s.peek()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.s.next()
                break
            if ch == "$":
                self.depth += 1
                try:
                    out.append(self._dollar())
                finally:
                    self.depth -= 1
                continue
            ch = self.s.next()
            if ch == self.lex.escape:
                if self.lex.raw_escapes:
                    out.append(ch)
                nxt = self.s.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.lex.escape):
                    ch = self.s.next()
            out.append(ch)
        if self.lex.raw_quotes:
            out.append('"')
        return "".join(out)

    def _lookup(self, name: str) -> str | None:
        self.lex.used.add(name)
        return self.env.get(name)

    def _name(self) -> str:
        ch = self.s.peek()
        if ch.isdigit():
            digits = []
            while self.s.peek().isdigit():
                digits.append(self.s.next())
            return "".join(digits)
        if ch and ch in _SPECIAL_PARAMS:
            return self.s.next()
        name = []
        while self.s.peek() and (self.s.peek().isalnum() or self.s.peek() == "_"):
            name.append(self.s.next())
        return "".join(name)

    def _word_in_braces(self, stop: str = "}", *, raw_escapes: bool = False,
                        missing: str = "syntax error: missing '}'") -> str:
        saved = self.lex.raw_escapes
        self.lex.raw_escapes = raw_escapes
        self.depth += 1
        try:
            text, found = self.process_until(stop)
        finally:
            self.depth -= 1
            self.lex.raw_escapes = saved
        if not found:
            raise ExpansionError(missing)
        return text

    def _dollar(self) -> str:
        self.s.next()
        if not self.s.peek():
            return "$"
        if self.s.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            value = self._lookup(name)
            if value is None:
                return "$" + name if self.lex.skip_unset else ""
            return value
        self.s.next()
        ch = self.s.peek()
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self._name()
        value = self._lookup(name)
        ch = self.s.next()
        if ch == "}":
            if value is None:
                return "${" + name + "}" if self.lex.skip_unset else ""
            return value
        if ch == ":":
            modifier = self.s.next()
            spelled = ":" + modifier
            null_is_unset = True
        else:
            modifier, spelled, null_is_unset = ch, ch, False
        if modifier in ("+", "-", "?", "#", "%"):
            word = self._word_in_braces(raw_escapes=modifier in "#%")
            if value is None and self.lex.skip_unset:
                return "${" + name + spelled + word + "}"
            unset = value is None or (null_is_unset and value == "")
            if modifier == "-":
                return word if unset else value  # type: ignore[return-value]
            if modifier == "+":
                return "" if unset else word
            if modifier == "?":
                if value is None:
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
                if unset:
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word[:1] == modifier
            if greedy:
                word = word[1:]
            if modifier == "%":
                return _trim_suffix(word, value or "", greedy)
            return _trim_prefix(word, value or "", greedy)
        if ch == "/" and not null_is_unset:
            replace_all = self.s.peek() == "/"
            if replace_all:
                self.s.next()
            pattern = self._word_in_braces("/", raw_escapes=True,
                                           missing="syntax error: missing '/' in ${}")
            replacement = self._word_in_braces(raw_escapes=True)
            if value is None and self.lex.skip_unset:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            regex = _shell_pattern_regex(pattern, greedy=True, anchored=False)
            return regex.sub(lambda _: replacement, value or "", count=0 if replace_all else 1)
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        raise ExpansionError(f"unsupported modifier ({spelled}) in substitution")


def _shell_pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """BuildKit's ``convertShellPatternToRegex``: ``*`` and ``?`` only, no brackets."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue
            nxt = pattern[i] if i < len(pattern) else ""
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: "
                                     f"invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.S)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _shell_pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each ``\\x`` escape in front of its character."""
    tokens, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # The shortest rightmost match is the shortest leftmost match of the reversed text.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]

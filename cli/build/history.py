"""``created_by`` strings of image history, as Docker's classic builder writes them.

The classic builder (moby ``builder/dockerfile``) commits every instruction; for all but
RUN the recorded command is the stage's SHELL, then ``#(nop) `` and a summary, with Go's
``%q``/``%v`` formatting of string slices::

    /bin/sh -c #(nop)  CMD ["echo" "hello"]            (two args "#(nop) ", comment: 2 spaces)
    /bin/sh -c #(nop)  ENV A=1 B=x y
    /bin/sh -c #(nop)  SHELL [/bin/bash -c]            (SHELL prints with %v, not %q)
    /bin/sh -c #(nop) WORKDIR /app                     (WORKDIR/COPY/ADD: one arg, 1 space)
    /bin/sh -c #(nop) COPY file:<sha256> in /app       (and a trailing blank)

RUN records the command it ran, prefixed with ``|N K=V …`` when build args were in effect:
``/bin/sh -c echo hi`` or ``|1 A=b /bin/sh -c echo hi``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cli.build import instructions as ins

NOP = "#(nop) "


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v"}


def go_quote_rune(code: int) -> str:
    """Go's ``strconv.QuoteRune`` (what ``%q`` prints for an int, e.g. retries)."""
    ch = chr(code)
    if ch == "'":
        return "'\\''"
    if ch == "\\":
        return "'\\\\'"
    if ch in _GO_ESCAPES:
        return "'" + _GO_ESCAPES[ch] + "'"
    if ch.isprintable():
        return f"'{ch}'"
    if code < 0x80:
        return f"'\\x{code:02x}'"
    return f"'\\u{code:04x}'" if code <= 0xFFFF else f"'\\U{code:08x}'"


def go_quote_slice(items: Sequence[str]) -> str:
    """``fmt.Sprintf("%q", []string{…})``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``1m30s``, ``500ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim_fraction(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim_fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim_fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def copy_source_summary(hashes: Sequence[str]) -> str:
    """The ``srcHash`` of a COPY/ADD from the per-source ``file:<hex>``/``dir:<hex>`` values
    the builder computed: one source keeps its own; several become ``multi:<sha256>``."""
    if len(hashes) == 1:
        return hashes[0]
    return "multi:" + hashlib.sha256(",".join(hashes).encode()).hexdigest()


def created_by(instr: ins.Instruction, *, shell: Sequence[str] = ins.DEFAULT_SHELL,
               build_args: Sequence[str] = (), copy_source: str | None = None,
               workdir: str | None = None) -> str:
    """The history ``created_by`` for an expanded instruction.

    ``shell`` is the stage's SHELL at that point; ``build_args`` are the ``K=V`` build args
    in effect for a RUN (``StageScope.history_build_args``); ``copy_source`` is the content
    summary of a COPY/ADD (``file:<hex>``, ``dir:<hex>``, ``multi:<hex>``) that only the
    builder can compute; ``workdir`` is the resolved working directory after a WORKDIR.
    """
    shell = tuple(shell)
    if isinstance(instr, ins.Shell):
        shell = instr.shell  # the new SHELL is already in effect when Docker commits it

    def _nop(summary: str) -> str:
        return " ".join(shell) + f" {NOP} {summary}"

    def _nop_one_arg(summary: str) -> str:
        return " ".join(shell) + f" {NOP}{summary}"

    if isinstance(instr, ins.Run):
        argv = list(instr.command.argv(shell))
        for doc in instr.heredocs:  # the classic builder has no heredocs: keep them readable
            argv[-1] += "\n" + doc.content + doc.name
        if build_args:
            argv = [f"|{len(build_args)}", *sorted(build_args), *argv]
        return " ".join(argv)
    if isinstance(instr, ins.Cmd):
        return _nop("CMD " + go_quote_slice(instr.command.argv(shell)))
    if isinstance(instr, ins.Entrypoint):
        return _nop("ENTRYPOINT " + go_quote_slice(instr.command.argv(shell)))
    if isinstance(instr, ins.Shell):
        return _nop("SHELL [" + " ".join(instr.shell) + "]")
    if isinstance(instr, ins.Env):
        return _nop("ENV " + " ".join(f"{p.key}={p.value}" for p in instr.pairs))
    if isinstance(instr, ins.Label):
        return _nop("LABEL " + " ".join(f"{p.key}={p.value}" for p in instr.pairs))
    if isinstance(instr, ins.Arg):
        return _nop("ARG " + " ".join(
            d.name if d.default is None else f"{d.name}={d.default}" for d in instr.args))
    if isinstance(instr, ins.Maintainer):
        return _nop("MAINTAINER " + instr.name)
    if isinstance(instr, ins.Workdir):
        return _nop_one_arg("WORKDIR " + (workdir or instr.path))
    if isinstance(instr, ins.User):
        return _nop("USER " + instr.user)
    if isinstance(instr, ins.StopSignal):
        return _nop("STOPSIGNAL " + instr.signal)
    if isinstance(instr, ins.Expose):
        return _nop("EXPOSE " + " ".join(instr.ports))
    if isinstance(instr, ins.Volume):
        return _nop("VOLUME [" + " ".join(instr.paths) + "]")
    if isinstance(instr, ins.Onbuild):
        return _nop("ONBUILD " + instr.expression)
    if isinstance(instr, ins.Healthcheck):
        fields = [go_quote_slice(instr.test)] + [
            go_quote(go_duration(ns)) for ns in
            (instr.interval, instr.timeout, instr.start_period, instr.start_interval)]
        return _nop("HEALTHCHECK &{" + " ".join(fields) + " " + go_quote_rune(instr.retries) + "}")
    if isinstance(instr, ins._CopyLike):
        source = copy_source or _describe_sources(instr)
        return _nop_one_arg(f"{instr.keyword} {source} in {instr.dest} ")
    raise TypeError(f"no history line for {type(instr).__name__}")


def _describe_sources(instr: ins._CopyLike) -> str:
    """A stand-in when the builder gives no content digest: the sources as written."""
    names = list(instr.sources) + [f"<<{f.path}" for f in instr.inline]
    return " ".join(names)

"""Stage 2 of the Dockerfile front end: ``Node`` → typed instruction, and the whole file
→ ``Dockerfile`` (meta ARGs and stages). Messages follow BuildKit's
``frontend/dockerfile/instructions/parse.go`` wording."""

from __future__ import annotations

import csv
import re

from cli.build import instructions as ins
from cli.build.errors import DockerfileError, LocatedReason
from cli.build.parser import Node, parse, parse_heredoc_word

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_ALL_KEYWORDS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                 "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                 "WORKDIR")
MIN_HEALTH_DURATION_NS = 1_000_000  # Docker's container.MinimumDuration (1ms)


def parse_dockerfile(text: str, filename: str = "Dockerfile") -> ins.Dockerfile:
    """Parse a whole Dockerfile; raises ``DockerfileError`` (with the line) on any mistake."""
    result = parse(text, filename)
    meta_args: list[ins.Arg] = []
    stages: list[tuple[ins.From, list[ins.Instruction]]] = []
    for node in result.nodes:
        instr = instruction_from_node(node, filename)
        if isinstance(instr, ins.From):
            stages.append((instr, []))
        elif not stages:
            if isinstance(instr, ins.Arg):
                meta_args.append(instr)
            else:
                raise DockerfileError("no build stage in current context", filename,
                                      node.start_line, node.end_line)
        else:
            stages[-1][1].append(instr)
    seen: dict[str, int] = {}
    for index, (header, _) in enumerate(stages):
        if header.name is not None:
            if header.name in seen:
                raise DockerfileError(f"duplicate stage name \"{header.name}\"", filename, header.line)
            seen[header.name] = index
    return ins.Dockerfile(
        filename=filename, escape=result.escape, directives=result.directives,
        meta_args=tuple(meta_args),
        stages=tuple(ins.Stage(i, header, tuple(body)) for i, (header, body) in enumerate(stages)),
        warnings=result.warnings)


def parse_onbuild_trigger(expression: str, source: str = "ONBUILD") -> ins.Instruction:
    """Parse one stored ONBUILD trigger (an image config's ``OnBuild`` entry) for a child
    build. ``source`` names where it came from in error messages (e.g. the parent image)."""
    result = parse(expression, source)
    if len(result.nodes) != 1:
        raise DockerfileError("onbuild trigger should be a single expression", source, 1)
    node = result.nodes[0]
    if node.keyword in ("onbuild", "from", "maintainer"):
        raise DockerfileError(f"{node.keyword.upper()} isn't allowed as an ONBUILD trigger", source, 1)
    return instruction_from_node(node, source)


def instruction_from_node(node: Node, filename: str = "Dockerfile") -> ins.Instruction:
    try:
        return _convert(node)
    except LocatedReason as exc:
        raise DockerfileError(str(exc), filename, node.start_line, node.end_line) from None


def _convert(node: Node) -> ins.Instruction:
    handler = _HANDLERS.get(node.keyword)
    if handler is None:
        word = node.original.split()[0] if node.original.split() else node.keyword
        raise LocatedReason(_suggest(f"unknown instruction: {word}", word, _ALL_KEYWORDS,
                                     case_sensitive=False))
    return handler(node, _Flags(node.flags))


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _suggest(reason: str, value: str, options: list[str] | tuple[str, ...], *,
             case_sensitive: bool) -> str:
    """BuildKit's ``suggest.WrapError``: append the closest option within distance 2."""
    probe = value if case_sensitive else value.lower()
    best, best_distance = None, 3
    for option in options:
        candidate = option if case_sensitive else option.lower()
        if candidate == probe:
            return reason
        distance = _levenshtein(probe, candidate)
        if distance < best_distance:
            best, best_distance = candidate, distance
    if best is None:
        return reason
    if not case_sensitive and value != value.lower():
        best = best.upper() if value == value.upper() else best
    return f"{reason} (did you mean {best}?)"


def _common(node: Node) -> dict:
    return {"line": node.start_line, "end_line": node.end_line, "original": node.original}


class _Flags:
    """BuildKit's BFlags: declared flags, ``--name=value`` / ``--bool``; others are errors."""

    def __init__(self, words: tuple[str, ...]):
        self.words = words
        self.kinds: dict[str, str] = {}
        self.values: dict[str, object] = {}

    def string(self, name: str) -> None:
        self.kinds[name] = "string"

    def strings(self, name: str) -> None:
        self.kinds[name] = "strings"

    def boolean(self, name: str) -> None:
        self.kinds[name] = "bool"

    def parse(self) -> dict[str, object]:
        for word in self.words:
            if not word.startswith("--"):
                raise LocatedReason(f"arg should start with -- : {word}")
            if word == "--":
                break
            name, has_value, value = word[2:].partition("=")
            kind = self.kinds.get(name)
            if kind is None:
                raise LocatedReason(_suggest(f"unknown flag: {name}", name, list(self.kinds),
                                             case_sensitive=True))
            if name in self.values and kind != "strings":
                raise LocatedReason(f"duplicate flag specified: {name}")
            if kind == "bool":
                if has_value and value == "":
                    raise LocatedReason(f"missing a value on flag: {name}")
                lowered = value.lower() if has_value else "true"
                if lowered not in ("true", "false"):
                    raise LocatedReason(f"expecting boolean value for flag {name}, not: {value}")
                self.values[name] = lowered == "true"
            elif not has_value:
                raise LocatedReason(f"missing a value on flag: {name}")
            elif kind == "strings":
                self.values.setdefault(name, [])
                self.values[name].append(value)  # type: ignore[union-attr]
            else:
                self.values[name] = value
        return self.values


def _none_if_empty(value: object) -> str | None:
    return value if isinstance(value, str) and value != "" else None


# -- instruction handlers ---------------------------------------------------------------


def _from(node: Node, flags: _Flags) -> ins.From:
    args = node.args
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise LocatedReason(f'invalid name for build stage: "{args[2]}", '
                                "name can't start with a number or contain symbols")
    elif len(args) != 1:
        raise LocatedReason("FROM requires either one or three arguments")
    flags.string("platform")
    values = flags.parse()
    return ins.From(**_common(node), base=args[0], name=name,
                    platform=_none_if_empty(values.get("platform")))


def _command_line(node: Node) -> ins.CommandLine:
    return ins.CommandLine(tuple(node.args), prepend_shell=not node.json)


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_MOUNT_KEYS = {"type", "target", "dst", "destination", "source", "src", "from", "readonly", "ro",
               "rw", "readwrite", "id", "sharing", "mode", "uid", "gid", "required", "size", "env"}


def parse_mount(spec: str) -> ins.RunMount:
    """``type=cache,target=/root/.cache,sharing=locked`` → RunMount (BuildKit's rules)."""
    fields: dict[str, object] = {"type": "bind"}
    for part in _csv_fields(spec):
        key, has_value, value = part.partition("=")
        key = key.strip().lower()
        if key not in _MOUNT_KEYS:
            raise LocatedReason(f"unexpected key '{key}' in '{part}'")
        if key in ("readonly", "ro", "rw", "readwrite", "required"):
            flag = True if not has_value else _bool_value(value, key)
            if key in ("rw", "readwrite"):
                fields["readonly"] = not flag
            elif key == "required":
                fields["required"] = flag
            else:
                fields["readonly"] = flag
            continue
        if not has_value:
            raise LocatedReason(f"invalid field '{part}' must be a key=value pair")
        key = {"dst": "target", "destination": "target", "src": "source", "from": "from_"}.get(key, key)
        fields[key] = value
    mount_type = str(fields["type"]).lower()
    if mount_type not in _MOUNT_TYPES:
        raise LocatedReason(f"unsupported mount type {mount_type!r}")
    fields["type"] = mount_type
    if mount_type not in ("secret", "ssh") and not fields.get("target"):
        raise LocatedReason("mount target is required" if "target" not in fields
                            else f"invalid mount target {fields.get('target')!r}")
    if mount_type == "cache" and fields.get("sharing", "shared") not in ("shared", "private", "locked"):
        raise LocatedReason(f"unrecognized sharing parameter '{fields['sharing']}'")
    return ins.RunMount(**fields)  # type: ignore[arg-type]


def _csv_fields(spec: str) -> list[str]:
    return [f for f in next(csv.reader([spec])) if f != ""] if spec else []


def _bool_value(value: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LocatedReason(f"invalid value for {key}: {value}")


def _run(node: Node, flags: _Flags) -> ins.Run:
    flags.strings("mount")
    flags.string("network")
    flags.string("security")
    values = flags.parse()
    network = _none_if_empty(values.get("network"))
    if network is not None and network not in ("default", "none", "host"):
        raise LocatedReason(f"unsupported network mode: {network}")
    security = _none_if_empty(values.get("security"))
    if security is not None and security not in ("sandbox", "insecure"):
        raise LocatedReason(f"unsupported security mode {security!r}")
    mounts = tuple(parse_mount(spec) for spec in values.get("mount", []))  # type: ignore[union-attr]
    if not node.args and not node.heredocs:
        raise LocatedReason("RUN requires at least one argument")
    return ins.Run(**_common(node), command=_command_line(node), heredocs=node.heredocs,
                   mounts=mounts, network=network, security=security)


def _cmd(node: Node, flags: _Flags) -> ins.Cmd:
    flags.parse()
    return ins.Cmd(**_common(node), command=_command_line(node))


def _entrypoint(node: Node, flags: _Flags) -> ins.Entrypoint:
    flags.parse()
    return ins.Entrypoint(**_common(node), command=_command_line(node))


def _shell(node: Node, flags: _Flags) -> ins.Shell:
    flags.parse()
    if not node.args:
        raise LocatedReason("SHELL requires at least one argument")
    if not node.json:
        raise LocatedReason("SHELL requires the arguments to be in JSON form")
    return ins.Shell(**_common(node), shell=tuple(node.args))


def _pairs(node: Node, keyword: str) -> tuple[ins.KeyValue, ...]:
    args = node.args
    if not args:
        raise LocatedReason(f"{keyword} requires at least one argument")
    if len(args) % 2:
        raise LocatedReason(f"Bad input to {keyword}, too many arguments")
    pairs = []
    for key, value in zip(args[0::2], args[1::2]):
        if not key:
            raise LocatedReason(f"{keyword} names can not be blank")
        pairs.append(ins.KeyValue(key, value))
    return tuple(pairs)


def _env(node: Node, flags: _Flags) -> ins.Env:
    flags.parse()
    return ins.Env(**_common(node), pairs=_pairs(node, "ENV"))


def _label(node: Node, flags: _Flags) -> ins.Label:
    flags.parse()
    return ins.Label(**_common(node), pairs=_pairs(node, "LABEL"))


def _arg(node: Node, flags: _Flags) -> ins.Arg:
    flags.parse()
    if not node.args:
        raise LocatedReason("ARG requires at least one argument")
    decls = []
    for word in node.args:
        name, has_value, value = word.partition("=")
        if has_value and not name:
            raise LocatedReason("ARG names can not be blank")
        decls.append(ins.ArgDecl(name, value if has_value else None))
    return ins.Arg(**_common(node), args=tuple(decls))


def _exactly_one(node: Node, keyword: str) -> str:
    if len(node.args) != 1:
        raise LocatedReason(f"{keyword} requires exactly one argument")
    return node.args[0]


def _maintainer(node: Node, flags: _Flags) -> ins.Maintainer:
    name = _exactly_one(node, "MAINTAINER")
    flags.parse()
    return ins.Maintainer(**_common(node), name=name)


def _workdir(node: Node, flags: _Flags) -> ins.Workdir:
    path = _exactly_one(node, "WORKDIR")
    flags.parse()
    return ins.Workdir(**_common(node), path=path)


def _user(node: Node, flags: _Flags) -> ins.User:
    user = _exactly_one(node, "USER")
    flags.parse()
    return ins.User(**_common(node), user=user)


def _stopsignal(node: Node, flags: _Flags) -> ins.StopSignal:
    signal = _exactly_one(node, "STOPSIGNAL")
    flags.parse()
    return ins.StopSignal(**_common(node), signal=signal)


def _expose(node: Node, flags: _Flags) -> ins.Expose:
    if not node.args:
        raise LocatedReason("EXPOSE requires at least one argument")
    flags.parse()
    return ins.Expose(**_common(node), ports=tuple(sorted(node.args)))


def _volume(node: Node, flags: _Flags) -> ins.Volume:
    if not node.args:
        raise LocatedReason("VOLUME requires at least one argument")
    flags.parse()
    paths = tuple(p.strip() for p in node.args)
    if any(not p for p in paths):
        raise LocatedReason("VOLUME specified can not be an empty string")
    return ins.Volume(**_common(node), paths=paths)


_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` (non-negative): ``1m30s`` → nanoseconds."""
    body = text[1:] if text[:1] == "+" else text
    if body == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match or match.group(1) in ("", "."):
            raise LocatedReason(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if not body:
        raise LocatedReason(f'time: invalid duration "{text}"')
    return int(round(total))


def _health_duration(values: dict[str, object], name: str) -> int:
    text = values.get(name)
    if not text:
        return 0
    ns = parse_go_duration(str(text))
    if 0 < ns < MIN_HEALTH_DURATION_NS:
        raise LocatedReason(f'Interval "{name}" cannot be less than 1ms')
    return ns


def _healthcheck(node: Node, flags: _Flags) -> ins.Healthcheck:
    if not node.args:
        raise LocatedReason("HEALTHCHECK requires at least one argument")
    kind = node.args[0].upper()
    rest = node.args[1:]
    if kind == "NONE":
        if rest:
            raise LocatedReason("HEALTHCHECK NONE takes no arguments")
        flags.parse()
        return ins.Healthcheck(**_common(node), test=("NONE",))
    for name in ("interval", "timeout", "start-period", "start-interval", "retries"):
        flags.string(name)
    values = flags.parse()
    if kind != "CMD":
        raise LocatedReason(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not rest:
        raise LocatedReason("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json else ("CMD-SHELL", " ".join(rest))
    retries = 0
    if values.get("retries"):
        text = str(values["retries"])
        if not re.fullmatch(r"[+-]?\d+", text):
            raise LocatedReason(f'strconv.ParseInt: parsing "{text}": invalid syntax')
        retries = int(text)
        if retries < 0:
            raise LocatedReason(f"--retries cannot be negative ({retries})")
    return ins.Healthcheck(
        **_common(node), test=test,
        interval=_health_duration(values, "interval"),
        timeout=_health_duration(values, "timeout"),
        start_period=_health_duration(values, "start-period"),
        start_interval=_health_duration(values, "start-interval"),
        retries=retries)


def _onbuild(node: Node, flags: _Flags) -> ins.Onbuild:
    if node.child is None:
        raise LocatedReason("ONBUILD requires at least one argument")
    flags.parse()
    trigger_word = node.child.keyword.upper()
    if trigger_word == "ONBUILD":
        raise LocatedReason("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_word in ("MAINTAINER", "FROM"):
        raise LocatedReason(f"{trigger_word} isn't allowed as an ONBUILD trigger")
    trigger = _convert(node.child)
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original, count=1)
    for doc in node.child.heredocs:
        expression += "\n" + doc.content + doc.name
    return ins.Onbuild(**_common(node), expression=expression, trigger=trigger)


def _sources_and_dest(node: Node, keyword: str) -> dict:
    if len(node.args) < 2:
        raise LocatedReason(f"{keyword} requires at least two arguments, but only one was "
                            "provided. Destination could not be determined")
    *srcs, dest = node.args
    if parse_heredoc_word(dest) is not None:
        raise LocatedReason(f"{keyword} cannot accept a heredoc as a destination")
    docs = {doc.name: doc for doc in node.heredocs}
    sources, inline = [], []
    for src in srcs:
        spec = parse_heredoc_word(src) if node.heredocs else None
        if spec is not None and spec.name in docs:
            doc = docs[spec.name]
            inline.append(ins.InlineFile(doc.name, doc.body, doc.expand))
        else:
            sources.append(src)
    return {"sources": tuple(sources), "inline": tuple(inline), "dest": dest}


def _copy_flags(flags: _Flags) -> None:
    flags.string("chown")
    flags.string("chmod")
    flags.boolean("link")
    flags.strings("exclude")


def _copy(node: Node, flags: _Flags) -> ins.Copy:
    parts = _sources_and_dest(node, "COPY")
    _copy_flags(flags)
    flags.string("from")
    flags.boolean("parents")
    values = flags.parse()
    return ins.Copy(**_common(node), **parts, from_=_none_if_empty(values.get("from")),
                    chown=_none_if_empty(values.get("chown")),
                    chmod=_none_if_empty(values.get("chmod")),
                    link=bool(values.get("link", False)),
                    excludes=tuple(values.get("exclude", [])),  # type: ignore[arg-type]
                    parents=bool(values.get("parents", False)))


def _add(node: Node, flags: _Flags) -> ins.Add:
    parts = _sources_and_dest(node, "ADD")
    _copy_flags(flags)
    flags.string("checksum")
    flags.boolean("keep-git-dir")
    values = flags.parse()
    return ins.Add(**_common(node), **parts,
                   chown=_none_if_empty(values.get("chown")),
                   chmod=_none_if_empty(values.get("chmod")),
                   link=bool(values.get("link", False)),
                   excludes=tuple(values.get("exclude", [])),  # type: ignore[arg-type]
                   checksum=_none_if_empty(values.get("checksum")),
                   keep_git_dir=bool(values.get("keep-git-dir", False)))


_HANDLERS = {
    "from": _from, "run": _run, "cmd": _cmd, "entrypoint": _entrypoint, "shell": _shell,
    "env": _env, "label": _label, "arg": _arg, "maintainer": _maintainer, "workdir": _workdir,
    "user": _user, "stopsignal": _stopsignal, "expose": _expose, "volume": _volume,
    "healthcheck": _healthcheck, "onbuild": _onbuild, "copy": _copy, "add": _add,
}

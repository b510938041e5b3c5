"""Docker's ``--change``/``-c`` instructions (commit, import) applied to an image config.

Allowed, as in ``docker commit``: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER,
VOLUME, WORKDIR, in shell or JSON form. Anything else is a one-line UserError and the
config is left alone (a new dict is returned; the input is never modified).
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import shlex

from cli.errors import UserError

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR")


def apply_changes(config: dict, instructions: list[str]) -> dict:
    """Return a copy of the image CONFIG with each instruction applied in order."""
    result = copy.deepcopy(config)
    inner = result.get("config")
    if not isinstance(inner, dict):
        inner = {}
    for text in instructions:
        _apply_one(inner, text)
    result["config"] = inner
    return result


def _apply_one(cfg: dict, text: str) -> None:
    text = text.strip()
    keyword, _, rest = text.partition(" ")
    if not keyword:
        raise UserError("empty change instruction")
    rest = rest.strip()
    keyword = keyword.upper()
    if keyword not in ALLOWED:
        raise UserError(f"{keyword.lower()} is not a valid change command")
    if keyword in ("CMD", "ENTRYPOINT"):
        cfg["Cmd" if keyword == "CMD" else "Entrypoint"] = _command(rest)
    elif keyword == "ENV":
        env = list(cfg.get("Env") or [])
        for key, value in _pairs(keyword, rest, allow_legacy=True):
            env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
        cfg["Env"] = env
    elif keyword == "LABEL":
        labels = dict(cfg.get("Labels") or {})
        for key, value in _pairs(keyword, rest, allow_legacy=True):
            labels[key] = value
        cfg["Labels"] = labels
    elif keyword == "EXPOSE":
        ports = dict(cfg.get("ExposedPorts") or {})
        for port in _words(keyword, rest):
            for spec in _expand_port(port):
                ports[spec] = {}
        cfg["ExposedPorts"] = ports
    elif keyword == "VOLUME":
        volumes = dict(cfg.get("Volumes") or {})
        for path in _json_or_words(keyword, rest):
            volumes[path] = {}
        cfg["Volumes"] = volumes
    elif keyword == "USER":
        cfg["User"] = _single(keyword, rest)
    elif keyword == "WORKDIR":
        path = _single(keyword, rest)
        cfg["WorkingDir"] = posixpath.normpath(
            posixpath.join(cfg.get("WorkingDir") or "/", path))
    elif keyword == "ONBUILD":
        trigger = rest.split(None, 1)[0].upper() if rest else ""
        if trigger in ("ONBUILD", "FROM", "MAINTAINER") or not trigger:
            raise UserError(f"{trigger or 'an empty'} instruction is not allowed in ONBUILD")
        cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [rest]


def _command(rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    if not rest:
        raise UserError("CMD/ENTRYPOINT needs a command")
    return ["/bin/sh", "-c", rest]


def _json_or_words(keyword: str, rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return _words(keyword, rest)


def _words(keyword: str, rest: str) -> list[str]:
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise UserError(f"{keyword}: {exc}") from None
    if not words:
        raise UserError(f"{keyword} requires at least one argument")
    return words


def _single(keyword: str, rest: str) -> str:
    words = _words(keyword, rest)
    if len(words) != 1:
        raise UserError(f"{keyword} requires exactly one argument")
    return words[0]


def _pairs(keyword: str, rest: str, allow_legacy: bool) -> list[tuple[str, str]]:
    words = _words(keyword, rest)
    if "=" not in words[0]:
        # Legacy form: "ENV KEY value with spaces".
        if not allow_legacy or len(words) < 2:
            raise UserError(f"{keyword} must have two arguments")
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UserError(f"{keyword}: syntax error - can't find = in {word!r}. "
                            "Must be of the form: name=value")
        pairs.append((key, value))
    return pairs


_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?")


def _expand_port(text: str) -> list[str]:
    match = _PORT_RE.fullmatch(text.lower())
    if not match:
        raise UserError(f"invalid port: {text}")
    start, end, proto = int(match[1]), int(match[2] or match[1]), match[3] or "tcp"
    if not 0 < start <= end <= 65535:
        raise UserError(f"invalid port range: {text}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]

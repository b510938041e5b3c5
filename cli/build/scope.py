"""ARG/ENV scoping and variable expansion, instruction by instruction.

Docker's rules, which this module is the one owner of:

* ARGs before the first FROM ("meta args") are visible only to FROM lines. A stage sees
  one only after re-declaring it (``ARG NAME`` without a value takes the meta value).
* ``--build-arg NAME=v`` overrides an ARG's default, in meta args and in stages alike;
  a build arg that no ARG declares is not visible (and is reported as unused), except
  the predefined proxy args (``HTTP_PROXY`` …), which RUN sees without a declaration.
* ENV beats ARG: a variable set by ENV (or inherited from the base image's config) keeps
  its ENV value even when an ARG of the same name comes later.
* All pairs of one ENV/LABEL/ARG line expand against the variables as they were *before*
  that line (``ENV a=1 b=$a`` gives b the old a).
* Expansion happens in ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR,
  ARG, and RUN ``--mount`` options; never in RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands
  (the shell does that at run time) nor in ONBUILD triggers (they expand in the child build).

A builder makes a ``StageScope`` per stage (after resolving the base image, whose config
gives ``base_env``/``base_workdir``) and feeds it each instruction in order:
``scope.expand(instr)`` returns the instruction with its words processed and updates the
scope; ``scope.run_env()`` is the environment of a RUN; ``scope.created_by(instr)`` is
the history string.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cli.build import instructions as ins
from cli.build.errors import DockerfileError
from cli.build.expand import ExpansionError, ShellLex
from cli.build.history import created_by as _created_by

PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})


_SIGNAL_NAMES = frozenset(s.name[3:] for s in signal.Signals if not s.name.startswith("SIG_"))


def is_valid_signal(text: str) -> bool:
    """moby/sys ``signal.ParseSignal``: a non-zero number, or a name with or without SIG."""
    if text.isdigit():
        return int(text) != 0
    name = text.upper().removeprefix("SIG")
    if name in _SIGNAL_NAMES:
        return True
    match = re.fullmatch(r"RT(MIN|MAX)([+-](\d+))?", name)
    return bool(match) and int(match.group(3) or 0) <= 15


def env_list_to_dict(env: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """An image config's ``["K=V", …]`` (or a mapping) as an ordered dict."""
    if isinstance(env, Mapping):
        return dict(env)
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def platform_args(target_os: str, target_arch: str, target_variant: str = "",
                  build_os: str | None = None, build_arch: str | None = None,
                  build_variant: str | None = None) -> dict[str, str]:
    """BuildKit's automatic platform ARGs (``TARGETPLATFORM``, ``BUILDARCH`` …), to pass as
    ``resolve_meta_args(..., automatic=...)``; a stage sees them after ``ARG NAME``."""
    build_os = build_os or target_os
    build_arch = build_arch or target_arch
    build_variant = target_variant if build_variant is None else build_variant

    def spec(os_: str, arch: str, variant: str) -> str:
        return f"{os_}/{arch}/{variant}" if variant else f"{os_}/{arch}"

    return {
        "BUILDPLATFORM": spec(build_os, build_arch, build_variant), "BUILDOS": build_os,
        "BUILDARCH": build_arch, "BUILDVARIANT": build_variant,
        "TARGETPLATFORM": spec(target_os, target_arch, target_variant), "TARGETOS": target_os,
        "TARGETARCH": target_arch, "TARGETVARIANT": target_variant,
    }


@dataclass(frozen=True, slots=True)
class MetaArgs:
    """The values of the ARGs before the first FROM (``None``: declared without a value)."""

    values: dict[str, str | None]

    def defined(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if v is not None}


def _process(lex: ShellLex, word: str, env: Mapping[str, str], dockerfile: ins.Dockerfile,
             instr: ins.Instruction) -> str:
    try:
        return lex.process_word(word, env)
    except ExpansionError as exc:
        raise DockerfileError(f"failed to process {json.dumps(word)}: {exc}",
                              dockerfile.filename, instr.line, instr.end_line) from None


def resolve_meta_args(dockerfile: ins.Dockerfile, build_args: Mapping[str, str],
                      automatic: Mapping[str, str] | None = None) -> MetaArgs:
    """Evaluate the ARGs before the first FROM. ``automatic`` are BuildKit's predefined
    platform args (``BUILDPLATFORM``, ``TARGETARCH`` …) if the builder provides them."""
    values: dict[str, str | None] = dict(automatic or {})
    lex = ShellLex(dockerfile.escape)
    for arg in dockerfile.meta_args:
        visible = {k: v for k, v in values.items() if v is not None}
        for decl in arg.args:
            name = _process(lex, decl.name, visible, dockerfile, arg)
            if name in build_args:
                values[name] = build_args[name]
            elif decl.default is not None:
                values[name] = _process(lex, decl.default, visible, dockerfile, arg)
            else:
                values.setdefault(name, None)
    return MetaArgs(values)


def expand_from(dockerfile: ins.Dockerfile, header: ins.From, meta: MetaArgs) -> ins.From:
    """FROM with the meta args substituted into the base name and ``--platform``."""
    lex = ShellLex(dockerfile.escape)
    env = meta.defined()
    base = _process(lex, header.base, env, dockerfile, header)
    if not base:
        raise DockerfileError(f"base name ({header.base}) should not be blank",
                              dockerfile.filename, header.line)
    platform = _process(lex, header.platform, env, dockerfile, header) if header.platform else None
    return dataclasses.replace(header, base=base, platform=platform or None)


def stages_needed(dockerfile: ins.Dockerfile, meta: MetaArgs,
                  target: str | None = None) -> tuple[ins.Stage, ...]:
    """The stages a build of ``target`` must run, with FROM lines expanded by the meta args."""
    bases = {s.index: expand_from(dockerfile, s.header, meta).base for s in dockerfile.stages}
    return dockerfile.stages_needed(target, bases)


def unused_build_args(build_args: Mapping[str, str], meta: MetaArgs,
                      scopes: Iterable[StageScope]) -> list[str]:
    """Build args that no ARG of the build declared; Docker warns about them
    (``[Warning] One or more build-args [X] were not consumed``)."""
    declared = set(meta.values)
    for scope in scopes:
        declared |= scope.declared
    return sorted(k for k in build_args if k not in declared and k not in PROXY_ARGS)


class StageScope:
    """Variables of one stage while a builder walks its instructions (see module doc)."""

    def __init__(self, dockerfile: ins.Dockerfile, meta: MetaArgs,
                 build_args: Mapping[str, str],
                 base_env: Iterable[str] | Mapping[str, str] = (),
                 base_workdir: str = "/", base_shell: tuple[str, ...] = ins.DEFAULT_SHELL):
        self.dockerfile = dockerfile
        self.meta = meta
        self.build_args = dict(build_args)
        self.env: dict[str, str] = env_list_to_dict(base_env)
        self.args: dict[str, str | None] = {}  # declared in this stage, in order
        self.workdir = base_workdir or "/"
        self.shell = tuple(base_shell)
        self._lex = ShellLex(dockerfile.escape)

    # -- what the builder asks ---------------------------------------------------------

    def variables(self) -> dict[str, str]:
        """What ``$NAME`` sees now: declared ARGs with a value, proxies, then ENV on top."""
        out = {k: v for k, v in self.build_args.items() if k in PROXY_ARGS}
        out.update({k: v for k, v in self.args.items() if v is not None})
        out.update(self.env)
        return out

    def run_env(self) -> list[str]:
        """The environment of a RUN: ENV, plus build args that ENV does not shadow."""
        env = dict(self.env)
        for key, value in self._arg_values().items():
            env.setdefault(key, value)
        return [f"{k}={v}" for k, v in env.items()]

    def history_build_args(self) -> list[str]:
        """``K=V`` of the ARGs a RUN's history line records (Docker's ``|N K=V`` prefix):
        declared args with a value that ENV does not shadow, sorted; undeclared proxies
        are left out so proxy settings do not leak into the image."""
        return sorted(f"{k}={v}" for k, v in self._arg_values().items()
                      if k not in self.env and k in self.args)

    @property
    def declared(self) -> frozenset[str]:
        """Every ARG name this stage has declared so far."""
        return frozenset(self.args)

    def created_by(self, instr: ins.Instruction, *, copy_source: str | None = None) -> str:
        """Docker's classic ``created_by`` for an *expanded* instruction, in this scope."""
        return _created_by(instr, shell=self.shell, build_args=self.history_build_args(),
                           copy_source=copy_source, workdir=self.workdir)

    # -- expansion -----------------------------------------------------------------------

    def expand(self, instr: ins.Instruction) -> ins.Instruction:
        """Return ``instr`` with its words processed, and apply it to the scope."""
        handler = getattr(self, f"_expand_{type(instr).__name__.lower()}", None)
        result = handler(instr) if handler else instr
        if isinstance(result, ins.Shell):
            self.shell = result.shell
        return result

    def _word(self, instr: ins.Instruction, word: str, env: Mapping[str, str] | None = None) -> str:
        return _process(self._lex, word, self.variables() if env is None else env,
                        self.dockerfile, instr)

    def _opt(self, instr: ins.Instruction, word: str | None) -> str | None:
        return None if word is None else (self._word(instr, word) or None)

    def _arg_values(self) -> dict[str, str]:
        out = {k: v for k, v in self.build_args.items() if k in PROXY_ARGS}
        out.update({k: v for k, v in self.args.items() if v is not None})
        return out

    def _expand_env(self, instr: ins.Env) -> ins.Env:
        env = self.variables()
        pairs = tuple(ins.KeyValue(self._word(instr, p.key, env), self._word(instr, p.value, env))
                      for p in instr.pairs)
        for pair in pairs:
            self.env[pair.key] = pair.value
        return dataclasses.replace(instr, pairs=pairs)

    def _expand_label(self, instr: ins.Label) -> ins.Label:
        env = self.variables()
        pairs = tuple(ins.KeyValue(self._word(instr, p.key, env), self._word(instr, p.value, env))
                      for p in instr.pairs)
        return dataclasses.replace(instr, pairs=pairs)

    def _expand_arg(self, instr: ins.Arg) -> ins.Arg:
        env = self.variables()
        decls = []
        for decl in instr.args:
            name = self._word(instr, decl.name, env)
            default = None if decl.default is None else self._word(instr, decl.default, env)
            decls.append(ins.ArgDecl(name, default))
            if name in self.build_args:
                value: str | None = self.build_args[name]
            elif default is not None:
                value = default
            else:
                value = self.meta.values.get(name)
            self.args[name] = value
        return dataclasses.replace(instr, args=tuple(decls))

    def _expand_workdir(self, instr: ins.Workdir) -> ins.Workdir:
        path = self._word(instr, instr.path)
        self.workdir = posixpath.normpath(posixpath.join(self.workdir, path))
        if self.workdir.startswith("//"):
            self.workdir = "/" + self.workdir.lstrip("/")
        return dataclasses.replace(instr, path=path)

    def _expand_user(self, instr: ins.User) -> ins.User:
        return dataclasses.replace(instr, user=self._word(instr, instr.user))

    def _expand_stopsignal(self, instr: ins.StopSignal) -> ins.StopSignal:
        value = self._word(instr, instr.signal)
        if not is_valid_signal(value):
            raise DockerfileError(f"Invalid signal: {value}", self.dockerfile.filename, instr.line)
        return dataclasses.replace(instr, signal=value)

    def _expand_volume(self, instr: ins.Volume) -> ins.Volume:
        paths = tuple(self._word(instr, p) for p in instr.paths)
        if any(not p.strip() for p in paths):
            raise DockerfileError("VOLUME specified can not be an empty string",
                                  self.dockerfile.filename, instr.line, instr.end_line)
        return dataclasses.replace(instr, paths=paths)

    def _expand_expose(self, instr: ins.Expose) -> ins.Expose:
        env = self.variables()
        ports: list[str] = []
        for port in instr.ports:
            try:
                ports += self._lex.process_words(port, env)
            except ExpansionError as exc:
                raise DockerfileError(f"failed to process {json.dumps(port)}: {exc}",
                                      self.dockerfile.filename, instr.line) from None
        result = dataclasses.replace(instr, ports=tuple(ports))
        try:
            result.port_specs()
        except ValueError as exc:
            raise DockerfileError(str(exc), self.dockerfile.filename, instr.line) from None
        return result

    def _expand_copy_like(self, instr: ins._CopyLike) -> dict:
        env = self.variables()
        # BuildKit's ExpandRaw: quotes in a heredoc body are text, "$" expands everywhere,
        # and backslashes still escape (so "\$" keeps a dollar sign).
        raw_lex = ShellLex("\\", skip_quotes=True)
        inline = []
        for item in instr.inline:
            data = item.data
            if item.expand:
                try:
                    data = raw_lex.process_word(data, env)
                except ExpansionError as exc:
                    raise DockerfileError(f"failed to process heredoc {item.path}: {exc}",
                                          self.dockerfile.filename, instr.line) from None
            inline.append(ins.InlineFile(item.path, data, item.expand))
        return {
            "sources": tuple(self._word(instr, s, env) for s in instr.sources),
            "inline": tuple(inline),
            "dest": self._word(instr, instr.dest, env),
            "chown": self._opt(instr, instr.chown),
            "chmod": self._opt(instr, instr.chmod),
            "excludes": tuple(self._word(instr, e, env) for e in instr.excludes),
        }

    def _expand_copy(self, instr: ins.Copy) -> ins.Copy:
        return dataclasses.replace(instr, **self._expand_copy_like(instr),
                                   from_=self._opt(instr, instr.from_))

    def _expand_add(self, instr: ins.Add) -> ins.Add:
        return dataclasses.replace(instr, **self._expand_copy_like(instr),
                                   checksum=self._opt(instr, instr.checksum))

    def _expand_run(self, instr: ins.Run) -> ins.Run:
        if not instr.mounts:
            return instr
        mounts = []
        for mount in instr.mounts:
            changes = {name: self._opt(instr, getattr(mount, name))
                       for name in ("target", "source", "from_", "id", "mode", "uid", "gid", "size")}
            mounts.append(dataclasses.replace(mount, **changes))
        return dataclasses.replace(instr, mounts=tuple(mounts))

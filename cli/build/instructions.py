"""Typed Dockerfile instructions: the values a builder consumes.

Every instruction is a frozen dataclass carrying its ``line``/``end_line`` and the
``original`` text. Word arguments are stored *as written* (quotes and ``$VAR`` still there)
until ``cli.build.scope.StageScope.expand`` returns a copy with them processed; instructions
Docker never expands (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD, MAINTAINER) hold
final values from the start.

A parsed file is a ``Dockerfile``: the ARGs before the first FROM (``meta_args``) and the
``stages``, each a ``From`` header plus its instructions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from cli.build.errors import DockerfileError
from cli.build.parser import Heredoc

DEFAULT_SHELL: tuple[str, ...] = ("/bin/sh", "-c")


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    keyword: ClassVar[str] = ""
    line: int
    end_line: int
    original: str


@dataclass(frozen=True, slots=True)
class CommandLine:
    """What RUN/CMD/ENTRYPOINT run: exec form (``prepend_shell`` false) or one shell string."""

    args: tuple[str, ...]
    prepend_shell: bool

    def argv(self, shell: tuple[str, ...] = DEFAULT_SHELL) -> tuple[str, ...]:
        """The process arguments, with the stage's SHELL for the shell form."""
        if self.prepend_shell:
            return (*shell, " ".join(self.args))
        return self.args


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ArgDecl:
    """``ARG name`` (``default`` None) or ``ARG name=default``."""

    name: str
    default: str | None


@dataclass(frozen=True, slots=True)
class InlineFile:
    """A COPY/ADD source given as a heredoc: ``path`` is its name, ``data`` its body."""

    path: str
    data: str
    expand: bool


@dataclass(frozen=True, slots=True)
class RunMount:
    """One ``RUN --mount=…``; ``type`` is bind, cache, tmpfs, secret or ssh."""

    type: str
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    readonly: bool = False
    id: str | None = None
    sharing: str | None = None
    mode: str | None = None
    uid: str | None = None
    gid: str | None = None
    required: bool = False
    size: str | None = None
    env: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class From(Instruction):
    keyword: ClassVar[str] = "FROM"
    base: str
    name: str | None = None
    platform: str | None = None

    @property
    def is_scratch(self) -> bool:
        return self.base.lower() == "scratch"


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(Instruction):
    keyword: ClassVar[str] = "RUN"
    command: CommandLine
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[RunMount, ...] = ()
    network: str | None = None
    security: str | None = None

    @property
    def script(self) -> Heredoc | None:
        """The heredoc when the whole command is one (``RUN <<EOF``): run its body as a script."""
        if self.command.prepend_shell and len(self.heredocs) == 1 and \
                self.command.args and self.command.args[0].strip().startswith("<<") and \
                len(self.command.args[0].split()) == 1:
            return self.heredocs[0]
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cmd(Instruction):
    keyword: ClassVar[str] = "CMD"
    command: CommandLine


@dataclass(frozen=True, slots=True, kw_only=True)
class Entrypoint(Instruction):
    keyword: ClassVar[str] = "ENTRYPOINT"
    command: CommandLine  # ``ENTRYPOINT []`` resets: empty exec form


@dataclass(frozen=True, slots=True, kw_only=True)
class Shell(Instruction):
    keyword: ClassVar[str] = "SHELL"
    shell: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Env(Instruction):
    keyword: ClassVar[str] = "ENV"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(Instruction):
    keyword: ClassVar[str] = "LABEL"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg(Instruction):
    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDecl, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Maintainer(Instruction):
    keyword: ClassVar[str] = "MAINTAINER"
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Workdir(Instruction):
    keyword: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Instruction):
    keyword: ClassVar[str] = "USER"
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSignal(Instruction):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str


_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Expose(Instruction):
    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]  # sorted as written, as Docker sorts them

    def port_specs(self) -> tuple[str, ...]:
        """``80`` → ``80/tcp``, ``53/UDP`` → ``53/udp``, ranges expanded; call after expansion.

        Raises ``ValueError`` naming the bad entry (the scope turns it into a located error).
        """
        specs: list[str] = []
        for entry in self.ports:
            match = _PORT.match(entry.split(":")[-1])
            if not match:
                raise ValueError(f"invalid containerPort: {entry}")
            first = int(match.group(1))
            last = int(match.group(2) or first)
            proto = (match.group(3) or "tcp").lower()
            if proto not in ("tcp", "udp", "sctp"):
                raise ValueError(f"invalid proto: {proto}")
            if last < first or last > 65535:
                raise ValueError(f"invalid port range: {entry}")
            specs += [f"{port}/{proto}" for port in range(first, last + 1)]
        return tuple(specs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume(Instruction):
    keyword: ClassVar[str] = "VOLUME"
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(Instruction):
    """``test`` is ``("NONE",)``, ``("CMD", …)`` or ``("CMD-SHELL", cmd)``, as in the image
    config; durations are nanoseconds, 0 meaning "inherit / default"."""

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Onbuild(Instruction):
    """``expression`` is the trigger text stored in the image config's ``OnBuild``."""

    keyword: ClassVar[str] = "ONBUILD"
    expression: str
    trigger: Instruction


@dataclass(frozen=True, slots=True, kw_only=True)
class _CopyLike(Instruction):
    """Sources are kept as patterns (wildcards are the builder's to match against the
    context); ``dest`` keeps its trailing slash, which means "a directory"."""

    sources: tuple[str, ...]
    inline: tuple[InlineFile, ...]
    dest: str
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    excludes: tuple[str, ...] = ()

    @property
    def dest_is_dir(self) -> bool:
        """Docker copies *into* ``dest`` when it ends with ``/`` (or is ``.``/``..``)."""
        return self.dest.endswith("/") or self.dest in (".", "..") or \
            self.dest.endswith("/.") or self.dest.endswith("/..")

    @property
    def has_several_sources(self) -> bool:
        """More than one source, or a wildcard that may match several: needs a dir ``dest``."""
        return len(self.sources) + len(self.inline) > 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(_CopyLike):
    keyword: ClassVar[str] = "COPY"
    from_: str | None = None  # stage name, stage index or image reference
    parents: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(_CopyLike):
    keyword: ClassVar[str] = "ADD"
    checksum: str | None = None
    keep_git_dir: bool = False


# -- the whole file ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stage:
    """One build stage: ``index`` counts from 0; ``name`` is lower case (or None)."""

    index: int
    header: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        return self.header.name


@dataclass(frozen=True, slots=True)
class Dockerfile:
    filename: str
    escape: str
    directives: dict[str, str]
    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def syntax(self) -> str | None:
        return self.directives.get("syntax")

    def stage_by_ref(self, ref: str, before: int | None = None) -> Stage | None:
        """The stage a FROM or ``--from`` names (name, case-insensitive, or index), or None
        when it is an image. Only stages before ``before`` count, as in Docker."""
        limit = len(self.stages) if before is None else before
        lowered = ref.lower()
        for stage in self.stages[:limit]:
            if stage.name == lowered:
                return stage
        if ref.isdigit():
            index = int(ref)
            if index < limit:
                return self.stages[index]
        return None

    def target_stage(self, target: str | None = None) -> Stage:
        """``--target`` resolution: the named stage, or the last one when no target."""
        if not target:
            return self.stages[-1]
        lowered = target.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        raise DockerfileError(f'target stage "{target}" could not be found', self.filename)

    def stages_needed(self, target: str | None = None,
                      bases: dict[int, str] | None = None) -> tuple[Stage, ...]:
        """The target and every stage it depends on (FROM, ``COPY --from``, ``--mount from``),
        in file order. ``bases`` maps stage index → FROM base after meta-arg expansion
        (``cli.build.scope.stages_needed`` passes it); ``--from`` values are taken as
        written, so a builder re-checks ones that contain variables after expansion."""
        wanted = {self.target_stage(target).index}
        pending = list(wanted)
        while pending:
            stage = self.stages[pending.pop()]
            refs = _stage_refs(stage)
            if bases is not None and stage.index in bases:
                refs[0] = bases[stage.index]
            for ref in refs:
                dep = self.stage_by_ref(ref, before=stage.index)
                if dep is not None and dep.index not in wanted:
                    wanted.add(dep.index)
                    pending.append(dep.index)
        return tuple(s for s in self.stages if s.index in wanted)


def _stage_refs(stage: Stage) -> list[str]:
    refs = [stage.header.base]
    for instr in stage.instructions:
        if isinstance(instr, Copy) and instr.from_:
            refs.append(instr.from_)
        elif isinstance(instr, Run):
            refs += [m.from_ for m in instr.mounts if m.from_]
    return refs

"""``layerbox build``: run a parsed Dockerfile step by step, the classic builder's way.

Every instruction commits an intermediate image (metadata ones with an ``empty_layer``
history entry); the cache (``build_cache`` table) maps (parent image, step key) to the
image a step made, so a rebuild with unchanged inputs runs nothing. COPY/ADD stage their
files in a temp dir and stream it into the store as a layer; RUN runs a container
(cli.containers.run_to_exit) and commits its upper dir.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cli import logs
from cli.build import instructions as ins
from cli.build.convert import parse_dockerfile, parse_onbuild_trigger
from cli.build.dockerignore import DockerIgnore
from cli.build.errors import DockerfileError
from cli.build.history import copy_source_summary
from cli.build.scope import StageScope, expand_from, resolve_meta_args, stages_needed
from cli.build.sources import (SourceTree, Stager, download, parse_chmod, parse_chown,
                               sources_digest, tree_digest)
from cli.create_options import CreateOptions
from cli.errors import UserError

log = logs.get(__name__)


#: The network of a RUN in a plain `build`; a RUN's cache key names its sandbox only
#: where it differs from that (and not RUN insecure).
DEFAULT_RUN_NETWORK = "host"


@dataclass
class BuildOptions:
    context: Path
    dockerfile_text: str
    dockerfile_name: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: RUN's network unless a RUN says --network: "host" (outbound access) or "none".
    network: str = DEFAULT_RUN_NETWORK
    #: --allow entitlements: "security.insecure" lets RUN --security=insecure run privileged.
    allow: frozenset[str] = frozenset()
    quiet: bool = False
    #: fetch_base(store, name, out): pull a base image that FROM names (when it is
    #: missing, or always with --pull); None: FROM uses only what the store has.
    fetch_base: Callable | None = None
    output_fd: int | None = None   # where RUN output goes (the live view's pipe); None: 1 and 2


class RunFailed(UserError):
    """A RUN step exited non-zero (Docker's message)."""


class _TextOut:
    """The build's output as a text stream, for the pull progress of a FROM."""

    def __init__(self, write: Callable[[str], None]):
        self.write = write

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _ensure_cache_table(store) -> None:
    with store.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS build_cache (parent_id TEXT NOT NULL, "
                     "key TEXT NOT NULL, image_id TEXT NOT NULL, PRIMARY KEY (parent_id, key))")


def _now() -> str:
    from cli.store.store import now_rfc3339
    return now_rfc3339()


class Builder:
    def __init__(self, store, opts: BuildOptions, write: Callable[[str], None]):
        self.store = store
        self.opts = opts
        self.write = write if not opts.quiet else (lambda _text: None)
        self.stage_images: dict[int, object] = {}
        _ensure_cache_table(store)

    # -- the whole build ----------------------------------------------------------------

    def build(self):
        self.removers: list[threading.Thread] = []
        try:
            return self._build()
        finally:
            for remover in self.removers:
                remover.join()

    def _build(self):
        df = parse_dockerfile(self.opts.dockerfile_text, self.opts.dockerfile_name)
        if not df.stages:
            raise DockerfileError("file with no instructions", df.filename)
        meta = resolve_meta_args(df, self.opts.build_args)
        stages = stages_needed(df, meta, self.opts.target)
        total = sum(1 + len(s.instructions) for s in stages) + len(df.meta_args)
        self.step_no = 0
        self.total = total
        self.ignore = DockerIgnore.load(str(self.opts.context))
        self.context_tree = SourceTree([self.opts.context], self.ignore)
        for arg in df.meta_args:
            self._announce(arg)
        image = None
        for stage in stages:
            image = self._build_stage(df, meta, stage)
            self.stage_images[stage.index] = image
        if self.opts.labels:
            image = self._commit_meta(image, image_config_copy(self.store, image),
                                      "/bin/sh -c #(nop)  LABEL " + " ".join(
                                          f"{k}={v}" for k, v in self.opts.labels.items()),
                                      lambda c: c.setdefault("Labels", {}).update(self.opts.labels)
                                      or c)
        self.write(f"Successfully built {image.id[7:19]}\n")
        for tag in self.opts.tags:
            self.store.tag(image, tag)
            name = tag if ":" in tag.rsplit("/", 1)[-1] else tag + ":latest"
            self.write(f"Successfully tagged {name}\n")
        return image

    def _announce(self, instr: ins.Instruction) -> None:
        self.step_no += 1
        self.write(f"Step {self.step_no}/{self.total} : {instr.original}\n")

    def _build_stage(self, df: ins.Dockerfile, meta, stage: ins.Stage):
        header = expand_from(df, stage.header, meta)
        self._announce(stage.header)
        base_stage = df.stage_by_ref(header.base, before=stage.index)
        if base_stage is not None:
            image = self.stage_images[base_stage.index]
        elif header.base == "scratch":
            image = None
        else:
            if self.opts.fetch_base is not None:
                self.opts.fetch_base(self.store, header.base, _TextOut(self.write))
            image = self.store.resolve_image(header.base)
        if image is None:
            config = {"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        else:
            config = image_config_copy(self.store, image)
            self.write(f" ---> {image.id[7:19]}\n")
        cfg = config.setdefault("config", {})
        scope = StageScope(df, meta, self.opts.build_args, base_env=cfg.get("Env") or (),
                           base_workdir=cfg.get("WorkingDir") or "/",
                           base_shell=tuple(cfg.get("Shell") or ins.DEFAULT_SHELL))
        self.current = (image, config)
        triggers = list(cfg.get("OnBuild") or [])
        if triggers:
            self.write(f"# Executing {len(triggers)} build trigger"
                       f"{'s' if len(triggers) > 1 else ''}\n")
            cfg["OnBuild"] = None
            for expression in triggers:
                trigger = parse_onbuild_trigger(expression)
                self._step(df, scope, trigger)
        for instr in stage.instructions:
            self._announce(instr)
            self._step(df, scope, instr)
        image, config = self.current
        if image is None:   # FROM scratch with metadata only: still an image
            image = self.store.create_image(config=config, layers=[])
        return image

    # -- one step -------------------------------------------------------------------------

    def _step(self, df: ins.Dockerfile, scope: StageScope, instr: ins.Instruction) -> None:
        parent, config = self.current
        instr = scope.expand(instr)
        if isinstance(instr, ins.Run):
            self.current = self._run(scope, instr, parent, config)
        elif isinstance(instr, ins._CopyLike):
            self.current = self._copy(df, scope, instr, parent, config)
        elif isinstance(instr, ins.Workdir):
            self.current = self._workdir(scope, instr, parent, config)
        else:
            created_by = scope.created_by(instr)
            if isinstance(instr, ins.Maintainer):
                config = dict(config, author=instr.name)   # top-level, beside "config"
            image = self._commit_meta(parent, config, created_by,
                                      lambda c: apply_metadata(c, instr, scope))
            self.current = (image, image_config_copy(self.store, image))

    def _cached(self, parent, key: str):
        if self.opts.no_cache:
            return None
        parent_id = parent.id if parent is not None else "scratch"
        row = self.store.conn.execute("SELECT image_id FROM build_cache WHERE parent_id=? AND key=?",
                                      (parent_id, key)).fetchone()
        if row is None:
            return None
        try:
            image = self.store.get_image(row[0])
        except Exception:   # removed since (rmi / prune): build it again
            return None
        self.write(" ---> Using cache\n")
        self.write(f" ---> {image.id[7:19]}\n")
        return image

    def _remember(self, parent, key: str, image) -> None:
        parent_id = parent.id if parent is not None else "scratch"
        with self.store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO build_cache(parent_id, key, image_id) "
                         "VALUES (?, ?, ?)", (parent_id, key, image.id))
        self.write(f" ---> {image.id[7:19]}\n")

    def _commit_meta(self, parent, config: dict, created_by: str, change) -> object:
        key = _key(created_by)
        cached = self._cached(parent, key)
        if cached is not None:
            return cached
        new = copy.deepcopy(config)
        new["config"] = change(new.setdefault("config", {})) or new["config"]
        new["created"] = _now()
        new.setdefault("history", []).append({"created": new["created"],
                                              "created_by": created_by, "empty_layer": True})
        layers = list(parent.layers) if parent is not None else []
        image = self.store.create_image(config=new, layers=layers)
        self._remember(parent, key, image)
        return image

    def _commit_layer(self, parent, config: dict, created_by: str, key: str, layer):
        new = copy.deepcopy(config)
        new["created"] = _now()
        new.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        new["rootfs"]["diff_ids"] = list(new["rootfs"].get("diff_ids") or []) + [layer.diff_id]
        new.setdefault("history", []).append({"created": new["created"], "created_by": created_by})
        layers = (list(parent.layers) if parent is not None else []) + [layer]
        image = self.store.create_image(config=new, layers=layers)
        self._remember(parent, key, image)
        return image, image_config_copy(self.store, image)

    # -- WORKDIR ------------------------------------------------------------------------

    def _workdir(self, scope: StageScope, instr: ins.Workdir, parent, config):
        created_by = scope.created_by(instr)
        workdir = scope.workdir

        def change(c: dict) -> dict:
            c["WorkingDir"] = workdir
            return c

        base = self._image_tree(parent)
        real = base.real(workdir.strip("/")) if workdir.strip("/") else base.roots[0] \
            if base.roots else None
        if workdir == "/" or (real is not None and real.is_dir()):
            image = self._commit_meta(parent, config, created_by, change)
            return image, image_config_copy(self.store, image)
        key = _key(created_by)
        cached = self._cached(parent, key)
        if cached is not None:
            return cached, image_config_copy(self.store, cached)
        with self._staging() as staging:
            stager = Stager(staging, base, None, None)
            stager.make_parents(workdir + "/x")
            layer = self._write_staging(staging, parent)
        config = copy.deepcopy(config)
        change(config.setdefault("config", {}))
        return self._commit_layer(parent, config, created_by, key, layer)

    # -- COPY / ADD ---------------------------------------------------------------------

    def _copy(self, df, scope: StageScope, instr: ins._CopyLike, parent, config):
        base = self._image_tree(parent)
        dest = instr.dest
        if not dest.startswith("/"):
            dest = posixpath.join(scope.workdir, dest)
        dest_is_dir = instr.dest_is_dir or instr.has_several_sources
        tree, keep_owner = self.context_tree, False
        from_ = getattr(instr, "from_", None)
        if from_:
            stage = df.stage_by_ref(from_)
            if stage is not None:
                if stage.index not in self.stage_images:
                    raise UserError(f"stage {from_} has not been built")
                src_image = self.stage_images[stage.index]
            else:
                src_image = self.store.resolve_image(from_)
            tree, keep_owner = self._image_tree(src_image), True
        owner = parse_chown(instr.chown, base.roots)
        mode = parse_chmod(instr.chmod)
        hashes: list[str] = []
        early_key = None
        if not (isinstance(instr, ins.Add) and any(_is_url(s) for s in instr.sources)):
            # the key from the sources read in place: a cache hit stages nothing
            matched = []
            for source in instr.sources:
                found = tree.glob(source)
                if not found:
                    raise UserError(f"COPY failed: file not found in build context or excluded "
                                    f"by .dockerignore: stat {source}: file does not exist")
                matched.append(found)
            digest = hashlib.sha256(sources_digest(
                tree, [rel for found in matched for rel in found], keep_owner).encode())
            for inline in instr.inline:
                digest.update(f"\0{inline.path}\0{inline.data}".encode())
            early_key = _key(scope.created_by(instr, copy_source="sources"),
                             "sources:" + digest.hexdigest())
            cached = self._cached(parent, early_key)
            if cached is not None:
                return cached, image_config_copy(self.store, cached)
        with self._staging() as staging:
            stager = Stager(staging, base, owner, mode)
            stager._keep_owner = keep_owner
            any_wildcard = any(c in s for s in instr.sources for c in "*?[")
            for source in instr.sources:
                if isinstance(instr, ins.Add) and _is_url(source):
                    name, data = download(source)
                    target = posixpath.join(dest, name) if dest_is_dir or dest.endswith("/") \
                        else dest
                    stager.write_bytes(target, data, 0o600)
                    hashes.append("file:" + hashlib.sha256(data).hexdigest())
                    continue
                matches = tree.glob(source)
                if not matches:
                    raise UserError(f"COPY failed: file not found in build context or excluded "
                                    f"by .dockerignore: stat {source}: file does not exist")
                if any_wildcard and len(matches) > 1:
                    dest_is_dir = True
                for rel in matches:
                    self._stage_one(stager, tree, rel, dest, dest_is_dir, instr, base)
            for inline in instr.inline:
                target = posixpath.join(dest, inline.path) if dest_is_dir else dest
                stager.write_bytes(target, inline.data.encode(), 0o644)
            digest = tree_digest(staging)
            hashes.append(("dir:" if len(instr.sources) != 1 else "file:") + digest)
            created_by = scope.created_by(instr, copy_source=copy_source_summary(hashes[-1:] if
                                                                                len(hashes) == 1
                                                                                else hashes))
            key = early_key or _key(created_by, digest)
            cached = self._cached(parent, key)
            if cached is not None:
                return cached, image_config_copy(self.store, cached)
            layer = self._write_staging(staging, parent)
        return self._commit_layer(parent, config, created_by, key, layer)

    def _stage_one(self, stager: Stager, tree: SourceTree, rel: str, dest: str, dest_is_dir: bool,
                   instr: ins._CopyLike, base: SourceTree) -> None:
        real = tree.real(rel)
        if real.is_dir() and not real.is_symlink():
            stager.make_parents(dest.rstrip("/") + "/x")
            if dest.strip("/"):
                stager.make_dir(dest.strip("/"))
            stager.copy_tree(tree, rel, dest.rstrip("/") or "/")
            return
        if isinstance(instr, ins.Add) and _is_archive(real):
            from overlayfs.layer_tar import extract_tar
            target_dir = dest.rstrip("/") or "/"
            stager.make_parents(target_dir + "/x")
            if target_dir.strip("/"):
                stager.make_dir(target_dir.strip("/"))
            with open(real, "rb") as f:
                try:
                    extract_tar(f, stager.staging / target_dir.lstrip("/"))
                except Exception as exc:
                    raise UserError(f"ADD {rel}: cannot extract: {exc}") from None
            return
        if dest_is_dir or stager.is_dir_in_image(dest):
            target = posixpath.join(dest, posixpath.basename(rel))
        else:
            target = dest
        stager.copy_entry(real, target)

    # -- RUN ----------------------------------------------------------------------------

    def _run_sandbox(self, instr: ins.Run) -> tuple[str, bool]:
        """(network mode, privileged) for a RUN: its --network and --security flags
        over the build's; --security=insecure needs the build's --allow, as BuildKit's
        entitlement does."""
        network = self.opts.network if instr.network in (None, "default") else instr.network
        insecure = instr.security == "insecure"
        if insecure and "security.insecure" not in self.opts.allow:
            raise UserError(f"{self.opts.dockerfile_name}:{instr.line}: RUN --security=insecure "
                            "needs the entitlement: layerbox build --allow security.insecure")
        return network, insecure

    def _run(self, scope: StageScope, instr: ins.Run, parent, config):
        from cli import containers
        from cli.commit import export_upper
        created_by = scope.created_by(instr)
        network, insecure = self._run_sandbox(instr)
        # The history line is the classic builder's; the cache key also holds the
        # sandbox where it is not the default one, so a step without the network (RUN
        # --network=none, or `build --network=none`) is never a hit for one that had it.
        key = _key(created_by, f"network={network} insecure={insecure}"
                   if (network, insecure) != (DEFAULT_RUN_NETWORK, False) else "")
        cached = self._cached(parent, key)
        if cached is not None:
            return cached, image_config_copy(self.store, cached)
        if parent is None:
            raise UserError("RUN needs a base image with a shell (FROM scratch has none)")
        argv = run_argv(instr, scope.shell)
        cfg = config.get("config") or {}
        opts = CreateOptions(
            image=parent.id, command=argv, entrypoint="", env=tuple(scope.run_env()),
            workdir=scope.workdir, user=cfg.get("User") or "", network=network,
            security={"privileged": True} if insecure else {})
        if self.opts.quiet:
            out_fd = err_fd = os.open(os.devnull, os.O_WRONLY)
        elif self.opts.output_fd is not None:
            out_fd = err_fd = self.opts.output_fd
        else:
            out_fd, err_fd = 1, 2
        container = None
        try:
            container = containers.create(self.store, opts)
            self.write(f" ---> Running in {container.id[:12]}\n")
            container, code = _run_created(self.store, container, out_fd, err_fd)
            if code != 0:
                shown = argv if instr.script is None else instr.command.argv(scope.shell)
                raise RunFailed(f"The command '{' '.join(shown)}' returned a non-zero code: {code}")
            layer = export_upper(self.store, container)
        finally:
            if self.opts.quiet:
                os.close(out_fd)
            if container is not None:
                try:
                    containers.remove(self.store, containers.reload(self.store, container),
                                      force=True)
                except Exception as exc:   # never hide the build's own error
                    log.warning("removing build container %s: %s", container.id, exc)
        self.write(f"Removing intermediate container {container.id[:12]}\n")
        return self._commit_layer(parent, config, created_by, key, layer)

    # -- helpers ------------------------------------------------------------------------

    def _image_tree(self, image) -> SourceTree:
        if image is None:
            return SourceTree([])
        return SourceTree(self.store.layer_dirs(image))

    def _staging(self):
        return _TempDir(self.store.root / "tmp", self.removers)

    def _write_staging(self, staging: Path, parent):
        from overlayfs.layer_tar import export_layer
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def produce() -> None:
            try:
                with os.fdopen(write_fd, "wb") as out:
                    export_layer(staging, out)
            except BaseException as exc:
                failure.append(exc)

        writer = threading.Thread(target=produce, daemon=True)
        writer.start()
        try:
            with os.fdopen(read_fd, "rb") as stream:
                layer = self.store.write_layer(
                    stream, parent=parent.layers[-1] if parent is not None and parent.layers
                    else None)
        finally:
            writer.join()
        if failure:
            raise UserError(f"cannot write the layer: {failure[0]}")
        return layer


def _run_created(store, container, out_fd: int, err_fd: int):
    from cli import attach, containers
    containers.start(store, container, attach_first=True)
    sock = attach.connect(container)
    if sock is None:
        raise UserError(f"container {container.name}: its monitor is not listening")
    code = attach.attach(container, stdin=False, tty=False, sock=sock, out_fd=out_fd,
                         err_fd=err_fd)
    return containers.reload(store, container), code


class _TempDir:
    """A staging dir, removed by a thread so the next step need not wait for it;
    ``Builder.build`` joins the removers before it returns."""

    def __init__(self, parent: Path, removers: list[threading.Thread]):
        self.parent = parent
        self.removers = removers

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-build-", dir=self.parent))
        os.chmod(self.path, 0o755)
        return self.path

    def __exit__(self, *exc) -> None:
        remover = threading.Thread(target=shutil.rmtree, args=(self.path,),
                                   kwargs={"ignore_errors": True}, daemon=True)
        remover.start()
        self.removers.append(remover)


def run_argv(instr: ins.Run, shell: tuple[str, ...]) -> list[str]:
    """What a RUN executes, with BuildKit's heredoc semantics.

    ``RUN <<EOF`` runs the body as a script: through the SHELL, or, when it starts with a
    shebang, as an executable file (BuildKit mounts it at /dev/pipes/NAME; we write it there,
    /dev being the container's tmpfs, so it never reaches the layer). Any other heredoc is
    the command's input: the shell gets the command line followed by each body and its
    delimiter, and its own here-document rules apply (quoting, ``<<-`` tabs).
    """
    script = instr.script
    if script is not None:
        body = script.body
        if not body.startswith("#!"):
            return [*shell, body]
        path = f"/dev/pipes/{script.name}"
        marker = "LAYERBOX_SCRIPT_" + hashlib.sha256(body.encode()).hexdigest()[:16]
        return ["/bin/sh", "-c",
                f"mkdir -p /dev/pipes && cat > {path} <<'{marker}'\n{body}"
                f"{'' if body.endswith(chr(10)) else chr(10)}{marker}\n"
                f"chmod 755 {path} && exec {path}"]
    argv = list(instr.command.argv(shell))
    if instr.heredocs and instr.command.prepend_shell:
        argv[-1] += "".join("\n" + doc.content + doc.name for doc in instr.heredocs) + "\n"
    return argv


def _key(created_by: str, content: str = "") -> str:
    return hashlib.sha256(json.dumps([created_by, content]).encode()).hexdigest()


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _is_archive(path: Path) -> bool:
    """A tar, possibly compressed (what ADD extracts)."""
    import tarfile
    from overlayfs.layer_tar import open_decompressed
    try:
        with open(path, "rb") as f:
            stream = open_decompressed(f)
            head = stream.read(512)
    except Exception:
        return False
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def image_config_copy(store, image) -> dict:
    return copy.deepcopy(store.image_config(image))


def apply_metadata(c: dict, instr: ins.Instruction, scope: StageScope) -> dict:
    """The config change of a metadata-only instruction (docker's dispatchers)."""
    if isinstance(instr, ins.Env):
        c["Env"] = [f"{k}={v}" for k, v in scope.env.items()]
    elif isinstance(instr, ins.Label):
        labels = dict(c.get("Labels") or {})
        labels.update({p.key: p.value for p in instr.pairs})
        c["Labels"] = labels
    elif isinstance(instr, ins.Cmd):
        c["Cmd"] = list(instr.command.argv(scope.shell))
    elif isinstance(instr, ins.Entrypoint):
        c["Entrypoint"] = list(instr.command.argv(scope.shell)) or None
        c["Cmd"] = None   # Docker resets an inherited CMD (a later CMD sets it again)
    elif isinstance(instr, ins.User):
        c["User"] = instr.user
    elif isinstance(instr, ins.Expose):
        ports = dict(c.get("ExposedPorts") or {})
        ports.update({p: {} for p in instr.port_specs()})
        c["ExposedPorts"] = ports
    elif isinstance(instr, ins.Volume):
        vols = dict(c.get("Volumes") or {})
        vols.update({p: {} for p in instr.paths})
        c["Volumes"] = vols
    elif isinstance(instr, ins.StopSignal):
        c["StopSignal"] = instr.signal
    elif isinstance(instr, ins.Shell):
        c["Shell"] = list(instr.shell)
    elif isinstance(instr, ins.Healthcheck):
        hc = {"Test": list(instr.test)}
        for name, value in (("Interval", instr.interval), ("Timeout", instr.timeout),
                            ("StartPeriod", instr.start_period),
                            ("StartInterval", instr.start_interval), ("Retries", instr.retries)):
            if value:
                hc[name] = value
        c["Healthcheck"] = hc
    elif isinstance(instr, ins.Onbuild):
        c["OnBuild"] = list(c.get("OnBuild") or []) + [instr.expression]
    elif isinstance(instr, ins.Maintainer):
        pass   # the top-level "author" is set by the caller below
    return c


def run_build(store, opts: BuildOptions, write: Callable[[str], None]):
    return Builder(store, opts, write).build()



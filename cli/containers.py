"""Container records and their directories.

A container is a row of the store's ``containers`` table (id, name, image_id, created,
record) plus a directory ``<root>/containers/<id>/``::

    upper/ work/      the container's writable layer and overlay's work dir
    init/             mount points the runtime needs (/proc /dev /sys /etc/hostname …),
                      a lower layer *above* the image, so runc never writes them into upper/
    merged/           the union mount while the container runs
    etc/              hostname, hosts, resolv.conf (bind-mounted read-write into the container)
    bundle/           the OCI bundle (config.json) written by the monitor at start
    container.log     output as JSON lines, like Docker's json-file log driver
    monitor.log       the monitor's own diagnostics
    attach.sock       the monitor's socket for attach clients (while it runs)

``record`` is JSON owned by this module::

    {"image": name given by the user, "config": {Docker-style Cmd, Entrypoint, Env,
     WorkingDir, User, Hostname, Tty, OpenStdin, Image}, "network": "bridge|none|host",
     "auto_remove": bool,
     "state": {"status": "created|running|paused|exited", "pid", "monitor_pid",
               "monitor_start", "exit_code", "error", "started_at", "finished_at"}}

The monitor owns the state while it runs; a monitor that died is detected from its pid and
start time (``monitor_alive``) and shown as ``dead``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from cli import logs
from cli.errors import UserError
from cli.unionmount import (MountProgramInWaiting, PendingMount,  # noqa: F401 -- re-exported
                            is_mounted, mount_union, syncfs, unmount)

# cli.runtime (the OCI spec, runc), subprocess, shutil and datetime are imported where
# used: diff, ps, inspect and the other readers of a container need none of them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from cli import runtime
    from cli.create_options import CreateOptions

log = logs.get(__name__)

_ADJECTIVES = ("admiring", "bold", "brave", "busy", "calm", "clever", "eager", "elastic",
               "festive", "gentle", "happy", "jolly", "keen", "lucid", "nifty", "quirky",
               "sharp", "stoic", "tender", "vivid", "wizardly", "zen")
_NAMES = ("archimedes", "bell", "curie", "darwin", "euler", "fermi", "galileo", "hopper",
          "hypatia", "kepler", "lovelace", "meitner", "newton", "noether", "pascal",
          "ritchie", "shannon", "tesla", "thompson", "turing", "wozniak")


class NoSuchContainer(UserError):
    def __init__(self, name: str):
        super().__init__(f"No such container: {name}")


class Container:
    """One container: its row (RECORD is the parsed JSON column) and the store ROOT.

    A plain class rather than a dataclass: every command that reads a container would
    otherwise import dataclasses (and inspect, ast, dis with it: ~6 ms of `diff`)."""

    __slots__ = ("id", "name", "image_id", "created", "record", "root")

    def __init__(self, id: str, name: str, image_id: str, created: str, record: dict,
                 root: Path) -> None:
        self.id, self.name, self.image_id = id, name, image_id
        self.created, self.record, self.root = created, record, root

    def __repr__(self) -> str:
        return f"Container(id={self.id!r}, name={self.name!r}, image_id={self.image_id!r})"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def dir(self) -> Path:
        return self.root / "containers" / self.id

    @property
    def state(self) -> dict:
        return self.record.setdefault("state", {"status": "created"})

    @property
    def config(self) -> dict:
        return self.record["config"]

    @property
    def command_args(self) -> list[str]:
        return list(self.config.get("Entrypoint") or []) + list(self.config.get("Cmd") or [])

    def status(self) -> str:
        """created, running, paused, exited, or dead (its monitor is gone)."""
        status = self.state.get("status", "created")
        if status in ("running", "paused") and not monitor_alive(self.state):
            return "dead"
        return status

    def problem(self) -> str:
        """What is wrong with a container that should be running ("" if nothing is)."""
        status = self.status()
        if status == "dead":
            return "its monitor died"
        if status in ("running", "paused"):
            try:
                os.stat(self.dir / "merged")
            except OSError as exc:            # ENOTCONN: the FUSE server is gone
                return f"its root filesystem mount died ({exc.strerror})"
        return ""

    def lower_dirs(self, store) -> list[Path]:
        """Lower layers, TOP FIRST: the init layer, then the image's layers."""
        return [self.dir / "init"] + store.layer_dirs(store.get_image(self.image_id))


def process_start_ticks(pid: int) -> int | None:
    """Start time of PID (clock ticks since boot); tells a live process from a reused pid.
    None for a process that is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def monitor_alive(state: dict) -> bool:
    pid = state.get("monitor_pid")
    return bool(pid) and process_start_ticks(pid) == state.get("monitor_start")


# -- the table --------------------------------------------------------------------------

def _from_row(row, root: Path) -> Container:
    return Container(id=row["id"], name=row["name"], image_id=row["image_id"],
                     created=row["created"], record=json.loads(row["record"]), root=root)


def list_containers(store) -> list[Container]:
    """Every container, newest first."""
    rows = store.conn.execute("SELECT * FROM containers ORDER BY created DESC").fetchall()
    return [_from_row(r, store.root) for r in rows]


def lookup(store, name: str) -> Container:
    """Docker's order: full id, exact name, then a unique id prefix."""
    conn = store.conn
    ref = name.lstrip("/")
    row = conn.execute("SELECT * FROM containers WHERE id=?", (ref,)).fetchone()
    if row is None:
        row = conn.execute("SELECT * FROM containers WHERE name=?", (ref,)).fetchone()
    if row is None and ref and all(c in "0123456789abcdef" for c in ref):
        rows = conn.execute("SELECT * FROM containers WHERE id >= ? AND id < ? LIMIT 2",
                            (ref, ref + "g")).fetchall()
        if len(rows) > 1:
            raise UserError(f"multiple containers found with provided prefix: {name}")
        row = rows[0] if rows else None
    if row is None:
        raise NoSuchContainer(name)
    return _from_row(row, store.root)


def reload(store, container: Container) -> Container:
    row = store.conn.execute("SELECT * FROM containers WHERE id=?", (container.id,)).fetchone()
    if row is None:
        raise NoSuchContainer(container.id)
    return _from_row(row, store.root)


def update_state(store, container_id: str, **changes) -> dict:
    """Merge CHANGES into the container's state in one transaction; returns the new state."""
    with store.transaction() as conn:
        row = conn.execute("SELECT record FROM containers WHERE id=?", (container_id,)).fetchone()
        if row is None:
            raise NoSuchContainer(container_id)
        record = json.loads(row["record"])
        state = record.setdefault("state", {})
        state.update(changes)
        conn.execute("UPDATE containers SET record=? WHERE id=?",
                     (json.dumps(record), container_id))
    return state


def _random_name(conn) -> str:
    import random
    for _ in range(100):
        name = f"{random.choice(_ADJECTIVES)}_{random.choice(_NAMES)}"
        if not conn.execute("SELECT 1 FROM containers WHERE name=?", (name,)).fetchone():
            return name
    return "layerbox_" + os.urandom(4).hex()


# -- create ----------------------------------------------------------------------------

def container_config(image_config: dict, opts: CreateOptions, hostname: str, image_id: str) -> dict:
    """Docker's merge of the image config with the run flags."""
    cfg = image_config.get("config") or {}
    entrypoint = list(cfg.get("Entrypoint") or [])
    cmd = list(cfg.get("Cmd") or [])
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = []                       # --entrypoint resets the image's CMD, as Docker does
    if opts.command:
        cmd = list(opts.command)
    if not entrypoint and not cmd:
        raise UserError("no command specified")
    env = list(cfg.get("Env") or [])
    for item in opts.env:
        key = item.partition("=")[0]
        env = [e for e in env if e.partition("=")[0] != key] + [item]
    return {
        "Hostname": hostname, "User": opts.user if opts.user is not None else cfg.get("User", ""),
        "Tty": opts.tty, "OpenStdin": opts.open_stdin, "Env": env,
        "Cmd": cmd or None, "Entrypoint": entrypoint or None,
        "WorkingDir": opts.workdir if opts.workdir is not None else cfg.get("WorkingDir", ""),
        "Image": opts.image,
        "Labels": {**(cfg.get("Labels") or {}),
                   **dict(label.partition("=")[::2] for label in opts.labels)},
        **({"StopSignal": opts.stop_signal or cfg.get("StopSignal")}
           if opts.stop_signal or cfg.get("StopSignal") else {}),
    }


def new_container_id() -> str:
    return os.urandom(32).hex()


def create(store, opts: CreateOptions, *, container_id: str | None = None) -> Container:
    """Make the record and the directories; nothing runs yet. CONTAINER_ID: one from
    :func:`new_container_id` the caller needed before (``run``: for the mount)."""
    if opts.name is not None and not _valid_name(opts.name):
        raise UserError(f"Invalid container name ({opts.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                        "are allowed")
    image = store.resolve_image(opts.image)
    container_id = container_id or new_container_id()
    hostname = opts.hostname or (os.uname().nodename if opts.network == "host"
                                 else container_id[:12])
    config = container_config(image.config, opts, hostname, image.id)
    from cli import volumes
    mounts = volumes.attach(store, list(opts.mounts))
    record = {"image": opts.image, "config": config, "network": opts.network,
              "auto_remove": opts.auto_remove, "mounts": mounts,
              "ports": list(opts.ports), "security": dict(opts.security),
              "state": {"status": "created"}}
    cdir = store.root / "containers" / container_id
    from cli.store.store import now_rfc3339
    created = now_rfc3339()
    try:
        with store.transaction() as conn:
            name = opts.name or _random_name(conn)
            clash = conn.execute("SELECT id FROM containers WHERE name=?", (name,)).fetchone()
            if clash:
                raise UserError(f'Conflict. The container name "/{name}" is already in use by '
                                f'container "{clash["id"]}". You have to remove (or rename) that '
                                "container to be able to reuse that name.")
            conn.execute("INSERT INTO containers(id, name, image_id, created, record) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (container_id, name, image.id, created, json.dumps(record)))
    except UserError:
        volumes.remove_anonymous(store, mounts)
        raise
    try:
        for sub in ("upper", "work", "merged"):
            (cdir / sub).mkdir(parents=True, exist_ok=True)
        _make_init_layer(cdir / "init", store.layer_dirs(image))
        from cli import runtime
        runtime.write_etc_files(cdir / "etc", hostname=hostname, network=opts.network)
    except BaseException:
        remove_files(cdir)
        with store.transaction() as conn:
            conn.execute("DELETE FROM containers WHERE id=?", (container_id,))
        raise
    return lookup(store, container_id)


def rename(store, container: Container, new_name: str) -> None:
    """Give CONTAINER another unique name (``docker rename``)."""
    new_name = new_name.lstrip("/")
    if not _valid_name(new_name):
        raise UserError(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                        "are allowed")
    if new_name == container.name:
        raise UserError("Renaming a container with the same name as its current name")
    with store.transaction() as conn:
        clash = conn.execute("SELECT id FROM containers WHERE name=?", (new_name,)).fetchone()
        if clash:
            raise UserError(f'Conflict. The container name "/{new_name}" is already in use by '
                            f'container "{clash["id"]}". You have to remove (or rename) that '
                            "container to be able to reuse that name.")
        conn.execute("UPDATE containers SET name=? WHERE id=?", (new_name, container.id))


def processes(store, container: Container, ps_args: list[str]) -> tuple[list[str], list[str]]:
    """``docker top``: the header and the rows of host ``ps PS_ARGS`` for the container's
    processes (its pids come from runc)."""
    require_running(container)
    import subprocess
    pids = set(runc_for(store).pids(container.id))
    proc = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"ps: {proc.stderr.strip() or 'failed'}")
    lines = proc.stdout.splitlines()
    if not lines or "PID" not in lines[0].split():
        raise UserError('Couldn\'t find PID field in ps output')
    column = lines[0].split().index("PID")
    rows = [line for line in lines[1:]
            if len(line.split()) > column and line.split()[column].isdigit()
            and int(line.split()[column]) in pids]
    return [lines[0]], rows


def _valid_name(name: str) -> bool:
    import re
    return re.fullmatch(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]*", name) is not None


def _copy_metadata(target: Path, rel: str, lowers: list[Path], default_mode: int) -> None:
    """Give an init-layer entry the metadata the image has for it, so the merged view
    does not change what the image shows for /etc, /proc …"""
    for lower in lowers:
        try:
            st = os.lstat(lower / rel)
        except OSError:
            continue
        os.chmod(target, st.st_mode & 0o7777)
        os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    os.chmod(target, default_mode)


def _make_init_layer(init: Path, lowers: list[Path]) -> None:
    from cli import runtime
    init.mkdir(parents=True, exist_ok=True)
    for path in runtime.MOUNT_POINT_DIRS + ("/etc",):
        target = init / path.lstrip("/")
        target.mkdir(exist_ok=True)
    for path in runtime.MOUNT_POINT_FILES:
        target = init / path.lstrip("/")
        target.touch(mode=0o644, exist_ok=True)
        _copy_metadata(target, path.lstrip("/"), lowers, 0o644)
    for path in runtime.MOUNT_POINT_DIRS + ("/etc",):
        _copy_metadata(init / path.lstrip("/"), path.lstrip("/"), lowers, 0o755)


# -- the mount ----------------------------------------------------------------------------

def mount_rootfs(container: Container, store) -> Path:
    return start_mount_rootfs(container, store).wait()


def start_mount_rootfs(container: Container, store,
                       waiting: MountProgramInWaiting | None = None) -> PendingMount:
    """Start mounting the container's rootfs at merged/ (through WAITING, a mount program
    already started, if given); ``wait()`` for it."""
    return PendingMount(container.lower_dirs(store), container.dir / "merged",
                        upper=container.dir / "upper", work=container.dir / "work",
                        waiting=waiting)


# -- removal --------------------------------------------------------------------------------

def runc_for(store) -> runtime.Runc:
    from cli import runtime
    return runtime.Runc(store.root / "runc")


def remove_files(cdir: Path) -> None:
    merged = cdir / "merged"
    if merged.exists():
        unmount(merged)
    import shutil
    shutil.rmtree(cdir, ignore_errors=True)


def remove(store, container: Container, *, force: bool = False,
           volumes: bool = False) -> None:
    """Delete a container: refuses a running one unless FORCE (then kills it first);
    VOLUMES also removes its anonymous volumes (rm -v)."""
    status = container.status()
    if status in ("running", "paused") and not force:
        raise UserError(f"You cannot remove a {status} container {container.id}. "
                        "Stop the container before attempting removal or force remove")
    runc = runc_for(store)
    if status in ("running", "paused", "dead"):
        with contextlib.suppress(UserError):
            if status == "paused":
                runc.resume(container.id)
        with contextlib.suppress(UserError):
            runc.kill(container.id, "KILL", all_processes=True)
        if status != "dead":           # let the monitor record the exit and unmount
            from cli.attach import wait_exit
            wait_exit(container, timeout=30)
    # runc keeps a container's state in STATE_DIR/ID; the monitor has usually deleted it
    # already (always for --rm), and a needless `runc delete` costs a process start.
    if (runc.state_dir / container.id).exists():
        with contextlib.suppress(UserError):
            runc.delete(container.id, force=True)
    remove_files(container.dir)
    with store.transaction() as conn:
        conn.execute("DELETE FROM containers WHERE id=?", (container.id,))
    if volumes:
        from cli import volumes as volume_store
        volume_store.remove_anonymous(store, container.record.get("mounts") or [])


# -- start / stop ---------------------------------------------------------------------------

def start(store, container: Container, *, attach_first: bool = False,
          mounting: PendingMount | None = None) -> dict:
    """Start a created or exited container under a new monitor; returns its readiness
    message ({"status": "running"|"created"}). A start failure is a UserError carrying
    Docker's exit code (125, 126 not executable, 127 not found).

    MOUNTING: the rootfs mount, started by the caller (``run``); the monitor takes it
    over, and it is taken down here if the start fails before that."""
    from cli.monitor_spawn import spawn
    try:
        status = container.status()
        if status in ("running", "paused"):
            raise UserError(f"container {container.name} is already running")
        if status == "dead":
            raise UserError(f"container {container.name}: its monitor died; "
                            "remove it with rm -f")
        for leftover in ("attach.sock", "console.sock"):
            (container.dir / leftover).unlink(missing_ok=True)
        if not container.dir.is_dir():
            raise UserError(f"container {container.name}: its directory {container.dir} "
                            "is missing")
        if container.state != {"status": "created"}:    # not a fresh one from create()
            update_state(store, container.id, status="created", error="", monitor_pid=0)
    except BaseException:
        if mounting is not None:
            mounting.abandon()
        raise
    ready = spawn(store.root, container.id, attach_first=attach_first, store=store,
                  mounting=mounting)
    if "error" in ready:
        raise UserError(ready["error"], ready.get("exit_code", 125))
    return ready


def require_running(container: Container) -> None:
    status = container.status()
    if status == "dead":
        raise UserError(f"container {container.name}: its monitor died; remove it with rm -f")
    if status not in ("running", "paused"):
        raise UserError(f"Container {container.id} is not running", 1)


def stop(store, container: Container, timeout: float = 10) -> None:
    """SIGTERM (or the image's StopSignal), then SIGKILL after TIMEOUT seconds."""
    from cli.attach import wait_exit
    status = container.status()
    if status not in ("running", "paused"):
        return
    runc = runc_for(store)
    with contextlib.suppress(UserError):
        runc.kill(container.id, container.config.get("StopSignal") or "TERM")
    if status == "paused":
        with contextlib.suppress(UserError):
            runc.resume(container.id)
    if wait_exit(container, timeout=timeout) is None:
        with contextlib.suppress(UserError):
            runc.kill(container.id, "KILL", all_processes=True)
        wait_exit(container, timeout=60)


def run_to_exit(store, opts: CreateOptions, *, out_fd: int | None = None,
                err_fd: int | None = None) -> tuple[Container, int]:
    """Create a container, run it non-interactively with its output streamed to OUT_FD
    and ERR_FD (default: ours), and return it with its exit code once it has stopped
    (a Dockerfile RUN: follow with :func:`cli.commit.commit` and :func:`remove`)."""
    from cli import attach
    container = create(store, opts)
    start(store, container, attach_first=True)
    sock = attach.connect(container)
    if sock is None:
        raise UserError(f"container {container.name}: its monitor is not listening")
    code = attach.attach(container, stdin=False, tty=False, sock=sock, out_fd=out_fd,
                         err_fd=err_fd)
    return reload(store, container), code

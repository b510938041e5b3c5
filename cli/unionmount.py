"""Union mounts through the mount program (``layerbox-overlayfs`` or $LAYERBOX_MOUNT_PROGRAM).

Light on purpose: ``run`` imports it first thing, to start the mount program before
anything else (:class:`MountProgramInWaiting`), and every reader of containers imports
it with :mod:`cli.containers` (subprocess and shutil are imported where used, logging
on first use: ``diff``, ``ps``, ``inspect`` need none of them).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from cli import logs
from cli.errors import UserError
from overlayfs.mountinfo import is_mounted

log = logs.get(__name__)

MOUNT_PROGRAM_ENV = "LAYERBOX_MOUNT_PROGRAM"
DEFAULT_MOUNT_PROGRAM = "layerbox-overlayfs"
#: overlayfs.mount.ARGS_ON_STDIN (not imported: that would load the filesystem here).
_ARGS_ON_STDIN = "--args-on-stdin"
_MOUNTED = b"ok"


def mount_program() -> str:
    """$LAYERBOX_MOUNT_PROGRAM, else layerbox-overlayfs from PATH or from our own venv."""
    import shutil
    program = os.environ.get(MOUNT_PROGRAM_ENV) or DEFAULT_MOUNT_PROGRAM
    if os.sep not in program and shutil.which(program) is None:
        sibling = Path(sys.executable).parent / program
        if sibling.exists():
            return str(sibling)
    return program


def _mount_options(lowers: list[Path], upper: Path | None, work: Path | None) -> str:
    options = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None:
        options += f",upperdir={upper},workdir={work}"
    return options


class MountProgramInWaiting:
    """Our mount program, started before the caller knows what it is to mount: its
    start-up (a Python and the filesystem's modules) overlaps with the
    caller's own (imports, the store, making the container). :meth:`mount` hands it
    the command line, :meth:`cancel` lets it go (it has mounted nothing).

    Only for our own program, of our own install (another $LAYERBOX_MOUNT_PROGRAM, e.g.
    fuse-overlayfs, or an older layerbox-overlayfs found first on PATH, takes its command
    line from argv alone): :meth:`start` returns None otherwise."""

    def __init__(self, program: str, target: Path, proc) -> None:
        self.program = program
        self.target = target
        self._proc = proc                  # a subprocess.Popen, None once handed over

    @classmethod
    def start(cls, target: Path) -> "MountProgramInWaiting | None":
        """Start it for a mount on TARGET (which need not exist yet)."""
        program = mount_program()
        if os.path.basename(program) != DEFAULT_MOUNT_PROGRAM:
            return None
        # Named by the user in $LAYERBOX_MOUNT_PROGRAM: taken at its word. Found on PATH:
        # only if installed with us, next to the running `layerbox` or our python.
        if not os.environ.get(MOUNT_PROGRAM_ENV) and not _installed_with_us(program):
            return None
        import subprocess
        try:
            # Its own session: a ^C for the client must not kill it half-way (as a
            # daemon it leaves the client's session anyway).
            proc = subprocess.Popen([program, _ARGS_ON_STDIN, str(target)],
                                    stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, errors="surrogateescape",
                                    start_new_session=True)
        except OSError:
            return None
        return cls(program, target, proc)

    def _hand_over(self, target: Path, options: list[str]):
        if target != self.target:
            raise ValueError(f"started for {self.target}, asked to mount {target}")
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        stdin, proc.stdin = proc.stdin, None     # communicate() must not touch it again
        try:
            stdin.write("\0".join(options))
            stdin.close()
        except BrokenPipeError:   # it died starting: wait() reports how
            with contextlib.suppress(OSError):
                stdin.close()
        return proc

    def cancel(self) -> None:
        """Not needed after all: it has not read a command line, so it mounted nothing."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()      # (closes its stdin, reaps it)


def _installed_with_us(program: str) -> bool:
    import shutil
    path = program if os.sep in program else shutil.which(program)
    if path is None:
        return False
    ours = {os.path.dirname(os.path.abspath(sys.argv[0])), os.path.dirname(sys.executable)}
    return os.path.dirname(os.path.abspath(path)) in ours


class _Mount:
    """What both kinds of mount share: ``wait()`` for it (subclasses), or abandon it."""

    target: Path

    def wait(self) -> Path:
        raise NotImplementedError

    def abandon(self) -> None:
        """The caller failed before it needed the mount: wait for it and take it down."""
        with contextlib.suppress(Exception):
            self.wait()
        unmount(self.target)


class PendingMount(_Mount):
    """The mount program, started and not yet waited for: its start-up (importing FUSE
    bindings) can overlap the caller's other work. ``wait()`` returns TARGET once
    mounted, or raises the UserError the failure deserves."""

    def __init__(self, lowers: list[Path], target: Path, *, upper: Path | None = None,
                 work: Path | None = None, waiting: MountProgramInWaiting | None = None) -> None:
        import subprocess
        self.target = target
        options = ["-o", _mount_options(lowers, upper, work)]
        self._proc = None
        if waiting is not None:
            self._cmd = [waiting.program, str(target), *options]
            self._proc = waiting._hand_over(target, options)
        else:
            self._cmd = [mount_program(), *options, str(target)]
        log.debug("mounting: %s", " ".join(self._cmd))
        if self._proc is None:
            try:
                self._proc = subprocess.Popen(
                    self._cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, errors="surrogateescape")
            except FileNotFoundError:
                self._proc = None

    def wait(self) -> Path:
        import subprocess
        if self._proc is None:
            raise UserError(f"mount program not found: {self._cmd[0]}")
        try:
            stdout, stderr = self._proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise UserError("cannot mount the container's root filesystem: the mount "
                            "program did not finish within 120 s") from None
        if self._proc.returncode != 0:
            detail = (stderr or stdout).strip().splitlines()
            raise UserError("cannot mount the container's root filesystem: "
                            + (detail[-1] if detail else "failed"))
        return self.target

    def relay(self, fd: int) -> None:
        """Wait, and tell the outcome to the :class:`RelayedMount` reading the pipe FD
        (a forked monitor: the mount program is our child, so only we can wait for it).
        Closes FD."""
        try:
            try:
                self.wait()
            except UserError as exc:
                message = str(exc).encode(errors="replace") or b"failed"
            else:
                message = _MOUNTED
            with contextlib.suppress(OSError):   # the reader died: nobody to tell
                os.write(fd, message)
        finally:
            os.close(fd)


class RelayedMount(_Mount):
    """The other end of :meth:`PendingMount.relay`: a mount some other process started
    and waits for, its outcome read from the pipe FD. Same interface as PendingMount."""

    def __init__(self, fd: int, target: Path) -> None:
        self.target = target
        self._fd: int | None = fd
        self._error: str | None = None

    def wait(self) -> Path:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with os.fdopen(fd, "rb") as pipe:
                message = pipe.read()
            if message != _MOUNTED:
                self._error = (message.decode(errors="replace") or
                               "cannot mount the container's root filesystem: the process "
                               "that started the mount program went away")
        if self._error is not None:
            raise UserError(self._error)
        return self.target


def mount_union(lowers: list[Path], target: Path, *, upper: Path | None = None,
                work: Path | None = None) -> None:
    """Mount LOWERS (top first) at TARGET with the mount program; read-only without UPPER."""
    PendingMount(lowers, target, upper=upper, work=work).wait()


def unmount(path: Path) -> None:
    """Unmount the union mount; lazily if something still holds it."""
    if not is_mounted(path):
        return
    import subprocess
    for cmd in (["fusermount3", "-u", str(path)], ["fusermount3", "-u", "-z", str(path)],
                ["umount", "-l", str(path)]):
        if subprocess.run(cmd, capture_output=True).returncode == 0 and not is_mounted(path):
            return
    log.warning("could not unmount %s", path)


def syncfs(path: Path) -> None:
    """Make a union mount write back cached data, so its upper dir is current."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:     # a dead mount: upper/ is as current as it will get
        log.warning("cannot flush %s: %s", path, exc.strerror)
        return
    try:
        if libc.syncfs(fd) != 0:
            log.debug("syncfs %s: errno %d", path, ctypes.get_errno())
    finally:
        os.close(fd)

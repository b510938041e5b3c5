"""One hardened way to run a FUSE mount program in tests (STYLE.md lesson 14).

    with mounted(overlay_argv(mnt, [lower], upper=u, work=w), mnt) as m:
        assert (mnt / "f").read_text() == "..."

* the program runs in a subprocess (never a thread of the test process), with stdout
  and stderr going to files (a pipe nobody reads could fill up and block a ``-f``
  server) and ``$LAYERBOX_OVERLAYFS_LOG`` naming a log file for a detached daemon;
* the mount is awaited by polling with a deadline; if the program dies first the test
  fails at once with its stderr and log;
* on the way out the mount is ALWAYS removed (``fusermount3 -u -z``) and the server is
  awaited (foreground process or detached daemon), killed by pid if it hangs;
* a ``Traceback`` in the server's stderr or log fails the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

LOG_ENV = "LAYERBOX_OVERLAYFS_LOG"
#: The daemon logs this once it serves (overlayfs/mount.py).
_SERVING = re.compile(r"serving (?P<mnt>.+) \(pid (?P<pid>\d+)\)")


def mount_program() -> str:
    """The union mount program under test: ``$LAYERBOX_MOUNT_PROGRAM`` or ours from the venv."""
    program = os.environ.get("LAYERBOX_MOUNT_PROGRAM")
    if program:
        return program
    venv_script = Path(sys.executable).parent / "layerbox-overlayfs"
    return str(venv_script) if venv_script.exists() else "layerbox-overlayfs"


def overlay_argv(mountpoint, lowers: Sequence, *, upper=None, work=None,
                 options: Sequence[str] = (), flags: Sequence[str] = ()) -> list[str]:
    """The fuse-overlayfs command line for LOWERS (top first) [+ UPPER/WORK] on MOUNTPOINT."""
    opts = ["lowerdir=" + ":".join(str(p).replace(":", "\\:") for p in lowers)]
    if upper is not None:
        opts += [f"upperdir={upper}", f"workdir={work}"]
    opts += list(options)
    return [mount_program(), *flags, "-o", ",".join(opts), str(mountpoint)]


def mount_entry(mountpoint) -> str | None:
    """The filesystem type of the mount on MOUNTPOINT per /proc/self/mountinfo, or None.

    Unlike ``os.path.ismount`` this never touches the mount itself, so it neither hangs
    on a stuck server nor says False for a dead one (ENOTCONN).
    """
    info = mount_info(mountpoint)
    return info["fstype"] if info else None


def mount_info(mountpoint) -> dict | None:
    """``{"fstype", "source", "options" (per-mount flags, a set), "super_options"}`` of the
    topmost mount on MOUNTPOINT, or None."""
    target = os.path.abspath(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            if _unescape_mountinfo(fields[4]) == target:
                rest = fields[fields.index("-") + 1:]
                found = {"fstype": rest[0], "source": _unescape_mountinfo(rest[1]),
                         "options": set(fields[5].split(",")),
                         "super_options": set(rest[2].split(","))}
    return found


def _unescape_mountinfo(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 20.0,
             interval: float = 0.02):
    """Poll PREDICATE until it returns something true; fail the test after TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stat_with_timeout(path, timeout: float = 10.0) -> os.stat_result:
    """os.stat in a helper thread, so a server that does not answer fails the test
    instead of hanging it (the thread is left behind, blocked, as a daemon thread)."""
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(_try_stat(path)), daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        pytest.fail(f"{path} did not answer stat() within {timeout:.0f}s")
    if isinstance(outcome[0], OSError):
        raise outcome[0]
    return outcome[0]


def _try_stat(path):
    try:
        return os.stat(path)
    except OSError as exc:
        return exc


def pid_alive(pid: int) -> bool:
    """True while PID exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@dataclass
class Mount:
    """A running mount program and what it wrote."""

    mountpoint: Path
    process: subprocess.Popen
    log_path: Path
    stdout_path: Path
    stderr_path: Path

    #: Outputs kept when the context ends (their files are removed then).
    final: dict[str, str] | None = None

    def log(self) -> str:
        return self._read("log", self.log_path)

    def stderr(self) -> str:
        return self._read("stderr", self.stderr_path)

    def stdout(self) -> str:
        return self._read("stdout", self.stdout_path)

    def _read(self, name: str, path: Path) -> str:
        if self.final is not None:
            return self.final[name]
        return path.read_text(errors="replace") if path.exists() else ""

    def server_pid(self) -> int | None:
        """The serving process: the command itself if it stays in the foreground, else
        the detached daemon's pid from its log (None if it never said it serves)."""
        if self.process.poll() is None:
            return self.process.pid
        for match in _SERVING.finditer(self.log()):
            if match.group("mnt") == str(self.mountpoint):
                return int(match.group("pid"))
        return None

    def diagnostics(self) -> str:
        return (f"command: {' '.join(self.process.args)}\n"
                f"exit status: {self.process.poll()}\n"
                f"--- stderr ---\n{self.stderr()}\n--- log ---\n{self.log()}")

    def unmount(self, *, timeout: float = 15.0) -> None:
        """``fusermount3 -u`` (not lazy: a busy mount is an error), then wait for the
        server to exit."""
        pid = self.server_pid()
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], check=True,
                       capture_output=True)
        if self.process.poll() is None:
            self.process.wait(timeout)
        elif pid is not None:
            wait_for(lambda: not pid_alive(pid), f"the daemon (pid {pid}) to exit", timeout)


@contextlib.contextmanager
def mounted(cmd_argv: Sequence[str], mountpoint, *, env: dict | None = None,
            timeout: float = 20.0, allow_traceback: bool = False,
            foreground: bool | None = None, cwd=None) -> Iterator[Mount]:
    """Run CMD_ARGV, wait until MOUNTPOINT is mounted and answers, yield a Mount;
    always unmount and reap the server afterwards (see the module docstring).

    FOREGROUND says whether the program keeps running (default: guessed from ``-f``,
    ``-d``, ``--debug`` in CMD_ARGV); otherwise it must exit 0 once mounted.
    """
    mountpoint = Path(os.path.abspath(mountpoint))
    scratch = Path(tempfile.mkdtemp(prefix="fusemount-"))
    full_env = dict(os.environ)
    full_env.setdefault(LOG_ENV, str(scratch / "server.log"))
    full_env.update(env or {})
    log_path = Path(full_env[LOG_ENV])
    stdout_path, stderr_path = scratch / "stdout", scratch / "stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(list(cmd_argv), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, env=full_env, cwd=cwd, start_new_session=True)
    mount = Mount(mountpoint, process, log_path, stdout_path, stderr_path)
    body_done = False
    try:
        _wait_until_mounted(mount, timeout, _stays_in_foreground(cmd_argv, foreground))
        try:
            yield mount
        except BaseException as exc:
            exc.add_note(mount.diagnostics())
            raise
        body_done = True
    finally:
        problems = _tear_down(mount)
        diagnostics = mount.diagnostics()
        output = mount.stderr() + mount.log()
        mount.final = {"log": mount.log(), "stderr": mount.stderr(), "stdout": mount.stdout()}
        shutil.rmtree(scratch, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems) + "\n" + diagnostics, pytrace=False)
    if body_done and not allow_traceback and "Traceback" in output:
        pytest.fail("the mount program printed a traceback\n" + diagnostics, pytrace=False)


def _wait_until_mounted(mount: Mount, timeout: float, foreground: bool) -> None:
    if not foreground:  # a daemonizing program exits 0 only once the mount is live
        try:
            mount.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the mount program did not return within {timeout:.0f}s\n"
                        + mount.diagnostics(), pytrace=False)

    def ready() -> bool:
        status = mount.process.poll()
        if status not in (None, 0):
            pytest.fail(f"the mount program failed (status {status})\n{mount.diagnostics()}",
                        pytrace=False)
        if mount_entry(mount.mountpoint) is not None:
            return True
        if status == 0 and mount_entry(mount.mountpoint) is None:
            pytest.fail("the mount program exited 0 but nothing is mounted\n"
                        + mount.diagnostics(), pytrace=False)
        return False

    wait_for(ready, f"{mount.mountpoint} to be mounted", timeout)
    stat_with_timeout(mount.mountpoint, timeout)


def _stays_in_foreground(cmd_argv: Sequence[str], foreground: bool | None) -> bool:
    if foreground is not None:
        return foreground
    return any(arg in ("-f", "-d", "--debug") for arg in cmd_argv)


def _tear_down(mount: Mount) -> list[str]:
    """Unmount whatever is left and make sure the server is gone; the problems seen."""
    problems = []
    pid = mount.server_pid()
    if mount_entry(mount.mountpoint) is not None:
        subprocess.run(["fusermount3", "-u", "-z", str(mount.mountpoint)],
                       capture_output=True)
    deadline = time.monotonic() + 15
    if mount.process.poll() is None:
        try:
            mount.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            problems.append("the foreground server did not exit after unmount")
            mount.process.kill()
            mount.process.wait()
    if pid is not None and pid != mount.process.pid:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            problems.append(f"the daemon (pid {pid}) did not exit after unmount")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return problems

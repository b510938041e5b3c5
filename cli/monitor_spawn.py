"""Starting a container's monitor (:mod:`cli.monitor`) detached from the client.

The monitor must outlive the client: double fork, new session, stdio on its own log.
It is a fork of the client when that is safe, else a new ``python -m cli.monitor``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cli import logs

log = logs.get("cli.monitor")
#: In a forked monitor: the client's stdio objects and log handlers, never to be freed.
_INHERITED: list = []


def spawn(root: Path, container_id: str, *, attach_first: bool, store=None,
          mounting=None) -> dict:
    """Start a detached monitor for the container; returns its readiness message.

    With STORE (the caller's open store) and nothing that must not straddle a fork in
    this process (other threads, trio), the monitor is a fork of this process: it has
    what it needs imported already, where a new interpreter spent 60-90 ms
    starting and importing (strace of `run --rm`). STORE's SQLite connection is closed across the fork (SQLite forbids
    using one in two processes) and reopened. Otherwise ``python -m cli.monitor``.

    MOUNTING (a :class:`cli.unionmount.PendingMount` of the rootfs, started by the
    caller) is handed to a forked monitor: we wait for the mount program (our child) and
    tell the monitor the outcome through a pipe (a RelayedMount there). The exec'd
    monitor mounts on its own: MOUNTING is then taken down first.
    """
    ready_r, ready_w = os.pipe()
    cdir = Path(root) / "containers" / container_id
    logging = logs.module()
    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    if store is not None and can_fork():
        relay_r = relay_w = None
        if mounting is not None:
            relay_r, relay_w = os.pipe()
        try:
            pid = _fork_monitor(store, root, container_id, ready_w, attach_first, debug,
                                relay_r, mounting)
        except BaseException:
            if mounting is not None:     # no monitor to take it over
                os.close(relay_w)
                mounting.abandon()
            raise
        finally:
            os.close(ready_w)
            if relay_r is not None:
                os.close(relay_r)
        if mounting is not None:
            mounting.relay(relay_w)
        wait = lambda: os.waitpid(pid, 0)   # noqa: E731 -- the intermediate exits at once
    else:
        if mounting is not None:
            mounting.abandon()
        with open(cdir / "monitor.log", "ab") as errlog:
            cmd = [sys.executable, "-m", "cli.monitor", "--ready-fd", str(ready_w)]
            if attach_first:
                cmd.append("--attach-first")
            if debug:
                cmd.append("--debug")
            cmd += [str(root), container_id]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(Path(__file__).resolve().parents[1])] + sys.path[1:2])
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errlog,
                                    stderr=errlog, pass_fds=(ready_w,),
                                    start_new_session=True, cwd=cdir, env=env)
        os.close(ready_w)
        wait = proc.wait                 # the intermediate process exits at once (double fork)
    data = b""
    with os.fdopen(ready_r, "rb") as ready:
        data = ready.readline()
    wait()
    if not data:
        return {"error": f"the container monitor died; see {cdir / 'monitor.log'}",
                "exit_code": 125}
    return json.loads(data)


def can_fork() -> bool:
    """Whether :func:`spawn` may fork the monitor (the mount can then be started by
    the caller, who waits for it)."""
    # Another thread may hold a lock the child would wait for forever; trio's state
    # must not straddle a fork. LAYERBOX_MONITOR_EXEC=1 forces the exec path (tests).
    import threading
    return (threading.active_count() == 1 and "trio" not in sys.modules
            and not os.environ.get("LAYERBOX_MONITOR_EXEC"))


def _fork_monitor(store, root: Path, container_id: str, ready_fd: int, attach_first: bool,
                  debug: bool, relay_fd: int | None = None, mounting=None) -> int:
    """Fork the monitor (double fork, new session); returns the intermediate's pid."""
    import gc
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # Objects inherited from the client stay as they are in the monitor: never collected,
    # never finalized (a file object closing "its" fd would close one of ours). The
    # collector is off across the fork and the child freezes everything it inherited.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with store.connection_closed():
            pid = os.fork()
            if pid == 0:
                relayed = None
                if mounting is not None:
                    from cli.unionmount import RelayedMount
                    relayed = RelayedMount(relay_fd, mounting.target)
                _monitor_child(root, container_id, ready_fd, attach_first, debug, relayed)
    finally:
        if gc_was_enabled:
            gc.enable()
    return pid


def _monitor_child(root: Path, container_id: str, ready_fd: int, attach_first: bool,
                   debug: bool, mounting=None) -> None:
    """The forked child: never returns."""
    import gc
    code = 125
    try:
        gc.freeze()
        gc.enable()
        os.setsid()
        if os.fork():
            os._exit(0)
        _name_process(b"layerbox-monitor")
        keep = [ready_fd] + ([mounting._fd] if mounting is not None else [])
        _detach_stdio(Path(root) / "containers" / container_id / "monitor.log", keep)
        from cli.monitor import serve
        code = serve(str(root), container_id, ready_fd, attach_first, debug, mounting)
    except BaseException:
        with contextlib.suppress(Exception):
            log.exception("monitor failed")
    finally:
        for handler in logs.module().getLogger().handlers:     # ours only (_detach_stdio)
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(code)


def _name_process(name: bytes) -> None:
    """ps shows a forked monitor by this name (its cmdline is still the client's).
    /proc/self/comm is prctl(PR_SET_NAME) without loading ctypes (3 ms)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "wb") as comm:
        comm.write(name[:15])


def _detach_stdio(log_path: Path, keep_fds: list[int]) -> None:
    """The forked monitor's stdio: /dev/null in, monitor.log out; of the other inherited
    fds only KEEP_FDS stay open."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    low = 3
    for fd in sorted(keep_fds):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    # Python-level streams and log handlers of the client may sit on fds just closed
    # (a test runner's capture files): new ones on 0-2. The old are kept referenced, so
    # that no deallocation closes or flushes into an fd number that is now ours.
    root = logs.module().getLogger()
    _INHERITED.extend([sys.stdin, sys.stdout, sys.stderr, *root.handlers])
    for handler in list(root.handlers):
        root.removeHandler(handler)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    # The client's handlers (e.g. run's signal proxy) must not run in the monitor.
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGWINCH, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)

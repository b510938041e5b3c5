"""The mount program ``layerbox-overlayfs``: parse, mount, detach once serving, serve.

Lifecycle (the readiness contract Podman and mount(8) rely on):

1. parse the command line and open the layers in the foreground, so bad input is one
   line on stderr and exit 1 with nothing mounted;
2. mount (:meth:`Session.mount`) still in the foreground: "busy", "permission denied" and
   the like are reported the same way;
3. unless ``-f``/``-d``: fork; the child detaches (setsid, stdio to /dev/null or to
   the file named by ``$LAYERBOX_OVERLAYFS_LOG``) and serves; once its own ``stat``
   of the mountpoint has been answered through FUSE it writes one byte to a pipe,
   and only then does the parent exit 0. If the child dies first, the parent
   unmounts and exits 1 with the child's message.
4. SIGTERM/SIGINT/SIGHUP unmount and exit 0; an unmount from outside
   (``fusermount3 -u``, ``umount``) ends the loop and exits 0. The layer
   directories are closed the moment the loop ends, before the rest of the
   shutdown: ``umount`` of a FUSE mount does not wait for the daemon, and
   scripts (Podman's cleanup, unionmount-testsuite) unmount the upper
   filesystem right after the union, which fails with EBUSY while we still hold
   descriptors there. A crash in the serving
   loop is logged with its traceback and exits 1 *without* unmounting: the kernel
   then answers ENOTCONN, which tells the user something is wrong, where a silent
   unmount would let writes land in the empty mountpoint directory.

The /dev/fuse descriptor opened by the mount survives ``fork``; the child serves it
with :mod:`overlayfs.fuse_session`. The terminating signals are blocked from before
the fork until the child's handlers are in place, so a SIGTERM in between still
unmounts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from overlayfs.config import MountConfig
from overlayfs.fuse_session import MountFailed, Session
from overlayfs.options import PROG, InfoRequested, OptionError, parse_command_line

log = logging.getLogger(__name__)

#: Names a file that a detached daemon appends its stdout, stderr and log to.
LOG_ENV = "LAYERBOX_OVERLAYFS_LOG"
_READY = b"\0"
#: Mount option pairs where both may end up in one set (ours and the user's);
#: the restrictive one wins, as the safe reading of a contradiction.
_CONFLICTING = (("suid", "nosuid"), ("dev", "nodev"), ("exec", "noexec"), ("rw", "ro"))
_TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


#: ``layerbox-overlayfs --args-on-stdin [ARG...]``: import everything first, then read
#: the rest of the command line from stdin (arguments separated by NUL bytes, up to EOF)
#: and go on with ARG... plus those; an empty stdin means the caller gave up: exit 0,
#: nothing mounted. ``layerbox run`` starts us this way (ARG: the mountpoint, so that
#: ps still shows what a daemon serves) before it has made the container, so that our
#: start-up overlaps with its own.
ARGS_ON_STDIN = "--args-on-stdin"


def main(argv: list[str] | None = None) -> int:
    """Console script entry: returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [ARGS_ON_STDIN]:
        import overlayfs.operations  # noqa: F401 -- loaded while the caller still works
        data = sys.stdin.buffer.read()
        if not data:
            return 0
        argv = argv[1:] + [os.fsdecode(arg) for arg in data.split(b"\0")]
    try:
        config = parse_command_line(argv)
    except InfoRequested as info:
        sys.stdout.write(info.text)
        return 0
    except OptionError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    configure_logging(config)

    from overlayfs.operations import build  # the filesystem proper; heavy, load late

    try:
        operations, fuse_options = build(config)
    except OSError as exc:
        where = f"'{exc.filename}': " if exc.filename else ""
        print(f"{PROG}: cannot open layers: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    status = serve(config, operations, fuse_options)
    # Whoever started us waits for this exit (the detaching parent's, most often): skip
    # the interpreter's teardown of every module (5-10 ms). Nothing is left to flush but
    # stdio and the log handlers.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def configure_logging(config: MountConfig) -> None:
    """Log records go to stderr: the terminal with ``-f``, the log file once detached."""
    if config.debug:
        level = logging.DEBUG
    elif os.environ.get(LOG_ENV) and not config.foreground:
        level = logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(name)s[%(process)d] %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def serve(config: MountConfig, operations, fuse_options: set[str]) -> int:
    """Mount OPERATIONS (see :mod:`overlayfs.fuse_session`) on the mountpoint and serve
    until unmounted; the exit status. FUSE_OPTIONS are whole option strings
    (``fsname=a,b`` is one).
    """
    log_fd = None
    if not config.foreground:
        try:
            log_fd = _open_log(os.environ.get(LOG_ENV))
        except OSError as exc:
            print(f"{PROG}: cannot open log file '{exc.filename}': {exc.strerror}",
                  file=sys.stderr)
            return 1
    session = Session(operations, config.mountpoint, resolve_conflicts(fuse_options))
    log.debug("mounting on %s with %s", config.mountpoint, sorted(fuse_options))
    try:
        session.mount()
    except MountFailed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        if log_fd is not None:
            os.close(log_fd)
        return 1

    release = getattr(operations, "close", None)
    if config.foreground:
        return _run(session, ready_fd=None, release=release)

    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    # Blocked until the child's handlers are in place (_run): a SIGTERM that comes
    # between fork and serving must unmount too, not kill the child with the mount left.
    signal.pthread_sigmask(signal.SIG_BLOCK, _TERMINATING_SIGNALS)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _TERMINATING_SIGNALS)
        os.close(ready_w)
        os.close(log_fd)
        return _wait_until_serving(pid, ready_r, session)
    try:
        os.close(ready_r)
        _detach(log_fd)
        status = _run(session, ready_fd=ready_w, release=release)
    except BaseException:  # nothing may escape into the parent's code paths
        log.exception("the filesystem process failed")
        status = 1
    logging.shutdown()
    os._exit(status)


def resolve_conflicts(options: set[str]) -> set[str]:
    """Drop the permissive half of contradicting pairs (``suid`` when ``nosuid`` is set)."""
    result = set(options)
    for permissive, restrictive in _CONFLICTING:
        if restrictive in result:
            result.discard(permissive)
    return result


def _open_log(path: str | None) -> int:
    if path:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def _detach(log_fd: int) -> None:
    """Leave the caller's session and terminal; stdio to LOG_FD (a file or /dev/null)."""
    os.setsid()
    os.chdir("/")  # do not keep the caller's directory (maybe a mount) busy
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null_fd)
    os.close(log_fd)


def _wait_until_serving(pid: int, ready_fd: int, session: Session) -> int:
    """Parent side: exit status 0 once the child serves; else unmount and report."""
    with os.fdopen(ready_fd, "rb", buffering=0) as pipe:
        first = pipe.read(1)
        if first == _READY:
            return 0
        message = first + pipe.readall()
    # Our copy of the fuse fd keeps the connection alive: close it (and take the dead
    # mount away) before waiting, or a child thread stuck in a request never exits.
    session.close(unmount=True)
    _, status = os.waitpid(pid, 0)
    reason = message.decode(errors="replace").strip()
    if not reason:
        reason = f"the filesystem process exited ({_describe_status(status)}) before serving"
        if os.environ.get(LOG_ENV):
            reason += f"; see {os.environ[LOG_ENV]}"
    print(f"{PROG}: {session.mountpoint}: {reason}", file=sys.stderr)
    return 1


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.waitstatus_to_exitcode(status)}"


class _Readiness:
    """The write end of the parent's pipe (None in the foreground): told exactly once."""

    def __init__(self, fd: int | None):
        self._fd = fd
        self._lock = threading.Lock()   # the announcing thread and the loop's end race

    def ready(self) -> None:
        self._tell(_READY)

    def failed(self, reason: str) -> None:
        self._tell(reason.encode(errors="replace"))

    def _tell(self, message: bytes) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, message)
        except OSError:
            pass  # the parent is gone: nobody left to inform
        finally:
            os.close(fd)


def _run(session: Session, ready_fd: int | None,
         release: Callable[[], None] | None = None) -> int:
    """Serve until unmounted or signalled; the exit status. RELEASE (closing the
    layers) is called as soon as the FUSE loop ends."""
    mountpoint = session.mountpoint
    readiness = _Readiness(ready_fd)
    signalled: list[int] = []

    def unmount_on_signal(signum, _frame) -> None:
        # May run between any two bytecodes of a request: terminate() only flags the
        # end then (it interrupts the loop only while it waits for a request).
        signalled.append(signum)
        session.terminate()

    try:
        # Handlers before the first request is read, and before the signals the
        # parent blocked for us are let in.
        previous = {signum: signal.signal(signum, unmount_on_signal)
                    for signum in _TERMINATING_SIGNALS}
        try:
            # The announcing thread starts with them blocked and keeps them so: they are
            # then always delivered to this thread, whose wait for a request they end.
            signal.pthread_sigmask(signal.SIG_BLOCK, _TERMINATING_SIGNALS)
            if ready_fd is not None:
                threading.Thread(target=_announce_when_serving, args=(mountpoint, readiness),
                                 name="announce", daemon=True).start()
            else:
                # In the foreground nobody waits for the announcement, and a stat still
                # in flight would make an unmount right after fail with EBUSY (seen under
                # load: the thread had not got its turn before the caller's umount).
                log.info("serving %s (pid %d)", mountpoint, os.getpid())
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _TERMINATING_SIGNALS)
            session.serve()
        finally:
            # The session is closed from here on: a late signal must not reach
            # terminate() (the handlers from before the loop again).
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    except BaseException as exc:
        log.exception("the filesystem crashed; leaving the mount to report ENOTCONN")
        readiness.failed(f"the filesystem crashed before serving: {exc!r}")
        session.close(unmount=False)
        return 1
    # Nothing is served any more: free the layers before anything else (see below).
    if release is not None:
        _release_layers(release)
    readiness.failed("the mount went away before it was served")  # no-op once ready
    session.close(unmount=bool(signalled))
    if signalled:
        log.info("received %s: unmounting", signal.Signals(signalled[0]).name)
    log.info("unmounted %s (%s); exiting", mountpoint,
             "on a signal" if signalled else "from outside")
    return 0


def _release_layers(release: Callable[[], None]) -> None:
    """Close the layer fds the moment the loop ends: umount(8) returns before we exit,
    and while we hold them the file systems below stay busy (``umount merged; umount
    lower-fs`` right after, as fuse-overlayfs' tests do, failed with EBUSY)."""
    try:
        release()
    except Exception:  # the process exits right after: closing is best effort
        log.exception("closing the layers failed")
    else:
        log.debug("layers released")


def _announce_when_serving(mountpoint: str, readiness: _Readiness) -> None:
    """Stat the mountpoint through our own loop (from a thread: the loop is the main
    thread's): once the kernel has an answer, the FUSE handshake is done and requests
    are served, so the parent may exit."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        log.error("the new mount does not answer: %s", exc)
        readiness.failed(f"the new mount does not answer: {exc.strerror}")
        return
    log.info("serving %s (pid %d)", mountpoint, os.getpid())
    readiness.ready()


if __name__ == "__main__":
    sys.exit(main())

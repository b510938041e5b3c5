"""pyfuse3's request loop without trio: what the mount program serves with.

pyfuse3 reaches its event loop through its module global ``pyfuse3.trio`` (that is how
``pyfuse3.asyncio.enable()`` swaps trio for asyncio). Per request, ``_session_loop``
takes a lock shared by its worker tasks, awaits ``lowlevel.wait_readable`` on
``/dev/fuse``, reads the request and awaits the handler's coroutine.

None of our handlers ever awaits anything, so one worker serves as well as 99 and
nothing ever needs to suspend: an event loop has no work to do. :class:`_Direct` is
the object pyfuse3 sees as ``trio`` here: the lock is never contended (it asserts
so), ``wait_readable`` blocks in ``poll`` on the descriptor itself, and :func:`run`
drives pyfuse3's coroutine to its end with a single ``send``. A coroutine that does
try to suspend (a handler that awaits something real) is an error, raised at once.

Why not trio, which served before: importing it took 95-130 ms of the mount program's
start-up (attrs, ssl, sockets, a fork of ``ldconfig -p`` from ``find_library``), on the
critical path of every ``run`` (the rootfs is served only once it is imported), and
each request paid a trip through its scheduler or the fast-path logic that avoided it.

Signals: ``pyfuse3.terminate()`` (what a SIGTERM handler calls) ends the loop through
:meth:`_Direct.notify_closing`; a signal that arrives while ``poll`` waits wakes it
through ``signal.set_wakeup_fd`` (set while :func:`installed` is active), and Python
runs the handler before ``wait_readable`` looks at what woke it.

:func:`import_pyfuse3` imports pyfuse3 without trio (and without ``importlib.metadata``,
which pyfuse3 loads for its ``__version__`` only: another 35 ms).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import types
from collections.abc import Iterator

#: The worker counts to pass to ``pyfuse3.main`` with the direct loop installed.
MIN_TASKS = MAX_TASKS = 1


class ClosedResourceError(Exception):
    """``wait_readable`` after ``notify_closing``: pyfuse3 then ends its loop."""


class _UncontendedLock:
    """pyfuse3's read lock when exactly one worker task exists: never waited for."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = False

    async def __aenter__(self) -> None:
        assert not self._held, "pyfuse3 ran a second worker task (max_tasks must be 1)"
        self._held = True

    async def __aexit__(self, *exc_info) -> None:
        self._held = False


class _Task:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Nursery:
    """Runs the tasks started in it one after the other when its block ends (pyfuse3
    starts its one worker there); a failed body or task stops the rest."""

    def __init__(self, direct: "_Direct") -> None:
        self._direct = direct
        self._tasks: list = []

    async def __aenter__(self) -> "_Nursery":
        return self

    def start_soon(self, fn, *args, name: str | None = None) -> None:
        self._tasks.append((fn, args, name or getattr(fn, "__name__", "task")))

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            return False
        while self._tasks:
            fn, args, name = self._tasks.pop(0)
            outer, self._direct.task = self._direct.task, _Task(name)
            try:
                await fn(*args)
            finally:
                self._direct.task = outer
        return False


class _Direct:
    """The object pyfuse3 sees as ``trio`` (and as ``trio.lowlevel``)."""

    Lock = _UncontendedLock
    ClosedResourceError = ClosedResourceError

    def __init__(self, wake_reader: int | None = None, wake_writer: int | None = None) -> None:
        self.lowlevel = self
        self.task = _Task("main")
        self._wake_reader = wake_reader
        self._wake_fd = wake_writer
        self._closing: set[int] = set()
        self._polls: dict[int, select.poll] = {}

    def open_nursery(self) -> _Nursery:
        return _Nursery(self)

    def current_trio_token(self) -> None:
        return None

    def current_task(self) -> _Task:
        return self.task

    def notify_closing(self, fd: int) -> None:
        self._closing.add(fd)
        if self._wake_fd is not None:
            with contextlib.suppress(OSError):   # a full pipe wakes the poll as well
                os.write(self._wake_fd, b"\0")

    async def wait_readable(self, fd: int) -> None:
        poller = self._polls.get(fd)
        if poller is None:
            poller = self._polls[fd] = select.poll()
            poller.register(fd, select.POLLIN)
            if self._wake_reader is not None:
                poller.register(self._wake_reader, select.POLLIN)
        while True:
            if fd in self._closing:
                raise ClosedResourceError(f"fd {fd} is being closed")
            # Interrupted by a signal, poll returns to Python (which runs the handler)
            # and is called again; the wake-up byte then ends this second call at once.
            events = poller.poll()
            if any(ready == fd for ready, _ in events):
                if fd in self._closing:
                    raise ClosedResourceError(f"fd {fd} is being closed")
                return
            if self._wake_reader is not None:
                _drain(self._wake_reader)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 256):
            pass


def run(async_fn, *args):
    """Run the coroutine function ASYNC_FN to its end without an event loop; its
    result. It must never suspend: nothing would resume it."""
    coro = async_fn(*args)
    try:
        yielded = coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError(f"the FUSE loop cannot suspend, but something awaited {yielded!r}")


@contextlib.contextmanager
def installed() -> Iterator[_Direct]:
    """pyfuse3 serves through the direct loop inside the block (call ``pyfuse3.main``
    with ``min_tasks=MIN_TASKS, max_tasks=MAX_TASKS`` through :func:`run`); signals wake
    its wait. Main thread only (the wake-up fd is the process's).

    pyfuse3 makes its read lock once per process, on its first ``main``: a later
    ``main`` in the same process keeps the uncontended one, so it must also run with
    one worker (the mount program serves once per process)."""
    import pyfuse3
    reader, writer = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_wakeup = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    previous = pyfuse3.trio
    direct = _Direct(reader, writer)
    pyfuse3.trio = direct
    try:
        yield direct
    finally:
        pyfuse3.trio = previous
        signal.set_wakeup_fd(previous_wakeup)
        os.close(reader)
        os.close(writer)


# -- importing pyfuse3 -------------------------------------------------------------------

class _DeferredTrio(types.ModuleType):
    """Stands for trio while pyfuse3 is imported; the real trio is imported only if
    someone uses pyfuse3 with it after all (``pyfuse3.trio.X`` outside the direct loop)."""

    def __getattr__(self, name: str):
        if name.startswith("__") or sys.modules.get("trio") is self:
            raise AttributeError(name)
        import importlib
        return getattr(importlib.import_module("trio"), name)


class _PackageNotFound(ModuleNotFoundError):
    pass


def _no_metadata() -> types.ModuleType:
    """What pyfuse3 imports from importlib.metadata, answering that nothing is known
    (``pyfuse3.__version__`` is then "unknown"; ``--version`` asks the real thing)."""
    stub = types.ModuleType("importlib.metadata")
    stub.PackageNotFoundError = _PackageNotFound

    def version(name: str) -> str:
        raise _PackageNotFound(name)
    stub.version = version
    return stub


def import_pyfuse3() -> types.ModuleType:
    """pyfuse3, imported without importing trio or importlib.metadata (if it is not
    imported already: then it is returned as it is, with whatever trio it has)."""
    if "pyfuse3" in sys.modules:
        return sys.modules["pyfuse3"]
    stand_ins = {name: stub for name, stub in (("trio", _DeferredTrio("trio")),
                                                ("importlib.metadata", _no_metadata()))
                 if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        import pyfuse3
    finally:
        for name, stub in stand_ins.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]
    return pyfuse3

"""A cheaper trio for pyfuse3's request loop, in the serving process only.

pyfuse3 reaches trio through its module global ``pyfuse3.trio`` (that is how
``pyfuse3.asyncio.enable()`` swaps the event loop). Per request, its ``_session_loop``
takes a ``trio.Lock`` shared by its worker tasks and awaits
``trio.lowlevel.wait_readable`` on ``/dev/fuse``: each is a trip through trio's
scheduler, and ``wait_readable`` an ``epoll_ctl`` registration and an ``epoll_wait``
every time. In a profile of `tar -x` into the mount that was a third of the daemon's
busy time, more than some of our handlers.

None of our handlers ever awaits anything, so one worker task serves as well as 99
(``pyfuse3.main(min_tasks=1, max_tasks=1)``), and with one worker:

* the read lock is never contended: :class:`_UncontendedLock` takes it without
  checkpoints, and asserts that it is indeed never contended;
* ``wait_readable`` waits in ``poll`` on the descriptor itself (one ``select.poll``
  made per descriptor), for at most :data:`FAST_WAIT_MS`: a request that is queued,
  or arrives meanwhile, is read with no trip through trio. Polling with timeout 0
  alone is not enough: a synchronous client (``tar`` creating one file after the
  other) has its next request ready only after our reply has woken it, so nothing
  is ever queued, and the trip through trio's loop on every wake-up remains on the
  critical path of each request. Only when ``poll`` times out does the wait go to
  trio's own ``wait_readable``, so an idle daemon sleeps in trio's loop as before
  (no periodic wake-ups), and signals (SIGTERM unmounts), ``pyfuse3.terminate``
  (``notify_closing``) and cancellation keep working, ``FAST_WAIT_MS`` late at most.
  Under constant load every :data:`CHECKPOINT_EVERY`-th wait also goes through
  trio, so the signal task is never starved. The signal receiver must be installed
  before serving starts (``mount.py`` does): a burst may be served before the other
  tasks get their first turn.

Everything else is real trio. :func:`installed` swaps the facade in for the duration
of the serving loop and puts real trio back afterwards.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator

import pyfuse3
import trio

#: Requests served straight from the poll before one wait goes through trio's loop.
CHECKPOINT_EVERY = 64
#: How long to wait for the next request in ``poll`` itself (trio's loop and with it
#: the signal task wait that long at most) before waiting in trio's loop.
FAST_WAIT_MS = 20
#: The worker counts to pass to ``pyfuse3.main`` with the facade installed.
MIN_TASKS = MAX_TASKS = 1


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


class _LowLevel:
    """``trio.lowlevel`` with a polling ``wait_readable``; the rest delegates."""

    def __init__(self) -> None:
        self._polls: dict[int, select.poll] = {}
        self._budget = 0  # the first wait goes through trio: the other tasks start

    def __getattr__(self, name: str):
        return getattr(trio.lowlevel, name)

    async def wait_readable(self, fd: int) -> None:
        poller = self._polls.get(fd)
        if poller is None:
            poller = self._polls[fd] = select.poll()
            poller.register(fd, select.POLLIN)
        if self._budget > 0 and poller.poll(FAST_WAIT_MS):
            self._budget -= 1
            return
        self._budget = CHECKPOINT_EVERY
        await trio.lowlevel.wait_readable(fd)


class _Trio:
    """The object pyfuse3 sees as ``trio``."""

    Lock = _UncontendedLock

    def __init__(self) -> None:
        self.lowlevel = _LowLevel()

    def __getattr__(self, name: str):
        return getattr(trio, name)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """pyfuse3 uses the facade inside the block (call ``pyfuse3.main`` with
    ``min_tasks=MIN_TASKS, max_tasks=MAX_TASKS`` there); real trio again after it.

    pyfuse3 makes its read lock once per process, on its first ``main``: a later
    ``main`` in the same process keeps the uncontended one, so it must also run with
    one worker (the mount program serves once per process)."""
    previous = pyfuse3.trio
    pyfuse3.trio = _Trio()
    try:
        yield
    finally:
        pyfuse3.trio = previous

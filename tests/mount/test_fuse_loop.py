"""The loop pyfuse3 serves with (overlayfs/fuse_loop.py), on a pipe; and importing
pyfuse3 without trio."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import types

import pyfuse3
import pytest

from overlayfs import fuse_loop
from tests.conftest import ROOT


def test_installed_swaps_the_direct_loop_in_for_pyfuse3_and_restores_it():
    before = pyfuse3.trio
    with fuse_loop.installed() as direct:
        assert pyfuse3.trio is direct
        assert direct.lowlevel is direct
        assert direct.ClosedResourceError is fuse_loop.ClosedResourceError
    assert pyfuse3.trio is before


def test_the_lock_refuses_a_second_worker():
    async def main():
        lock = fuse_loop._UncontendedLock()
        async with lock:
            with pytest.raises(AssertionError):
                async with lock:
                    pass
        async with lock:  # released again
            pass
    fuse_loop.run(main)


def test_run_returns_the_result_and_refuses_a_coroutine_that_suspends():
    async def answer(x):
        return x * 2
    assert fuse_loop.run(answer, 21) == 42

    @types.coroutine
    def suspend():
        yield "a trap nobody handles"

    async def awaits_something():
        await suspend()
    with pytest.raises(RuntimeError, match="cannot suspend"):
        fuse_loop.run(awaits_something)


def test_nursery_runs_its_tasks_after_the_body_and_names_them():
    seen = []

    async def task(label):
        seen.append((label, direct.current_task().name))

    async def main():
        async with direct.open_nursery() as nursery:
            nursery.start_soon(task, "a", name="worker-1")
            nursery.start_soon(task, "b", name="worker-2")
            seen.append(("body", None))
    direct = fuse_loop._Direct()
    fuse_loop.run(main)
    assert seen == [("body", None), ("a", "worker-1"), ("b", "worker-2")]


def test_wait_readable_returns_for_data_and_raises_once_closing():
    read_fd, write_fd = os.pipe()
    try:
        with fuse_loop.installed() as direct:
            writer = threading.Thread(target=os.write, args=(write_fd, b"x"))
            writer.start()
            fuse_loop.run(direct.wait_readable, read_fd)   # blocks until the byte is there
            writer.join()
            assert os.read(read_fd, 1) == b"x"
            direct.notify_closing(read_fd)
            with pytest.raises(fuse_loop.ClosedResourceError):
                fuse_loop.run(direct.wait_readable, read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_signal_handler_that_closes_ends_a_wait_with_nothing_to_read():
    """What SIGTERM does in the mount program: the handler calls pyfuse3.terminate()."""
    read_fd, write_fd = os.pipe()
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        with fuse_loop.installed() as direct:
            signal.signal(signal.SIGUSR1, lambda *_: direct.notify_closing(read_fd))
            # Early or late, the signal must end the wait: before it, the wait sees the
            # fd closing at once; during it, the wake-up fd ends the poll.
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
            with pytest.raises(fuse_loop.ClosedResourceError):
                fuse_loop.run(direct.wait_readable, read_fd)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        os.close(read_fd)
        os.close(write_fd)


def test_a_signal_that_does_not_close_leaves_the_wait_waiting():
    read_fd, write_fd = os.pipe()
    previous = signal.getsignal(signal.SIGUSR1)
    signalled = threading.Event()

    def signal_then_write():
        os.kill(os.getpid(), signal.SIGUSR1)
        signalled.wait(30)
        os.write(write_fd, b"y")
    try:
        with fuse_loop.installed() as direct:
            signal.signal(signal.SIGUSR1, lambda *_: signalled.set())
            threading.Thread(target=signal_then_write).start()
            fuse_loop.run(direct.wait_readable, read_fd)
            assert signalled.is_set()
            assert os.read(read_fd, 1) == b"y"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        os.close(read_fd)
        os.close(write_fd)


def test_the_mount_program_imports_neither_trio_nor_importlib_metadata():
    code = ("import sys, overlayfs.mount, overlayfs.operations;"
            "print(sorted(m for m in ('trio', 'importlib.metadata', 'attrs') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_pyfuse3_imported_that_way_still_works_with_trio():
    """The stand-in for trio hands out the real one to whoever asks pyfuse3 for it."""
    code = ("from overlayfs import fuse_loop; p = fuse_loop.import_pyfuse3();"
            "import sys; assert 'trio' not in sys.modules;"
            "lock = p.trio.Lock; import trio; assert lock is trio.Lock; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"

"""The trio facade pyfuse3 serves with (overlayfs/fuse_loop.py), on a pipe."""

from __future__ import annotations

import os
import signal

import pyfuse3
import pytest
import trio

from overlayfs import fuse_loop


def test_installed_swaps_trio_for_pyfuse3_and_restores_it():
    assert pyfuse3.trio is trio
    with fuse_loop.installed():
        facade = pyfuse3.trio
        assert facade is not trio
        assert facade.ClosedResourceError is trio.ClosedResourceError
        assert facade.lowlevel.current_trio_token is trio.lowlevel.current_trio_token
    assert pyfuse3.trio is trio


def test_the_lock_refuses_a_second_worker():
    async def main():
        lock = fuse_loop._UncontendedLock()
        async with lock:
            with pytest.raises(AssertionError):
                async with lock:
                    pass
        async with lock:  # released again
            pass
    trio.run(main)


def test_wait_readable_serves_queued_data_and_waits_in_trio_when_idle():
    read_fd, write_fd = os.pipe()
    got = []

    async def reader(lowlevel):
        for _ in range(3 * fuse_loop.CHECKPOINT_EVERY):
            await lowlevel.wait_readable(read_fd)
            got.append(os.read(read_fd, 1))

    async def writer():
        for _ in range(3 * fuse_loop.CHECKPOINT_EVERY):
            os.write(write_fd, b"x")
            if len(got) % 7 == 0:
                await trio.sleep(fuse_loop.FAST_WAIT_MS * 2 / 1000)  # idle: trio's wait
            else:
                await trio.lowlevel.checkpoint()

    async def main():
        lowlevel = fuse_loop._LowLevel()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, lowlevel)
            nursery.start_soon(writer)
    try:
        trio.run(main)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert len(got) == 3 * fuse_loop.CHECKPOINT_EVERY


def test_a_signal_reaches_trio_while_the_loop_is_busy():
    """Requests keep coming without a pause: the signal task still gets its turn."""
    read_fd, write_fd = os.pipe()

    async def busy(lowlevel):
        while True:
            os.write(write_fd, b"x")
            await lowlevel.wait_readable(read_fd)  # always ready: the fast path
            os.read(read_fd, 1)

    async def main():
        lowlevel = fuse_loop._LowLevel()
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(busy, lowlevel)
                os.kill(os.getpid(), signal.SIGUSR1)
                async for signum in signals:
                    assert signum == signal.SIGUSR1
                    nursery.cancel_scope.cancel()
                    break
    try:
        trio.run(main)
    finally:
        os.close(read_fd)
        os.close(write_fd)

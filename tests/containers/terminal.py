"""A pseudo-terminal driving a real ``layerbox`` process, with deadlines (no sleeps).

It answers the cursor-position query (ESC [ 6 n) that busybox's line editor sends, as a
real terminal (tmux, xterm) does; otherwise the shell waits for the answer.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time

from tests.support.images import REPO_ROOT

CURSOR_QUERY = b"\x1b[6n"


class Terminal:
    def __init__(self, root, *args: str, rows: int = 24, cols: int = 80):
        self.master, slave = os.openpty()
        self.resize(rows, cols, fd=slave)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--root", str(root), *args],
            stdin=slave, stdout=slave, stderr=slave, cwd=REPO_ROOT, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.output = b""
        self._seen_queries = 0

    def resize(self, rows: int, cols: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes | str) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def expect(self, pattern: bytes | str, timeout: float = 30) -> bytes:
        """Read until PATTERN appears after what earlier expects consumed."""
        pattern = pattern.encode() if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while pattern not in self.output:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"timed out waiting for {pattern!r}; "
                                     f"output: {self.output[-2000:]!r}")
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"terminal closed waiting for {pattern!r}; "
                                     f"output: {self.output[-2000:]!r}")
            self.output += data
            queries = self.output.count(CURSOR_QUERY)
            while self._seen_queries < queries:
                self.send(b"\x1b[1;1R")
                self._seen_queries += 1
        index = self.output.index(pattern) + len(pattern)
        matched, self.output = self.output[:index], self.output[index:]
        self._seen_queries = self.output.count(CURSOR_QUERY)
        return matched

    def settle(self, prompt: bytes | str, timeout: float = 30) -> None:
        """Wait for the shell's prompt and answer the cursor query busybox sends after it
        (a shell left waiting for that answer would eat the next attach's input)."""
        self.expect(prompt, timeout)
        self.expect(CURSOR_QUERY, timeout)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process, draining its output; returns its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    pass
        return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)

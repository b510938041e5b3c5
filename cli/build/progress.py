"""The live build view for a terminal (``--progress auto`` on a tty, ``tty``), BuildKit-like.

The builder speaks the classic builder's lines (``Step 2/4 : RUN …``, `` ---> Using cache``,
`` ---> 1a2b3c4d``); ``LiveView.feed`` reads them as events, so the builder has one output
language and this module only re-presents it. RUN output arrives on a pipe
(``output_fd``) and its last lines are shown under the running step. The view redraws
itself in place (cursor up, clear to end) a few times a second:

    [+] Building 2.3s (2/3)
     => [1/3] FROM busybox                                          0.0s
     => CACHED [2/3] COPY . /app                                    0.0s
     => [3/3] RUN make                                              1.9s
     => => # compiling…
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time

TAIL_LINES = 6
REDRAW_SECONDS = 0.1
_STEP = re.compile(r"Step (\d+)/(\d+) : (.*)")


class _Step:
    def __init__(self, number: int, total: int, text: str):
        self.number, self.total, self.text = number, total, text.splitlines()[0] if text else ""
        self.started = time.monotonic()
        self.finished: float | None = None
        self.cached = False
        self.failed = False
        self.tail: list[str] = []

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


class LiveView:
    """Draws on FD (a terminal). ``start`` makes the RUN-output pipe and the redraw thread;
    ``close(ok)`` draws the last frame and returns; lines after the steps (``Successfully
    built``…) are printed below it."""

    def __init__(self, fd: int = 1):
        self.fd = fd
        self.steps: list[_Step] = []
        self.after: list[str] = []
        self.started = time.monotonic()
        self.drawn_lines = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self._partial = ""
        self._output_partial = b""
        self.output_fd: int | None = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> int:
        """Returns the fd RUN output should be written to."""
        read_fd, self.output_fd = os.pipe()
        self._reader = threading.Thread(target=self._read_output, args=(read_fd,), daemon=True)
        self._reader.start()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()
        return self.output_fd

    def close(self, ok: bool) -> None:
        if self.output_fd is not None:
            os.close(self.output_fd)
            self._reader.join(timeout=2)
        self.done.set()
        self._ticker.join(timeout=2)
        with self.lock:
            now = time.monotonic()
            for step in self.steps:
                if step.finished is None:
                    step.finished = now
                    step.failed = not ok
            self._draw(final=True)
            if self.after:
                self._write("".join(self.after))

    # -- input --------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Classic builder output (any chunking)."""
        with self.lock:
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._event(line)
            self._draw()

    def _event(self, line: str) -> None:
        current = self.steps[-1] if self.steps else None
        match = _STEP.match(line)
        if match:
            if current is not None and current.finished is None:
                current.finished = time.monotonic()
            self.steps.append(_Step(int(match[1]), int(match[2]), match[3]))
        elif line == " ---> Using cache" and current is not None:
            current.cached = True
        elif line.startswith(" ---> Running in") or line.startswith("Removing intermediate"):
            pass
        elif line.startswith(" ---> ") and current is not None:
            current.finished = time.monotonic()
            current.tail = []
        elif line.startswith("Successfully"):
            if current is not None and current.finished is None:
                current.finished = time.monotonic()
            self.after.append(line + "\n")

    def _read_output(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                with self.lock:
                    data = self._output_partial + chunk
                    *lines, self._output_partial = re.split(rb"\r?\n|\r", data)
                    if self.steps:
                        tail = self.steps[-1].tail
                        tail.extend(line.decode("utf-8", "replace") for line in lines)
                        del tail[:-TAIL_LINES]

    def _tick(self) -> None:
        while not self.done.wait(REDRAW_SECONDS):
            with self.lock:
                self._draw()

    # -- output -------------------------------------------------------------------------

    def _frame(self, final: bool) -> list[str]:
        width = max(shutil.get_terminal_size((80, 24)).columns, 40)
        try:
            width = os.get_terminal_size(self.fd).columns or width
        except OSError:
            pass
        done = sum(1 for s in self.steps if s.finished is not None and not s.failed)
        total = self.steps[-1].total if self.steps else 0
        head = "FINISHED" if final and all(not s.failed for s in self.steps) else ""
        lines = [f"[+] Building {time.monotonic() - self.started:.1f}s ({done}/{total}) {head}"
                 .rstrip()]
        for step in self.steps:
            status = "CACHED " if step.cached else "ERROR " if step.failed else ""
            left = f" => {status}[{step.number}/{step.total}] {step.text}"
            right = f"{step.elapsed():.1f}s"
            room = width - len(right) - 2
            if len(left) > room:
                left = left[:max(room - 1, 0)] + "…"
            lines.append(left.ljust(room) + "  " + right)
            if step.tail and (step.finished is None or step.failed):
                lines += [(" => => # " + t)[:width - 1] for t in step.tail]
        return lines

    def _draw(self, final: bool = False) -> None:
        lines = self._frame(final)
        clear = f"\x1b[{self.drawn_lines}A\r\x1b[J" if self.drawn_lines else "\r\x1b[J"
        self._write(clear + "\n".join(lines) + "\n")
        self.drawn_lines = len(lines)

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            data = data[os.write(self.fd, data):]

"""Docker's per-layer progress output: bars on a terminal, plain status lines otherwise.

The push and pull code report ``(id, status)`` and byte counts; this class decides what a
person sees. On a terminal each id owns one line, redrawn in place (cursor up, clear
line), with a bar like ``Downloading [=====>     ]  1.2MB/3.4MB``. Otherwise each status
change is printed once, as ``docker pull | cat`` shows it, and byte counts are dropped.
"""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 50
REDRAW_INTERVAL = 0.1


def human_size(n: float) -> str:
    """Docker's units (decimal, as go-units HumanSize): 1.2MB, 512kB, 10B."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def bar(current: int, total: int) -> str:
    if total <= 0:
        return human_size(current)
    filled = min(BAR_WIDTH, BAR_WIDTH * current // total)
    arrow = ">" if filled < BAR_WIDTH else ""
    body = "=" * max(filled - (1 if arrow else 0), 0) + arrow
    return f"[{body:<{BAR_WIDTH}}] {human_size(current):>8}/{human_size(total)}"


class Progress:
    def __init__(self, out: TextIO, tty: bool):
        self._out = out
        self._tty = tty
        self._order: list[str] = []     # ids, in the order their lines appeared
        self._lines: dict[str, str] = {}
        self._last_draw = 0.0

    def line(self, text: str) -> None:
        """A line of its own (``latest: Pulling from me/x``), never redrawn."""
        self._order.clear()
        self._lines.clear()
        self._out.write(text + "\n")
        self._out.flush()

    def status(self, ident: str, status: str) -> None:
        if not self._tty:
            self._out.write(f"{ident}: {status}\n")
            self._out.flush()
            return
        self._set(ident, f"{ident}: {status}", force=True)

    def bytes(self, ident: str, action: str, current: int, total: int) -> None:
        """``Downloading``/``Pushing`` progress; shown only on a terminal."""
        if self._tty:
            self._set(ident, f"{ident}: {action} {bar(current, total)}",
                      force=current >= total > 0)

    def _set(self, ident: str, text: str, force: bool) -> None:
        now = time.monotonic()
        if ident not in self._lines:
            self._order.append(ident)
            self._lines[ident] = text
            self._out.write(text + "\n")
            self._out.flush()
            return
        self._lines[ident] = text
        if not force and now - self._last_draw < REDRAW_INTERVAL:
            return
        self._last_draw = now
        up = len(self._order) - self._order.index(ident)
        # Cursor up to the id's line, clear it, write, and come back down.
        self._out.write(f"\x1b[{up}A\x1b[2K\r{text}\x1b[{up}B\r")
        self._out.flush()

"""Where ``save``/``export``-style commands write a tar: stdout, or ``-o FILE``.

A file is written under a temporary name and renamed when complete, so an interrupted
or failed write never leaves a truncated archive under the name the user asked for.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO, Callable

from cli.errors import UserError


def refuse_terminal(output: str | None, what: str = "save") -> None:
    if output is None and sys.stdout.isatty():
        raise UserError(f"cowardly refusing to {what} to a terminal. Use the -o flag or "
                        "redirect")


def write_archive(output: str | None, produce: Callable[[BinaryIO], None],
                  failure: str) -> None:
    """Run PRODUCE on stdout or on OUTPUT (atomically); FAILURE prefixes write errors."""
    if output is None:
        produce(sys.stdout.buffer)
        sys.stdout.flush()
        return
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as out:
            produce(out)
        os.replace(tmp, output)
    except OSError as exc:
        raise UserError(f"{failure}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

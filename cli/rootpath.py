"""Paths inside a container's root, resolved as the container resolves them.

Symlinks are followed relative to ROOT (an absolute target starts again at ROOT) and
``..`` stops at ROOT, as inside a chroot: a link such as ``/x -> ../../../etc`` can never
lead out of the container. Used for user lookup in the runtime bundle and for ``cp``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """PATH under ROOT with its symlinks resolved inside ROOT (the last one only if
    FOLLOW_LAST). The result may not exist; OSError(ELOOP) after 40 links."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if not (pending or follow_last) or not candidate.is_symlink():
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending = [p for p in target.split("/") if p not in ("", ".")] + pending
    return root.joinpath(*resolved)

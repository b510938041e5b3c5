"""``docker cp``: copy files between a container's filesystem and the host.

Paths inside the container are resolved as the container would resolve them: symlinks
are followed relative to the container's root, and ``..`` stops there, so a link
like ``/etc/x -> /../../host`` can never reach outside the container. A running
container is reached through its own mount; a stopped one gets its union mounted for
the copy (writes land in its upper dir, so ``diff`` and ``commit`` see them).

Docker's rules for SRC and DEST: a file onto a missing DEST makes that file, into an
existing directory it keeps its name; a directory onto a missing DEST makes DEST a
copy, into an existing directory it becomes a subdirectory, and ``SRC/.`` copies the
contents only. ``-`` is a tar stream on stdin or stdout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from cli import containers
from cli.errors import UserError
from cli.rootpath import resolve_in_root

@dataclass(frozen=True)
class Endpoint:
    container: str | None    # None: a host path (or "-")
    path: str


def parse_endpoint(text: str) -> Endpoint:
    """``NAME:PATH`` is in a container; anything with a slash before the colon, or no
    colon, is a host path (so ``./a:b`` copies a host file named ``a:b``)."""
    name, sep, path = text.partition(":")
    if sep and name and "/" not in name:
        if not path:
            raise UserError(f"destination \"{text}\" must be a path in the container")
        return Endpoint(name, path)
    return Endpoint(None, text)


@contextlib.contextmanager
def container_root(store, container: containers.Container) -> Iterator[Path]:
    """The container's merged root, mounted for the copy if it is not running."""
    merged = container.dir / "merged"
    if containers.is_mounted(merged):
        yield merged
        containers.syncfs(merged)
        return
    if container.problem():
        raise UserError(f"container {container.short_id}: {container.problem()}")
    containers.mount_rootfs(container, store)
    try:
        yield merged
        containers.syncfs(merged)
    finally:
        containers.unmount(merged)


def copy(store, src: Endpoint, dst: Endpoint, *, follow_link: bool = False,
         archive: bool = False, stdin: BinaryIO | None = None,
         stdout: BinaryIO | None = None) -> int:
    """Copy SRC to DST (exactly one is in a container); returns the bytes copied."""
    if (src.container is None) == (dst.container is None):
        raise UserError("copying between containers is not supported" if src.container
                        else "must specify at least one container source")
    name = src.container or dst.container
    container = containers.lookup(store, name)
    with container_root(store, container) as root:
        if src.container:
            source = _resolve(root, src.path, follow_last=follow_link)
            _require_exists(source, f"{name}:{src.path}")
            if dst.path == "-":
                return _write_tar(source, _base_name(src.path, source), stdout)
            return _copy_path(source, src.path, Path(dst.path), dst.path, archive=True)
        target = _resolve(root, dst.path, follow_last=True)
        if src.path == "-":
            return _extract_tar(stdin, target, f"{name}:{dst.path}")
        source = Path(src.path)
        if follow_link:
            source = source.resolve()
        _require_exists(source, src.path)
        return _copy_path(source, src.path, target, dst.path, archive=archive)


def _resolve(root: Path, path: str, *, follow_last: bool) -> Path:
    try:
        return resolve_in_root(root, path, follow_last=follow_last)
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None


def _require_exists(path: Path, shown: str) -> None:
    if not os.path.lexists(path):
        raise UserError(f"Could not find the file {shown.split(':', 1)[-1]} in container "
                        f"{shown.split(':', 1)[0]}" if ":" in shown
                        else f"stat {shown}: no such file or directory")


def _base_name(written: str, resolved: Path) -> str:
    name = written.rstrip("/").rsplit("/", 1)[-1]
    return resolved.name if name in ("", ".", "..") else name


def _copy_path(source: Path, source_text: str, target: Path, target_text: str, *,
               archive: bool) -> int:
    contents_only = source_text.endswith("/.")
    source_is_dir = source.is_dir() and not source.is_symlink()
    if source_text.endswith("/") and not source_is_dir:
        raise UserError(f"{source_text}: not a directory")
    if target.is_dir():
        final = target if (source_is_dir and contents_only) \
            else target / _base_name(source_text, source)
    elif target_text.endswith("/"):
        if os.path.lexists(target):
            raise UserError(f"{target_text}: not a directory")
        if not source_is_dir:
            raise UserError(f"no such directory: {target_text}")
        final = target
    else:
        if not target.parent.is_dir():
            raise UserError(f"no such directory: {os.path.dirname(target_text) or '/'}")
        if source_is_dir and os.path.lexists(target):
            raise UserError(f"cannot copy a directory to a non-directory: {target_text}")
        final = target
    try:
        if source_is_dir:
            return _copy_tree(source, final, keep_owner=archive)
        return _copy_one(source, final, keep_owner=archive)
    except OSError as exc:
        raise UserError(f"copying {source_text}: {exc.strerror or exc}") from None


def _copy_one(source: Path, target: Path, *, keep_owner: bool) -> int:
    st = os.lstat(source)
    if os.path.lexists(target) and (os.path.isdir(target) and not os.path.islink(target)):
        raise UserError(f"cannot overwrite directory {target} with a non-directory")
    if os.path.lexists(target):
        os.unlink(target)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(st.st_mode):
        shutil.copy2(source, target, follow_symlinks=False)
    else:
        os.mknod(target, st.st_mode, st.st_rdev)
        shutil.copystat(source, target, follow_symlinks=False)
    if keep_owner:
        os.lchown(target, st.st_uid, st.st_gid)
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _copy_tree(source: Path, target: Path, *, keep_owner: bool) -> int:
    total = 0
    if not target.exists():
        target.mkdir()
    for dirpath, dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        for name in dirnames:
            src_dir, dst_dir = Path(dirpath, name), target / rel / name
            if src_dir.is_symlink():
                total += _copy_one(src_dir, dst_dir, keep_owner=keep_owner)
            elif not dst_dir.is_dir():
                dst_dir.mkdir()
        for name in filenames:
            total += _copy_one(Path(dirpath, name), target / rel / name, keep_owner=keep_owner)
    # Directory metadata last: writing into a directory changes its mtime.
    for dirpath, dirnames, _ in os.walk(source, topdown=False):
        rel = Path(dirpath).relative_to(source)
        for name in dirnames + ([""] if rel == Path(".") else []):
            src_dir, dst_dir = Path(dirpath, name), target / rel / name
            if src_dir.is_symlink():
                continue
            shutil.copystat(src_dir, dst_dir)
            if keep_owner:
                st = os.stat(src_dir)
                os.chown(dst_dir, st.st_uid, st.st_gid)
    return total


def _write_tar(source: Path, name: str, out: BinaryIO | None) -> int:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source, arcname=name, recursive=True)
    return 0


def _extract_tar(stream: BinaryIO | None, target: Path, shown: str) -> int:
    if not target.is_dir():
        raise UserError(f"destination {shown} must be a directory when copying from stdin")
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            # The "tar" filter refuses members that would land outside TARGET,
            # also through symlinks the archive itself creates.
            tar.extractall(target, filter="tar")
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"extracting the archive into {shown}: {exc}") from None
    return 0

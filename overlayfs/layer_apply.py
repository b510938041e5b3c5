"""Applying a tar to a directory, safely and all-or-nothing.

``unpack_layer`` turns an OCI layer tar into a layer directory in the overlay form
(``.wh.NAME`` → 0:0 character device, ``.wh..wh..opq`` → opaque xattr);
``extract_tar`` unpacks a plain tar into an existing directory (Dockerfile ADD).

Safety: every member is created relative to an open directory fd, one path component
at a time with ``O_NOFOLLOW``, so nothing is ever written through a symlink, however
the tar arranges its entries. Refused, with ``LayerError`` naming the member:
absolute names, ``..`` that leaves the root, a member whose path goes through a
symlink, a symlink whose relative target climbs out of the root, a hard link to
anything but an earlier member, a whiteout of a whiteout, device nodes when not root,
unknown member types, and corrupt or truncated archives.

All-or-nothing: the work happens in a fresh sibling directory (same file system),
which is synced and renamed into place only when the whole archive applied; on any
error it is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import secrets
import shutil
import stat
import tarfile
from typing import BinaryIO

from overlayfs import whiteout as wh
from overlayfs.layer_tar import (READ_ERRORS, XATTR_PAX_PREFIX, LayerError,
                                 open_decompressed)

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_IMPLICIT_DIR_MODE = 0o755
_REG_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


class _Refused(Exception):
    """A member the archive must not contain; becomes LayerError with the member name."""


def member_parts(name: str) -> list[str]:
    """A member name as path components inside the root; refuses escapes.

    ``./`` prefixes and inner ``.`` are dropped; ``..`` is resolved lexically and may
    not climb above the root. Absolute names are refused: layers hold relative paths.
    """
    if name.startswith("/"):
        raise _Refused("absolute path")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _Refused("path leaves the root")
            parts.pop()
        else:
            parts.append(part)
    return parts


def _check_symlink_target(parts: list[str], target: str) -> None:
    """Relative symlink targets must stay inside the root, followed from the link's dir.

    Absolute targets are fine: inside the container they resolve against its root.
    """
    if target.startswith("/"):
        return
    depth = len(parts) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise _Refused(f"symlink target {target!r} leaves the root")
        elif part not in ("", "."):
            depth += 1


def _syncfs(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syncfs(fd) != 0:
        os.sync()


class _Applier:
    """Creates members below ROOT_FD. Keeps the current parent's fd chain open, which
    makes a tar in walk order cost one ``openat`` per new directory."""

    def __init__(self, root_fd: int, *, whiteouts: bool) -> None:
        self._root_fd = root_fd
        self._whiteouts = wh.WhiteoutWriter() if whiteouts else None
        self._is_root = os.geteuid() == 0
        self._chain: list[tuple[str, int]] = []   # open directories below the root
        self._members: set[tuple[str, ...]] = set()  # non-directories written so far
        self._whiteouts_made: set[tuple[str, ...]] = set()  # paths deleted by this layer
        self.dir_meta: dict[tuple[str, ...], tarfile.TarInfo] = {}

    def close(self) -> None:
        self._truncate(0)

    def _truncate(self, depth: int) -> None:
        while len(self._chain) > depth:
            os.close(self._chain.pop()[1])

    def _parent_fd(self, parents: list[str]) -> int:
        """The fd of directory PARENTS, creating missing ones, never following symlinks."""
        chain = self._chain
        common = 0
        while common < len(chain) and common < len(parents) \
                and chain[common][0] == parents[common]:
            common += 1
        self._truncate(common)
        fd = chain[-1][1] if chain else self._root_fd
        for index in range(common, len(parents)):
            part = parents[index]
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                # A parent the archive never listed, made as Docker makes it.
                os.mkdir(part, _IMPLICIT_DIR_MODE, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.fchmod(child, _IMPLICIT_DIR_MODE)  # whatever the umask says
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a non-directory"
                    raise _Refused(f"path goes through {what}: "
                                   f"{'/'.join(parents[:index + 1])}") from None
                raise
            chain.append((part, child))
            fd = child
        return fd

    def _open_existing_dir(self, parents: list[str]) -> int:
        """A new fd for an existing directory (no creation, no symlinks)."""
        fd = os.dup(self._root_fd)
        try:
            for part in parents:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError:
            os.close(fd)
            raise
        return fd

    # --- one member -----------------------------------------------------------------
    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = member_parts(member.name)
        if not parts:
            if member.isdir():
                self.dir_meta[()] = member
            return
        base = parts[-1]
        if self._whiteouts is not None and base.startswith(wh.WHITEOUT_PREFIX):
            self._apply_whiteout(parts, member)
            return
        parent_fd = self._parent_fd(parts[:-1])
        try:
            existing = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        key = tuple(parts)
        replaced_whiteout = False
        if existing is None and key in self._whiteouts_made:
            # Deleted, then recreated by this layer: with a ".wh.NAME" file for the
            # whiteout (no mknod here) the file must go, or it would hide the new entry.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(wh.whiteout_file_name(base), dir_fd=parent_fd)
            replaced_whiteout = True
        if existing is not None:
            if member.isdir() and stat.S_ISDIR(existing.st_mode):
                self._set_owner_at(parent_fd, base, member)
                self._set_xattrs_at(parent_fd, base, member)
                self.dir_meta[key] = member
                return
            replaced_whiteout = wh.is_whiteout_stat(existing)
            if stat.S_ISDIR(existing.st_mode):
                shutil.rmtree(base, dir_fd=parent_fd)
                self._forget_below(key)
            else:
                os.unlink(base, dir_fd=parent_fd)
                self._members.discard(key)
        self._create(tar, member, parts, parent_fd, base, replaced_whiteout)

    def _forget_below(self, prefix: tuple[str, ...]) -> None:
        n = len(prefix)
        self._members = {p for p in self._members if p[:n] != prefix}
        for key in [k for k in self.dir_meta if k[:n] == prefix]:
            del self.dir_meta[key]

    def _apply_whiteout(self, parts: list[str], member: tarfile.TarInfo) -> None:
        base = parts[-1]
        parent_fd = self._parent_fd(parts[:-1])
        if base == wh.OPAQUE_MARKER_NAME:
            # Hides what LOWER layers have here; this layer's entries stay.
            self._whiteouts.mark_opaque_fd(parent_fd)
            return
        target = wh.whiteout_target(base)
        if target is None or target in (".", ".."):
            raise _Refused("whiteout of a whiteout" if base.startswith(wh.RESERVED_PREFIX)
                           else "malformed whiteout")
        try:
            existing = os.stat(target, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            self._whiteouts.make_whiteout(parent_fd, target)
            self._whiteouts_made.add(tuple(parts[:-1]) + (target,))
            # Owner and time from the member, so that a re-export gives the same bytes.
            made = target if _exists_at(parent_fd, target) else wh.whiteout_file_name(target)
            self._set_owner_at(parent_fd, made, member)
            os.utime(made, ns=_times(member), dir_fd=parent_fd, follow_symlinks=False)
            return
        if stat.S_ISDIR(existing.st_mode):
            # NAME was (re)created in this same layer: keep it, hide the lower one.
            self._whiteouts.mark_opaque_at(parent_fd, target)
        # A same-layer non-directory already hides every lower entry of that name.

    def _create(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str],
                parent_fd: int, base: str, replaced_whiteout: bool) -> None:
        kind = member.type
        key = tuple(parts)
        if kind == tarfile.DIRTYPE:
            os.mkdir(base, 0o700, dir_fd=parent_fd)
            if replaced_whiteout and self._whiteouts is not None:
                self._whiteouts.mark_opaque_at(parent_fd, base)
            self._set_owner_at(parent_fd, base, member)
            self._set_xattrs_at(parent_fd, base, member)
            self.dir_meta[key] = member
            return
        if kind in _REG_TYPES or kind == tarfile.GNUTYPE_SPARSE:
            self._write_file(tar, member, parent_fd, base)
        elif kind == tarfile.SYMTYPE:
            _check_symlink_target(parts, member.linkname)
            os.symlink(member.linkname, base, dir_fd=parent_fd)
            self._set_owner_at(parent_fd, base, member)
            self._set_xattrs_at(parent_fd, base, member)
            os.utime(base, ns=_times(member), dir_fd=parent_fd, follow_symlinks=False)
        elif kind == tarfile.LNKTYPE:
            self._hard_link(member, parent_fd, base)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
            self._special(member, parent_fd, base)
        else:
            raise _Refused(f"unsupported member type {kind!r}")
        self._members.add(key)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent_fd: int,
                    base: str) -> None:
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent_fd)
        try:
            source = tar.extractfile(member)
            if source is not None:
                while True:
                    data = source.read(_CHUNK)
                    if not data:
                        break
                    _write_all(fd, data)
            if self._is_root:
                os.fchown(fd, member.uid, member.gid)
            for name, value in _xattrs_of(member):
                _set_xattr(fd, name, value)
            os.fchmod(fd, member.mode & 0o7777)
            os.utime(fd, ns=_times(member))
        finally:
            os.close(fd)

    def _hard_link(self, member: tarfile.TarInfo, parent_fd: int, base: str) -> None:
        target = tuple(member_parts(member.linkname))
        if target not in self._members:
            raise _Refused(f"hard link to {member.linkname!r}, which is not an earlier member")
        source_fd = self._open_existing_dir(list(target[:-1]))
        try:
            os.link(target[-1], base, src_dir_fd=source_fd, dst_dir_fd=parent_fd,
                    follow_symlinks=False)
        finally:
            os.close(source_fd)

    def _special(self, member: tarfile.TarInfo, parent_fd: int, base: str) -> None:
        mode = member.mode & 0o7777
        if member.type == tarfile.FIFOTYPE:
            os.mkfifo(base, 0o600, dir_fd=parent_fd)
        else:
            if not self._is_root:
                raise _Refused("device nodes need root")
            kind = stat.S_IFCHR if member.type == tarfile.CHRTYPE else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=parent_fd)
        self._set_owner_at(parent_fd, base, member)
        self._set_xattrs_at(parent_fd, base, member)
        os.chmod(base, mode, dir_fd=parent_fd)
        os.utime(base, ns=_times(member), dir_fd=parent_fd, follow_symlinks=False)

    def _set_owner_at(self, parent_fd: int, base: str, member: tarfile.TarInfo) -> None:
        if self._is_root:
            os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)

    def _set_xattrs_at(self, parent_fd: int, base: str, member: tarfile.TarInfo) -> None:
        values = _xattrs_of(member)
        if not values:
            return
        path = f"/proc/self/fd/{parent_fd}/{base}"
        for name, value in values:
            _set_xattr(path, name, value)

    # --- directories last ----------------------------------------------------------
    def finish_dirs(self, *, skip_missing: bool = False) -> None:
        """Directory modes and mtimes, deepest first, once nothing more is written."""
        self._truncate(0)
        for key in sorted(self.dir_meta, key=len, reverse=True):
            member = self.dir_meta[key]
            try:
                fd = self._open_existing_dir(list(key))
            except OSError as exc:
                if skip_missing and exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    continue
                raise
            try:
                if self._is_root and not key:
                    os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, member.mode & 0o7777)
                os.utime(fd, ns=_times(member))
            finally:
                os.close(fd)


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(round(member.mtime * 1_000_000_000))
    return mtime, mtime


def _xattrs_of(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """The member's PAX xattrs, minus overlay bookkeeping a tar must not smuggle in."""
    result = []
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PAX_PREFIX):
            name = key[len(XATTR_PAX_PREFIX):]
            if not wh.is_private_xattr(name):
                result.append((name, value.encode("utf-8", "surrogateescape")))
    return result


def _set_xattr(target, name: str, value: bytes) -> None:
    try:
        if isinstance(target, int):
            os.setxattr(target, name, value)
        else:
            os.setxattr(target, name, value, follow_symlinks=False)
    except OSError as exc:
        # trusted.* without CAP_SYS_ADMIN, user.* on symlinks, file systems without xattrs.
        if exc.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        log.debug("xattr %s not set: %s", name, exc)


def _run(stream: BinaryIO, root_fd: int, *, whiteouts: bool) -> _Applier:
    applier = _Applier(root_fd, whiteouts=whiteouts)
    member_name = "(archive header)"
    try:
        source = open_decompressed(stream)
        try:
            tar = tarfile.open(fileobj=source, mode="r|",
                               encoding="utf-8", errors="surrogateescape")
        except tarfile.ReadError as exc:
            if str(exc) != "empty file":
                raise
            return applier  # no bytes at all: an empty layer, as Docker takes it
        while True:
            member = tar.next()
            if member is None:
                break
            tar.members.clear()  # stream mode keeps every header otherwise
            member_name = member.name
            applier.apply(tar, member)
        member_name = "(end of archive)"
        # Read to the very end so a compressed stream's trailer (gzip CRC, zstd
        # frame end) is checked even when the tar's end blocks came earlier.
        while source.read(_CHUNK):
            pass
        applier.finish_dirs()
    except _Refused as exc:
        raise LayerError(f"refusing member {member_name!r}: {exc}") from None
    except READ_ERRORS as exc:
        raise LayerError(f"corrupt or truncated archive at {member_name!r}: {exc}") from None
    except OSError as exc:
        raise LayerError(f"cannot apply {member_name!r}: {exc}") from None
    except (ValueError, OverflowError) as exc:  # absurd numbers in a header
        raise LayerError(f"bad member {member_name!r}: {exc}") from None
    finally:
        applier.close()
    return applier


def _partial_name(dest: str) -> str:
    return f"{dest}.partial-{secrets.token_hex(6)}"


def unpack_layer(stream: BinaryIO, dest: str | os.PathLike) -> None:
    """Apply a layer tar (any compression) into DEST, which must be new or empty."""
    dest = os.path.abspath(os.fspath(dest))
    if os.path.lexists(dest) and (not os.path.isdir(dest) or os.path.islink(dest)
                                  or os.listdir(dest)):
        raise LayerError(f"cannot unpack into {dest}: it exists and is not an empty directory")
    partial = _partial_name(dest)
    try:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.mkdir(partial, 0o755)
    except OSError as exc:
        raise LayerError(f"cannot unpack into {dest}: {exc}") from None
    try:
        os.chmod(partial, 0o755)  # the root's mode when the archive has no "./" entry
        root_fd = os.open(partial, _DIR_FLAGS)
        try:
            _run(stream, root_fd, whiteouts=True)
            _syncfs(root_fd)
        finally:
            os.close(root_fd)
        try:
            os.rename(partial, dest)  # replaces an empty directory atomically
        except OSError as exc:
            raise LayerError(f"cannot move the unpacked layer to {dest}: {exc}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _fsync_dir(os.path.dirname(dest))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def extract_tar(stream: BinaryIO, dest: str | os.PathLike) -> None:
    """Unpack a tar (any compression) into the existing directory DEST.

    No whiteout meaning. The archive is first unpacked into a hidden directory inside
    DEST, so a refused or corrupt archive changes nothing; then its entries move in:
    directories merge with existing directories, anything else replaces what is there.
    """
    dest = os.fspath(dest)
    if not os.path.isdir(dest):
        raise LayerError(f"cannot extract into {dest}: not a directory")
    staging = os.path.join(dest, f".layerbox-extract-{secrets.token_hex(6)}")
    try:
        os.mkdir(staging, 0o700)
    except OSError as exc:
        raise LayerError(f"cannot extract into {dest}: {exc}") from None
    try:
        staging_fd = os.open(staging, _DIR_FLAGS)
        dest_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            applier = _run(stream, staging_fd, whiteouts=False)
            try:
                _merge(staging_fd, dest_fd, dest_fd, [], skip=os.path.basename(staging))
                _restore_dir_meta(dest_fd, applier)
            except OSError as exc:
                raise LayerError(f"cannot move extracted files into {dest}: {exc}") from None
        finally:
            os.close(staging_fd)
            os.close(dest_fd)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge(src_fd: int, dst_fd: int, dest_fd: int, parts: list[str],
           skip: str | None = None) -> None:
    """Move the entries of SRC_FD into DST_FD (directory PARTS below DEST_FD)."""
    for name in sorted(os.listdir(src_fd)):
        if name == skip:
            continue
        src = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        try:
            dst = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
        except FileNotFoundError:
            dst = None
        into = None
        if dst is not None and stat.S_ISDIR(src.st_mode):
            if stat.S_ISDIR(dst.st_mode):
                into = os.open(name, _DIR_FLAGS, dir_fd=dst_fd)
            elif stat.S_ISLNK(dst.st_mode):
                into = _open_link_dir(dest_fd, parts, os.readlink(name, dir_fd=dst_fd))
        if into is not None:
            child_src = os.open(name, _DIR_FLAGS, dir_fd=src_fd)
            try:
                _merge(child_src, into, dest_fd, parts + [name])
            finally:
                os.close(child_src)
                os.close(into)
            continue
        if dst is not None:
            if stat.S_ISDIR(dst.st_mode):
                shutil.rmtree(name, dir_fd=dst_fd)
            else:
                os.unlink(name, dir_fd=dst_fd)
        os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def _open_link_dir(dest_fd: int, parts: list[str], target: str) -> int | None:
    """Where a directory from the archive lands when DEST already has a symlink there.

    Docker's ADD follows it (think ``bin -> usr/bin``). We follow a relative target
    that stays inside DEST and goes through no further symlink; anything else is
    replaced by the archive's directory, never followed out of DEST.
    """
    if target.startswith("/"):
        return None
    resolved = list(parts)
    for part in target.split("/"):
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
        elif part not in ("", "."):
            resolved.append(part)
    fd = os.dup(dest_fd)
    try:
        for part in resolved:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        return None
    return fd


def _restore_dir_meta(dest_fd: int, applier: _Applier) -> None:
    """The archive's directory modes and times, now that moving entries is done."""
    moved = _Applier(dest_fd, whiteouts=False)
    moved.dir_meta = {key: member for key, member in applier.dir_meta.items() if key}
    moved.finish_dirs(skip_missing=True)  # a directory merged through a symlink

"""OCI layer tars: an upper dir out as a layer, a layer in as a directory.

Export (``export_layer``) writes an uncompressed tar in the OCI form (image-spec
``layer.md``, project spec ``diff-commit.md`` section 3): members relative to the
root, in walk order (each directory's entries sorted by member name, a directory
before its contents), whiteouts as ``.wh.NAME``, an opaque
directory as ``D/`` then ``D/.wh..wh..opq`` then its contents, hard links as tar links
to their first name, xattrs as PAX ``SCHILY.xattr.*`` minus the overlay-private ones.
The bytes depend only on the directory's contents (whole-second mtimes, no user or
group names, no times of the export itself), so the same upper gives the same diff_id.
Headers come from ``tarfile.TarInfo.tobuf`` and are written straight to the stream:
nothing of the layer is kept in memory.

Apply (``unpack_layer``, ``extract_tar``) lives in :mod:`overlayfs.layer_apply`;
this module is the public face of both.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import logging
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import zstandard
from isal import isal_zlib

from overlayfs import changes as lower_view
from overlayfs import whiteout as wh

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BLOCK = 512
_CHUNK = 1 << 20
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # undecodable file names round-trip as raw bytes
XATTR_PAX_PREFIX = "SCHILY.xattr."


class LayerError(Exception):
    """A layer cannot be written or applied; the message is one line naming the cause."""


# --- decompression -------------------------------------------------------------------

class _Prefixed(io.RawIOBase):
    """A read stream that first returns bytes already read from it (the magic)."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


class _ZstdReader(io.RawIOBase):
    """zstd frames one after another; unlike ``stream_reader`` it notices a stream
    that stops inside a frame (a truncated download) and raises EOFError."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = self._dctx.decompressobj()
        self._in_frame = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            data = self._raw.read(_CHUNK)
            if not data:
                if self._in_frame:
                    raise EOFError("zstd stream ended inside a frame")
                return 0
            self._pending = memoryview(self._feed(data))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            self._in_frame = True
            out.append(self._frame.decompress(data))
            if not self._frame.eof:
                break
            data = self._frame.unused_data
            self._frame = self._dctx.decompressobj()
            self._in_frame = False
        return b"".join(out)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    parts = []
    while size > 0:
        data = stream.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """STREAM decompressed according to its magic: gzip, zstd, bzip2, xz or plain."""
    magic = _read_exactly(stream, 6)
    raw = io.BufferedReader(_Prefixed(magic, stream), _CHUNK)
    if magic.startswith(b"\x1f\x8b"):
        # ISA-L inflates 2-3 x faster than zlib; its errors are in READ_ERRORS.
        from isal import igzip
        return igzip.IGzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return io.BufferedReader(_ZstdReader(raw), _CHUNK)
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, "rb")
    return raw


#: What a corrupt or truncated archive raises while it is read (isal_zlib.error is what
#: ISA-L's inflater raises where zlib's raises zlib.error).
READ_ERRORS = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, isal_zlib.error,
               lzma.LZMAError, zstandard.ZstdError)


# --- export ---------------------------------------------------------------------------

def _proc_path(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


def _xattrs(path: str | int) -> dict[str, bytes]:
    """All xattrs of PATH (not following a symlink) or of an open fd, private included."""
    follow = isinstance(path, int)  # an fd is the file itself
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    values = {}
    for name in sorted(names):
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return values


def _public_xattrs(values: dict[str, bytes]) -> dict[str, bytes]:
    return {name: value for name, value in values.items() if not wh.is_private_xattr(name)}


def _is_opaque(values: dict[str, bytes]) -> bool:
    return any(values.get(name) == b"y" for name in wh.OPAQUE_XATTRS)


# --- tar headers -----------------------------------------------------------------------
#
# Written by hand rather than by ``tarfile`` so that the bytes (and so the diff_id) do
# not change with the Python version: POSIX ustar headers, plus a PAX extended header
# (records sorted by key) only when a name, a number or an xattr needs one.

_USTAR_MAGIC = b"ustar\x0000"
_PAX_HEADER_NAME = b"././@PaxHeader"


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 8 ** (width - 1)


def _device_number(value: int) -> bytes:
    if _fits(value, 8):
        return _octal(value, 8)
    return b"\x80" + value.to_bytes(7, "big")  # GNU base-256; PAX has no field for it


def _ustar_text(value: bytes, width: int) -> bytes:
    return value[:width].ljust(width, b"\x00")


def _ustar_block(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                 kind: bytes, linkname: bytes, dev: int | None) -> bytes:
    if dev is None:
        devfields = b"\x00" * 16
    else:
        devfields = _device_number(os.major(dev)) + _device_number(os.minor(dev))
    block = b"".join((
        _ustar_text(name, 100), _octal(mode & 0o7777, 8), _octal(uid, 8), _octal(gid, 8),
        _octal(size, 12), _octal(mtime, 12), b" " * 8, kind, _ustar_text(linkname, 100),
        _USTAR_MAGIC, b"\x00" * 64, devfields, b"\x00" * 167))
    checksum = b"%06o\x00 " % sum(block)
    return block[:148] + checksum + block[156:]


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) + len(body) != length:
        length = len(body) + len(str(length))
    return b"%d" % length + body


def _ascii_or_none(text: bytes, width: int) -> bytes | None:
    return text if len(text) <= width and text.isascii() else None


def tar_header(name: str, mode: int, uid: int, gid: int, size: int, mtime: int,
               kind: bytes, linkname: str = "", dev: int | None = None,
               xattrs: dict[str, bytes] | None = None) -> bytes:
    """The header block(s) of one member; directories get their trailing "/"."""
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    raw_name = name.encode(_ENCODING, _ERRORS)
    raw_link = linkname.encode(_ENCODING, _ERRORS)
    records: dict[bytes, bytes] = {}
    ustar_name = _ascii_or_none(raw_name, 100)
    if ustar_name is None:
        records[b"path"] = raw_name
        ustar_name = raw_name.decode("ascii", "replace").encode("ascii", "replace")
    ustar_link = _ascii_or_none(raw_link, 100)
    if ustar_link is None:
        records[b"linkpath"] = raw_link
        ustar_link = raw_link.decode("ascii", "replace").encode("ascii", "replace")
    numbers = {}
    for key, value, width in ((b"uid", uid, 8), (b"gid", gid, 8), (b"size", size, 12),
                              (b"mtime", mtime, 12)):
        if _fits(value, width):
            numbers[key] = value
        else:
            records[key] = b"%d" % value
            numbers[key] = 0
    for attr, value in (xattrs or {}).items():
        records[(XATTR_PAX_PREFIX + attr).encode(_ENCODING, _ERRORS)] = value
    header = b""
    if records:
        data = b"".join(_pax_record(key, records[key]) for key in sorted(records))
        header = _ustar_block(_PAX_HEADER_NAME, 0o644, 0, 0, len(data), 0,
                              tarfile.XHDTYPE, b"", None)
        header += data + b"\x00" * (-len(data) % _BLOCK)
    return header + _ustar_block(ustar_name, mode, numbers[b"uid"], numbers[b"gid"],
                                 numbers[b"size"], numbers[b"mtime"], kind, ustar_link, dev)


class _Exporter:
    """Writes members for one export; remembers hard links by (st_dev, st_ino)."""

    def __init__(self, out: BinaryIO, root_lower_fds: list[int] | None,
                 exclude: set[str]) -> None:
        self._out = out
        self._root_lower_fds = root_lower_fds  # None: no lowers given
        self._exclude = exclude
        self._links: dict[tuple[int, int], str] = {}

    # header writing
    def _header(self, name: str, st: os.stat_result, kind: bytes, *,
                mode: int | None = None, size: int = 0, linkname: str = "",
                xattrs: dict[str, bytes] | None = None) -> None:
        dev = st.st_rdev if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE) else None
        self._out.write(tar_header(
            name, stat.S_IMODE(st.st_mode) if mode is None else mode, st.st_uid, st.st_gid,
            size, st.st_mtime_ns // 1_000_000_000, kind, linkname, dev, xattrs or {}))

    def _whiteout(self, member: str, st: os.stat_result) -> None:
        self._header(member, st, tarfile.REGTYPE, mode=0o600)

    def _file(self, dir_fd: int, name: str, member: str, st: os.stat_result) -> None:
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                self._header(member, st, tarfile.LNKTYPE, linkname=first)
                return
            self._links[key] = member
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            xattrs = _public_xattrs(_xattrs(fd))
            size = st.st_size
            self._header(member, st, tarfile.REGTYPE, size=size, xattrs=xattrs)
            remaining = size
            while remaining:
                data = os.read(fd, min(_CHUNK, remaining))
                if not data:
                    raise LayerError(f"{member}: file shrank while it was exported")
                self._out.write(data)
                remaining -= len(data)
        finally:
            os.close(fd)
        if size % _BLOCK:
            self._out.write(b"\0" * (_BLOCK - size % _BLOCK))

    def _other(self, dir_fd: int, name: str, member: str, st: os.stat_result) -> None:
        """Symlinks, devices, FIFOs (sockets cannot go into a tar and are skipped)."""
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            log.debug("skipping socket %s", member)
            return
        if not stat.S_ISLNK(mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                self._header(member, st, tarfile.LNKTYPE, linkname=first)
                return
            self._links[key] = member
        xattrs = _public_xattrs(_xattrs(_proc_path(dir_fd, name)))
        if stat.S_ISLNK(mode):
            self._header(member, st, tarfile.SYMTYPE, xattrs=xattrs,
                         linkname=os.readlink(name, dir_fd=dir_fd))
        elif stat.S_ISCHR(mode):
            self._header(member, st, tarfile.CHRTYPE, xattrs=xattrs)
        elif stat.S_ISBLK(mode):
            self._header(member, st, tarfile.BLKTYPE, xattrs=xattrs)
        elif stat.S_ISFIFO(mode):
            self._header(member, st, tarfile.FIFOTYPE, xattrs=xattrs)

    # the walk
    def export_dir(self, fd: int, prefix: str, path: str, lower_fds: Sequence[int] | None
                   ) -> None:
        """Members for the contents of directory FD.

        PREFIX is the member-name prefix ("" or "a/b/"), PATH the absolute path
        ("" or "/a/b"). LOWER_FDS, when not None, are lower copies whose visible
        entries are exported too (inside a redirected directory).
        """
        items: list[tuple[str, str, bool]] = []  # (member base name, name, in upper)
        upper_names = set()
        with os.scandir(fd) as it:
            for entry in it:
                name = entry.name
                if name.startswith(wh.RESERVED_PREFIX):
                    continue  # the opaque marker is written with its directory
                if name.startswith(wh.WHITEOUT_PREFIX) \
                        and not entry.is_file(follow_symlinks=False):
                    continue  # bookkeeping, e.g. fuse-overlayfs' ".wh..opq" 0:0 device
                upper_names.add(name)
                key = name
                if not (entry.is_dir(follow_symlinks=False) or entry.is_symlink()
                        or entry.is_file(follow_symlinks=False)) \
                        and wh.is_whiteout_stat(entry.stat(follow_symlinks=False)):
                    key = wh.whiteout_file_name(name)
                items.append((key, name, True))
        if lower_fds:
            for name in lower_view.merged_names(None, lower_fds):
                if name not in upper_names and wh.whiteout_file_name(name) not in upper_names:
                    items.append((name, name, False))
        items.sort()
        for _, name, in_upper in items:
            if in_upper:
                self._export_upper_entry(fd, prefix, path, name, lower_fds)
            else:
                self._export_lower_entry(prefix, path, name, lower_fds)

    def _excluded(self, path: str) -> bool:
        return path in self._exclude

    def _export_upper_entry(self, fd: int, prefix: str, path: str, name: str,
                            lower_fds: Sequence[int] | None) -> None:
        child_path = f"{path}/{wh.whiteout_target(name) or name}"
        if self._excluded(child_path):
            return
        member = prefix + name
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if wh.whiteout_target(name) is not None or wh.is_whiteout_stat(st):
            # Inside a redirected directory the merged view is complete: no whiteouts.
            if lower_fds is None:
                base = name if wh.whiteout_target(name) is not None \
                    else wh.whiteout_file_name(name)
                self._whiteout(prefix + base, st)
        elif stat.S_ISREG(st.st_mode):
            self._file(fd, name, member, st)
        elif stat.S_ISDIR(st.st_mode):
            child_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            try:
                self._export_upper_dir(child_fd, member, child_path, path, st, name,
                                       lower_fds)
            finally:
                os.close(child_fd)
        else:
            self._other(fd, name, member, st)

    def _export_upper_dir(self, fd: int, member: str, path: str, parent: str,
                          st: os.stat_result, name: str,
                          lower_fds: Sequence[int] | None) -> None:
        values = _xattrs(fd)
        self._header(member, st, tarfile.DIRTYPE, xattrs=_public_xattrs(values))
        origin = lower_view.redirect_path(fd, parent)
        opaque = _is_opaque(values) or _has_entry(fd, wh.OPAQUE_MARKER_NAME)
        child_lowers: list[int] | None = None
        if opaque:
            self._opaque_marker(member, st)
        elif origin is not None:
            # A kernel-overlay rename: the content lives at ORIGIN in the lowers. The
            # tar gets the whole merged directory, opaque, as a full copy would be.
            if self._root_lower_fds is None:
                raise LayerError(f"{path} is a renamed lower directory (overlay redirect): "
                                 "exporting it needs the lower layers")
            self._opaque_marker(member, st)
            _, child_lowers = lower_view.resolve_lower_path(self._root_lower_fds, origin)
        elif lower_fds is not None:  # below a redirect: keep merging the origin's copies
            _, child_lowers = lower_view.lookup_lower(lower_fds, name)
        try:
            self.export_dir(fd, member + "/", path, child_lowers)
        finally:
            if child_lowers:
                lower_view.close_all(child_lowers)

    def _opaque_marker(self, member: str, st: os.stat_result) -> None:
        self._header(f"{member}/{wh.OPAQUE_MARKER_NAME}", st, tarfile.REGTYPE,
                     mode=stat.S_IMODE(st.st_mode) & 0o666)

    def _export_lower_entry(self, prefix: str, path: str, name: str,
                            lower_fds: Sequence[int]) -> None:
        """An entry seen only through a redirect: the topmost lower copy, merged below."""
        child_path = f"{path}/{name}"
        if self._excluded(child_path):
            return
        member = prefix + name
        st, child_lowers = lower_view.lookup_lower(lower_fds, name)
        try:
            if st is None:
                return
            top_fd = next(fd for fd in lower_fds if _has_entry(fd, name))
            if stat.S_ISDIR(st.st_mode):
                values = _xattrs(child_lowers[0])
                self._header(member, st, tarfile.DIRTYPE, xattrs=_public_xattrs(values))
                self.export_dir_lower(member + "/", child_path, child_lowers)
            elif stat.S_ISREG(st.st_mode):
                self._file(top_fd, name, member, st)
            else:
                self._other(top_fd, name, member, st)
        finally:
            lower_view.close_all(child_lowers)

    def export_dir_lower(self, prefix: str, path: str, lower_fds: Sequence[int]) -> None:
        for name in lower_view.merged_names(None, lower_fds):
            self._export_lower_entry(prefix, path, name, lower_fds)


def _has_entry(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _normalize_exclude(paths: Iterable[str]) -> set[str]:
    result = set()
    for path in paths:
        parts = [p for p in str(path).split("/") if p and p != "."]
        if parts:
            result.add("/" + "/".join(parts))
    return result


def export_layer(upper: str | os.PathLike, out: BinaryIO, *,
                 lowers: Sequence[str | os.PathLike] = (),
                 exclude: Iterable[str] = ()) -> None:
    """Write UPPER as an uncompressed OCI layer tar to OUT (streaming).

    LOWERS (top first) are only needed when UPPER holds a kernel-overlay redirected
    directory, whose content partly lives in the lowers. EXCLUDE lists absolute paths
    ("/tmp") left out with everything below them.
    """
    lower_fds: list[int] = []
    try:
        for lower in lowers:
            lower_fds.append(os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        upper_fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            exporter = _Exporter(out, lower_fds if lowers else None,
                                 _normalize_exclude(exclude))
            exporter.export_dir(upper_fd, "", "", None)
        finally:
            os.close(upper_fd)
    except OSError as exc:
        raise LayerError(f"cannot export {os.fspath(upper)}: {exc}") from None
    finally:
        lower_view.close_all(lower_fds)
    out.write(b"\0" * (2 * _BLOCK))


def unpack_layer(stream: BinaryIO, dest: str | os.PathLike) -> None:
    """Apply a layer tar (plain/gzip/zstd/bzip2/xz) into the new or empty dir DEST,
    whiteouts in overlay form; all-or-nothing, LayerError on any refusal or damage."""
    from overlayfs import layer_apply  # imports this module: import it late
    layer_apply.unpack_layer(stream, dest)


def extract_tar(stream: BinaryIO, dest: str | os.PathLike) -> None:
    """Safe plain extraction into the existing dir DEST (Dockerfile ADD): no whiteouts."""
    from overlayfs import layer_apply
    layer_apply.extract_tar(stream, dest)

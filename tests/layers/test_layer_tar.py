"""Layer tars: export an upper dir, apply it back, refuse hostile archives."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
import zstandard

from overlayfs import whiteout
from overlayfs.layer_tar import LayerError, export_layer, extract_tar, unpack_layer
from tests.layers.treeutil import describe, is_opaque, member, tar_bytes

ROOT = os.geteuid() == 0


def _export(path, **kwargs) -> bytes:
    out = io.BytesIO()
    export_layer(path, out, **kwargs)
    return out.getvalue()


def _write(path: str, data: bytes = b"", mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


@pytest.fixture
def upper(tmp_path):
    """An upper dir with one of everything a layer carries."""
    root = tmp_path / "upper"
    root.mkdir()
    u = str(root)
    _write(f"{u}/etc/motd", b"hello\n")
    _write(f"{u}/bin/tool", b"\x7fELF" + bytes(range(256)) * 40, 0o4755)
    os.link(f"{u}/bin/tool", f"{u}/bin/tool-alias")
    os.symlink("../etc/motd", f"{u}/bin/motd-link")
    os.symlink("/abs/target", f"{u}/abs-link")
    os.mkfifo(f"{u}/fifo", 0o640)
    os.makedirs(f"{u}/srv/opaque")
    _write(f"{u}/srv/opaque/new", b"n\n")
    os.setxattr(f"{u}/etc/motd", "user.note", b"\x00\xffbinary")
    os.makedirs(f"{u}/ro-dir")
    _write(f"{u}/ro-dir/inside", b"x")
    os.chmod(f"{u}/ro-dir", 0o555)
    if ROOT:
        os.mknod(f"{u}/etc/gone", stat.S_IFCHR, os.makedev(0, 0))
        os.mknod(f"{u}/dev-null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.setxattr(f"{u}/srv/opaque", "trusted.overlay.opaque", b"y")
        os.chown(f"{u}/etc/motd", 1234, 5678)
        os.setxattr(f"{u}/etc/motd", "trusted.overlay.origin", b"private")
    else:
        _write(f"{u}/etc/.wh.gone")
        os.setxattr(f"{u}/srv/opaque", "user.overlay.opaque", b"y")
    gone = f"{u}/etc/gone" if ROOT else f"{u}/etc/.wh.gone"
    os.utime(gone, ns=(1_400_000_000_000_000_000,) * 2, follow_symlinks=False)
    os.utime(f"{u}/etc/motd", ns=(1_600_000_000_123_456_789,) * 2)
    os.utime(f"{u}/etc", ns=(1_500_000_000_000_000_000,) * 2)
    return u


def test_export_member_order_and_forms(upper):
    names = []
    with tarfile.open(fileobj=io.BytesIO(_export(upper))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:3] == ["abs-link", "bin", "bin/motd-link"]
    assert not any(n.startswith("/") or n.startswith("./") for n in names)
    # parents before children
    seen = set()
    for name in names:
        parent = os.path.dirname(name)
        assert parent == "" or parent in seen, name
        seen.add(name)
    by_name = {m.name: m for m in members}
    assert by_name["etc/.wh.gone"].isreg() and by_name["etc/.wh.gone"].size == 0
    assert names.index("srv/opaque") + 1 == names.index("srv/opaque/.wh..wh..opq")
    assert by_name["bin/tool-alias"].islnk() and by_name["bin/tool-alias"].linkname == "bin/tool"
    assert by_name["bin/motd-link"].linkname == "../etc/motd"
    assert by_name["etc/motd"].pax_headers["SCHILY.xattr.user.note"].encode(
        "utf-8", "surrogateescape") == b"\x00\xffbinary"
    assert not any("overlay" in key for m in members for key in m.pax_headers)
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert by_name["etc/motd"].mtime == 1_600_000_000
    assert by_name["fifo"].isfifo()


def test_export_is_reproducible(upper):
    first = hashlib.sha256(_export(upper)).hexdigest()
    assert hashlib.sha256(_export(upper)).hexdigest() == first


def test_round_trip_reproduces_the_upper(upper, tmp_path):
    data = _export(upper)
    dest = str(tmp_path / "layer")
    unpack_layer(io.BytesIO(data), dest)
    before = describe(upper)
    after = describe(dest)
    if not ROOT:  # the .wh. file became a whiteout in whichever form works here
        before.pop("etc/.wh.gone")
        after.pop("etc/.wh.gone", None)
        after.pop("etc/gone", None)
    else:
        assert before.pop("etc/motd")[7] != after["etc/motd"][7]  # private xattr dropped
        after.pop("etc/motd")
    assert after == before
    assert is_opaque(f"{dest}/srv/opaque")
    # and the unpacked layer exports to the very same bytes
    assert _export(dest) == data


@pytest.mark.parametrize("compress", [
    lambda b: b, gzip.compress, bz2.compress, lzma.compress,
    lambda b: zstandard.ZstdCompressor().compress(b)],
    ids=["plain", "gzip", "bzip2", "xz", "zstd"])
def test_unpack_detects_compression(upper, tmp_path, compress):
    data = _export(upper)
    dest = str(tmp_path / "layer")
    unpack_layer(io.BytesIO(compress(data)), dest)
    assert _export(dest) == data


def test_unpack_into_existing_empty_dir_and_refuses_nonempty(tmp_path):
    data = tar_bytes([(member("f"), b"1")])
    empty = tmp_path / "empty"
    empty.mkdir()
    unpack_layer(io.BytesIO(data), empty)
    assert (empty / "f").read_bytes() == b"1"
    with pytest.raises(LayerError, match="not an empty directory"):
        unpack_layer(io.BytesIO(data), empty)


def test_whiteouts_and_opaque_marker_keep_same_layer_entries(tmp_path):
    data = tar_bytes([
        (member("d", tarfile.DIRTYPE, mode=0o755), None),
        (member("d/.wh..wh..opq"), b""),
        (member("d/.wh.old"), b""),
        (member("d/kept"), b"k"),
        (member("./e/.wh.x"), b""),          # whiteout in a dir with no entry of its own
        (member("f/.wh.sub"), b""),         # whiteout, then the same name as a new dir
        (member("f/sub", tarfile.DIRTYPE, mode=0o755), None),
    ])
    dest = str(tmp_path / "layer")
    unpack_layer(io.BytesIO(data), dest)
    assert is_opaque(f"{dest}/d")
    assert open(f"{dest}/d/kept", "rb").read() == b"k"
    for path in (f"{dest}/d/old", f"{dest}/e/x"):
        if ROOT:
            assert stat.S_ISCHR(os.lstat(path).st_mode) and os.lstat(path).st_rdev == 0
        else:
            assert os.path.exists(os.path.join(os.path.dirname(path),
                                               ".wh." + os.path.basename(path)))
    assert is_opaque(f"{dest}/f/sub")  # replaces a deleted lower entry: hides it
    assert not os.path.lexists(f"{dest}/d/.wh..wh..opq")


def test_export_exclude(upper):
    with tarfile.open(fileobj=io.BytesIO(_export(upper, exclude=["/srv", "/bin/tool"]))) as t:
        names = t.getnames()
    assert not any(n == "srv" or n.startswith("srv/") for n in names)
    assert "bin/tool" not in names and "bin/tool-alias" in names


def _hostile_cases():
    link = member("l", tarfile.SYMTYPE, linkname="/etc")
    yield "dotdot", [(member("../x"), b"evil")], "leaves the root"
    yield "inner-dotdot", [(member("a/../../x"), b"evil")], "leaves the root"
    yield "absolute", [(member("/etc/x"), b"evil")], "absolute"
    yield "write-through-symlink", [(link, None), (member("l/x"), b"evil")], "symlink"
    yield "symlink-escape", [(member("a", tarfile.DIRTYPE), None),
                             (member("a/l", tarfile.SYMTYPE, linkname="../../etc"), None)], \
        "leaves the root"
    yield "hardlink-outside", [(member("h", tarfile.LNKTYPE, linkname="/etc/passwd"), None)], \
        "absolute"
    yield "hardlink-dotdot", [(member("h", tarfile.LNKTYPE, linkname="../etc/passwd"), None)], \
        "leaves the root"
    yield "hardlink-not-member", [(member("h", tarfile.LNKTYPE, linkname="etc/passwd"), None)], \
        "not an earlier member"
    yield "whiteout-of-whiteout", [(member("d/.wh..wh.x"), b"")], "whiteout of a whiteout"
    yield "bad-type", [(member("s", b"Z"), None)], None


@pytest.mark.parametrize("members,message", [c[1:] for c in _hostile_cases()],
                         ids=[c[0] for c in _hostile_cases()])
def test_hostile_tars_are_refused_whole(tmp_path, members, message):
    data = tar_bytes([(member("first"), b"ok")] + members)
    dest = tmp_path / "layer"
    with pytest.raises(LayerError) as info:
        unpack_layer(io.BytesIO(data), dest)
    if message:
        assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not dest.exists()
    assert os.listdir(tmp_path) == []  # no partial dir left behind
    # extract_tar refuses the same archives and leaves the target as it was
    # (whiteout names are plain files there, so that case extracts fine)
    target = tmp_path / "target"
    target.mkdir()
    (target / "old").write_text("old")
    if message == "whiteout of a whiteout":
        return
    with pytest.raises(LayerError):
        extract_tar(io.BytesIO(data), target)
    assert sorted(os.listdir(target)) == ["old"]


def _as_nobody(check) -> None:
    """Run CHECK(workdir) in a child process as an unprivileged user; it must pass."""
    shared = tempfile.mkdtemp(prefix="layers-nonroot-")  # tmp_path is root-only
    try:
        os.chmod(shared, 0o777)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                check(shared)
                code = 0
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        shutil.rmtree(shared)


def _refuses_devices(workdir: str) -> None:
    data = tar_bytes([(member("first"), b"ok"), (member("dev", tarfile.CHRTYPE), None)])
    with pytest.raises(LayerError, match="device nodes need root"):
        unpack_layer(io.BytesIO(data), os.path.join(workdir, "layer"))
    assert os.listdir(workdir) == []


def _whiteout_files_without_mknod(workdir: str) -> None:
    data = tar_bytes([
        (member("d", tarfile.DIRTYPE, mode=0o755), None),
        (member("d/.wh..wh..opq"), b""),
        (member("d/.wh.old"), b""),
        (member("f/.wh.sub"), b""),
        (member("f/sub", tarfile.DIRTYPE, mode=0o755), None),
        (member("f/sub/x"), b"x"),
    ])
    dest = os.path.join(workdir, "layer")
    unpack_layer(io.BytesIO(data), dest)
    # Linux allows unprivileged 0:0 whiteout devices; older kernels get ".wh.old" files
    fd = os.open(f"{dest}/d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert whiteout.is_whiteout_at(fd, "old")
    finally:
        os.close(fd)
    assert os.getxattr(f"{dest}/d", "user.overlay.opaque") == b"y"
    assert not os.path.lexists(f"{dest}/f/.wh.sub")  # the new dir replaces the whiteout
    assert os.getxattr(f"{dest}/f/sub", "user.overlay.opaque") == b"y"
    assert os.listdir(f"{dest}/f/sub") == ["x"]


@pytest.mark.parametrize("check", [_refuses_devices, _whiteout_files_without_mknod])
def test_unprivileged_unpack(check):
    if ROOT:
        _as_nobody(check)
    else:
        work = tempfile.mkdtemp()
        try:
            check(work)
        finally:
            shutil.rmtree(work)


def test_corrupt_and_truncated_archives(tmp_path, upper):
    data = _export(upper)
    gz = bytearray(gzip.compress(data))
    gz[-8] ^= 0xFF  # CRC
    cases = {
        "gzip-crc": bytes(gz),
        "gzip-truncated": gzip.compress(data)[: len(gz) // 2],
        "tar-truncated": data[:3000],
        "zstd-truncated": zstandard.ZstdCompressor().compress(data)[:-40],
        "garbage": b"this is not a tar archive at all" * 40,
    }
    for name, blob in cases.items():
        dest = tmp_path / f"layer-{name}"
        with pytest.raises(LayerError):
            unpack_layer(io.BytesIO(blob), dest)
        assert not dest.exists(), name
    assert sorted(os.listdir(tmp_path)) == ["upper"]


def test_extract_tar_merges_into_existing_dir(tmp_path):
    target = tmp_path / "root"
    (target / "etc").mkdir(parents=True)
    (target / "etc" / "keep").write_text("keep")
    (target / "etc" / "replace").write_text("old")
    data = tar_bytes([
        (member("etc", tarfile.DIRTYPE, mode=0o750), None),
        (member("etc/replace"), b"new"),
        (member("etc/.wh.notawhiteout"), b"plain"),
        (member("new/deep/file"), b"d"),
        (member("new/link", tarfile.LNKTYPE, linkname="new/deep/file"), None),
    ])
    extract_tar(io.BytesIO(gzip.compress(data)), target)
    assert (target / "etc" / "keep").read_text() == "keep"
    assert (target / "etc" / "replace").read_text() == "new"
    assert (target / "etc" / ".wh.notawhiteout").read_text() == "plain"
    assert stat.S_IMODE(os.stat(target / "etc").st_mode) == 0o750
    assert os.stat(target / "etc").st_mtime == 1_700_000_000
    assert os.stat(target / "new/link").st_ino == os.stat(target / "new/deep/file").st_ino
    assert sorted(os.listdir(target)) == ["etc", "new"]


def test_deep_paths(tmp_path):
    """Paths far beyond PATH_MAX work both ways (everything is relative to dir fds)."""
    upper = tmp_path / "u"
    upper.mkdir()
    fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY)
    name = "d" * 200
    for _ in range(30):  # 6,000+ bytes of path
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    os.close(fd)
    data = _export(upper)
    dest = tmp_path / "layer"
    unpack_layer(io.BytesIO(data), dest)
    assert _export(dest) == data


def test_extract_tar_follows_relative_dir_symlinks_inside_dest(tmp_path):
    """Like Docker's ADD on a usrmerged image: bin/x lands in usr/bin/x."""
    target = tmp_path / "root"
    (target / "usr/bin").mkdir(parents=True)
    os.symlink("usr/bin", target / "bin")
    os.symlink("/etc", target / "abs")
    data = tar_bytes([(member("bin", tarfile.DIRTYPE, mode=0o755), None),
                      (member("bin/x"), b"x"),
                      (member("abs/y"), b"y")])
    extract_tar(io.BytesIO(data), target)
    assert (target / "usr/bin/x").read_bytes() == b"x"
    assert os.readlink(target / "bin") == "usr/bin"
    # an absolute link is not followed out of the target: the archive's dir replaces it
    assert not os.path.islink(target / "abs") and (target / "abs/y").read_bytes() == b"y"
    assert not os.path.exists("/etc/y")


def test_gnu_tar_reads_the_export(upper, tmp_path):
    """Our hand-written headers are plain POSIX: GNU tar lists and extracts them."""
    path = tmp_path / "layer.tar"
    path.write_bytes(_export(upper))
    listing = subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-tf", str(path)],
                             capture_output=True, text=True, check=True)
    with tarfile.open(path) as tar:
        expected = [m.name + ("/" if m.isdir() else "") for m in tar.getmembers()]
    assert listing.stdout.splitlines() == expected
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=user.*", "-C", str(out), "-xf",
                    str(path)], check=True, capture_output=True)
    assert (out / "bin/tool").read_bytes() == (Path(upper) / "bin/tool").read_bytes()
    assert os.getxattr(out / "etc/motd", "user.note") == b"\x00\xffbinary"
    assert os.stat(out / "etc/motd").st_mtime == 1_600_000_000

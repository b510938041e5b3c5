"""The pure model, without FUSE or the kernel: overlayfs.model.Union over real layer
directories, called as the adapter calls it; we look at what lands in the upper dir."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import stat

import pytest

from overlayfs import whiteout as wh
from overlayfs.config import MountConfig
from overlayfs.model import Union
from overlayfs.nodes import ROOT_INODE
from tests.support.fusemount import wait_for
from tests.support.overlay import Dir, File, HardLink, Symlink, Whiteout, build_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and chown need root")

TOP = {"etc/motd": File(b"hello", mode=0o640, uid=7, gid=8, xattrs={"user.k": b"v"}),
       "gone": Whiteout(), "opaque": Dir(opaque="trusted"), "opaque/new": File(b"n"),
       "link": Symlink("etc/motd")}
BOTTOM = {"gone": File(b"old"), "opaque/hidden": File(b"h"), "dir/a": File(b"a"),
          "dir/sub/b": File(b"b"), "hard1": File(b"shared"), "hard2": HardLink("hard1")}


@pytest.fixture
def union(tmp_path):
    top = build_layer(tmp_path / "top", TOP)
    bottom = build_layer(tmp_path / "bottom", BOTTOM)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    u = Union(MountConfig(mountpoint=str(tmp_path / "mnt"), lowers=(str(top), str(bottom)),
                          upper=str(upper), work=str(work)))
    u.upper_dir = upper
    yield u
    u.close()


def _ino(u: Union, path: str) -> int:
    ino = ROOT_INODE
    for part in filter(None, path.split("/")):
        found = u.lookup(ino, part)
        assert found is not None, path
        ino = found[0].ino
    return ino


def _names(u: Union, path: str) -> list[str]:
    return [name for name, _, _ in u.list_dir(u.nodes.get(_ino(u, path)))]


def test_merged_listing_hides_whiteouts_and_what_opaque_dirs_cover(union):
    assert _names(union, "") == ["dir", "etc", "hard1", "hard2", "link", "opaque"]
    assert _names(union, "opaque") == ["new"]
    assert union.lookup(ROOT_INODE, "gone") is None
    assert union.lookup(ROOT_INODE, wh.whiteout_file_name("x")) is None
    assert union.readlink(_ino(union, "link")) == "etc/motd"


def test_copy_up_keeps_content_mode_owner_times_and_xattrs(union):
    ino = _ino(union, "etc/motd")
    _, before = union.getattr(ino)
    fh = union.open(ino, os.O_WRONLY)
    os.pwrite(union.handle(fh).fd, b" world", 5)     # the kernel sends offsets, as here
    union.release(fh)
    st = os.lstat(union.upper_dir / "etc/motd")
    assert (union.upper_dir / "etc/motd").read_bytes() == b"hello world"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 7, 8)
    assert os.getxattr(union.upper_dir / "etc/motd", "user.k") == b"v"
    assert union.getattr(ino)[0].layer == 0 and union.getattr(ino)[1].st_ino != before.st_ino
    # Copy-up is not a change of the parent: its upper copy keeps the lower's mtime.
    lower_etc = os.stat(union.config.lowers[0] + "/etc")
    assert os.stat(union.upper_dir / "etc").st_mtime_ns == lower_etc.st_mtime_ns


def test_deleting_a_lower_file_leaves_a_kernel_whiteout_without_copying_up(union):
    union.unlink(_ino(union, "dir"), "a")
    st = os.lstat(union.upper_dir / "dir/a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert _names(union, "dir") == ["sub"]
    # Recreated: the whiteout is replaced by the new file.
    fh, _, _ = union.create(_ino(union, "dir"), "a", 0o600, os.O_WRONLY, 0, 0)
    union.release(fh)
    assert stat.S_ISREG(os.lstat(union.upper_dir / "dir/a").st_mode)


def test_a_directory_removed_and_recreated_is_opaque(union):
    dir_ino = _ino(union, "dir")
    union.unlink(_ino(union, "dir/sub"), "b")
    union.rmdir(dir_ino, "sub")
    union.unlink(dir_ino, "a")
    union.rmdir(ROOT_INODE, "dir")
    union.mkdir(ROOT_INODE, "dir", 0o755, 0, 0)
    assert os.getxattr(union.upper_dir / "dir", wh.TRUSTED_OPAQUE) == b"y"
    assert _names(union, "dir") == []
    assert wh.TRUSTED_OPAQUE not in union.listxattr(_ino(union, "dir"))


def test_rmdir_of_a_non_empty_merged_directory_is_refused(union):
    with pytest.raises(OSError) as exc:
        union.rmdir(ROOT_INODE, "dir")
    assert exc.value.errno == errno.ENOTEMPTY


def test_renaming_a_lower_directory_moves_its_tree(union):
    union.rename(ROOT_INODE, "dir", ROOT_INODE, "moved", 0)
    assert union.lookup(ROOT_INODE, "dir") is None
    assert _names(union, "moved") == ["a", "sub"]
    assert stat.S_ISCHR(os.lstat(union.upper_dir / "dir").st_mode)


def test_hard_links_stay_one_inode_across_copy_up(union):
    one, two = _ino(union, "hard1"), _ino(union, "hard2")
    assert one == two
    fh = union.open(one, os.O_WRONLY | os.O_TRUNC)
    os.write(union.handle(fh).fd, b"changed")
    union.release(fh)
    assert union.getattr(two)[1].st_nlink == 2
    fh = union.open(_ino(union, "hard2"), os.O_RDONLY)
    assert os.pread(union.handle(fh).fd, 100, 0) == b"changed"
    union.release(fh)


def test_an_open_unlinked_file_reports_nlink_zero(union):
    fh, node, _ = union.create(ROOT_INODE, "tmpfile", 0o644, os.O_RDWR, 0, 0)
    union.unlink(ROOT_INODE, "tmpfile")
    assert union.getattr(node.ino)[1].st_nlink == 0
    union.release(fh)


def test_names_and_private_names(union):
    with pytest.raises(OSError) as exc:
        union.lookup(ROOT_INODE, "n" * 256)
    assert exc.value.errno == errno.ENAMETOOLONG
    assert union.lookup(ROOT_INODE, "n" * 255) is None
    fh, _, _ = union.create(ROOT_INODE, "n" * 255, 0o644, os.O_WRONLY, 0, 0)
    union.release(fh)
    with pytest.raises(OSError) as exc:
        union.mkdir(ROOT_INODE, ".wh.sneaky", 0o755, 0, 0)
    assert exc.value.errno == errno.EINVAL


def test_a_read_only_union_refuses_writes(tmp_path):
    lower = build_layer(tmp_path / "l", {"f": File(b"x")})
    u = Union(MountConfig(mountpoint=str(tmp_path / "m"), lowers=(str(lower),)))
    try:
        with pytest.raises(OSError) as exc:
            u.unlink(ROOT_INODE, "f")
        assert exc.value.errno == errno.EROFS
    finally:
        u.close()


def _forget_all(u: Union, path: str) -> int:
    """Look PATH up, then forget it the way the kernel does when it drops the inode."""
    ino = _ino(u, path)
    node = u.nodes.get(ino)
    u.forget(ino, node.lookups)
    assert u.nodes.find(ino) is None  # retired
    return ino


def test_inode_numbers_survive_the_kernel_forgetting_the_inode(union):
    fh, _, _ = union.create(ROOT_INODE, "new", 0o644, os.O_WRONLY, 0, 0)
    union.release(fh)
    copied = _ino(union, "etc/motd")
    union.setattr(copied, mode=0o600)  # copied up: its backing file changed layer
    for path in ("etc/motd", "new", "dir", "dir/sub/b", "hard2"):
        ino = _forget_all(union, path)
        assert _ino(union, path) == ino, path
        _forget_all(union, path)
        assert union.getattr(_ino(union, path))[0].ino == ino, path



def test_hard_links_stay_one_inode_after_a_remount(tmp_path):
    """A hard-linked lower file copied up through one name is, in the next mount, an
    upper file (linked to the index) for that name and the index for the others: it
    was split in two inodes, with nlinks that did not add up."""
    lower = build_layer(tmp_path / "l", {"o/orig": File(b"x", mode=0o664),
                                         "lib/link": HardLink("o/orig"),
                                         "share/l3": HardLink("o/orig")})
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()

    def mount() -> Union:
        return Union(MountConfig(mountpoint=str(tmp_path / "m"), lowers=(str(lower),),
                                 upper=str(upper), work=str(work)))

    u = mount()
    try:
        u.setattr(_ino(u, "o/orig"), mode=0o644)
    finally:
        u.close()
    u = mount()
    try:
        names = ("o/orig", "lib/link", "share/l3")
        inos = {_ino(u, path) for path in names}
        assert len(inos) == 1
        ino = inos.pop()
        st = u.getattr(ino)[1]
        assert (stat.S_IMODE(st.st_mode), st.st_nlink) == (0o644, 3)
        u.unlink(_ino(u, "o"), "orig")
        assert u.lookup(_ino(u, "o"), "orig") is None
        assert u.getattr(_ino(u, "lib/link"))[1].st_nlink == 2
        assert u.nodes.get(ino).names == [(u.nodes.get(_ino(u, "lib")), "link"),
                                          (u.nodes.get(_ino(u, "share")), "l3")]
    finally:
        u.close()


def test_static_nlink_reports_1_for_every_directory(tmp_path):
    """fuse-overlayfs' ``static_nlink`` (its tests/test-dir-ops.sh): directories report
    st_nlink 1, whatever they hold; the option was parsed and then ignored."""
    lower = build_layer(tmp_path / "l", {"dir/a": Dir(), "dir/b": Dir(), "f": File(b"f")})
    upper = build_layer(tmp_path / "upper", {"up/x": Dir()})
    work = tmp_path / "work"
    work.mkdir()
    u = Union(MountConfig(mountpoint=str(tmp_path / "m"), lowers=(str(lower),),
                          upper=str(upper), work=str(work), static_nlink=True))
    try:
        for path in ("", "dir", "up"):
            assert u.getattr(_ino(u, path))[1].st_nlink == 1, path
        u.mkdir(_ino(u, "up"), "y", 0o755, 0, 0)
        assert u.getattr(_ino(u, "up"))[1].st_nlink == 1
        assert u.getattr(_ino(u, "f"))[1].st_nlink == 1
    finally:
        u.close()


def _in_page_cache(fd: int) -> bool:
    """Whether the first page of FD is in the page cache (mincore: asking never reads,
    where a read with RWF_NOWAIT starts readahead even as it fails)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with mmap.mmap(fd, mmap.PAGESIZE, access=mmap.ACCESS_COPY) as mapped:
        anchor = ctypes.c_char.from_buffer(mapped)
        vec = ctypes.c_ubyte()
        try:
            if libc.mincore(ctypes.c_void_p(ctypes.addressof(anchor)),
                            ctypes.c_size_t(mmap.PAGESIZE), ctypes.byref(vec)) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del anchor  # the mapping cannot close while a buffer is exported
    return bool(vec.value & 1)


def test_opening_a_lower_file_for_reading_starts_reading_it_from_the_disk(union, tmp_path):
    """OPEN asks the disk for the file's first pages, so that the READ following it
    has less to wait for."""
    path = tmp_path / "bottom" / "dir" / "sub" / "b"
    path.write_bytes(os.urandom(64 << 10))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages may be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert not _in_page_cache(fd)
        fh = union.open(_ino(union, "dir/sub/b"), os.O_RDONLY)
        wait_for(lambda: _in_page_cache(fd), "the first page of the lower file to be read")
        union.release(fh)
    finally:
        os.close(fd)

"""Directory renames across layers the kernel's ``redirect_dir=on`` way (spec
union-fs.md §3 "rename"): only the moved directory is copied up, it carries a redirect
xattr naming its lower path, its children stay in the lower layers, and the old name
gets a whiteout. Checked on the physical upper as well as on the merged view, against
the kernel overlay mounted with ``redirect_dir=on``."""

import errno
import os

import pytest

from overlayfs import whiteout as wh
from tests.support.overlay import (Dir, File, Symlink, Whiteout, redirects_in, snapshot,
                                   upper_kinds)

_LOWER = {"d/a": File(b"a"), "d/sub/b": File(b"b"), "d/l": Symlink("a"), "e": Dir()}
_REDIRECT = wh.REDIRECT_XATTRS[0]


def _private(path) -> list[str]:
    return [n for n in os.listxattr(path, follow_symlinks=False) if wh.is_private_xattr(n)]


def test_renaming_a_lower_directory_copies_up_only_the_directory(union, known_difference):
    known_difference("EXDEV when renaming a directory from a lower layer")
    u = union(_LOWER, redirect_dir=True)
    before = snapshot(u.mnt / "d")
    os.rename(u.mnt / "d", u.mnt / "e/moved")
    assert snapshot(u.mnt / "e/moved") == before
    assert not os.path.lexists(u.mnt / "d")
    assert upper_kinds(u.upper) == {"d": "whiteout", "e": "dir", "e/moved": "dir"}
    assert redirects_in(u.upper) == {"e/moved": "/d"}

    # Moved again: the redirect keeps naming the lower directory.
    os.rename(u.mnt / "e/moved", u.mnt / "again")
    assert snapshot(u.mnt / "again") == before
    assert upper_kinds(u.upper) == {"d": "whiteout", "e": "dir", "again": "dir"}
    assert redirects_in(u.upper) == {"again": "/d"}

    # The bookkeeping never shows through the mount (spec §2).
    assert _private(u.mnt / "again") == []
    with pytest.raises(OSError) as exc:
        os.getxattr(u.mnt / "again", _REDIRECT)
    assert exc.value.errno == errno.ENODATA

    # A change inside copies up from the lower path, to the new place.
    with open(u.mnt / "again/sub/b", "ab") as f:
        f.write(b"+")
    assert (u.mnt / "again/sub/b").read_bytes() == b"b+"
    assert upper_kinds(u.upper) == {"d": "whiteout", "e": "dir", "again": "dir",
                                    "again/sub": "dir", "again/sub/b": "file"}
    os.unlink(u.mnt / "again/a")
    assert sorted(os.listdir(u.mnt / "again")) == ["l", "sub"]
    assert upper_kinds(u.upper)["again/a"] == "whiteout"

    # The old name is free and shows nothing of the old tree; moving back works.
    os.mkdir(u.mnt / "d")
    assert os.listdir(u.mnt / "d") == []
    os.rmdir(u.mnt / "d")
    os.rename(u.mnt / "again", u.mnt / "d")
    assert sorted(os.listdir(u.mnt / "d")) == ["l", "sub"]
    assert (u.mnt / "d/sub/b").read_bytes() == b"b+"
    assert not os.path.lexists(u.mnt / "again")


def test_renaming_within_a_directory_records_the_old_name(union, known_difference):
    known_difference("EXDEV when renaming a directory from a lower layer")
    u = union(_LOWER, redirect_dir=True)
    os.rename(u.mnt / "d", u.mnt / "d2")
    assert sorted(os.listdir(u.mnt)) == ["d2", "e"]
    assert sorted(os.listdir(u.mnt / "d2")) == ["a", "l", "sub"]
    # The kernel writes a name relative to the parent here; ours is absolute.
    assert {k: v.lstrip("/") for k, v in redirects_in(u.upper).items()} == {"d2": "d"}
    assert upper_kinds(u.upper) == {"d": "whiteout", "d2": "dir"}


def test_a_merged_directory_moves_with_both_parts(union, known_difference):
    known_difference("EXDEV when renaming a directory from a lower layer")
    u = union({"m/low": File(b"l"), "m/gone": File(b"g"), "n": Dir()},
              upper={"m/up": File(b"u"), "m/gone": Whiteout()}, redirect_dir=True)
    os.rename(u.mnt / "m", u.mnt / "n/m")
    assert sorted(os.listdir(u.mnt / "n/m")) == ["low", "up"]
    assert (u.mnt / "n/m/low").read_bytes() == b"l"
    assert redirects_in(u.upper) == {"n/m": "/m"}
    assert upper_kinds(u.upper) == {"m": "whiteout", "n": "dir", "n/m": "dir",
                                    "n/m/up": "file", "n/m/gone": "whiteout"}


def test_a_pure_upper_directory_just_renames(union):
    u = union({"x": File(), "x2/y": File()}, upper={"p/f": File(b"f"), "n": Dir()},
              redirect_dir=True)
    os.rename(u.mnt / "p", u.mnt / "n/q")
    assert redirects_in(u.upper) == {}
    assert upper_kinds(u.upper) == {"n": "dir", "n/q": "dir", "n/q/f": "file"}
    # Into a merged directory the kernel also marks it opaque (nothing below shows).
    os.rename(u.mnt / "n/q", u.mnt / "x2/q")
    assert redirects_in(u.upper) == {}
    assert upper_kinds(u.upper)["x2/q"] == "opaque-dir"
    assert os.listdir(u.mnt / "x2/q") == ["f"]


def test_redirects_in_upper_and_lower_layers_are_followed(union):
    """What a remount, or unionmount's ``--ov=2`` rotation of an upper into a lower,
    finds: redirects written earlier, in the upper and in a lower layer."""
    rotated = {"moved": Dir(xattrs={_REDIRECT: b"/d"}), "moved/new": File(b"n"),
               "moved/a": Whiteout(), "d": Whiteout()}
    bottom = {"d/a": File(b"a"), "d/sub/b": File(b"b"), "d/keep": File(b"k")}
    u = union(rotated, bottom, upper={"again": Dir(xattrs={_REDIRECT: b"/moved"}),
                                      "moved": Whiteout()}, redirect_dir=True)
    assert sorted(os.listdir(u.mnt)) == ["again"]
    assert sorted(os.listdir(u.mnt / "again")) == ["keep", "new", "sub"]
    assert (u.mnt / "again/sub/b").read_bytes() == b"b"
    assert (u.mnt / "again/new").read_bytes() == b"n"
    assert not os.path.lexists(u.mnt / "again/a")
    assert _private(u.mnt / "again") == []
    with open(u.mnt / "again/keep", "ab") as f:
        f.write(b"+")
    assert (u.mnt / "again/keep").read_bytes() == b"k+"
    assert upper_kinds(u.upper)["again/keep"] == "file"
    os.rename(u.mnt / "again/sub", u.mnt / "sub")
    assert (u.mnt / "sub/b").read_bytes() == b"b"
    assert sorted(os.listdir(u.mnt / "again")) == ["keep", "new"]
    assert redirects_in(u.upper)["sub"] == "/moved/sub"  # the topmost lower path


@pytest.mark.program_only
def test_user_namespace_redirects_are_followed(union):
    """Where trusted xattrs are refused (rootless), the redirect is user.overlay.redirect
    (the kernel's userxattr form); no kernel oracle here: it needs a user namespace."""
    u = union({"moved": Dir(xattrs={wh.REDIRECT_XATTRS[1]: b"/d"}), "d": Whiteout()},
              {"d/a": File(b"a"), "d/sub/b": File(b"b")})
    assert sorted(os.listdir(u.mnt)) == ["moved"]
    assert sorted(os.listdir(u.mnt / "moved")) == ["a", "sub"]
    assert (u.mnt / "moved/sub/b").read_bytes() == b"b"
    assert _private(u.mnt / "moved") == []

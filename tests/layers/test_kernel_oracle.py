"""The kernel overlay as oracle for layers: whatever a container did, its upper dir
exported as a layer and applied on top of the same lowers must show the same tree."""

from __future__ import annotations

import io
import os
import subprocess

import pytest

from overlayfs.changes import changes
from overlayfs.layer_tar import LayerError, export_layer, unpack_layer
from tests.layers.treeutil import describe
from tests.support.overlay import fs_under_test, fuse_overlay, redirects_in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting the kernel overlay needs root")

LOWER_SCRIPT = """
mkdir -p etc opt/a/b srv/d var/cache/x usr/bin
echo motd > etc/motd; echo f > opt/a/b/f; echo g > opt/a/g; echo z > srv/d/z
echo c > var/cache/x/c; echo tool > usr/bin/tool; ln usr/bin/tool usr/bin/tool2
ln -s tool usr/bin/sym; chmod 700 opt/a; touch -d @1000000000 etc/motd
"""

CONTAINER_SCRIPT = """
rm -r srv/d; mkdir srv/d; echo n > srv/d/new
mv opt/a moved; rm moved/g; echo h > moved/b/h
echo x >> etc/motd; chmod 600 usr/bin/tool; ln usr/bin/tool2 usr/bin/tool3
mkdir -p new/deep; echo q > new/deep/q; ln -s /x lnk; mkfifo fifo
rm usr/bin/sym; rm -r var/cache/x; touch -d @2000000000 etc
"""


def _sh(cwd, script):
    subprocess.run(["/bin/busybox", "sh", "-ec", script], cwd=cwd, check=True)


class Overlay:
    def __init__(self, tmp_path, name):
        self.base = tmp_path / name
        self.merged = self.base / "merged"
        self.merged.mkdir(parents=True)

    def mount(self, lowers, upper=None, **options):
        opts = [f"lowerdir={':'.join(str(x) for x in lowers)}"]
        if upper is not None:
            work = self.base / "work"
            work.mkdir()
            opts += [f"upperdir={upper}", f"workdir={work}"]
        opts += [f"{k}={v}" for k, v in options.items()]
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", ",".join(opts),
                        str(self.merged)], check=True)

    def umount(self):
        subprocess.run(["umount", "-l", str(self.merged)], check=True)


def _merged_view(overlay, lowers, upper=None, **options):
    overlay.mount(lowers, upper, **options)
    try:
        return describe(overlay.merged)
    finally:
        overlay.umount()


def _without_inodes(tree):
    """Hard-link grouping differs between views when copy-up splits links (no index)."""
    return {path: entry[:6] + entry[7:] for path, entry in tree.items()}


@pytest.mark.parametrize("redirect_dir", ["off", "on"])
def test_layer_of_a_container_reproduces_its_merged_view(tmp_path, redirect_dir):
    lower = tmp_path / "lower"
    lower.mkdir()
    _sh(lower, LOWER_SCRIPT)
    upper = tmp_path / "upper"
    upper.mkdir()
    container = Overlay(tmp_path, "container")
    container.mount([lower], upper, redirect_dir=redirect_dir, index="off")
    try:
        _sh(container.merged, CONTAINER_SCRIPT)
        expected = describe(container.merged)
    finally:
        container.umount()

    if redirect_dir == "on":
        with pytest.raises(LayerError, match="needs the lower layers"):
            export_layer(upper, io.BytesIO())
    data = io.BytesIO()
    export_layer(upper, data, lowers=[lower])
    layer = tmp_path / "layer"
    data.seek(0)
    unpack_layer(data, layer)

    actual = _merged_view(Overlay(tmp_path, "check"), [layer, lower])
    assert _without_inodes(actual) == _without_inodes(expected)
    # the unpacked layer is the same change as the container's upper dir
    assert changes([lower], layer) == changes([lower], upper)


def test_oracle_sees_the_container_changes(tmp_path):
    """Guards the test above against comparing two empty views."""
    lower = tmp_path / "lower"
    lower.mkdir()
    _sh(lower, LOWER_SCRIPT)
    upper = tmp_path / "upper"
    upper.mkdir()
    container = Overlay(tmp_path, "container")
    container.mount([lower], upper, redirect_dir="on", index="off")
    try:
        _sh(container.merged, CONTAINER_SCRIPT)
        view = describe(container.merged)
    finally:
        container.umount()
    assert {"moved/b/f", "moved/b/h", "srv/d/new", "fifo", "usr/bin/tool3"} <= set(view)
    assert not {"opt/a", "moved/g", "srv/d/z", "usr/bin/sym", "var/cache/x"} & set(view)
    assert [str(c) for c in changes([lower], upper)] == [
        "C /etc", "C /etc/motd", "A /fifo", "A /lnk",
        "A /moved", "A /moved/b", "A /moved/b/f", "A /moved/b/h",
        "A /new", "A /new/deep", "A /new/deep/q",
        "C /opt", "D /opt/a", "C /srv", "D /srv/d", "A /srv/d/new",
        "C /usr", "C /usr/bin", "D /usr/bin/sym", "C /usr/bin/tool", "C /usr/bin/tool2",
        "A /usr/bin/tool3",
        "C /var", "C /var/cache", "D /var/cache/x"]


# The container script without its hard links (a separate matter: the kernel copies
# every name of a changed hard-linked file up on `ln`, we keep them in the index),
# plus a second move of a directory that was already moved.
_RENAMES_SCRIPT = CONTAINER_SCRIPT.replace(
    "echo x >> etc/motd; chmod 600 usr/bin/tool; ln usr/bin/tool2 usr/bin/tool3",
    "echo x >> etc/motd") + "mv moved/b moved2; mv moved2 new/b\n"


def test_our_renamed_directories_diff_and_export_like_the_kernels(tmp_path):
    """Our mount renames lower directories with a redirect, as the kernel does with
    redirect_dir=on: diff shows the move (A for the new tree, D for the old name) and
    the exported layer, which has no redirects, holds the whole moved tree."""
    lower = tmp_path / "lower"
    lower.mkdir()
    _sh(lower, LOWER_SCRIPT)
    uppers = {}
    views = {}
    for name in ("kernel", "ours"):
        upper = uppers[name] = tmp_path / f"{name}-upper"
        upper.mkdir()
        container = Overlay(tmp_path, name)
        if name == "kernel":
            container.mount([lower], upper, redirect_dir="on", index="off")
            unmount = container.umount
        else:
            work = container.base / "work"
            work.mkdir()
            mount = fuse_overlay(fs_under_test(), [lower], upper, work, container.merged)
            mount.__enter__()
            unmount = lambda: mount.__exit__(None, None, None)  # noqa: E731
        try:
            _sh(container.merged, _RENAMES_SCRIPT)
            views[name] = describe(container.merged)
        finally:
            unmount()
    def untimed(tree):  # the two containers ran at different moments
        return {path: entry[:4] + entry[5:6] + entry[7:] for path, entry in tree.items()}

    assert untimed(views["ours"]) == untimed(views["kernel"])
    assert redirects_in(uppers["ours"]) == {"moved": "/opt/a", "new/b": "/opt/a/b"}
    assert not (uppers["ours"] / "new/b/f").exists()  # the children stayed below
    assert changes([lower], uppers["ours"]) == changes([lower], uppers["kernel"])
    assert {"A /moved", "A /new/b", "A /new/b/f", "A /new/b/h", "D /opt/a"} <= {
        str(c) for c in changes([lower], uppers["ours"])}

    data = io.BytesIO()
    export_layer(uppers["ours"], data, lowers=[lower])
    layer = tmp_path / "layer"
    data.seek(0)
    unpack_layer(data, layer)
    assert redirects_in(layer) == {}
    assert (layer / "new/b/f").read_text() == "f\n"
    actual = _merged_view(Overlay(tmp_path, "check"), [layer, lower])
    assert untimed(actual) == untimed(views["kernel"])
    assert _without_inodes(actual) == _without_inodes(views["ours"])

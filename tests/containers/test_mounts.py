"""-v / --mount / --tmpfs: what the container writes there goes to the host or to memory,
never to its upper dir, so diff and commit leave it out as Docker does."""

from __future__ import annotations

import json

import pytest

from cli.errors import UserError
from cli.mounts import parse_all, parse_mount, parse_volume
from tests.support.images import layerbox


def test_bind_mounts_and_tmpfs_reach_the_container(root, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "h").write_text("host\n")
    created = tmp_path / "made-by-run"
    out = layerbox(root, "run", "--name", "v", "-v", f"{src}:/src", "-v", f"{created}:/data",
                   "--mount", f"type=bind,source={src},target=/ro,readonly",
                   "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c",
                   "cat /src/h; echo c > /src/from-container; echo d > /data/d; "
                   "echo t > /scratch/t; echo x > /ro/x 2>/dev/null || echo read-only")
    assert out.stdout == "host\nread-only\n"
    assert (src / "from-container").read_text() == "c\n"
    assert (created / "d").read_text() == "d\n"          # -v made the missing host dir
    changes = layerbox(root, "diff", "v").stdout.splitlines()
    assert not [c for c in changes if c.count("/") > 1], changes   # only the mount points
    mounts = json.loads(layerbox(root, "inspect", "v").stdout)[0]["Mounts"]
    assert [(m["Type"], m["Destination"], m["RW"]) for m in mounts] == [
        ("bind", "/src", True), ("bind", "/data", True), ("bind", "/ro", False),
        ("tmpfs", "/scratch", True)]
    layerbox(root, "commit", "v", "withmounts:1")
    listing = layerbox(root, "run", "--rm", "withmounts:1", "sh", "-c",
                       "ls -A /src /scratch /data").stdout
    assert "h" not in listing.split() and "t" not in listing.split()


@pytest.mark.parametrize("spec, message", [
    ("bad name:/x", "invalid characters for a local volume name"),
    ("/tmp:rel", "must be absolute"),
    ("/tmp:/", "can't be '/'"),
    ("/tmp:/x:bogus", "invalid mode"),
    ("/tmp:", "invalid volume specification"),
    ("relative", "must be absolute"),
])
def test_bad_volume_specs(spec, message):
    with pytest.raises(UserError, match=message):
        parse_volume(spec)


def test_mount_syntax():
    assert parse_mount("type=bind,src=/tmp,dst=/x,readonly")["options"] == \
        ["rbind", "rprivate", "ro"]
    assert parse_mount("type=tmpfs,target=/t,tmpfs-size=1m")["options"][-1] == "size=1m"
    assert parse_volume("name:/x")["volume"] == "name"
    assert parse_volume("/anonymous")["anonymous"] is True
    assert parse_mount("type=volume,target=/x,volume-nocopy=true")["copy"] is False
    for bad in ("type=bind,target=/x", "type=image,target=/x", "type=bind,src=/nonexistent-x,"
                "target=/x", "target", "type=tmpfs,target=/t,color=red"):
        with pytest.raises(UserError):
            parse_mount(bad)
    with pytest.raises(UserError, match="Duplicate mount point"):
        parse_all(["/tmp:/x"], ["type=tmpfs,target=/x"])


def test_bad_mount_flags_are_one_line_errors(root):
    out = layerbox(root, "run", "--rm", "-v", "/tmp:/x:bogus", "busybox", "true", check=False)
    assert out.returncode != 0 and out.stderr.count("\n") == 1
    assert not layerbox(root, "ps", "-aq").stdout     # nothing was created

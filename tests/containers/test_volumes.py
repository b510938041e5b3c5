"""Named and anonymous volumes: Docker's copy-up of image content into a new volume,
data kept across containers, out of diff and commit, rm -v / --rm, volume commands."""

from __future__ import annotations

import json

from tests.support.images import layerbox


def _volumes(root) -> list[str]:
    return layerbox(root, "volume", "ls", "-q").stdout.split()


def test_named_volume_is_filled_from_the_image_and_outlives_containers(root):
    out = layerbox(root, "run", "--name", "w", "-v", "cfg:/etc", "busybox", "sh", "-c",
                   "test -s /etc/passwd && echo image-content; echo 1 > /etc/added")
    assert out.stdout == "image-content\n"
    assert layerbox(root, "diff", "w").stdout == ""          # the volume is not the upper
    again = layerbox(root, "run", "--rm", "-v", "cfg:/data:ro", "busybox", "sh", "-c",
                     "cat /data/added; touch /data/x 2>/dev/null || echo read-only")
    assert again.stdout == "1\nread-only\n"
    mounts = json.loads(layerbox(root, "inspect", "w").stdout)[0]["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == \
        [("volume", "cfg", "/etc")]
    busy = layerbox(root, "volume", "rm", "cfg", check=False)
    assert busy.returncode != 0 and "volume is in use" in busy.stderr
    layerbox(root, "commit", "w", "with-volume:1")
    assert "added" not in layerbox(root, "run", "--rm", "with-volume:1", "ls", "/etc").stdout
    layerbox(root, "rm", "w")
    layerbox(root, "volume", "rm", "cfg")
    assert _volumes(root) == []


def test_anonymous_volumes_go_with_rm_v_and_run_rm(root):
    layerbox(root, "run", "--name", "a", "-v", "/scratch", "busybox", "sh", "-c",
             "echo x > /scratch/f")
    assert len(_volumes(root)) == 1
    layerbox(root, "rm", "-v", "a")
    assert _volumes(root) == []
    layerbox(root, "run", "--rm", "--mount", "type=volume,target=/t", "busybox", "true")
    assert _volumes(root) == []


def test_volume_commands(root):
    assert layerbox(root, "volume", "create", "--label", "k=v", "made").stdout == "made\n"
    doc = json.loads(layerbox(root, "volume", "inspect", "made").stdout)[0]
    assert (doc["Name"], doc["Driver"], doc["Labels"]) == ("made", "local", {"k": "v"})
    assert "made" in layerbox(root, "volume", "ls").stdout
    layerbox(root, "run", "--name", "keep", "-v", "/anon", "busybox", "true")
    pruned = layerbox(root, "volume", "prune").stdout       # anonymous unused only: none
    assert "made" not in pruned and len(_volumes(root)) == 2
    assert "made" in layerbox(root, "volume", "prune", "-a").stdout
    assert len(_volumes(root)) == 1                          # the one "keep" still uses
    missing = layerbox(root, "volume", "inspect", "nosuch", check=False)
    assert missing.returncode != 0 and "no such volume" in missing.stderr
    bad = layerbox(root, "run", "--rm", "-v", "bad name:/x", "busybox", "true", check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1

"""rename, top, version and info, through the real CLI."""

from __future__ import annotations

import json

from tests.support.images import layerbox


def test_rename_keeps_the_container_and_refuses_clashes(root):
    layerbox(root, "create", "--name", "old", "busybox", "true")
    layerbox(root, "create", "--name", "other", "busybox", "true")
    layerbox(root, "rename", "old", "new")
    assert json.loads(layerbox(root, "inspect", "new").stdout)[0]["Name"] == "/new"
    assert layerbox(root, "inspect", "old", check=False).returncode != 0
    clash = layerbox(root, "rename", "new", "other", check=False)
    assert clash.returncode != 0 and "already in use" in clash.stderr
    bad = layerbox(root, "container", "rename", "new", "bad name", check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1


def test_top_lists_only_the_container_processes(root):
    layerbox(root, "run", "-d", "--name", "busy", "busybox", "sh", "-c",
             "sleep 77 & exec sleep 88")
    # Both sleeps are up once the shell has exec'd; poll until ps shows them.
    for _ in range(100):
        out = layerbox(root, "top", "busy").stdout
        if "sleep 77" in out and "sleep 88" in out:
            break
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    assert len(lines) == 3, out
    custom = layerbox(root, "top", "busy", "-o", "pid,args").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"] and len(custom) == 3
    layerbox(root, "stop", "-t", "0", "busy")
    stopped = layerbox(root, "top", "busy", check=False)
    assert stopped.returncode != 0 and "is not running" in stopped.stderr


def test_version_and_info(root):
    assert layerbox(root, "version", "-f", "{{.Version}}").stdout.strip()
    assert "runc" in layerbox(root, "version").stdout
    layerbox(root, "create", "busybox", "true")
    info = layerbox(root, "info").stdout
    assert " Containers: 1\n" in info and " Images: 1\n" in info
    assert "Storage Driver: layerbox-overlayfs" in info
    assert layerbox(root, "info", "--format", "{{.ContainersStopped}}").stdout == "1\n"

"""--cap-add/--cap-drop/--privileged/--read-only, labels and the stop signal."""

from __future__ import annotations

import json

import pytest

from cli.errors import UserError
from cli.runtime import DEFAULT_CAPABILITIES, Security, host_capabilities
from tests.support.images import layerbox


def _cap_eff(root, *flags: str) -> int:
    out = layerbox(root, "run", "--rm", *flags, "busybox", "grep", "CapEff", "/proc/self/status")
    return int(out.stdout.split()[1], 16)


def test_capability_flags_follow_dockers_rules(root):
    default = _cap_eff(root)
    assert bin(default).count("1") == len(DEFAULT_CAPABILITIES)
    assert _cap_eff(root, "--cap-drop", "ALL", "--cap-add", "chown") == 1      # CAP_CHOWN
    assert _cap_eff(root, "--cap-add", "NET_ADMIN") == default | 1 << 12
    assert _cap_eff(root, "--cap-drop", "CAP_MKNOD") == default & ~(1 << 27)
    bad = layerbox(root, "run", "--rm", "--cap-add", "bogus", "busybox", "true", check=False)
    assert bad.returncode != 0 and "invalid capability: bogus" in bad.stderr


def test_privileged_has_every_host_capability_and_no_filters(root):
    out = layerbox(root, "run", "--rm", "--privileged", "busybox", "sh", "-c",
                   "grep -E 'CapEff|Seccomp:' /proc/self/status; "
                   "mount -t tmpfs t /tmp && echo mounted").stdout.split()
    assert bin(int(out[1], 16)).count("1") == len(host_capabilities())
    assert out[2:] == ["Seccomp:", "0", "mounted"]


def test_security_model():
    assert Security(cap_drop=("ALL",), cap_add=("KILL",)).capabilities() == ["CAP_KILL"]
    everything = Security(cap_add=("ALL",), cap_drop=("MKNOD",)).capabilities()
    assert "CAP_MKNOD" not in everything and "CAP_SYS_ADMIN" in everything
    with pytest.raises(UserError):
        Security(cap_add=("NOPE",)).capabilities()


def test_read_only_root_labels_and_stop_signal(root):
    out = layerbox(root, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "busybox", "sh", "-c",
                   "touch /x 2>/dev/null || echo read-only; touch /tmp/y && echo tmp-ok")
    assert out.stdout == "read-only\ntmp-ok\n"
    layerbox(root, "run", "-d", "--name", "sig", "-l", "a=b", "-l", "flag", "--stop-signal",
             "USR1", "busybox", "sh", "-c",
             "trap 'echo got-usr1; exit 7' USR1; while :; do sleep 0.1; done")
    layerbox(root, "stop", "sig")
    doc = json.loads(layerbox(root, "inspect", "sig").stdout)[0]
    assert (doc["State"]["ExitCode"], doc["Config"]["Labels"], doc["Config"]["StopSignal"]) \
        == (7, {"a": "b", "flag": ""}, "USR1")
    assert layerbox(root, "logs", "sig").stdout == "got-usr1\n"

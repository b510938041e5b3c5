"""The three walk-throughs of issue 4, end to end through the real CLI, runc and the
layerbox-overlayfs mount (interactive parts through a pseudo-terminal)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.containers.terminal import Terminal
from tests.support.images import layerbox

PROMPT = "/ # "


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


@pytest.mark.parametrize("mount_program", ["layerbox-overlayfs", "fuse-overlayfs"])
def test_interactive_touch_diff_commit(root, mount_program, monkeypatch):
    monkeypatch.setenv("LAYERBOX_MOUNT_PROGRAM", mount_program)
    term = Terminal(root, "run", "-it", "--name", "lab", "busybox", "sh", rows=30, cols=100)
    try:
        term.expect(PROMPT)
        term.send("stty size\r")
        term.expect("30 100")            # the container's pty has the client's size
        term.settle(PROMPT)              # else the shell may take our typing as the
        term.resize(40, 120)             # cursor-position answer; SIGWINCH is forwarded
        term.send("stty size\r")
        term.expect("40 120")
        term.send("sh -c 'echo start$((1+1)); exec sleep 300'\r")
        term.expect("start2")            # the child runs: Ctrl-C must interrupt it
        term.send("\x03")                # Ctrl-C reaches the container's process
        term.expect(PROMPT)
        term.send("touch hello world; exit\r")
        assert term.wait() == 0
    finally:
        term.close()
    assert lines(layerbox(root, "diff", "lab").stdout) == ["A /hello", "A /world"]
    image_id = layerbox(root, "commit", "lab", "busybox:hello-world").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    out = layerbox(root, "run", "--name", "check", "busybox:hello-world", "ls", "/hello", "/world")
    assert lines(out.stdout) == ["/hello", "/world"]
    assert layerbox(root, "diff", "check").stdout == ""
    inspect = json.loads(layerbox(root, "image", "inspect", "busybox:hello-world").stdout)[0]
    assert inspect["Id"] == image_id
    assert inspect["Config"]["Cmd"] == ["sh"]
    # Other tools read the committed image from the OCI layout.
    skopeo = subprocess.run(["skopeo", "inspect", f"oci:{root}/oci:busybox:hello-world"],
                            capture_output=True, text=True)
    assert skopeo.returncode == 0, skopeo.stderr
    assert len(json.loads(skopeo.stdout)["Layers"]) == 2


PACKAGE_SCRIPT = (
    "i=0; while [ $i -lt {n} ]; do mkdir -p /usr/lib/pkg$i /var/lib/pkg$i; "
    "echo data$i > /usr/lib/pkg$i/file; echo meta$i > /var/lib/pkg$i/info; "
    "i=$((i+1)); done; echo INSTALLED-$((40+2))\r")


def test_detached_shell_diff_while_writing_and_commit(root):
    n = 150
    term = Terminal(root, "run", "-it", "--name", "tools", "busybox", "sh")
    try:
        term.expect(PROMPT)
        term.send(PACKAGE_SCRIPT.format(n=n))
        # diff from outside while the shell is writing: always a consistent, sorted list
        seen = 0
        while b"INSTALLED-42" not in term.output:
            found = lines(layerbox(root, "diff", "tools").stdout)
            assert found == sorted(found, key=lambda l: l[2:])
            assert len(found) >= seen
            seen = len(found)
            try:
                term.expect("INSTALLED-42", timeout=0.5)
                break
            except AssertionError:
                continue
        term.settle(PROMPT)
        term.send("\x10\x11")            # Ctrl-P Ctrl-Q: detach, the shell keeps running
        assert term.wait() == 0
    finally:
        term.close()
    status = json.loads(layerbox(root, "ps", "--format", "json").stdout.splitlines()[0])
    assert status["Names"] == "tools" and status["Status"].startswith("Up")
    found = lines(layerbox(root, "diff", "tools").stdout)
    # C /usr, A /usr/lib? no: /usr/lib is new in busybox → A; per package dir + file, twice
    assert len(found) == 4 * n + len({"C /usr", "A /usr/lib", "C /var", "A /var/lib"})
    assert "A /usr/lib/pkg7/file" in found and "A /var/lib/pkg149/info" in found
    image_id = layerbox(root, "commit", "-a", "Ann <ann@example.org>", "-m", "add tools",
                        "tools", "busybox:tooled").stdout.strip()
    # still running after the commit's pause
    assert json.loads(layerbox(root, "inspect", "tools").stdout)[0]["State"]["Status"] == "running"
    history = layerbox(root, "history", "busybox:tooled").stdout
    assert "add tools" in history.splitlines()[1]
    inspect = json.loads(layerbox(root, "image", "inspect", image_id).stdout)[0]
    assert inspect["Author"] == "Ann <ann@example.org>"
    assert inspect["Comment"] == "add tools"
    assert len(inspect["RootFS"]["Layers"]) == 2
    out = layerbox(root, "run", "--rm", "busybox:tooled", "cat", "/var/lib/pkg149/info")
    assert out.stdout == "meta149\n"
    # attach comes back to the detached shell
    term = Terminal(root, "attach", "tools")
    try:
        term.send("echo back-$((1+2))\r")
        term.expect("back-3")
        term.send("exit 5\r")
        assert term.wait() == 5
    finally:
        term.close()


def test_edit_and_delete_survive_commit(root):
    layerbox(root, "run", "--name", "base", "busybox", "sh", "-c",
             "mkdir -p /bin/somedir/sub && echo a > /bin/somedir/a && echo c > /bin/somedir/sub/c")
    layerbox(root, "commit", "base", "base:v1")
    # vi-like edit: write a swap file, then rename it over the original
    layerbox(root, "run", "--name", "lab", "base:v1", "sh", "-c",
             "cp /etc/motd /etc/.motd.swp && echo edited >> /etc/.motd.swp && "
             "mv /etc/.motd.swp /etc/motd && rm -r /bin/somedir")
    assert lines(layerbox(root, "diff", "lab").stdout) == [
        "C /bin", "D /bin/somedir", "C /etc", "C /etc/motd"]
    assert json.loads(layerbox(root, "diff", "--format", "json", "lab").stdout) == {
        "changed": ["/bin", "/etc", "/etc/motd"], "added": [], "deleted": ["/bin/somedir"]}
    layerbox(root, "commit", "lab", "lab_change")
    out = layerbox(root, "run", "--name", "after", "lab_change", "sh", "-c",
                   "ls /bin/somedir 2>&1; tail -1 /etc/motd")
    assert "No such file or directory" in out.stdout
    assert out.stdout.rstrip().endswith("edited")
    assert layerbox(root, "diff", "after").stdout == ""
    history = lines(layerbox(root, "history", "--no-trunc", "lab_change").stdout)
    assert len(history) == 4          # header + import + base + lab


def test_exec_it_into_a_detached_tty_container(root):
    layerbox(root, "run", "-d", "-it", "--name", "bg", "busybox", "sh")
    term = Terminal(root, "exec", "-it", "bg", "sh")
    try:
        term.expect(PROMPT)
        term.send("echo in-$((6*7)) > /made-by-exec; cat /made-by-exec\r")
        term.expect("in-42")
        term.send("exit 3\r")
        assert term.wait() == 3
    finally:
        term.close()
    assert "A /made-by-exec" in layerbox(root, "diff", "bg").stdout
    out = layerbox(root, "run", "-it", "busybox", "true", check=False)
    assert out.returncode != 0 and "not a TTY" in out.stderr

"""Commit, then run the new image: the layer's dir, left out by commit, is made from its
blob on the first run (tests/store/test_lazy_layers.py has the store's side)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.images import REPO_ROOT, layerbox

CHANGES = ("mkdir -p /srv/d && echo one > /srv/d/one && ln /srv/d/one /srv/d/hard && "
           "ln -s d/one /srv/sym && rm /bin/ls && echo more >> /etc/passwd")
SHOW = ("cat /srv/d/one /srv/d/hard /srv/sym; test ! -e /bin/ls && echo ls-gone; "
        "tail -1 /etc/passwd; stat -c %h /srv/d/one")


def _layer_dirs(root) -> set[str]:
    return {p.name for p in (root / "layers").iterdir()}


def test_commit_of_a_running_container_then_run_sees_the_files(root):
    layerbox(root, "run", "-d", "--name", "src", "busybox", "sh", "-c",
             CHANGES + " && touch /ready && sleep 60")
    layerbox(root, "exec", "src", "sh", "-c", "while [ ! -e /ready ]; do sleep 0.05; done")
    before = _layer_dirs(root)
    image = layerbox(root, "commit", "src", "snap:1").stdout.strip()
    assert _layer_dirs(root) == before          # commit stored the blob only
    assert layerbox(root, "inspect", "--format", "{{.State.Status}}", "src").stdout == "running\n"
    out = layerbox(root, "run", "--rm", "snap:1", "sh", "-c", SHOW).stdout
    assert out == "one\none\none\nls-gone\nmore\n2\n"
    assert len(_layer_dirs(root) - before) == 1  # the first run made it
    layerbox(root, "run", "--name", "again", image[7:19], "true")
    assert layerbox(root, "diff", "again").stdout == ""
    layerbox(root, "rm", "-f", "src", "again")
    layerbox(root, "rmi", "snap:1")
    assert _layer_dirs(root) == before
    assert layerbox(root, "system", "check", check=False).stdout == ""


def test_two_first_runs_at_once(root):
    layerbox(root, "run", "--name", "src", "busybox", "sh", "-c", CHANGES)
    layerbox(root, "commit", "src", "snap:2")
    procs = [subprocess.Popen([sys.executable, "-m", "cli.main", "--root", str(root), "run",
                               "--rm", "--network", "none", "snap:2", "sh", "-c", SHOW],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert (proc.returncode, out) == (0, "one\none\none\nls-gone\nmore\n2\n"), err
    assert layerbox(root, "system", "check", check=False).stdout == ""
    assert list((root / "tmp").iterdir()) == []

"""Several layerbox processes at once on one store: imports, tags and rmi racing."""

import subprocess
import sys

from tests.store.helpers import assert_clean, db_rows, layerbox, make_tar, store_files
from tests.support.images import REPO_ROOT


def _start(root, *args, stdin=None):
    return subprocess.Popen([sys.executable, "-m", "cli.main", "--root", str(root), *args],
                            cwd=REPO_ROOT, stdin=subprocess.PIPE if stdin else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_all(procs):
    results = []
    for proc, stdin in procs:
        out, err = proc.communicate(stdin, timeout=300)
        results.append((proc.args[5:], proc.returncode, out.decode(), err.decode()))
    return results


def test_parallel_imports_and_rmi(busybox_root, busybox_tar, tmp_path):
    small = [make_tar([("f", "file", f"content {i}\n".encode() * 1000)]) for i in range(3)]
    for round_ in range(2):
        procs = [(_start(busybox_root, "import", str(busybox_tar), f"bb{i}"), None)
                 for i in range(4)]
        procs += [(_start(busybox_root, "import", "-", f"x{i}", stdin=True), data)
                  for i, data in enumerate(small)]
        if round_ == 0:
            procs.append((_start(busybox_root, "rmi", "busybox"), None))
        for args, code, out, err in _wait_all(procs):
            assert code == 0, (args, out, err)
        names = sorted(r[0] for r in db_rows(busybox_root, "SELECT name FROM tags"))
        assert names == sorted([f"docker.io/library/bb{i}:latest" for i in range(4)] +
                               [f"docker.io/library/x{i}:latest" for i in range(3)])
        # one unpacked busybox layer shared by bb0..bb3, plus one per small tar
        assert len(store_files(busybox_root)["layers"]) == 4
        assert_clean(busybox_root)
        procs = [(_start(busybox_root, "rmi", name), None)
                 for name in [f"bb{i}" for i in range(4)] + [f"x{i}" for i in range(3)]]
        for args, code, out, err in _wait_all(procs):
            assert code == 0, (args, out, err)
        assert store_files(busybox_root) == {"blobs": [], "layers": [], "tmp": []}
        assert layerbox(busybox_root, "images", "-q").stdout == ""
        assert_clean(busybox_root)


def test_parallel_first_use_of_a_fresh_root(busybox_tar, tmp_path):
    root = tmp_path / "fresh"
    procs = [(_start(root, "import", str(busybox_tar), f"bb{i}"), None) for i in range(4)]
    for args, code, out, err in _wait_all(procs):
        assert code == 0, (args, out, err)
    assert len(db_rows(root, "SELECT name FROM tags")) == 4
    assert len(store_files(root)["layers"]) == 1
    assert_clean(root)

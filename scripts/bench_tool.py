"""Tool benchmark (issue 8): run, diff, commit, build and the image queries, through
layerbox and Podman (kernel overlay and fuse-overlayfs), alternating, median of N.

Everything lives under one temp dir (layerbox --root, Podman --root/--runroot and its
own storage.conf), removed at the end; the default stores are never touched.

Base image: the busybox rootfs of cli/busybox.py plus the CPython standard library
(~7,700 files) in /usr/lib/python3.11. Change scripts (bind-mounted at /bench): 80 %
new files (one tar of incompressible files, ~5 KB each), 10 % appends to image files,
10 % deletions of image files; 1,000 and 20,000 changes.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERBOX = REPO / ".venv" / "bin" / "layerbox"
IMPLEMENTATIONS = ("layerbox", "podman-overlay", "podman-fuse")
CHANGE_SIZES = {"1k": 1000, "20k": 20000}
PYLIB = "usr/lib/python3.11"
#: The issue's targets for layerbox (seconds).
TARGETS = {"run --rm IMAGE true": 0.20, "diff 1k": 0.06, "diff 20k": 0.40,
           "commit 1k": 0.32, "commit 20k": 2.5, "build cold": 5.15, "build cached": 0.5,
           "images": 0.1, "image inspect": 0.1, "history": 0.1,
           # Not the issue's: the first run of a just-committed image. Layerbox makes a
           # committed layer's dir on first use, so part of commit's work moved here.
           "first run 1k": None, "first run 20k": None}
ROWS = list(TARGETS)
BUILD_SCRIPT = ("mkdir /out && i=0 && while [ $i -lt 1000 ]; do echo \"file $i\" > /out/f$i; "
                "i=$((i+1)); done")


# --- inputs --------------------------------------------------------------------------

def stdlib_files() -> tuple[Path, list[str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "site-packages")
        rel = os.path.relpath(dirpath, root)
        files.extend(os.path.normpath(os.path.join(rel, f)) for f in sorted(filenames))
    return root, files


def build_base_tar(out: Path) -> list[str]:
    """busybox + the stdlib as one rootfs tar; returns the stdlib paths inside the image."""
    sys.path.insert(0, str(REPO))
    from cli.busybox import write_busybox_rootfs_tar
    plain = out.with_suffix(".busybox.tar")
    with open(plain, "wb") as f:
        write_busybox_rootfs_tar(f)
    root, files = stdlib_files()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        with tarfile.open(plain) as bb:
            for member in bb.getmembers():
                tar.addfile(member, bb.extractfile(member) if member.isfile() else None)
        for d in ("usr/lib",):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        tar.add(root, arcname=PYLIB,
                filter=lambda i: None if "/site-packages" in i.name or i.name.endswith(
                    "site-packages") else i)
    plain.unlink()
    return [f"/{PYLIB}/{f}" for f in files]


def write_change_scripts(bench: Path, image_files: list[str]) -> None:
    """/bench/change-N.sh (+ its tar of new files) for each size in CHANGE_SIZES."""
    rng = random.Random(8)
    regular = list(image_files)
    for label, count in CHANGE_SIZES.items():
        new, touched = count * 8 // 10, count // 10
        chosen = rng.sample(regular, 2 * touched)
        appends, deletions = chosen[:touched], chosen[touched:]
        with tarfile.open(bench / f"new-{label}.tar", "w") as tar:
            for i in range(new):
                data = rng.randbytes(rng.randint(2000, 9000))
                info = tarfile.TarInfo(f"data/d{i // 100:03d}/f{i:05d}.bin")
                info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
                tar.addfile(info, io.BytesIO(data))
        lines = ["set -e", f"tar -xf /bench/new-{label}.tar -C /"]
        lines += [f"echo '# bench append' >> {p}" for p in appends]
        for i in range(0, len(deletions), 200):
            lines.append("rm -f " + " ".join(deletions[i:i + 200]))
        (bench / f"change-{label}.sh").write_text("\n".join(lines) + "\n")


def write_build_context(ctx: Path) -> None:
    rng = random.Random(2000)
    for i in range(2000):
        d = ctx / "src" / f"d{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}.txt").write_bytes(rng.randbytes(1000).hex().encode())
    (ctx / "Dockerfile").write_text(
        f"FROM bench-base\nCOPY src /ctx\nRUN {BUILD_SCRIPT}\n")


# --- the tools -----------------------------------------------------------------------

class Tool:
    def __init__(self, name: str, top: Path, layerbox_src: str | None = None,
                 venv: Path | None = None):
        self.name = name
        self.top = top / name
        self.top.mkdir()
        self.env = dict(os.environ)
        # Measure what a user gets: byte code cached in __pycache__ as Python does by default.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.pop("PYTHONPATH", None)
        if name.startswith("layerbox"):
            # The venv's own programs (layerbox, layerbox-overlayfs) come first on PATH,
            # so each layerbox column mounts with its own mount program.
            venv = venv or LAYERBOX.parent.parent
            self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"
            self.base = [str(venv / "bin" / "layerbox"), "--root", str(self.top / "root")]
            self.run_opts: list[str] = []
            self.commit_opts: list[str] = []
            self.env.pop("LAYERBOX_ROOT", None)
            if layerbox_src:   # e.g. a `git archive` of an older commit, for a baseline
                self.env["PYTHONPATH"] = layerbox_src
            return
        conf = self.top / "storage.conf"
        opts = ""
        if name == "podman-fuse":
            opts = '[storage.options.overlay]\nmount_program = "/usr/bin/fuse-overlayfs"\n'
        conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{self.top}/root"\n'
                        f'runroot = "{self.top}/run"\n{opts}')
        self.env["CONTAINERS_STORAGE_CONF"] = str(conf)
        self.env["TMPDIR"] = str(self.top)
        self.base = ["podman", "--root", str(self.top / "root"), "--runroot",
                     str(self.top / "run"), "--runtime", "runc", "--cgroup-manager",
                     "cgroupfs", "--events-backend", "none", "--tmpdir",
                     str(self.top / "tmp"), "--volumepath", str(self.top / "volumes")]
        if name == "podman-fuse":
            # Podman 4.3 ignores the config file's mount_program once --root is given
            # (`podman info`: no graph options; containers got a kernel overlay mount):
            # only the command-line storage option takes effect.
            self.base += ["--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs"]
        self.commit_opts = ["-f", "docker"]   # podman takes -m only for Docker's format
        self.run_opts = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

    def cmd(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(self.base + list(args), env=self.env, text=True,
                              capture_output=True)
        if done.returncode != 0:
            sys.exit(f"{self.name} {' '.join(args)} failed ({done.returncode}):\n"
                     f"{done.stderr[-2000:]}")
        return done

    def timed(self, *args: str) -> float:
        start = time.perf_counter()
        self.cmd(*args)
        return time.perf_counter() - start

    def peak_rss_mb(self, *args: str) -> tuple[float, float]:
        """Peak RSS (MB) and CPU time (user + system, s) of the command and its children
        (a fresh process, so only theirs). CPU time says what wall time cannot on a
        shared machine: how much work the command is."""
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                 "stdout=subprocess.DEVNULL); r = resource.getrusage(resource.RUSAGE_CHILDREN); "
                 "print(r.ru_maxrss, r.ru_utime + r.ru_stime)")
        out = subprocess.run([sys.executable, "-c", probe, *self.base, *args], env=self.env,
                             check=True, capture_output=True, text=True)
        rss, cpu = out.stdout.split()[-2:]
        return int(rss) / 1024, float(cpu)

    def cleanup(self) -> None:
        if self.name.startswith("podman"):
            subprocess.run(self.base + ["rm", "-af"], env=self.env, capture_output=True)
            subprocess.run(self.base + ["rmi", "-af"], env=self.env, capture_output=True)
        else:
            subprocess.run(self.base + ["rm", "-f", "c1k", "c20k"], env=self.env,
                           capture_output=True)
        subprocess.run(f"grep -o ' {self.top}[^ ]*' /proc/mounts | sort -r | while read m; "
                       f"do umount -l $m 2>/dev/null || fusermount3 -u -z $m; done",
                       shell=True)


def prepare(tool: Tool, base_tar: Path, bench: Path, sizes) -> None:
    tool.cmd("import", str(base_tar), "bench-base")
    for label in sizes:
        tool.cmd("run", *tool.run_opts, "--name", f"c{label}", "--network", "none", "-v",
                 f"{bench}:/bench:ro", "bench-base", "sh", f"/bench/change-{label}.sh")


def workloads(tool: Tool, ctx: Path, rows: list[str]):
    """(row, timed function) pairs; each function measures one repetition."""
    def commit(label):
        def go():
            t = tool.timed("commit", *tool.commit_opts, "-a", "bench", "-m", "bench",
                           f"c{label}", f"bc{label}")
            tool.cmd("rmi", f"bc{label}")
            return t
        return go

    def first_run(label):
        def go():
            tool.cmd("commit", *tool.commit_opts, "-a", "bench", "-m", "bench", f"c{label}",
                     f"bc{label}")
            t = tool.timed("run", *tool.run_opts, "--rm", "--network", "none", f"bc{label}",
                           "true")
            tool.cmd("rmi", f"bc{label}")
            return t
        return go

    def build(cold):
        def go():
            flags = ["--no-cache"] if cold else []
            if tool.name.startswith("podman"):
                flags += tool.run_opts + ["--runtime", "runc", "--layers"]
            return tool.timed("build", *flags, "-t", "bench-build", str(ctx))
        return go

    table = {
        "run --rm IMAGE true": lambda: tool.timed("run", *tool.run_opts, "--rm", "--network",
                                                  "none", "bench-base", "true"),
        "diff 1k": lambda: tool.timed("diff", "c1k"),
        "diff 20k": lambda: tool.timed("diff", "c20k"),
        "commit 1k": commit("1k"),
        "commit 20k": commit("20k"),
        "build cold": build(True),
        "build cached": build(False),
        "images": lambda: tool.timed("images"),
        "image inspect": lambda: tool.timed("image", "inspect", "bench-base"),
        "history": lambda: tool.timed("history", "bench-base"),
        "first run 1k": first_run("1k"),
        "first run 20k": first_run("20k"),
    }
    return [(row, table[row]) for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="+", default=list(IMPLEMENTATIONS),
                        choices=IMPLEMENTATIONS)
    parser.add_argument("--rows", nargs="*", help="substrings of row names to run")
    parser.add_argument("--no-rss", action="store_true", help="skip the commit RSS probe")
    # Where the temp stores live. On this VM /var/tmp's ext4 block group allocates inodes
    # 5-7x slower than /tmp's (same file system), which every tool's commit pays.
    parser.add_argument("--scratch", default="/tmp")
    parser.add_argument("--layerbox-src", default=None, metavar="DIR",
                        help="run layerbox's cli/ from DIR (PYTHONPATH), e.g. a baseline")
    parser.add_argument("--before-src", default=None, metavar="DIR",
                        help="also run 'layerbox-before' from DIR (e.g. `git archive` of "
                             "an older commit's cli/ and overlayfs/), for before/after")
    parser.add_argument("--before-venv", default=None, metavar="VENV",
                        help="also run 'layerbox-before' as VENV/bin/layerbox (a venv with "
                             "an older checkout installed as that checkout's setup did; "
                             "with --before-src, that code on PYTHONPATH)")
    args = parser.parse_args()
    impls = [i for i in IMPLEMENTATIONS if i in args.only]
    if args.before_src or args.before_venv:
        impls.insert(1, "layerbox-before")
    if not shutil.which("podman"):
        impls = [i for i in impls if not i.startswith("podman")]
    rows = [r for r in ROWS if not args.rows or any(s in r for s in args.rows)]
    sizes = [s for s in CHANGE_SIZES if any(s in r for r in rows)] or []
    if not args.no_rss and "20k" not in sizes:
        sizes.append("20k")
    top = Path(tempfile.mkdtemp(prefix="lbt-", dir=args.scratch))
    tools: list[Tool] = []
    try:
        bench = top / "bench"
        bench.mkdir()
        image_files = build_base_tar(top / "base.tar")
        write_change_scripts(bench, image_files)
        ctx = top / "ctx"
        write_build_context(ctx)
        print(f"base image: {len(image_files)} stdlib files; impls: {', '.join(impls)}",
              file=sys.stderr)
        for name in impls:
            before = name == "layerbox-before"
            tool = Tool(name, top, args.before_src if before else args.layerbox_src,
                        Path(args.before_venv) if before and args.before_venv else None)
            tools.append(tool)
            start = time.perf_counter()
            prepare(tool, top / "base.tar", bench, sizes)
            if any("build cached" in r for r in rows):
                tool.cmd("build", *(tool.run_opts if name.startswith("podman") else []),
                         "-t", "bench-build", str(ctx))
            print(f"  {name}: prepared in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        times: dict[tuple[str, str], list[float]] = {}
        plans = {tool.name: dict(workloads(tool, ctx, rows)) for tool in tools}
        for row in rows:
            for _ in range(args.repeat):
                for tool in tools:
                    times.setdefault((row, tool.name), []).append(plans[tool.name][row]())
            print(f"  {row}: " + "  ".join(
                f"{t.name} {statistics.median(times[(row, t.name)]):.3f}" for t in tools),
                file=sys.stderr)
        rss = {}
        if not args.no_rss:
            for tool in tools:
                rss[tool.name] = tool.peak_rss_mb("commit", *tool.commit_opts, "-m", "rss", "c20k", "bcrss")
                tool.cmd("rmi", "bcrss")
        report(times, rss, [t.name for t in tools], rows)
    finally:
        for tool in tools:
            tool.cleanup()
        shutil.rmtree(top, ignore_errors=True)
    return 0


def report(times, rss, impls, rows) -> None:
    others = [i for i in impls if i != "layerbox"]
    head = ["work", *impls, *(f"layerbox/{o}" for o in others if "layerbox" in impls),
            "target", "met"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for row in rows:
        med = {i: statistics.median(times[(row, i)]) for i in impls}
        cells = [row] + [f"{med[i]:.3f}" for i in impls]
        target = TARGETS[row]
        if "layerbox" in impls:
            cells += [f"{med['layerbox'] / med[o]:.2f}" for o in others]
            cells += ["" if target is None else f"{target:.2f}",
                      "" if target is None else "yes" if med["layerbox"] <= target else "no"]
        else:
            cells += ["" if target is None else f"{target:.2f}", ""]
        print("| " + " | ".join(cells) + " |")
    if rss:
        print("\n`commit` of the 20k container, peak RSS (MB) / CPU user+sys (s): "
              + ", ".join(f"{i} {v[0]:.0f} / {v[1]:.1f}" for i, v in rss.items()))


if __name__ == "__main__":
    sys.exit(main())

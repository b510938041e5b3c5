"""Benchmark the union filesystems side by side (run through ./scripts/bench-fs).

Every workload runs on a fresh mount of the same lower layer (a copy of the Python
standard library, trimmed to about 8,000 files, plus one large file) for each
implementation in turn, alternating, and the median of the repeats is reported with
the ratios layerbox/fuse-overlayfs and layerbox/kernel and their geometric means.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

IMPLEMENTATIONS = ("kernel", "fuse-overlayfs", "layerbox")
#: An older layerbox (``--before-src``), run with this venv's python for before/after.
BEFORE = "layerbox-before"
TRACE = Path("/sys/kernel/tracing")


def build_lower(root: Path, files: int, big_mb: int, tree_mb: int = 250) -> tuple[int, int]:
    """Copy stdlib files into ROOT until FILES are there, pad the tree to TREE_MB with
    a few 8 MB files under lib/pad (the stdlib alone is ~100 MB), add one BIG_MB file."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    count = size = rounds = 0
    while count < files:  # this stdlib (byte code included) may hold fewer: copy again
        dest = root / "lib" / (f"again{rounds}" if rounds else "")
        rounds += 1
        for dirpath, dirnames, filenames in os.walk(stdlib):
            dirnames[:] = sorted(d for d in dirnames if d != "site-packages")
            rel = Path(dirpath).relative_to(stdlib)
            (dest / rel).mkdir(parents=True, exist_ok=True)
            for name in sorted(filenames):
                src = Path(dirpath) / name
                if not src.is_file() or src.is_symlink():
                    continue
                shutil.copy2(src, dest / rel / name)
                count += 1
                size += src.stat().st_size
                if count >= files:
                    break
            if count >= files:
                break
    pad = root / "lib" / "pad"
    pad.mkdir(exist_ok=True)
    chunk = os.urandom(1 << 20)
    while size < tree_mb * (1 << 20):
        with open(pad / f"{count}.bin", "wb") as f:
            for _ in range(8):
                f.write(chunk)
        count += 1
        size += 8 << 20
    with open(root / "big", "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(big_mb):
            f.write(chunk)
    return count, size + big_mb * (1 << 20)


class Mount:
    #: Source tree of the "layerbox-before" column (PYTHONPATH for its mount program).
    before_src: str | None = None

    def __init__(self, impl: str, lower: Path, scratch: Path):
        self.impl, self.lower = impl, lower
        self.startup = 0.0  # seconds from starting the mount program until it returned
        self.dir = Path(tempfile.mkdtemp(dir=scratch, prefix=impl + "-"))
        self.upper, self.work, self.mnt = (self.dir / n for n in ("upper", "work", "m"))
        for d in (self.upper, self.work, self.mnt):
            d.mkdir()
        self.pid: int | None = None

    def __enter__(self) -> "Mount":
        opts = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        start = time.perf_counter()
        if self.impl == "kernel":
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.mnt)],
                           check=True)
        else:
            env = None
            if self.impl == "fuse-overlayfs":
                prog = ["fuse-overlayfs"]
            elif self.impl == BEFORE:
                prog = [sys.executable, "-m", "overlayfs.mount"]
                env = dict(os.environ, PYTHONPATH=self.before_src)
            else:
                prog = [str(Path(sys.executable).parent / "layerbox-overlayfs")]
            subprocess.run([*prog, "-o", opts, str(self.mnt)], check=True, env=env, cwd="/")
            self.startup = time.perf_counter() - start
            out = subprocess.run(["pgrep", "-f", f"overlayfs.* {self.mnt}$"], capture_output=True,
                                 text=True).stdout.split()
            self.pid = int(out[0]) if out else None
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mnt):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.impl} did not mount")
            time.sleep(0.05)
        return self

    def peak_rss_mb(self) -> float | None:
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except FileNotFoundError:
            return None
        return None

    def __exit__(self, *exc) -> None:
        if self.impl == "kernel":
            subprocess.run(["umount", str(self.mnt)], check=False)
        else:
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False)
            deadline = time.monotonic() + 10
            while self.pid and Path(f"/proc/{self.pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(self.dir, ignore_errors=True)


def sh(cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, shell=True, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


# name → (preparation on the mount, the timed command); both run in the mount point.
WORKLOADS = {
    "walk cold (find)": (None, "find . > /dev/null"),
    "stat warm (find -ls)": ("find . > /dev/null", "find . -printf '%s %m %u\\n' > /dev/null"),
    "read every file": (None, "find lib -type f -exec cat {} + > /dev/null"),
    "read 512 MB file": (None, "cat big > /dev/null"),
    "untar 8k files": (None, "tar -xf {tar} --transform 's,^lib,new,'"),
    "write 512 MB + fsync": (None, "dd if=/dev/zero of=out bs=1M count={big_mb} conv=fsync status=none"),
    "copy-up 500 appends": (None, "find lib -name '*.py' | head -500 | while read f; do echo x >> \"$f\"; done"),
    "rm -rf 8k lower files": (None, "rm -rf lib"),
    "ls -lR": (None, "ls -lR > /dev/null"),
}


def rss_growth(args) -> int:
    """Peak RSS of layerbox-overlayfs after `find` and a stat of every entry of a lower
    of N empty-ish files, for each N of --rss-files: how memory grows with files."""
    print("| files in lower | layerbox peak RSS (MB) | fuse-overlayfs peak RSS (MB) |")
    print("| --- | --- | --- |")
    for n in args.rss_files:
        scratch = Path(tempfile.mkdtemp(prefix="layerbox-rss-", dir=args.scratch))
        try:
            lower = scratch / "lower"
            for i in range(n):
                d = lower / f"d{i // 1000}"
                if i % 1000 == 0:
                    d.mkdir(parents=True)
                (d / f"f{i}").write_bytes(b"x")
            peaks = {}
            for impl in ("layerbox", "fuse-overlayfs"):
                with Mount(impl, lower, scratch) as mount:
                    sh("find . -printf '%s %m\\n' > /dev/null; ls -lR > /dev/null", mount.mnt)
                    peaks[impl] = mount.peak_rss_mb()
            print(f"| {n} | {peaks['layerbox']:.0f} | {peaks['fuse-overlayfs']:.0f} |", flush=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


class RequestCounter:
    """Counts the FUSE requests the kernel sends to one mount, by opcode, through the
    kernel's ``fuse:fuse_request_send`` tracepoint in a trace instance of our own."""

    def __init__(self) -> None:
        self.dir = TRACE / "instances" / "layerbox-bench-fs"
        if not (TRACE / "events" / "fuse" / "fuse_request_send").exists():
            raise SystemExit("bench_fs: --requests needs tracefs with the fuse tracepoints")
        self.dir.mkdir(exist_ok=True)
        (self.dir / "buffer_size_kb").write_text("32768\n")
        self.event = self.dir / "events" / "fuse" / "fuse_request_send"

    def start(self, mnt: Path) -> None:
        dev = os.stat(mnt).st_dev
        kdev = (os.major(dev) << 20) | os.minor(dev)  # the kernel's dev_t encoding
        (self.event / "filter").write_text(f"connection == {kdev}\n")
        (self.dir / "trace").write_text("")
        (self.event / "enable").write_text("1\n")

    def stop(self) -> dict[str, int]:
        (self.event / "enable").write_text("0\n")
        counts: dict[str, int] = {}
        for line in (self.dir / "trace").read_text().splitlines():
            if "opcode" in line and "(" in line:
                name = line.split("(", 1)[1].split(")", 1)[0].removeprefix("FUSE_")
                counts[name] = counts.get(name, 0) + 1
        lost = sum(int(line.split()[1]) for cpu in (self.dir / "per_cpu").iterdir()
                   for line in (cpu / "stats").read_text().splitlines()
                   if line.startswith("overrun:"))
        if lost:
            counts["(lost)"] = lost
        return counts

    def close(self) -> None:
        self.dir.rmdir()


def count_requests(args, lower: Path, scratch: Path, impls: list[str], workloads) -> None:
    """One run of each workload per FUSE implementation, counting requests by opcode."""
    counter = RequestCounter()
    try:
        for workload, prep, cmd in workloads:
            counts = {}
            for impl in (i for i in impls if i != "kernel"):
                with Mount(impl, lower, scratch) as mount:
                    if prep:
                        sh(prep, mount.mnt)
                    else:
                        drop_caches()
                    counter.start(mount.mnt)
                    sh(cmd, mount.mnt)
                    counts[impl] = counter.stop()
            names = sorted({n for c in counts.values() for n in c},
                           key=lambda n: -max(c.get(n, 0) for c in counts.values()))
            cols = list(counts)
            print(f"\n{workload}: FUSE requests by opcode\n")
            print(f"| opcode | {' | '.join(cols)} |")
            print("|" + " --- |" * (len(cols) + 1))
            for n in names + ["total"]:
                cells = [str(sum(c.values()) if n == "total" else c.get(n, 0))
                         for c in counts.values()]
                print(f"| {n} | {' | '.join(cells)} |", flush=True)
    finally:
        counter.close()


def run(args) -> int:
    if args.rss_files:
        return rss_growth(args)
    Mount.before_src = args.before_src
    scratch = Path(tempfile.mkdtemp(prefix="layerbox-bench-", dir=args.scratch))
    try:
        lower = scratch / "lower"
        lower.mkdir()
        files, size = build_lower(lower, args.files, args.big_mb)
        tar = scratch / "tree.tar"
        with tarfile.open(tar, "w") as t:
            t.add(lower / "lib", arcname="lib")
        print(f"lower: {files} files, {size / 1e6:.0f} MB; repeats: {args.repeat}; "
              f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
        impls = [i for i in IMPLEMENTATIONS if i in args.only]
        if args.before_src:
            impls.insert(impls.index("layerbox") if "layerbox" in impls else len(impls), BEFORE)
        selected = [(w, prep, cmd.replace("{tar}", str(tar)).replace("{big_mb}", str(args.big_mb)))
                    for w, (prep, cmd) in WORKLOADS.items()
                    if not args.workloads or any(s in w for s in args.workloads)]
        if args.requests:
            count_requests(args, lower, scratch, impls, selected)
            return 0
        times: dict[tuple[str, str], list[float]] = {}
        rss: dict[str, float] = {}
        startup: dict[str, list[float]] = {}
        for workload, prep, cmd in selected:
            for _ in range(args.repeat):
                for impl in impls:
                    with Mount(impl, lower, scratch) as mount:
                        if prep:
                            sh(prep, mount.mnt)
                        else:
                            drop_caches()
                        start = time.perf_counter()
                        sh(cmd, mount.mnt)
                        times.setdefault((workload, impl), []).append(time.perf_counter() - start)
                        peak = mount.peak_rss_mb()
                        if peak is not None:
                            rss[impl] = max(rss.get(impl, 0.0), peak)
                        if impl != "kernel":
                            startup.setdefault(impl, []).append(mount.startup)
            print(f"  {workload}: " + "  ".join(
                f"{i} {statistics.median(times[(workload, i)]):.2f}s" for i in impls),
                file=sys.stderr)
        report(times, rss, startup, impls)
        print(f"\nload average at the end (1, 5, 15 min): "
              + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        subprocess.run(f"for m in $(grep -o '{scratch}[^ ]*/m' /proc/mounts); do "
                       f"fusermount3 -u -z $m 2>/dev/null || umount -l $m; done", shell=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def report(times, rss, startup, impls) -> None:
    workloads = sorted({w for w, _ in times}, key=list(WORKLOADS).index)
    pairs = [(a, b) for a, b in (("layerbox", "fuse-overlayfs"), ("layerbox", "kernel"),
                                 (BEFORE, "fuse-overlayfs"), ("layerbox", BEFORE))
             if a in impls and b in impls]
    print(f"| workload | {' | '.join(impls)} | {' | '.join(f'{a}/{b}' for a, b in pairs)} |")
    print("|" + " --- |" * (len(impls) + len(pairs) + 1))
    ratios: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for w in workloads:
        med = {i: statistics.median(times[(w, i)]) for i in impls}
        cells = [f"{med[i]:.2f}" for i in impls]
        for a, b in pairs:
            ratios[(a, b)].append(med[a] / med[b] if med[b] > 0 else float("nan"))
            cells.append(f"{ratios[(a, b)][-1]:.2f}")
        print(f"| {w} | {' | '.join(cells)} |")
    gm = lambda xs: statistics.geometric_mean(xs) if xs else float("nan")  # noqa: E731
    print(f"| geometric mean | {' | '.join('' for _ in impls)} | "
          f"{' | '.join(f'{gm(ratios[p]):.2f}' for p in pairs)} |")
    print("\npeak RSS of the daemon (MB): " + ", ".join(f"{i} {v:.0f}" for i, v in rss.items()))
    print("mount program start-up until mounted and serving, median (ms): " + ", ".join(
        f"{i} {statistics.median(v) * 1000:.0f}" for i, v in startup.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=8000)
    parser.add_argument("--big-mb", type=int, default=512)
    parser.add_argument("--only", nargs="+", default=list(IMPLEMENTATIONS),
                        choices=IMPLEMENTATIONS)
    parser.add_argument("--workloads", nargs="*", help="substrings of workload names to run")
    parser.add_argument("--before-src", default=None, metavar="DIR",
                        help="also run 'layerbox-before': the overlayfs/ package in DIR "
                             "(e.g. `git archive main overlayfs | tar -x -C DIR`) with "
                             "this venv's python, for before/after in one table")
    parser.add_argument("--requests", action="store_true",
                        help="instead of timing: count the FUSE requests of one run of "
                             "each workload by opcode (kernel tracepoint; needs root)")
    parser.add_argument("--scratch", default="/tmp",
                        help="where the lower, uppers and mounts go (/var/tmp is slow "
                             "at creating files on this VM)")
    parser.add_argument("--rss-files", type=int, nargs="*",
                        help="instead of the table: peak RSS after a walk of lowers of "
                             "these many files (e.g. 8000 100000)")
    args = parser.parse_args()
    if args.before_src and not (Path(args.before_src) / "overlayfs" / "mount.py").is_file():
        parser.error(f"--before-src {args.before_src}: no overlayfs/mount.py there")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

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
    def __init__(self, impl: str, lower: Path, scratch: Path):
        self.impl, self.lower = impl, lower
        self.dir = Path(tempfile.mkdtemp(dir=scratch, prefix=impl + "-"))
        self.upper, self.work, self.mnt = (self.dir / n for n in ("upper", "work", "m"))
        for d in (self.upper, self.work, self.mnt):
            d.mkdir()
        self.pid: int | None = None

    def __enter__(self) -> "Mount":
        opts = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        if self.impl == "kernel":
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.mnt)],
                           check=True)
        else:
            prog = ("fuse-overlayfs" if self.impl == "fuse-overlayfs"
                    else str(Path(sys.executable).parent / "layerbox-overlayfs"))
            subprocess.run([prog, "-o", opts, str(self.mnt)], check=True)
            out = subprocess.run(["pgrep", "-f", f"{Path(prog).name}.*{self.mnt}"], capture_output=True,
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


def run(args) -> int:
    if args.rss_files:
        return rss_growth(args)
    scratch = Path(tempfile.mkdtemp(prefix="layerbox-bench-", dir=args.scratch))
    try:
        lower = scratch / "lower"
        lower.mkdir()
        files, size = build_lower(lower, args.files, args.big_mb)
        tar = scratch / "tree.tar"
        with tarfile.open(tar, "w") as t:
            t.add(lower / "lib", arcname="lib")
        print(f"lower: {files} files, {size / 1e6:.0f} MB; repeats: {args.repeat}", file=sys.stderr)
        impls = [i for i in IMPLEMENTATIONS if i in args.only]
        times: dict[tuple[str, str], list[float]] = {}
        rss: dict[str, float] = {}
        for workload, (prep, cmd) in WORKLOADS.items():
            if args.workloads and not any(w in workload for w in args.workloads):
                continue
            cmd = cmd.replace("{tar}", str(tar)).replace("{big_mb}", str(args.big_mb))
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
            print(f"  {workload}: " + "  ".join(
                f"{i} {statistics.median(times[(workload, i)]):.2f}s" for i in impls),
                file=sys.stderr)
        report(times, rss, impls)
    finally:
        subprocess.run(f"for m in $(grep -o '{scratch}[^ ]*/m' /proc/mounts); do "
                       f"fusermount3 -u -z $m 2>/dev/null || umount -l $m; done", shell=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def report(times, rss, impls) -> None:
    workloads = sorted({w for w, _ in times}, key=list(WORKLOADS).index)
    head = f"| workload | {' | '.join(impls)} | layerbox/fuse-overlayfs | layerbox/kernel |"
    print(head)
    print("|" + " --- |" * (len(impls) + 3))
    ratios_fo, ratios_k = [], []
    for w in workloads:
        med = {i: statistics.median(times[(w, i)]) for i in impls}
        cells = [f"{med[i]:.2f}" for i in impls]
        rf = rk = ""
        if "layerbox" in med and "fuse-overlayfs" in med and med["fuse-overlayfs"] > 0:
            ratios_fo.append(med["layerbox"] / med["fuse-overlayfs"])
            rf = f"{ratios_fo[-1]:.2f}"
        if "layerbox" in med and "kernel" in med and med["kernel"] > 0:
            ratios_k.append(med["layerbox"] / med["kernel"])
            rk = f"{ratios_k[-1]:.2f}"
        print(f"| {w} | {' | '.join(cells)} | {rf} | {rk} |")
    gm = lambda xs: statistics.geometric_mean(xs) if xs else float("nan")  # noqa: E731
    print(f"| geometric mean | {' | '.join('' for _ in impls)} | {gm(ratios_fo):.2f} | {gm(ratios_k):.2f} |")
    print("\npeak RSS of the daemon (MB): " + ", ".join(f"{i} {v:.0f}" for i, v in rss.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=8000)
    parser.add_argument("--big-mb", type=int, default=512)
    parser.add_argument("--only", nargs="+", default=list(IMPLEMENTATIONS))
    parser.add_argument("--workloads", nargs="*", help="substrings of workload names to run")
    parser.add_argument("--scratch", default="/tmp",
                        help="where the lower, uppers and mounts go (/var/tmp is slow "
                             "at creating files on this VM)")
    parser.add_argument("--rss-files", type=int, nargs="*",
                        help="instead of the table: peak RSS after a walk of lowers of "
                             "these many files (e.g. 8000 100000)")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())

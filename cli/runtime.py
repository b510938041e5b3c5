"""The OCI runtime side of a container: the bundle's config.json, and `runc` itself.

The spec follows what Docker gives a default (non-privileged) container: its own pid,
mount, uts, ipc and network namespaces (network shared with ``--network host``), the
default capability set, /proc /dev /dev/pts /dev/shm /dev/mqueue /sys (read-only) and a
read-only cgroup mount, and the same masked and read-only paths. /etc/hostname,
/etc/hosts and /etc/resolv.conf are bind mounts of files in the container directory, so
the container's upper dir never sees them (a container that changed nothing has an
empty diff).

rlimits: raising a hard limit is not permitted here, so the only rlimit we set is
RLIMIT_NOFILE, clamped to the current hard limit.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

from cli import logs
from cli.errors import UserError
from cli.values import Record

log = logs.get(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: moby oci/caps/defaults.go
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

#: Every capability runc 1.1 knows, in kernel bit order; --privileged and --cap-add=ALL
#: give those of them the host's bounding set has (host_capabilities()).
ALL_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]

#: moby oci/defaults.go
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
]

#: Files the runtime bind-mounts over the rootfs (kept in the container dir).
ETC_FILES = ("hostname", "hosts", "resolv.conf")

#: Paths that must exist in the rootfs as mount points. They are created in the
#: container's init layer (below the upper dir), never by runc in the upper dir.
MOUNT_POINT_DIRS = ("/proc", "/dev", "/sys")
MOUNT_POINT_FILES = tuple(f"/etc/{name}" for name in ETC_FILES)

#: moby's default device cgroup rules (oci/devices_linux.go + daemon defaults).
_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]


#: Syscalls Docker's default seccomp profile refuses that the capability set alone does
#: not (docs.docker.com "Seccomp security profiles": significant syscalls blocked).
#: Docker's profile is an allowlist; this denylist of the same calls keeps what matters
#: for isolation without a 300-entry list to maintain. Refused with EPERM, as Docker does.
SECCOMP_DENIED = [
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mbind", "mount", "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
    "query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl", "umount", "umount2",
    "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
]


def default_seccomp() -> dict:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": list(SECCOMP_DENIED), "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}],
    }


# Records (cli.values), not dataclasses: importing dataclasses is ~5 ms of every run.

class ProcessSpec(Record):
    """What to run and how, resolved from the image config and the run flags: args,
    env (()), workdir ("/"), user ("": "name", "uid", "name:group", "uid:gid"), hostname
    (""), tty (False), network ("bridge"; "none"/"private" too: own netns; "host": the
    host's)."""

    __slots__ = FIELDS = ("args", "env", "workdir", "user", "hostname", "tty", "network")
    DEFAULTS = ((), "/", "", "", False, "bridge")


class Security(Record):
    """--cap-add, --cap-drop, --privileged and --read-only: cap_add, cap_drop (tuples),
    privileged, read_only."""

    __slots__ = FIELDS = ("cap_add", "cap_drop", "privileged", "read_only")
    DEFAULTS = ((), (), False, False)

    def capabilities(self) -> list[str]:
        """Docker's rule (oci/caps TweakCapabilities): ALL in adds gives every capability
        less the drops; ALL in drops keeps only the adds; else defaults + adds - drops."""
        available = host_capabilities()
        if self.privileged:
            return available
        adds = [normalize_capability(c) for c in self.cap_add]
        drops = [normalize_capability(c) for c in self.cap_drop]
        missing = [c for c in adds if c != "ALL" and c not in available]
        if missing:
            raise UserError(f"capability {missing[0]} is not available on this host")
        if "ALL" in adds:
            return [c for c in available if c not in drops]
        base = [] if "ALL" in drops else list(DEFAULT_CAPABILITIES)
        caps = base + [c for c in adds if c not in base]
        return [c for c in caps if c not in drops or c in adds and "ALL" in drops]


def host_capabilities() -> list[str]:
    """The capabilities our own bounding set allows (a container cannot get more)."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("CapBnd:"))
        mask = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return list(DEFAULT_CAPABILITIES)
    return [cap for bit, cap in enumerate(ALL_CAPABILITIES) if mask >> bit & 1]


def normalize_capability(name: str) -> str:
    upper = name.upper()
    if upper == "ALL":
        return "ALL"
    cap = upper if upper.startswith("CAP_") else "CAP_" + upper
    if cap not in ALL_CAPABILITIES:
        raise UserError(f"invalid capability: {name}")
    return cap


class ResolvedUser(Record):
    """uid, gid, additional_gids (a tuple), home."""

    __slots__ = FIELDS = ("uid", "gid", "additional_gids", "home")


# -- user lookup inside the rootfs -----------------------------------------------------

def _read_in_root(rootfs: Path, path: str) -> str | None:
    """Read PATH as the container would see it: symlinks resolved inside ROOTFS."""
    from cli.rootpath import resolve_in_root
    try:
        with open(resolve_in_root(rootfs, path), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _parse_colon_file(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines()
            if line and not line.startswith("#") and line.count(":") >= 2]


def resolve_user(rootfs: Path, spec: str) -> ResolvedUser:
    """Docker's ``-u`` semantics: name or uid, optionally ``:group`` (name or gid)."""
    user, _, group = (spec or "").partition(":")
    passwd = _parse_colon_file(_read_in_root(rootfs, "/etc/passwd"))
    groups = _parse_colon_file(_read_in_root(rootfs, "/etc/group"))
    user = user or "0"
    entry = None
    for row in passwd:
        if len(row) >= 4 and (row[0] == user or (user.isdigit() and row[2] == user)):
            entry = row
            break
    if entry is not None:
        uid, gid = int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
        name = entry[0]
        home = entry[5] if len(entry) > 5 and entry[5] else "/"
    elif user.isdigit():
        uid, gid, name, home = int(user), 0, None, "/"
    else:
        raise UserError(f"unable to find user {user}: no matching entries in passwd file")
    if group:
        for row in groups:
            if len(row) >= 3 and (row[0] == group or (group.isdigit() and row[2] == group)):
                gid = int(row[2])
                break
        else:
            if not group.isdigit():
                raise UserError(f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
    extra: list[int] = []
    if name is not None and not group:
        for row in groups:
            if len(row) >= 4 and name in row[3].split(",") and row[2].isdigit():
                if int(row[2]) != gid and int(row[2]) not in extra:
                    extra.append(int(row[2]))
    return ResolvedUser(uid, gid, tuple(extra), home)


# -- the spec -----------------------------------------------------------------------

def container_env(env: list[str], *, hostname: str, home: str, tty: bool) -> list[str]:
    """Docker's environment rules: PATH default, HOSTNAME, TERM for a tty, HOME from passwd."""
    keys = {item.partition("=")[0] for item in env}
    result = []
    if "PATH" not in keys:
        result.append(f"PATH={DEFAULT_PATH}")
    result.append(f"HOSTNAME={hostname}")
    if tty and "TERM" not in keys:
        result.append("TERM=xterm")
    result.extend(item for item in env if not item.startswith("HOSTNAME="))
    if "HOME" not in keys:
        result.append(f"HOME={home}")
    return result


def _nofile_limit() -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1048576
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    return {"type": "RLIMIT_NOFILE", "hard": wanted, "soft": min(1024, wanted)}


def build_spec(process: ProcessSpec, *, rootfs: Path, container_id: str,
               etc_dir: Path, extra_mounts: list[dict] = (),
               security: Security = Security()) -> dict:
    """The bundle's config.json for a container of ROOTFS (an absolute mounted path)."""
    user = resolve_user(rootfs, process.user)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if process.network != "host":
        namespaces.append({"type": "network"})
    mounts = [dict(m) for m in DEFAULT_MOUNTS]
    for name in ETC_FILES:
        mounts.append({"destination": f"/etc/{name}", "type": "bind",
                       "source": str(etc_dir / name), "options": ["rbind", "rprivate"]})
    mounts += [dict(m) for m in extra_mounts]     # -v/--mount/--tmpfs, after the defaults
    caps = security.capabilities()
    linux = {
        # cgroupfs driver: there is no systemd here (hybrid v1 + v2 hierarchy).
        "cgroupsPath": f"/layerbox/{container_id}",
        "resources": {"devices": _DEVICE_RULES},
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
        "seccomp": default_seccomp(),
    }
    if security.privileged:
        # As Docker: no seccomp filter, nothing masked, every device allowed, /sys and
        # the cgroup tree writable.
        linux.update(resources={"devices": [{"allow": True, "access": "rwm"}]},
                     maskedPaths=[], readonlyPaths=[])
        del linux["seccomp"]
        for mount in mounts:
            if mount["type"] in ("sysfs", "cgroup"):
                mount["options"] = [o for o in mount["options"] if o != "ro"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": process.tty,
            "user": {"uid": user.uid, "gid": user.gid,
                     **({"additionalGids": list(user.additional_gids)}
                        if user.additional_gids else {})},
            "args": list(process.args),
            "env": container_env(process.env, hostname=process.hostname, home=user.home,
                                 tty=process.tty),
            "cwd": process.workdir or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [_nofile_limit()],
            "noNewPrivileges": False,
        },
        "root": {"path": str(rootfs), "readonly": security.read_only},
        "hostname": process.hostname,
        "mounts": mounts,
        "linux": linux,
    }


def write_bundle(bundle: Path, spec: dict) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    tmp = bundle / "config.json.tmp"
    tmp.write_text(json.dumps(spec, indent=2))
    os.replace(tmp, bundle / "config.json")


def write_etc_files(etc_dir: Path, *, hostname: str, network: str) -> None:
    """hostname, hosts and resolv.conf for the bind mounts (Docker's contents)."""
    etc_dir.mkdir(parents=True, exist_ok=True)
    (etc_dir / "hostname").write_text(hostname + "\n")
    if network == "host":
        try:
            hosts = Path("/etc/hosts").read_text()
        except OSError:
            hosts = "127.0.0.1\tlocalhost\n"
    else:
        hosts = ("127.0.0.1\tlocalhost\n"
                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                 "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
                 f"127.0.1.1\t{hostname}\n")
    (etc_dir / "hosts").write_text(hosts)
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    if network == "bridge":
        from cli.network import resolv_conf
        resolv = resolv_conf(resolv)
    (etc_dir / "resolv.conf").write_text(resolv)


# -- runc -----------------------------------------------------------------------------

class RuntimeFailure(UserError):
    """runc refused or failed; the message is runc's own last line."""


def runc_message(stderr: str) -> str:
    """runc's error text without its logrus decoration."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return "runc failed"
    last = lines[-1]
    if 'msg="' in last:
        last = last.split('msg="', 1)[1].rsplit('"', 1)[0]
    return last.replace('\\"', '"')


class Runc:
    """`runc` with a state directory private to one store root."""

    def __init__(self, state_dir: Path, binary: str = "runc"):
        self.state_dir = state_dir
        self.binary = binary

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.state_dir), *args]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        log.debug("runc %s", " ".join(args))
        proc = subprocess.run(self.command(*args), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeFailure(runc_message(proc.stderr))
        return proc

    def state(self, container_id: str) -> dict | None:
        """runc's state (status created|running|paused|stopped, pid), or None if unknown."""
        proc = self._run("state", container_id, check=False)
        if proc.returncode != 0:
            return None
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return None

    def start(self, container_id: str) -> None:
        self._run("start", container_id)

    def kill(self, container_id: str, signal: str, *, all_processes: bool = False) -> None:
        self._run("kill", *(["--all"] if all_processes else []), container_id, signal)

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id)

    def pids(self, container_id: str) -> list[int]:
        """Host pids of every process in the container (``runc ps``)."""
        proc = self._run("ps", "--format", "json", container_id)
        return [int(pid) for pid in json.loads(proc.stdout or "[]") or []]

    def delete(self, container_id: str, *, force: bool = False) -> None:
        proc = self._run("delete", *(["--force"] if force else []), container_id, check=False)
        if proc.returncode != 0 and "does not exist" not in proc.stderr:
            raise RuntimeFailure(runc_message(proc.stderr))

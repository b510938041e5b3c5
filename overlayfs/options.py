"""The mount program's command line: fuse-overlayfs' syntax, parsed into a MountConfig.

    layerbox-overlayfs [-f] [-d] [-o OPTS]... [SOURCE] MOUNTPOINT

``-o`` may repeat and may come before or after the positionals (``mount.fuse3`` puts
it last); ``-oOPTS`` is accepted too. Within an option string, commas separate
options except inside double quotes or after a backslash, because Podman passes
SELinux labels such as ``context="system_u:object_r:container_file_t:s0:c1,c2"``.
Unknown options are warnings, never errors: mount(8) and Podman add options we
have no use for, and refusing them would make the mount fail for no benefit.

Everything that can be checked before mounting is checked here (directories exist,
work and upper share a filesystem), so a bad command line fails in the foreground
with one line and nothing mounted.
"""

from __future__ import annotations

import math
import os
import stat

from overlayfs.config import IdMapping, MountConfig

PROG = "layerbox-overlayfs"

USAGE = f"""\
usage: {PROG} [-f] [-d] [-o OPTIONS]... [SOURCE] MOUNTPOINT

A union filesystem in FUSE with fuse-overlayfs' command line.

  -f                 stay in the foreground
  -d, --debug        debug logging to stderr (implies -f)
  -o OPTIONS         comma-separated mount options (may repeat)
  -h, --help         show this help
  -V, --version      show the version

mount options:
  lowerdir=TOP:...:BOTTOM   read-only layers, topmost first (\\: escapes a colon)
  upperdir=DIR              writable layer (without it the mount is read-only)
  workdir=DIR               staging dir on upperdir's filesystem (required with upperdir)
  volatile, fsync=0|1       fsync=0 and volatile make fsync a no-op
  timeout=SECS              kernel entry/attribute cache timeout
  squash_to_root, squash_to_uid=N, squash_to_gid=N
  uidmapping=FROM:TO:LEN[:FROM:TO:LEN...], gidmapping=...
  noxattrs, noacl, static_nlink, debug
  ro, rw, nodev, nosuid, noexec, allow_other, context=... and the other generic
  mount options are honoured or ignored; unknown options print a warning.

Unmount with: fusermount3 -u MOUNTPOINT
"""

#: SELinux label options: handed to the kernel when SELinux is active.
_CONTEXT_OPTIONS = ("context", "fscontext", "defcontext", "rootcontext")
#: Options whose negative form is handed to the kernel; the last one given wins.
_KERNEL_FLAG_PAIRS = {"dev": "nodev", "suid": "nosuid", "exec": "noexec"}
#: Generic mount(8)/FUSE options with nothing for us to do: accepted silently.
_IGNORED_FLAGS = frozenset({
    "atime", "noatime", "relatime", "norelatime", "strictatime", "nostrictatime",
    "lazytime", "nolazytime", "diratime", "nodiratime", "sync", "async", "dirsync",
    "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev", "nofail",
    "defaults", "default_permissions", "allow_root", "auto_unmount", "silent", "loud",
    "kernel_cache", "splice_read", "splice_write", "splice_move",
})
#: fuse-overlayfs tuning options whose effect we provide anyway or do not need.
_IGNORED_VALUED = frozenset({
    "threaded", "fast_ino", "writeback", "redirect_dir", "max_write", "max_read",
    "fsname", "subtype", "comment", "blksize",
})


class OptionError(Exception):
    """A bad command line; the message is one line, printed after the program name."""


class InfoRequested(Exception):
    """``-h``/``-V``: print ``text`` on stdout and exit 0, mounting nothing."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


# --------------------------------------------------------------------- lexing
def split_options(text: str) -> list[str]:
    """Split an ``-o`` string on commas outside double quotes and not escaped.

    Quotes and backslashes stay in the pieces: a value's meaning (a path to unquote,
    a label to hand to the kernel as written) is decided per option.
    """
    pieces, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    pieces.append("".join(current))
    return [piece for piece in pieces if piece]


def _unescape(text: str, separator: str | None = None) -> list[str]:
    """Remove quotes and backslash escapes; split on unquoted, unescaped SEPARATOR."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    """An option value as the user meant it: ``"a,b"`` → ``a,b``, ``a\\,b`` → ``a,b``."""
    return _unescape(value)[0]


def split_lowerdir(value: str) -> list[str]:
    """``TOP:MID:BOTTOM`` with ``\\:`` (or quotes) protecting a colon; empty items dropped."""
    return [part for part in _unescape(value, ":") if part]


# -------------------------------------------------------------------- values
def _parse_int(name: str, value: str, *, maximum: int = 2**32 - 2) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise OptionError(f"invalid value for {name}=: '{value}' is not a number") from None
    if not 0 <= number <= maximum:
        raise OptionError(f"invalid value for {name}=: {number} is out of range")
    return number


def _parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise OptionError(f"invalid value for timeout=: '{value}' is not a number") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise OptionError(f"invalid value for timeout=: '{value}'")
    return seconds


def parse_id_mappings(name: str, value: str) -> tuple[IdMapping, ...]:
    """fuse-overlayfs' ``FROM:TO:LEN[:FROM:TO:LEN...]`` (containers/storage writes this form)."""
    fields = [item for item in value.split(":") if item]
    if not fields or len(fields) % 3:
        raise OptionError(f"invalid mapping specified: {name}={value}")
    numbers = []
    for item in fields:
        if not item.isdigit():
            raise OptionError(f"invalid mapping specified: {name}={value}")
        numbers.append(int(item))
    triples = tuple(tuple(numbers[i:i + 3]) for i in range(0, len(numbers), 3))
    if any(length == 0 for _, _, length in triples):
        raise OptionError(f"invalid mapping specified: {name}={value} (zero length)")
    return triples  # type: ignore[return-value]


def _existing_dir(role: str, path: str) -> str:
    """PATH resolved (symlinks followed), required to be a directory."""
    if not path:
        raise OptionError(f"{role} is empty")
    resolved = os.path.realpath(path)
    try:
        st = os.stat(resolved)
    except FileNotFoundError:
        raise OptionError(f"{role} '{path}' does not exist") from None
    except OSError as exc:
        raise OptionError(f"cannot access {role} '{path}': {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OptionError(f"{role} '{path}' is not a directory")
    return resolved


def _is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def selinux_enabled() -> bool:
    """Whether the kernel understands ``context=`` mount options (else mount(2) fails)."""
    return os.path.exists("/sys/fs/selinux/enforce")


# ------------------------------------------------------------------- parsing
class _Arguments:
    """The command line split into flags, option strings and positionals."""

    foreground: bool = False
    debug: bool = False

    def __init__(self) -> None:
        self.option_strings: list[str] = []
        self.positionals: list[str] = []
        self.warnings: list[str] = []


def _split_argv(argv: list[str]) -> _Arguments:
    args = _Arguments()
    items = iter(argv)
    for arg in items:
        if arg == "--":
            args.positionals.extend(items)
        elif arg == "-o":
            value = next(items, None)
            if value is None:
                raise OptionError("option -o requires an argument")
            args.option_strings.append(value)
        elif arg.startswith("-o"):
            args.option_strings.append(arg[2:])
        elif arg.startswith("--options="):
            args.option_strings.append(arg[len("--options="):])
        elif arg == "-f":
            args.foreground = True
        elif arg in ("-d", "--debug"):
            args.debug = True
        elif arg in ("-h", "--help"):
            raise InfoRequested(USAGE)
        elif arg in ("-V", "--version"):
            raise InfoRequested(_version_text())
        elif arg == "-s":
            pass  # libfuse's "single-threaded": we serve with one worker anyway
        elif arg.startswith("-") and arg != "-":
            args.warnings.append(f"{PROG}: warning: unknown argument '{arg}' ignored")
        else:
            args.positionals.append(arg)
    return args


def _version_text() -> str:
    from importlib import metadata

    from overlayfs import fuse_abi
    try:
        ours = metadata.version("layerbox")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return (f"{PROG}: version {ours}\n"
            f"using FUSE kernel interface version {fuse_abi.MAJOR}.{fuse_abi.MINOR}\n")


class _Options:
    """Mount options as given, before the file system is consulted (the class
    attributes are the defaults; plain classes, not dataclasses: importing dataclasses
    is 5-9 ms of the mount program's start-up)."""

    lowerdir: str | None = None
    upperdir: str | None = None
    workdir: str | None = None
    read_only: bool = False
    debug: bool = False
    fsync: bool = True
    timeout: float | None = None
    squash_to_root: bool = False
    squash_to_uid: int | None = None
    squash_to_gid: int | None = None
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    xattrs: bool = True
    acl: bool = True
    static_nlink: bool = False
    allow_other: bool = False

    def __init__(self) -> None:
        #: "dev"/"suid"/"exec" → whether its "no" form was the last one given.
        self.negated_flags: dict[str, bool] = {}
        self.contexts: list[str] = []
        self.warnings: list[str] = []


def _apply_option(opts: _Options, token: str) -> None:
    name, has_value, raw = token.partition("=")
    value = unquote(raw)
    if not has_value:
        _apply_flag(opts, token)
    elif name == "lowerdir":
        opts.lowerdir = raw  # split later: \: and quotes must survive until then
    elif name == "upperdir":
        opts.upperdir = value
    elif name == "workdir":
        opts.workdir = value
    elif name == "fsync":
        opts.fsync = _parse_int(name, value, maximum=2**31) != 0
    elif name == "noxattrs":
        opts.xattrs = _parse_int(name, value, maximum=2**31) == 0
    elif name == "timeout":
        opts.timeout = _parse_timeout(value)
    elif name == "squash_to_uid":
        opts.squash_to_uid = _parse_int(name, value)
    elif name == "squash_to_gid":
        opts.squash_to_gid = _parse_int(name, value)
    elif name == "uidmapping":
        opts.uid_mappings = parse_id_mappings(name, value)
    elif name == "gidmapping":
        opts.gid_mappings = parse_id_mappings(name, value)
    elif name in _CONTEXT_OPTIONS:
        opts.contexts.append(token)  # as written: the kernel parses the quotes itself
    elif name in _IGNORED_VALUED or name.startswith("x-"):
        pass
    else:
        opts.warnings.append(f"{PROG}: warning: unknown option '{token}' ignored")


def _apply_flag(opts: _Options, name: str) -> None:
    if name == "ro":
        opts.read_only = True
    elif name == "rw":
        opts.read_only = False
    elif name == "volatile":
        opts.fsync = False
    elif name == "squash_to_root":
        opts.squash_to_root = True
    elif name == "noxattrs":
        opts.xattrs = False
    elif name == "noacl":
        opts.acl = False
    elif name == "static_nlink":
        opts.static_nlink = True
    elif name == "debug":
        opts.debug = True
    elif name == "allow_other":
        opts.allow_other = True
    elif name in _KERNEL_FLAG_PAIRS:
        opts.negated_flags[name] = False
    elif name in _KERNEL_FLAG_PAIRS.values():
        opts.negated_flags[name[2:]] = True
    elif name in _IGNORED_FLAGS or name.startswith("x-"):
        pass
    else:
        opts.warnings.append(f"{PROG}: warning: unknown option '{name}' ignored")


def parse_command_line(argv: list[str], *, selinux: bool | None = None) -> MountConfig:
    """ARGV (without the program name) → MountConfig, or OptionError / InfoRequested.

    SELINUX says whether ``context=``-style options reach the kernel; by default it is
    detected (a kernel without SELinux rejects them, so they are then dropped).
    """
    args = _split_argv(argv)
    opts = _Options()
    for text in args.option_strings:
        for token in split_options(text):
            _apply_option(opts, token)

    if not args.positionals:
        raise OptionError("no mountpoint specified")
    if len(args.positionals) > 2:
        extra = " ".join(args.positionals[:-2])
        raise OptionError(f"too many arguments: '{extra}' (expected [SOURCE] MOUNTPOINT)")
    source = args.positionals[0] if len(args.positionals) == 2 else PROG
    mountpoint = _existing_dir("mountpoint", args.positionals[-1])

    if opts.lowerdir is None:
        raise OptionError("no lowerdir specified (-o lowerdir=TOP:...:BOTTOM)")
    lower_paths = split_lowerdir(opts.lowerdir)
    if not lower_paths:
        raise OptionError("lowerdir is empty")
    lowers = tuple(_existing_dir("lowerdir", path) for path in lower_paths)
    upper, work = _upper_and_work(opts)

    debug = opts.debug or args.debug
    use_selinux = selinux_enabled() if selinux is None else selinux
    kernel_options = [f"no{flag}" for flag, negated in sorted(opts.negated_flags.items())
                      if negated]
    if use_selinux:
        kernel_options.extend(opts.contexts)
    squash_uid, squash_gid = opts.squash_to_uid, opts.squash_to_gid
    if opts.squash_to_root:
        squash_uid = 0 if squash_uid is None else squash_uid
        squash_gid = 0 if squash_gid is None else squash_gid

    return MountConfig(
        mountpoint=mountpoint,
        lowers=lowers,
        upper=upper,
        work=work,
        source=source,
        foreground=args.foreground or debug,
        debug=debug,
        read_only=opts.read_only,
        squash_to_uid=squash_uid,
        squash_to_gid=squash_gid,
        uid_mappings=opts.uid_mappings,
        gid_mappings=opts.gid_mappings,
        xattrs=opts.xattrs,
        acl=opts.acl,
        static_nlink=opts.static_nlink,
        fsync=opts.fsync,
        timeout=opts.timeout,
        allow_other=opts.allow_other or os.geteuid() == 0,
        kernel_options=tuple(kernel_options),
        warnings=tuple(args.warnings + opts.warnings),
    )


def _upper_and_work(opts: _Options) -> tuple[str | None, str | None]:
    """Resolve and check upperdir/workdir; a workdir without upperdir is unused."""
    if opts.upperdir is None:
        return None, None
    upper = _existing_dir("upperdir", opts.upperdir)
    if opts.workdir is None:
        raise OptionError("workdir not specified (required with upperdir)")
    work = _existing_dir("workdir", opts.workdir)
    if _is_within(work, upper) or _is_within(upper, work):
        raise OptionError(f"workdir '{opts.workdir}' and upperdir '{opts.upperdir}' "
                          "must be separate directories, neither inside the other")
    if os.stat(work).st_dev != os.stat(upper).st_dev:
        raise OptionError(f"workdir '{opts.workdir}' and upperdir '{opts.upperdir}' "
                          "must be on the same filesystem")
    return upper, work

"""What COPY/ADD read and how they stage it: source trees, wildcards, the staging dir.

A ``SourceTree`` is the build context (with .dockerignore applied) or an image's layer
dirs (``COPY --from``), looked up top layer first. COPY/ADD copy their sources into a
fresh staging directory laid out as the layer will be (``<staging>/<dest path>``); the
builder then hashes it (the cache key) and streams it into the store as one layer.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
import urllib.parse
import urllib.request
from pathlib import Path

from cli.build.dockerignore import DockerIgnore
from cli.errors import UserError


class SourceTree:
    """Read-only union of directories (top first), minus ignored paths."""

    def __init__(self, roots: list[Path], ignore: DockerIgnore | None = None):
        self.roots = [Path(r) for r in roots]
        self.ignore = ignore or DockerIgnore()

    def real(self, rel: str) -> Path | None:
        rel = rel.strip("/")
        if rel and self.ignore.matches(rel):
            return None
        for root in self.roots:
            path = root / rel if rel else root
            if os.path.lexists(path):
                return path
            if (root / posixpath.dirname(rel) / (".wh." + posixpath.basename(rel))).exists():
                return None
        return None

    def listdir(self, rel: str) -> list[str]:
        rel = rel.strip("/")
        names: set[str] = set()
        hidden: set[str] = set()
        for root in self.roots:
            path = root / rel if rel else root
            if not path.is_dir() or path.is_symlink():
                continue
            for name in os.listdir(path):
                if name.startswith(".wh."):
                    hidden.add(name[4:])
                elif name not in hidden:
                    names.add(name)
            if (path / ".wh..wh..opq").exists():
                break
        out = []
        for name in sorted(names):
            child = posixpath.join(rel, name) if rel else name
            if self.ignore.matches(child) and not self.ignore.has_exceptions:
                continue
            out.append(name)
        return out

    def glob(self, pattern: str) -> list[str]:
        """Paths (relative, no leading slash) matching PATTERN, sorted."""
        clean = posixpath.normpath("/" + pattern).lstrip("/")
        if not any(c in clean for c in "*?["):
            return [clean] if self.real(clean) is not None else []
        found = [""]
        for part in [p for p in clean.split("/") if p]:
            nxt = []
            for base in found:
                if any(c in part for c in "*?["):
                    nxt += [posixpath.join(base, n) if base else n
                            for n in self.listdir(base) if fnmatch.fnmatchcase(n, part)]
                elif self.real(posixpath.join(base, part) if base else part) is not None:
                    nxt.append(posixpath.join(base, part) if base else part)
            found = nxt
        return sorted(f for f in found if self.real(f) is not None)


def parse_chown(spec: str | None, etc_dirs: list[Path]) -> tuple[int, int] | None:
    """``uid[:gid]`` with numbers or names looked up in the image's /etc/passwd, /etc/group."""
    if not spec:
        return None
    user, _, group = spec.partition(":")

    def lookup(name: str, filename: str) -> int:
        if name.isdigit():
            return int(name)
        for root in etc_dirs:
            path = root / "etc" / filename
            if path.is_file():
                for line in path.read_text(errors="replace").splitlines():
                    fields = line.split(":")
                    if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
                        return int(fields[2])
                break
        raise UserError(f"unable to convert uid/gid chown string to host mapping: "
                        f"no such {'user' if filename == 'passwd' else 'group'}: {name}")

    uid = lookup(user, "passwd")
    gid = lookup(group, "group") if group else uid
    return uid, gid


def parse_chmod(spec: str | None) -> int | None:
    if not spec:
        return None
    try:
        return int(spec, 8) & 0o7777
    except ValueError:
        raise UserError(f"invalid chmod parameter: {spec}") from None


class Stager:
    """Copies sources into STAGING under destination paths, applying chown/chmod."""

    def __init__(self, staging: Path, base: SourceTree, owner: tuple[int, int] | None,
                 mode: int | None):
        self.staging = staging
        self.base = base          # the parent image, for existing directories' metadata
        self.owner = owner
        self.mode = mode

    def _target(self, dest: str) -> Path:
        return self.staging / dest.lstrip("/")

    def make_parents(self, dest: str) -> None:
        """Create DEST's parent dirs in staging, copying metadata of existing ones."""
        parts = [p for p in dest.strip("/").split("/") if p]
        rel = ""
        for part in parts[:-1]:
            rel = posixpath.join(rel, part) if rel else part
            self.make_dir(rel, create_owner=False)

    def make_dir(self, rel: str, *, create_owner: bool = True) -> None:
        path = self.staging / rel
        if path.is_dir():
            return
        existing = self.base.real(rel)
        path.mkdir()
        if existing is not None and existing.is_dir():
            st = existing.stat()
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.chmod(path, 0o755)
            if create_owner and self.owner:
                os.chown(path, *self.owner)

    def is_dir_in_image(self, dest: str) -> bool:
        real = self.base.real(dest.strip("/"))
        return real is not None and real.is_dir()

    def copy_entry(self, src: Path, dest: str) -> None:
        """Copy one file/symlink/dir SRC to DEST (absolute in-image path)."""
        self.make_parents(dest)
        target = self._target(dest)
        if src.is_symlink():
            if os.path.lexists(target):
                os.unlink(target)
            os.symlink(os.readlink(src), target)
            if self.owner:
                os.lchown(target, *self.owner)
            return
        if src.is_dir():
            self.make_dir(dest.strip("/"))
            shutil.copystat(src, target)
            self._own(target, src)
            return
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        shutil.copy2(src, target, follow_symlinks=False)
        self._own(target, src)

    def _own(self, target: Path, src: Path) -> None:
        st = src.lstat()
        if self.owner:
            os.chown(target, *self.owner)
        else:
            os.chown(target, st.st_uid if self._keep_owner else 0,
                     st.st_gid if self._keep_owner else 0)
        if self.mode is not None:
            os.chmod(target, self.mode)

    _keep_owner = False   # the context's owners become root, as Docker does; set for --from

    def copy_tree(self, tree: SourceTree, rel: str, dest: str) -> None:
        """Copy the contents of directory REL of TREE into DEST."""
        for name in tree.listdir(rel):
            child = posixpath.join(rel, name) if rel else name
            real = tree.real(child)
            if real is None:
                continue
            child_dest = posixpath.join(dest, name)
            self.copy_entry(real, child_dest)
            if real.is_dir() and not real.is_symlink():
                self.copy_tree(tree, child, child_dest)
                shutil.copystat(real, self._target(child_dest))

    def write_bytes(self, dest: str, data: bytes, mode: int) -> None:
        self.make_parents(dest)
        target = self._target(dest)
        target.write_bytes(data)
        os.chmod(target, self.mode if self.mode is not None else mode)
        if self.owner:
            os.chown(target, *self.owner)


def download(url: str, timeout: float = 60) -> tuple[str, bytes]:
    """ADD URL: the file name Docker would use, and the body."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
    except OSError as exc:
        raise UserError(f"failed to download {url}: {exc}") from None
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
    return name, data


def tree_digest(root: Path) -> str:
    """sha256 of a staged tree: paths, types, modes, owners, link targets, contents
    (modification times are left out so touching a file without changing it keeps the cache)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            digest.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
            digest.update(b"\n")
    return digest.hexdigest()


def sources_digest(tree: SourceTree, rels: list[str], keep_owner: bool) -> str:
    """sha256 of what COPY would read for RELS of TREE, read in place: the cache key is
    known before anything is staged, so a cache hit copies nothing. Same walk as
    ``Stager.copy_tree`` (ignored entries skipped); owners count only when they are kept."""
    digest = hashlib.sha256()

    def entry(rel: str, real: Path) -> None:
        st = os.lstat(real)
        owner = f"{st.st_uid}:{st.st_gid}" if keep_owner else ""
        digest.update(f"{rel}\0{st.st_mode:o}\0{owner}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            digest.update(os.readlink(real).encode())
        elif stat.S_ISREG(st.st_mode):
            with open(real, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        digest.update(b"\n")
        if stat.S_ISDIR(st.st_mode):
            for name in tree.listdir(rel):
                child = posixpath.join(rel, name) if rel else name
                child_real = tree.real(child)
                if child_real is not None:
                    entry(child, child_real)

    for rel in rels:
        digest.update(b"\1source\0")
        real = tree.real(rel)
        if real is not None:
            entry(rel, real)
    return digest.hexdigest()

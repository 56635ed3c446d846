"""Unpack one layer tarball into its own directory, safely, honouring whiteouts.

The tarball comes from whoever built the image, so it is treated as hostile: names that are
absolute or contain ``..`` are refused, an entry whose parent path is a symlink or a file (a
"symlink then write through it" escape) is refused, hard links must point at a path already
unpacked in the same layer, device nodes are skipped. Nothing is ever opened through a
symlink (``O_NOFOLLOW``, ``lstat`` walks); symlink *targets* are stored verbatim because they
are only ever resolved inside the container's root.

Whiteouts (OCI ``layer.md``) do not appear in the output as files: ``.wh.<name>`` is recorded
as a removed path and ``<dir>/.wh..wh..opq`` as an opaque directory in the returned
:class:`LayerContents`; with ``overlay_markers`` they are also written in overlayfs form (char
device 0/0, ``trusted.overlay.opaque=y``) so the directory can be an overlay lower layer as is.
The DiffID (sha256 of the uncompressed tar) is computed while reading.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from typing import IO

from .manifest import ImageError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20


@dataclass
class LayerContents:
    diff_id: str
    size: int                                   # bytes on disk (st_blocks), hard links once
    whiteouts: list[str] = field(default_factory=list)  # removed from lower layers
    opaque: list[str] = field(default_factory=list)     # lower children hidden
    skipped_devices: int = 0


class _HashingReader:
    """A read-only stream that hashes everything read through it (the layer's DiffID)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.hash = raw, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _open_decompressed(path: str) -> IO[bytes]:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic == b"\x28\xb5\x2f\xfd":
        raise ImageError("zstd-compressed layers are not supported")
    return open(path, "rb")  # noqa: SIM115 - closed by the caller


def safe_relpath(name: str) -> str:
    """``name`` as a clean relative path, or ImageError if it is absolute or climbs out."""
    if name.startswith("/"):
        raise ImageError(f"layer entry {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer entry {name!r} contains '..'")
    if any("\x00" in p for p in parts):
        raise ImageError(f"layer entry {name!r} contains a NUL byte")
    return "/".join(parts)


def ensure_dirs(root: str, rel: str) -> str:
    """Create ``root/rel``'s missing directories (not following symlinks); returns its parent.

    Raises ImageError when a component exists and is not a real directory: writing through
    it would land outside ``root``.
    """
    cur = root
    parts = rel.split("/")[:-1]
    for p in parts:
        cur = os.path.join(cur, p)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise ImageError(f"layer entry {rel!r}: parent {os.path.relpath(cur, root)!r} is {kind}")
    return cur


def remove_path(path: str) -> None:
    """Remove whatever is at ``path`` (a real directory recursively, never through a symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _set_meta(path: str, m: tarfile.TarInfo, root_user: bool) -> None:
    if root_user:
        with contextlib.suppress(OSError):
            os.lchown(path, m.uid, m.gid)
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)
    for key, value in (m.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr.") and root_user:
            with contextlib.suppress(OSError):
                os.setxattr(path, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
    with contextlib.suppress(OSError, OverflowError):
        os.utime(path, ns=(int(m.mtime * 1e9),) * 2, follow_symlinks=False)


def disk_usage(root: str) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return total


def extract_layer(blob_path: str, dest: str, *, overlay_markers: bool = False) -> LayerContents:
    """Unpack the (optionally gzipped) layer tar at ``blob_path`` into the empty dir ``dest``."""
    root_user = os.geteuid() == 0
    out = LayerContents(diff_id="", size=0)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    try:
        raw = _open_decompressed(blob_path)
    except OSError as e:
        raise ImageError(f"cannot read layer {blob_path}: {e}") from None
    with raw:
        reader = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
                for m in tf:
                    _extract_member(tf, m, dest, out, dirs, root_user, overlay_markers)
            reader.drain()
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError) as e:
            raise ImageError(f"layer is not a valid tar archive: {e}") from None
    for path, m in reversed(dirs):  # after their children, so mtimes and read-only modes stick
        _set_meta(path, m, root_user)
    out.diff_id = "sha256:" + reader.hash.hexdigest()
    out.size = disk_usage(dest)
    return out


def _extract_member(tf: tarfile.TarFile, m: tarfile.TarInfo, dest: str, out: LayerContents,
                    dirs: list[tuple[str, tarfile.TarInfo]], root_user: bool, markers: bool) -> None:
    rel = safe_relpath(m.name)
    if not rel:
        return  # the layer root itself
    parent_rel, _, base = rel.rpartition("/")
    if base.startswith(WHITEOUT):
        if base == OPAQUE:
            out.opaque.append(parent_rel)
            if markers:
                d = ensure_dirs(dest, rel)
                os.setxattr(d, "trusted.overlay.opaque", b"y")
            return
        if base.startswith(WHITEOUT + WHITEOUT):
            return  # other aufs metadata (.wh..wh.plnk, …): not content
        name = base[len(WHITEOUT):]
        if name in ("", ".", ".."):
            raise ImageError(f"layer entry {m.name!r} is an invalid whiteout")
        target_rel = f"{parent_rel}/{name}" if parent_rel else name
        out.whiteouts.append(target_rel)
        if markers:
            parent = ensure_dirs(dest, rel)
            remove_path(os.path.join(parent, name))
            os.mknod(os.path.join(parent, name), stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return
    parent = ensure_dirs(dest, rel)
    path = os.path.join(parent, base)
    if m.isdir():
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                remove_path(path)
                os.mkdir(path, 0o755)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        dirs.append((path, m))
        return
    if m.ischr() or m.isblk():
        out.skipped_devices += 1  # a device node from an image would reach the host's hardware
        return
    remove_path(path)  # a duplicate entry or a dir/non-dir clash: the later entry wins
    if m.isreg():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            src = tf.extractfile(m)
            if src is not None:
                shutil.copyfileobj(src, f, _CHUNK)
    elif m.issym():
        os.symlink(m.linkname, path)
    elif m.islnk():
        target_rel = safe_relpath(m.linkname)
        if not target_rel:
            raise ImageError(f"layer entry {m.name!r} is a hard link to the layer root")
        tparent = ensure_dirs(dest, target_rel)
        target = os.path.join(tparent, target_rel.rpartition("/")[2])
        try:
            tst = os.lstat(target)
        except FileNotFoundError:
            raise ImageError(f"layer entry {m.name!r} is a hard link to {m.linkname!r}, "
                             "which is not earlier in the same layer") from None
        if stat.S_ISDIR(tst.st_mode):
            raise ImageError(f"layer entry {m.name!r} is a hard link to a directory")
        os.link(target, path, follow_symlinks=False)
        return  # shares the target's inode and metadata
    elif m.isfifo():
        os.mkfifo(path, 0o600)
    else:
        return
    _set_meta(path, m, root_user)

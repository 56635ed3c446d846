"""A container's root file system from stored layers: overlayfs, else a copy.

``overlay``: ``<container_dir>/rootfs`` is an overlay mount whose lower layers are the stored
layer directories (shared, read-only, whiteouts already in overlay form), with
``upperdir``/``workdir`` in the container's directory (so writes are the container's disk
use and vanish with it). The lowerdir option uses short symlinks ``links/0..N-1`` (as Mesos
does) to stay under the one-page option limit. ``copy``: the layers are copied base first
into ``<container_dir>/rootfs``: whiteouts delete, opaque dirs are emptied, a dir/non-dir
clash or an existing symlink is removed before writing (a lower ``/x -> /etc`` must not
make a later ``x/passwd`` land in the host's /etc). ``auto`` picks overlay when this process
can mount it (root, kernel support, probed once per store directory).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from . import linux
from .layers import remove_path
from .manifest import ImageError
from .store import StoredLayer

_probe_cache: dict[str, bool] = {}


@dataclass
class Rootfs:
    path: str          # the container's "/" as seen from the host
    backend: str       # "overlay" | "copy"
    container_dir: str


def overlay_available(scratch_dir: str) -> bool:
    """Whether an overlay can be mounted here (tries one, once per directory)."""
    key = os.path.abspath(scratch_dir)
    if key in _probe_cache:
        return _probe_cache[key]
    ok = False
    if os.geteuid() == 0:
        probe = os.path.join(key, f".overlay-probe-{os.getpid()}")
        dirs = [os.path.join(probe, d) for d in ("lower", "upper", "work", "merged")]
        try:
            for d in dirs:
                os.makedirs(d, exist_ok=True)
            linux.mount("overlay", dirs[3], "overlay", 0,
                        f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}")
            linux.umount2(dirs[3], linux.MNT_DETACH)
            ok = True
        except OSError:
            ok = False
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    _probe_cache[key] = ok
    return ok


def assemble_rootfs(layers: Sequence[StoredLayer], container_dir: str, backend: str = "auto") -> Rootfs:
    """Build the container's root from ``layers`` (base first) under ``container_dir``."""
    if not layers:
        raise ImageError("an image needs at least one layer")
    os.makedirs(container_dir, exist_ok=True)
    if backend == "auto":
        backend = "overlay" if overlay_available(container_dir) else "copy"
    root = os.path.join(container_dir, "rootfs")
    os.makedirs(root, exist_ok=True)
    if backend == "overlay":
        links = os.path.join(container_dir, "links")
        os.makedirs(links, exist_ok=True)
        for i, layer in enumerate(layers):
            link = os.path.join(links, str(i))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(layer.path, link)
        upper, work = os.path.join(container_dir, "upperdir"), os.path.join(container_dir, "workdir")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        lower = ":".join(os.path.join(links, str(i)) for i in reversed(range(len(layers))))
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        if len(opts) >= 4096:
            raise ImageError(f"overlay options for {len(layers)} layers exceed one page")
        try:
            linux.mount("overlay", root, "overlay", 0, opts)
        except OSError as e:
            raise ImageError(f"cannot mount the overlay root file system: {e.strerror}") from None
    elif backend == "copy":
        for layer in layers:
            apply_layer(layer, root)
    else:
        raise ImageError(f"unknown rootfs backend {backend!r} (overlay, copy or auto)")
    return Rootfs(root, backend, container_dir)


def destroy_rootfs(rootfs: Rootfs) -> None:
    """Unmount (overlay) and delete everything :func:`assemble_rootfs` made."""
    if rootfs.backend == "overlay":
        try:
            linux.umount2(rootfs.path, linux.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise
    for name in ("rootfs", "upperdir", "workdir", "links"):
        shutil.rmtree(os.path.join(rootfs.container_dir, name), ignore_errors=True)


def _existing_dir(root: str, rel: str) -> str | None:
    """``root/rel`` if every component is a real directory (never through a symlink)."""
    cur = root
    for p in [x for x in rel.split("/") if x]:
        cur = os.path.join(cur, p)
        try:
            if not stat.S_ISDIR(os.lstat(cur).st_mode):
                return None
        except FileNotFoundError:
            return None
    return cur


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        with contextlib.suppress(OSError):
            for name in os.listxattr(src, follow_symlinks=False):
                if not name.startswith("trusted.overlay."):
                    os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
    with contextlib.suppress(OSError):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def apply_layer(layer: StoredLayer, target: str) -> None:
    """Copy one stored layer over ``target`` (the copy backend's flattening step)."""
    for rel in layer.opaque:
        d = _existing_dir(target, rel)
        if d is not None:
            for name in os.listdir(d):
                remove_path(os.path.join(d, name))
    for rel in layer.whiteouts:
        parent_rel, _, name = rel.rpartition("/")
        d = _existing_dir(target, parent_rel)
        if d is not None:
            remove_path(os.path.join(d, name))
    inodes: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []
    stack = [(layer.path, target)]
    while stack:
        src_dir, dst_dir = stack.pop()
        with os.scandir(src_dir) as it:
            for e in it:
                src, dst = e.path, os.path.join(dst_dir, e.name)
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if not stat.S_ISDIR(_lmode(dst)):
                        remove_path(dst)
                        os.mkdir(dst, 0o700)
                    dirs.append((src, dst, st))
                    stack.append((src, dst))
                    continue
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    continue  # overlay whiteout markers (already applied above); devices never stored
                remove_path(dst)
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in inodes:
                    os.link(inodes[key], dst, follow_symlinks=False)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                elif stat.S_ISREG(st.st_mode):
                    shutil.copyfile(src, dst, follow_symlinks=False)
                elif stat.S_ISFIFO(st.st_mode):
                    os.mkfifo(dst, 0o600)
                else:
                    continue
                _copy_meta(src, dst, st)
                if st.st_nlink > 1:
                    inodes[key] = dst
    for src, dst, st in reversed(dirs):
        _copy_meta(src, dst, st)


def _lmode(path: str) -> int:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0


def read_image_file(root: str, path: str, limit: int = 1 << 20) -> str:
    """Read ``path`` as the container would see it (symlinks resolved INSIDE ``root``, never
    reaching the host), or "" when it does not exist. Used for the image's /etc/passwd."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if resolved:
                resolved.pop()
            continue
        cur = os.path.join(root, *resolved, p)
        try:
            st = os.lstat(cur)
        except (FileNotFoundError, NotADirectoryError):
            return ""
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise ImageError(f"too many symlinks resolving {path} in the image")
            target = os.readlink(cur)
            if target.startswith("/"):
                resolved = []
            parts = [x for x in target.split("/") if x not in ("", ".")] + parts
            continue
        resolved.append(p)
    full = os.path.join(root, *resolved)
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, IsADirectoryError):
        return ""
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return ""
        return f.read(limit).decode("utf-8", "replace")

"""``disk/du``: how much disk a container uses, and Mesos' wording when it is over quota.

As Mesos' ``disk/du`` isolator (which runs ``du -k -s`` on the sandbox every
``--container_disk_watch_interval``), usage is the allocated size (``st_blocks``) of
everything under the container's directories -- the sandbox and, for an image container,
its overlay upper/work directories -- each inode counted once, mounts not crossed. The
containerizer runs :func:`measure` in a worker thread on its own timer; with
``--enforce_container_disk_quota`` a container over its ``disk`` resource is destroyed with
REASON_CONTAINER_LIMITATION_DISK.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_KB, _MB, _GB = 1024, 1024 * 1024, 1024 * 1024 * 1024


def measure(paths: Iterable[str]) -> int:
    """Bytes allocated under ``paths`` (hard links once; other file systems skipped)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in paths:
        try:
            top = os.lstat(root)
        except OSError:
            continue
        dev = top.st_dev
        stack = [root]
        total += top.st_blocks * 512
        seen.add((top.st_dev, top.st_ino))
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_dev != dev:
                        continue  # a mount point (e.g. the overlay rootfs itself)
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                    total += st.st_blocks * 512
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
    return total


def format_bytes(n: int) -> str:
    """Mesos' ``Bytes`` printing: the largest unit that divides exactly."""
    for unit, size in (("GB", _GB), ("MB", _MB), ("KB", _KB)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def disk_message(used: int, quota: int) -> str:
    """Mesos' wording for a disk limitation."""
    return f"Disk usage ({format_bytes(used)}) exceeds quota ({format_bytes(quota)})"


__all__ = ["measure", "format_bytes", "disk_message"]

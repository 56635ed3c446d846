"""Detect an agent's resources (cpus, mem, disk, ports, gpus) the way the Mesos agent does.

``mem``: total memory minus 1 GiB of headroom (half of it on machines under 2 GiB).
``disk``: free space of the work_dir file system minus 5 GiB (half of it under 10 GiB).
``ports``: ``[31000-32000]``. ``gpus``: one per line of ``nvidia-smi --query-gpu=index``.
Names given explicitly in ``--resources`` replace the detected ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import psutil

from mesos_nb.protocol.resources import Resources

MB = 1024 * 1024
MEM_HEADROOM_MB = 1024
DISK_HEADROOM_MB = 5 * 1024
DEFAULT_PORTS = "[31000-32000]"


def detect_gpus() -> int:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return 0
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.strip())


def _headroom(total_mb: float, headroom_mb: float) -> float:
    if total_mb >= 2 * headroom_mb:
        return total_mb - headroom_mb
    return total_mb / 2


def detected_parts(work_dir: str, *, gpus: bool = True) -> dict[str, str]:
    """Detected resources as name -> Mesos text fragment."""
    cpus = psutil.cpu_count(logical=True) or 1
    mem_mb = _headroom(psutil.virtual_memory().total / MB, MEM_HEADROOM_MB)
    probe = work_dir
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        free_mb = psutil.disk_usage(probe or "/").free / MB
    except OSError:
        free_mb = 0.0
    disk_mb = _headroom(free_mb, DISK_HEADROOM_MB)
    parts = {
        "cpus": f"cpus:{cpus}",
        "mem": f"mem:{int(mem_mb)}",
        "disk": f"disk:{int(disk_mb)}",
        "ports": f"ports:{DEFAULT_PORTS}",
    }
    if gpus:
        n = detect_gpus()
        if n:
            parts["gpus"] = f"gpus:{n}"
    return parts


def detect_resources(explicit: str | None, work_dir: str, *, gpus: bool = True) -> Resources:
    """The agent's total resources: ``explicit`` (Mesos text) over detected values.

    Raises ``ResourceParseError`` (one sentence) for bad ``explicit`` text.
    """
    if explicit is not None and explicit.strip():
        given = Resources.parse(explicit)
        names = set(given.names())
    else:
        given = None
        names = set()
    skip_gpus = "gpus" in names or not gpus
    parts = detected_parts(work_dir, gpus=not skip_gpus)
    text = ";".join(v for k, v in parts.items() if k not in names)
    total = Resources.parse(text)
    if given is not None:
        total = total + given
    return total


__all__ = ["detect_resources", "detected_parts", "detect_gpus"]

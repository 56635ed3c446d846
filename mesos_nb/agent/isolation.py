"""Isolation: limit and account a container's CPU and memory.

One small interface (:class:`Isolator`, in ``isolator.py``) with three implementations, each
in its own module (``cgroups_v2.py``, ``cgroups_v1.py``, ``posix_isolator.py``), picked here by
``--isolation`` (``auto`` = the best this machine allows, see :func:`detect_isolation`).
This module is the one the rest of the agent imports:

* ``cgroups/v2`` -- one cgroup per container under ``<unified>/mesos_nb/<container_id>``:
  ``cpu.weight`` (from ``cpus``), ``cpu.max`` (CFS quota = ``cpus`` x period),
  ``memory.max``; usage from ``cpu.stat`` / ``memory.current`` / ``memory.peak``; an OOM kill
  shows in ``memory.events`` (``oom_kill``).
* ``cgroups/v1`` -- one cgroup per container in each of the ``cpu``, ``cpuacct`` and
  ``memory`` hierarchies: ``cpu.shares`` (1024 per cpu), ``cpu.cfs_quota_us``,
  ``memory.limit_in_bytes``; usage from ``cpuacct.stat`` / ``memory.usage_in_bytes`` /
  ``memory.max_usage_in_bytes``; OOM from ``memory.oom_control`` (``oom_kill``) or ``failcnt``.
* ``cgroups/blkio`` (or ``cgroups/io``) adds the I/O controller to the cgroup isolator
  (``io_control.py``: throttles and weights from the task's labels, I/O counters).
* ``disk/du``, ``filesystem/linux`` and ``namespaces/pid`` are carried out by the
  containerizer (``disk_usage.py``, ``namespaces.py``); :func:`parse_isolation` reads them.
* ``posix`` -- no kernel enforcement: the process tree is found with psutil and its RSS is
  polled; a container over its memory limit is reported as a memory limitation (and then
  destroyed by the containerizer). CPU is accounted, not limited.

The child joins its cgroups itself, before it execs (``preexec`` writes ``0`` to each
``cgroup.procs``), so not even its first fork escapes. Each container's cgroups are removed
when it ends (after its processes are gone).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

from . import cgroups_v2
from .cgroupfs import read_text
from .cgroups_v1 import CgroupsV1Isolator
from .cgroups_v2 import CgroupsV2Isolator, cgroup2_mount
from .isolator import CGROUP_ROOT, NESTED, Isolator, Limits, cgroups_root_name, memory_message
from .posix_isolator import PosixIsolator, tree_stats

logger = logging.getLogger("mesos_nb.agent")


# ---------------------------------------------------------------------- detection
def _try_cgroup(path: str, files: list[str], nested: str = NESTED) -> str | None:
    """None when a child cgroup can be made at ``path`` with ``files`` writable, else why not."""
    probe = os.path.join(path, nested, f"probe-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.makedirs(probe)
    except OSError as e:
        return f"cannot create a cgroup under {path}: {e.strerror or e}"
    try:
        for f in files:
            if not os.access(os.path.join(probe, f), os.W_OK):
                return f"{os.path.join(path, f)} is missing or not writable"
        return None
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)


def cgroups_v2_unavailable(root: str | None = None, nested: str = NESTED,
                           needs: Iterable[str] = ("cpu", "memory")) -> str | None:
    """None when cgroups v2 with the ``needs`` controllers can be used here (``root``: the
    unified hierarchy, found in /proc/self/mounts when None), else a sentence saying why not."""
    return cgroups_v2.unavailable(cgroup2_mount() if root is None else root, nested, needs)


def cgroups_v1_unavailable(root: str = CGROUP_ROOT, nested: str = NESTED) -> str | None:
    """None when cgroups v1 cpu, cpuacct and memory hierarchies can be used, else why not."""
    for ctrl, files in (("cpu", ["cpu.shares", "cpu.cfs_quota_us"]), ("cpuacct", ["cgroup.procs"]),
                        ("memory", ["memory.limit_in_bytes"])):
        path = os.path.join(root, ctrl)
        if not os.path.isfile(os.path.join(path, "cgroup.procs")):
            return f"no cgroups v1 '{ctrl}' hierarchy at {path}"
        why = _try_cgroup(path, files, nested)
        if why:
            return why
    return None


def detect_isolation(root: str = CGROUP_ROOT, nested: str = NESTED,
                     needs: Iterable[str] = ("cpu", "memory")) -> tuple[str, dict[str, str]]:
    """('cgroups/v2' | 'cgroups/v1' | 'posix', {kind: why it is unavailable}); v2 needs the
    ``needs`` controllers in the unified hierarchy (wherever it is mounted)."""
    why: dict[str, str] = {}
    if os.geteuid() != 0:
        why["cgroups"] = "the agent is not running as root"
        return "posix", why
    w2 = cgroups_v2_unavailable(None if root == CGROUP_ROOT else root, nested, needs)
    if w2 is None:
        return "cgroups/v2", why
    why["cgroups/v2"] = w2
    w1 = cgroups_v1_unavailable(root, nested)
    if w1 is None:
        return "cgroups/v1", why
    why["cgroups/v1"] = w1
    return "posix", why


POSIX_NAMES = frozenset({"posix", "posix/cpu", "posix/mem", "posix/disk", "filesystem/posix"})
CGROUP_NAMES = frozenset({"cgroups", "cgroups/v1", "cgroups/v2", "cgroups/cpu", "cgroups/mem"})
IO_NAMES = frozenset({"cgroups/blkio", "cgroups/io"})
OTHER_NAMES = frozenset({"disk/du", "filesystem/linux", "namespaces/pid", "docker/runtime"})


@dataclass(frozen=True)
class IsolationSpec:
    """``--isolation`` parsed: the resource isolator kind plus the add-on isolators."""
    kinds: frozenset[str]
    io: bool = False              # cgroups/blkio | cgroups/io
    disk_du: bool = False         # disk/du
    filesystem_linux: bool = False
    pid_namespace: bool = False   # namespaces/pid

    @property
    def namespaces(self) -> bool:
        return self.filesystem_linux or self.pid_namespace


def parse_isolation(isolation: str) -> IsolationSpec:
    """Mesos-style comma list; raises ValueError naming what is not supported."""
    kinds = frozenset(k.strip() for k in (isolation or "auto").split(",") if k.strip()) or frozenset({"auto"})
    unknown = kinds - POSIX_NAMES - CGROUP_NAMES - IO_NAMES - OTHER_NAMES - {"auto"}
    if unknown:
        raise ValueError(
            f"Unsupported isolation '{', '.join(sorted(unknown))}': use 'auto', 'posix', 'cgroups', 'cgroups/v1', "
            "'cgroups/v2' or Mesos names (cgroups/cpu, cgroups/mem, cgroups/blkio, disk/du, filesystem/linux, "
            "namespaces/pid, docker/runtime)."
        )
    return IsolationSpec(kinds, io=bool(kinds & IO_NAMES), disk_du="disk/du" in kinds,
                         filesystem_linux="filesystem/linux" in kinds, pid_namespace="namespaces/pid" in kinds)


def namespaces_unavailable() -> str | None:
    """None when mount and PID namespaces can be made here (root, /proc/self/ns), else why not."""
    if os.geteuid() != 0:
        return "the agent is not running as root (mount and PID namespaces need CAP_SYS_ADMIN)"
    for ns in ("mnt", "pid"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            return f"this kernel has no {ns} namespaces (/proc/self/ns/{ns} is missing)"
    return None


def blkio_unavailable(kind: str, root: str = CGROUP_ROOT) -> str | None:
    """None when the I/O controller can be used with the ``kind`` cgroup isolator."""
    if kind == "cgroups/v1":
        if not os.path.isfile(os.path.join(root, "blkio", "cgroup.procs")):
            return f"no cgroups v1 'blkio' hierarchy at {os.path.join(root, 'blkio')}"
        return _try_cgroup(os.path.join(root, "blkio"), ["blkio.throttle.write_bps_device"])
    if kind == "cgroups/v2":
        root = (cgroup2_mount() or root) if root == CGROUP_ROOT else root
        if "io" not in (read_text(os.path.join(root, "cgroup.controllers")) or "").split():
            return f"cgroup2 at {root} lacks the io controller"
        return None
    return "I/O control needs cgroups (the isolation fell back to posix)"


def make_isolator(isolation: str, cgroups_root: str = NESTED) -> Isolator:
    """The resource isolator: ``auto`` | ``posix`` (+ ``posix/*``) | ``cgroups`` (best version) |
    ``cgroups/v1`` | ``cgroups/v2`` (+ ``cgroups/cpu``, ``cgroups/mem``, ``cgroups/blkio``).
    The other Mesos names (``disk/du``, ``filesystem/linux``, ``namespaces/pid``) are the
    containerizer's (see :func:`parse_isolation`). ``cgroups_root``: the cgroup under each
    hierarchy that holds the containers (``--cgroups-root``)."""
    spec = parse_isolation(isolation)
    nested = cgroups_root_name(cgroups_root)
    kinds = spec.kinds
    if kinds & (CGROUP_NAMES | IO_NAMES) or "auto" in kinds:
        needs = {cgroups_v2.NEEDS[k] for k in kinds if k in cgroups_v2.NEEDS} or {"cpu", "memory"}
        best, why = detect_isolation(nested=nested, needs=needs)
        if "cgroups/v2" in kinds and best != "cgroups/v2":  # asked for by name: no other version instead
            raise ValueError(f"cgroups/v2 isolation is unavailable: {why.get('cgroups/v2') or why.get('cgroups')}")
        wanted = "cgroups/v1" if "cgroups/v1" in kinds else None
        if wanted is not None and best != wanted:
            if wanted == "cgroups/v1" and cgroups_v1_unavailable(nested=nested) is None:
                best = wanted
            else:
                reason = why.get(wanted) or why.get("cgroups") or f"{wanted} unavailable"
                logger.warning("%s isolation unavailable (%s); using %s", wanted, reason, best)
        if best == "posix" and "auto" not in kinds:
            logger.warning("cgroups isolation unavailable (%s); using posix",
                           "; ".join(f"{k}: {v}" for k, v in why.items()))
        if spec.io:
            why_io = blkio_unavailable(best)
            if why_io is not None:
                raise ValueError(f"cgroups/blkio isolation is unavailable: {why_io}")
        if best == "cgroups/v2":
            return CgroupsV2Isolator(cgroup2_mount() or CGROUP_ROOT, io=spec.io, nested=nested,
                                     required=needs | ({"io"} if spec.io else set()))
        if best == "cgroups/v1":
            return CgroupsV1Isolator(io=spec.io, nested=nested)
        return PosixIsolator()
    return PosixIsolator()


__all__ = [
    "Isolator", "PosixIsolator", "CgroupsV1Isolator", "CgroupsV2Isolator", "Limits",
    "detect_isolation", "make_isolator", "memory_message", "tree_stats",
    "cgroups_v1_unavailable", "cgroups_v2_unavailable", "IsolationSpec", "parse_isolation",
    "namespaces_unavailable", "blkio_unavailable",
]

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

from .cgroups_v1 import CgroupsV1Isolator
from .cgroups_v2 import CgroupsV2Isolator
from .isolator import CGROUP_ROOT, NESTED, Isolator, Limits, memory_message, read_text, write_text
from .posix_isolator import PosixIsolator, tree_stats

logger = logging.getLogger("mesos_nb.agent")


# ---------------------------------------------------------------------- detection
def _try_cgroup(path: str, files: list[str]) -> str | None:
    """None when a child cgroup can be made at ``path`` with ``files`` writable, else why not."""
    probe = os.path.join(path, NESTED, f"probe-{os.getpid()}-{time.monotonic_ns()}")
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


def cgroups_v2_unavailable(root: str = CGROUP_ROOT) -> str | None:
    """None when cgroups v2 with cpu+memory can be used here, else a sentence saying why not."""
    controllers = read_text(os.path.join(root, "cgroup.controllers"))
    if controllers is None:
        return f"{root} is not a cgroup2 mount (no cgroup.controllers)"
    missing = {"cpu", "memory"} - set(controllers.split())
    if missing:
        return f"cgroup2 at {root} lacks the {', '.join(sorted(missing))} controller(s)"
    parent = os.path.join(root, NESTED)
    try:
        os.makedirs(parent, exist_ok=True)
        for d in (root, parent):
            with contextlib.suppress(OSError):
                write_text(os.path.join(d, "cgroup.subtree_control"), "+cpu +memory")
    except OSError as e:
        return f"cannot create {parent}: {e.strerror or e}"
    return _try_cgroup(root, ["cpu.max", "memory.max"])


def cgroups_v1_unavailable(root: str = CGROUP_ROOT) -> str | None:
    """None when cgroups v1 cpu, cpuacct and memory hierarchies can be used, else why not."""
    for ctrl, files in (("cpu", ["cpu.shares", "cpu.cfs_quota_us"]), ("cpuacct", ["cgroup.procs"]),
                        ("memory", ["memory.limit_in_bytes"])):
        path = os.path.join(root, ctrl)
        if not os.path.isfile(os.path.join(path, "cgroup.procs")):
            return f"no cgroups v1 '{ctrl}' hierarchy at {path}"
        why = _try_cgroup(path, files)
        if why:
            return why
    return None


def detect_isolation(root: str = CGROUP_ROOT) -> tuple[str, dict[str, str]]:
    """('cgroups/v2' | 'cgroups/v1' | 'posix', {kind: why it is unavailable})."""
    why: dict[str, str] = {}
    if os.geteuid() != 0:
        why["cgroups"] = "the agent is not running as root"
        return "posix", why
    w2 = cgroups_v2_unavailable(root)
    if w2 is None:
        return "cgroups/v2", why
    why["cgroups/v2"] = w2
    w1 = cgroups_v1_unavailable(root)
    if w1 is None:
        return "cgroups/v1", why
    why["cgroups/v1"] = w1
    return "posix", why


def make_isolator(isolation: str) -> Isolator:
    """``auto`` | ``posix`` (+ ``posix/*``) | ``cgroups`` (best version) | ``cgroups/v1`` | ``cgroups/v2``."""
    kinds = {k.strip() for k in (isolation or "auto").split(",") if k.strip()} or {"auto"}
    posix_names = {"posix", "posix/cpu", "posix/mem", "posix/disk", "filesystem/posix"}
    cgroup_names = {"cgroups", "cgroups/v1", "cgroups/v2", "cgroups/cpu", "cgroups/mem"}
    unknown = kinds - posix_names - cgroup_names - {"auto"}
    if unknown:
        raise ValueError(
            f"Unsupported isolation '{', '.join(sorted(unknown))}': use 'auto', 'posix', 'cgroups', "
            "'cgroups/v1' or 'cgroups/v2'."
        )
    if kinds & cgroup_names or "auto" in kinds:
        best, why = detect_isolation()
        wanted = "cgroups/v1" if "cgroups/v1" in kinds else "cgroups/v2" if "cgroups/v2" in kinds else None
        if wanted is not None and best != wanted:
            if wanted == "cgroups/v1" and cgroups_v1_unavailable() is None:
                best = wanted
            else:
                reason = why.get(wanted) or why.get("cgroups") or f"{wanted} unavailable"
                logger.warning("%s isolation unavailable (%s); using %s", wanted, reason, best)
        if best == "posix" and "auto" not in kinds:
            logger.warning("cgroups isolation unavailable (%s); using posix",
                           "; ".join(f"{k}: {v}" for k, v in why.items()))
        if best == "cgroups/v2":
            return CgroupsV2Isolator()
        if best == "cgroups/v1":
            return CgroupsV1Isolator()
        return PosixIsolator()
    return PosixIsolator()


__all__ = [
    "Isolator", "PosixIsolator", "CgroupsV1Isolator", "CgroupsV2Isolator", "Limits",
    "detect_isolation", "make_isolator", "memory_message", "tree_stats",
    "cgroups_v1_unavailable", "cgroups_v2_unavailable",
]

"""``cgroups/v2`` isolation: one cgroup per container under ``<unified>/mesos_nb/<container_id>``
(``cpu.weight``, ``cpu.max``, ``memory.max``); usage from ``cpu.stat`` / ``memory.current`` /
``memory.peak``; an OOM kill shows in ``memory.events``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import io_control
from .isolator import (
    CFS_PERIOD_US,
    CGROUP_ROOT,
    MIN_MEMORY_BYTES,
    NESTED,
    CgroupIsolator,
    Limits,
    cgroup_joiner,
    keeps_memory,
    memory_message,
    mkdir_once,
    parse_kv,
    read_int,
    read_text,
    write_text,
)


class CgroupsV2Isolator(CgroupIsolator):
    name = "cgroups/v2"

    def __init__(self, root: str = CGROUP_ROOT, *, io: bool = False, nested: str = NESTED) -> None:
        self.root = root
        self.nested = nested  # --cgroups-root: the parent of every container's cgroup
        self.io = io
        if io:
            self.name = "cgroups/v2+io"
        self._limits: dict[str, Limits] = {}
        self._joined: set[str] = set()
        self._parent_ready = False

    def _dir(self, container_id: str) -> str:
        return os.path.join(self.root, self.nested, container_id)

    def _ensure_parent(self) -> None:
        if self._parent_ready:
            return
        parent = os.path.join(self.root, self.nested)
        os.makedirs(parent, exist_ok=True)
        for d in (self.root, parent):
            with contextlib.suppress(OSError):
                write_text(os.path.join(d, "cgroup.subtree_control"), "+cpu +memory" + (" +io" if self.io else ""))
        self._parent_ready = True

    def prepare(self, container_id: str, limits: Limits) -> None:
        self._ensure_parent()
        self._limits[container_id] = limits
        d = self._dir(container_id)
        mkdir_once(d)
        self._write_limits(container_id, limits, None)
        if limits.mem_bytes > 0:
            with contextlib.suppress(OSError):
                write_text(os.path.join(d, "memory.swap.max"), "0")
        if self.io and limits.io:
            io_control.apply_v2(d, limits.io)

    def _write_limits(self, container_id: str, limits: Limits, old: Limits | None) -> Limits:
        """cpu.weight, cpu.max and memory.max (lowered from ``old`` only as far as
        ``memory.current`` allows: a lower memory.max would OOM-kill); the limits in force."""
        d = self._dir(container_id)
        if limits.cpus > 0:
            write_text(os.path.join(d, "cpu.weight"), str(max(1, min(10000, int(100 * limits.cpus)))))
            write_text(os.path.join(d, "cpu.max"), f"{max(1000, int(CFS_PERIOD_US * limits.cpus))} {CFS_PERIOD_US}")
        if limits.mem_bytes <= 0:
            return limits
        want = max(MIN_MEMORY_BYTES, limits.mem_bytes)
        if keeps_memory(want, old, lambda: read_int(os.path.join(d, "memory.current"))):
            return replace(limits, mem_bytes=old.mem_bytes)  # in use: keep the limit
        write_text(os.path.join(d, "memory.max"), str(want))
        return limits

    def preexec(self, container_id: str) -> Callable[[], None] | None:
        self._joined.add(container_id)
        return cgroup_joiner([os.path.join(self._dir(container_id), "cgroup.procs")])

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        self._limits.setdefault(container_id, limits)
        if container_id in self._joined:
            return  # the child joined before exec
        with contextlib.suppress(OSError):
            write_text(os.path.join(self._dir(container_id), "cgroup.procs"), str(pid))

    def limitation(self, container_id: str) -> str | None:
        limits = self._limits.get(container_id)
        if limits is None or limits.mem_bytes <= 0:
            return None
        d = self._dir(container_id)
        events = parse_kv(read_text(os.path.join(d, "memory.events")))
        if events.get("oom_kill", 0) > 0 or events.get("oom", 0) > 0:
            peak = int((read_text(os.path.join(d, "memory.peak")) or read_text(os.path.join(d, "memory.current")) or "0")
                       .strip() or 0)
            return memory_message(max(MIN_MEMORY_BYTES, limits.mem_bytes), peak)
        return None

    def pids(self, container_id: str) -> list[int]:
        return [int(x) for x in (read_text(os.path.join(self._dir(container_id), "cgroup.procs")) or "").split()]

    def usage(self, container_id: str) -> dict[str, Any] | None:
        d = self._dir(container_id)
        cpu = parse_kv(read_text(os.path.join(d, "cpu.stat")))
        if not cpu and not os.path.isdir(d):
            return None
        mstat = parse_kv(read_text(os.path.join(d, "memory.stat")))
        limits = self._limits.get(container_id, Limits())
        out: dict[str, Any] = {
            "cpus_user_time_secs": round(cpu.get("user_usec", 0) / 1e6, 3),
            "cpus_system_time_secs": round(cpu.get("system_usec", 0) / 1e6, 3),
            "cpus_nr_periods": cpu.get("nr_periods", 0),
            "cpus_nr_throttled": cpu.get("nr_throttled", 0),
            "cpus_throttled_time_secs": cpu.get("throttled_usec", 0) / 1e6,
            "mem_total_bytes": read_int(os.path.join(d, "memory.current")),
            "mem_rss_bytes": mstat.get("anon", 0),
            "mem_anon_bytes": mstat.get("anon", 0),
            "mem_file_bytes": mstat.get("file", 0),
            "mem_cache_bytes": mstat.get("file", 0),
            "mem_mapped_file_bytes": mstat.get("file_mapped", 0),
            "processes": len(self.pids(container_id)),
        }
        if limits.mem_bytes > 0:
            out["mem_limit_bytes"] = max(MIN_MEMORY_BYTES, limits.mem_bytes)
        if self.io:
            blkio = io_control.stats_v2(d)
            out["blkio_statistics"] = blkio
            out.update(io_control.totals(blkio))
        return out

    def cleanup(self, container_id: str) -> bool:
        d = self._dir(container_id)
        if not os.path.isdir(d):
            self._limits.pop(container_id, None)
            self._joined.discard(container_id)
            return True
        with contextlib.suppress(OSError):
            write_text(os.path.join(d, "cgroup.kill"), "1")
        for pid in self.pids(container_id):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        self._limits.pop(container_id, None)
        self._joined.discard(container_id)
        return True


__all__ = ["CgroupsV2Isolator"]

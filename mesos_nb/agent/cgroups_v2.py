"""``cgroups/v2`` isolation: one cgroup per container under ``<unified>/mesos_nb/<container_id>``
(``cpu.weight``, ``cpu.max``, ``memory.max``); usage from ``cpu.stat`` / ``memory.current`` /
``memory.peak``; an OOM kill shows in ``memory.events``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import Any

from . import io_control
from .cgroupfs import mkdir_once, parse_kv, read_int, read_text, write_text
from .isolator import CFS_PERIOD_US, CGROUP_ROOT, NESTED, CgroupIsolator, Limits, keeps_memory


class CgroupsV2Isolator(CgroupIsolator):
    name = "cgroups/v2"

    def __init__(self, root: str = CGROUP_ROOT, *, io: bool = False, nested: str = NESTED) -> None:
        super().__init__(root, io)
        self.nested = nested  # --cgroups-root: the parent of every container's cgroup
        if io:
            self.name = "cgroups/v2+io"
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

    def _procs_files(self, container_id: str) -> list[str]:
        return [os.path.join(self._dir(container_id), "cgroup.procs")]

    def _write_limits(self, container_id: str, limits: Limits, old: Limits | None) -> Limits:
        """cpu.weight, cpu.max and memory.max (lowered from ``old`` only as far as
        ``memory.current`` allows: a lower memory.max would OOM-kill); the limits in force."""
        d = self._dir(container_id)
        if limits.cpus > 0:
            write_text(os.path.join(d, "cpu.weight"), str(max(1, min(10000, int(100 * limits.cpus)))))
            write_text(os.path.join(d, "cpu.max"), f"{limits.cfs_quota_us()} {CFS_PERIOD_US}")
        if limits.mem_bytes <= 0:
            return limits
        want = limits.cgroup_memory()
        if keeps_memory(want, old, lambda: read_int(os.path.join(d, "memory.current"))):
            return replace(limits, mem_bytes=old.mem_bytes)  # in use: keep the limit
        write_text(os.path.join(d, "memory.max"), str(want))
        return limits

    def _oom_peak(self, container_id: str) -> int | None:
        d = self._dir(container_id)
        events = parse_kv(read_text(os.path.join(d, "memory.events")))
        if events.get("oom_kill", 0) > 0 or events.get("oom", 0) > 0:
            return int((read_text(os.path.join(d, "memory.peak")) or read_text(os.path.join(d, "memory.current")) or "0")
                       .strip() or 0)
        return None

    def pids(self, container_id: str) -> list[int]:
        return [int(x) for x in (read_text(self._procs_files(container_id)[0]) or "").split()]

    def usage(self, container_id: str) -> dict[str, Any] | None:
        d = self._dir(container_id)
        cpu = parse_kv(read_text(os.path.join(d, "cpu.stat")))
        if not cpu and not os.path.isdir(d):
            return None
        mstat = parse_kv(read_text(os.path.join(d, "memory.stat")))
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
        if limit := self._memory_limit(container_id):
            out["mem_limit_bytes"] = limit
        if self.io:
            blkio = io_control.stats_v2(d)
            out["blkio_statistics"] = blkio
            out.update(io_control.totals(blkio))
        return out

    def cleanup(self, container_id: str) -> bool:
        d = self._dir(container_id)
        if not os.path.isdir(d):
            self._forget(container_id)
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
        self._forget(container_id)
        return True


__all__ = ["CgroupsV2Isolator"]

"""``cgroups/v1`` isolation: one cgroup per container in each of the ``cpu``, ``cpuacct`` and
``memory`` hierarchies (``cpu.shares``, ``cpu.cfs_quota_us``, ``memory.limit_in_bytes``);
usage from ``cpuacct.stat`` / ``memory.usage_in_bytes``; OOM from ``memory.oom_control``.
``cpu`` and ``cpuacct`` co-mounted (``cpu,cpuacct``) are one hierarchy: one cgroup there.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import Any

from . import io_control
from .cgroupfs import apply_plan, parse_kv, read_int, read_text, remove_cgroups, write_text
from .isolator import CGROUP_ROOT, MIN_CPU_SHARES, NESTED, CgroupIsolator, Limits, keeps_memory


class CgroupsV1Isolator(CgroupIsolator):
    """Per container: one ``mkdir`` per hierarchy and a few writes (``prepare``); the child
    joins before it execs (``preexec``, cpu last, so only the exec itself runs under the CPU
    quota); removal is batched off the task's exit path by the containerizer."""

    name = "cgroups/v1"
    # Joined in this order: cpuacct and memory first, cpu (the quota) last.
    CONTROLLERS = ("cpuacct", "memory", "cpu")

    def __init__(self, root: str = CGROUP_ROOT, *, io: bool = False, nested: str = NESTED) -> None:
        super().__init__(root, io)
        self.nested = nested  # --cgroups-root: the parent of every container's cgroup
        if _same_hierarchy(root, "cpu", "cpuacct"):
            # cpu and cpuacct co-mounted (``cpu,cpuacct``, as systemd does): one cgroup serves both,
            # so one mkdir, one move each way and one rmdir less per container; usage still
            # reads cpuacct.* through the ``cpuacct`` path.
            self.CONTROLLERS = ("memory", "cpu")
        if io:  # cgroups/blkio: one more hierarchy, joined first
            self.CONTROLLERS = ("blkio", *self.CONTROLLERS)
            self.name = "cgroups/v1+blkio"
        self._parents_ready = False
        self._swappiness_inherited = False

    def _dir(self, ctrl: str, container_id: str) -> str:
        # A string join, not os.path.join: ≈ 10 of these per task (a container id is a plain name).
        return f"{self.root}/{ctrl}/{self.nested}/{container_id}"

    def prepare(self, container_id: str, limits: Limits) -> None:
        if (plan := self.prepare_plan(container_id, limits)) is not None:
            apply_plan(plan)
            return
        apply_plan(self._new_cgroup_plan(container_id, limits))
        io_control.apply_v1(self._dir("blkio", container_id), limits.io)  # type: ignore[arg-type]

    def prepare_plan(self, container_id: str, limits: Limits) -> list | None:
        if self.io and limits.io:
            return None  # blkio limits name devices and probe files: prepared here
        return self._new_cgroup_plan(container_id, limits)

    def _new_cgroup_plan(self, container_id: str, limits: Limits) -> list:
        """One ``mkdir`` per hierarchy, then the limits (the parents are made once, here)."""
        if not self._parents_ready:
            self._make_parents()
        self._limits[container_id] = limits
        plan: list = [["mkdir", self._dir(ctrl, container_id)] for ctrl in self.CONTROLLERS]
        plan += self._cpu_plan(container_id, limits)
        if limits.mem_bytes > 0:
            mem = self._dir("memory", container_id)
            if not self._swappiness_inherited:  # no swap accounting: fine
                plan.append(["write?", f"{mem}/memory.swappiness", "0"])
            plan.append(["write", f"{mem}/memory.limit_in_bytes", str(limits.cgroup_memory())])
        return plan

    def _make_parents(self) -> None:
        """The parent cgroups, made once. The memory parent gets ``memory.swappiness`` 0: a
        new v1 memory cgroup starts with its parent's swappiness, so each container's is 0
        without a write of its own (one file step less per launch) when the parent's reads 0."""
        for ctrl in self.CONTROLLERS:
            os.makedirs(os.path.join(self.root, ctrl, self.nested), exist_ok=True)
        swappiness = os.path.join(self.root, "memory", self.nested, "memory.swappiness")
        with contextlib.suppress(OSError):
            write_text(swappiness, "0")
        self._swappiness_inherited = (read_text(swappiness) or "").strip() == "0"
        self._parents_ready = True

    def _cpu_plan(self, container_id: str, limits: Limits) -> list:
        if limits.cpus <= 0:
            return []
        # A new cgroup's cpu.cfs_period_us is already CFS_PERIOD_US (the kernel default).
        cpu = self._dir("cpu", container_id)
        return [["write", f"{cpu}/cpu.shares", str(max(MIN_CPU_SHARES, int(1024 * limits.cpus)))],
                ["write", f"{cpu}/cpu.cfs_quota_us", str(limits.cfs_quota_us())]]

    def _write_limits(self, container_id: str, limits: Limits, old: Limits | None) -> Limits:
        """CPU shares and quota, and the memory limit (lowered from ``old`` only as far as
        the cgroup's usage allows); returns the limits now in force."""
        apply_plan(self._cpu_plan(container_id, limits))
        if limits.mem_bytes <= 0:
            return limits
        mem = self._dir("memory", container_id)
        want = limits.cgroup_memory()
        if old is not None:
            with contextlib.suppress(OSError):
                write_text(os.path.join(mem, "memory.soft_limit_in_bytes"), str(want))
            if keeps_memory(want, old, lambda: read_int(os.path.join(mem, "memory.usage_in_bytes"))):
                return replace(limits, mem_bytes=old.mem_bytes)  # in use: keep the hard limit
        write_text(os.path.join(mem, "memory.limit_in_bytes"), str(want))
        return limits

    def _procs_files(self, container_id: str) -> list[str]:
        return [f"{self._dir(c, container_id)}/cgroup.procs" for c in self.CONTROLLERS]

    def _oom_peak(self, container_id: str) -> int | None:
        mem = self._dir("memory", container_id)
        # Asked at every exit: three "key value" lines split once (not parse_kv's per-line checks);
        # failcnt only where the kernel has no oom_kill count (before 4.13).
        words = (read_text(f"{mem}/memory.oom_control") or "").split()
        oom = dict(zip(words[::2], words[1::2], strict=False))
        if oom.get("oom_kill", "0") != "0" or oom.get("under_oom", "0") != "0" or \
                ("oom_kill" not in oom and read_int(f"{mem}/memory.failcnt") > 0):
            return read_int(f"{mem}/memory.max_usage_in_bytes")
        return None

    def pids(self, container_id: str) -> list[int]:
        text = read_text(f"{self._dir('memory', container_id)}/cgroup.procs") or ""
        return [int(x) for x in text.split()]

    def usage(self, container_id: str) -> dict[str, Any] | None:
        acct = parse_kv(read_text(os.path.join(self._dir("cpuacct", container_id), "cpuacct.stat")))
        if not acct and not os.path.isdir(self._dir("cpuacct", container_id)):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        mem = self._dir("memory", container_id)
        mstat = parse_kv(read_text(os.path.join(mem, "memory.stat")))
        cstat = parse_kv(read_text(os.path.join(self._dir("cpu", container_id), "cpu.stat")))
        pids = self.pids(container_id)
        out: dict[str, Any] = {
            "cpus_user_time_secs": round(acct.get("user", 0) / tick, 3),
            "cpus_system_time_secs": round(acct.get("system", 0) / tick, 3),
            "cpus_nr_periods": cstat.get("nr_periods", 0),
            "cpus_nr_throttled": cstat.get("nr_throttled", 0),
            "cpus_throttled_time_secs": cstat.get("throttled_time", 0) / 1e9,
            "mem_total_bytes": read_int(os.path.join(mem, "memory.usage_in_bytes")),
            "mem_rss_bytes": mstat.get("total_rss", mstat.get("rss", 0)),
            "mem_cache_bytes": mstat.get("total_cache", mstat.get("cache", 0)),
            "mem_anon_bytes": mstat.get("total_rss", 0),
            "mem_file_bytes": mstat.get("total_cache", 0),
            "mem_mapped_file_bytes": mstat.get("total_mapped_file", 0),
            "processes": len(pids),
        }
        if limit := self._memory_limit(container_id):
            out["mem_limit_bytes"] = limit
        if self.io:
            blkio = io_control.stats_v1(self._dir("blkio", container_id))
            out["blkio_statistics"] = blkio
            out.update(io_control.totals(blkio))
        return out

    def removal_dirs(self, container_id: str) -> list[str] | None:
        return [self._dir(ctrl, container_id) for ctrl in self.CONTROLLERS]

    def cleanup(self, container_id: str) -> bool:
        done = remove_cgroups(self.removal_dirs(container_id) or [])
        if done:
            self._forget(container_id)
        return done


def _same_hierarchy(root: str, a: str, b: str) -> bool:
    """``root/a`` and ``root/b`` are one mounted hierarchy (a link to the other, or to a shared
    ``a,b`` mount)."""
    pa, pb = os.path.join(root, a), os.path.join(root, b)
    return os.path.isdir(pa) and os.path.realpath(pa) == os.path.realpath(pb)


__all__ = ["CgroupsV1Isolator"]

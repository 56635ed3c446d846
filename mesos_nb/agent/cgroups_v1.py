"""``cgroups/v1`` isolation: one cgroup per container in each of the ``cpu``, ``cpuacct`` and
``memory`` hierarchies (``cpu.shares``, ``cpu.cfs_quota_us``, ``memory.limit_in_bytes``);
usage from ``cpuacct.stat`` / ``memory.usage_in_bytes``; OOM from ``memory.oom_control``.
``cpu`` and ``cpuacct`` co-mounted (``cpu,cpuacct``) are one hierarchy: one cgroup there.
An ended container's empty cgroups are recycled for a later one (``cgroup_pool``): renamed, not
removed and made again; its statistics are read less the pooled cgroup's baseline.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psutil

from . import io_control
from .cgroup_pool import PREFIX, Baseline, CgroupPool, is_stale, max_leftover, subtract
from .cgroupfs import (
    CPU_SYS_NS,
    CPU_USER_NS,
    apply_plan,
    parse_kv,
    read_int,
    read_pairs,
    read_text,
    remove_cgroups,
    write_text,
)
from .isolator import CGROUP_ROOT, MIN_CPU_SHARES, NESTED, CgroupIsolator, Limits, keeps_memory


class CgroupsV1Isolator(CgroupIsolator):
    """Per container: one ``mkdir`` per hierarchy, or the rename of an ended container's kept
    cgroups (``cgroup_pool``), and a few writes (``prepare``); the child joins before it execs
    (``preexec``, cpu last, so only the exec itself runs under the CPU quota); removal is
    batched off the task's exit path by the containerizer."""

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
        # Recycled cgroups: not with blkio (its statistics cannot be zeroed), and only when a
        # container's swappiness comes from the parent (a recycled one keeps its own).
        self._pool = CgroupPool(os.getpid())
        self._max_leftover = max_leftover(os.cpu_count() or 1)
        self._memsw = os.path.exists(os.path.join(root, "memory", "memory.memsw.usage_in_bytes"))  # swap accounting
        self._base: dict[str, Baseline] = {}  # container id -> its recycled cgroup's baseline
        self._set: dict[str, dict[str, str]] = {}  # container id -> the settings its cgroups hold
        self._pooled: set[str] = set()  # ended containers whose cgroups went into the pool
        self._sweep_stale()

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
        want = _settings(limits)
        holds = self._set[container_id] = {**FRESH, **want}
        taken = self._pool.take()
        if taken is None:
            plan: list = [["mkdir", self._dir(ctrl, container_id)] for ctrl in self.CONTROLLERS]
            writes = want
        else:  # a recycled cgroup: renamed to this container; what differs from its last settings written
            name, (self._base[container_id], had) = taken
            plan = [["rename", self._dir(ctrl, name), self._dir(ctrl, container_id)] for ctrl in self.CONTROLLERS]
            writes = {key: value for key, value in holds.items() if had.get(key) != value}
        if limits.mem_bytes > 0 and not self._swappiness_inherited:  # no swap accounting: fine
            plan.append(["write?", f"{self._dir('memory', container_id)}/memory.swappiness", "0"])
        plan += [["write", f"{self._dir(key.split('.', 1)[0], container_id)}/{key}", value]
                 for key, value in writes.items()]
        if (name := self._pool.offer(container_id)) is not None:
            plan.append(["pool", container_id, self._recycle_spec(container_id, name)])
        return plan

    def _recycle_spec(self, container_id: str, name: str) -> dict:
        """How the helper keeps this container's cgroups for a later one when it has exited
        (``cgroupfs.recycle_cgroups``): renamed to the pool's ``name``."""
        cpu = "cpu" if "cpu" in self.CONTROLLERS else None
        return {"from": [self._dir(ctrl, container_id) for ctrl in self.CONTROLLERS],
                "to": [self._dir(ctrl, name) for ctrl in self.CONTROLLERS], "max": self._max_leftover,
                "mem": self._dir("memory", container_id), "cpu": cpu and self._dir(cpu, container_id),
                "acct": self._dir("cpuacct", container_id), "memsw": self._memsw}

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
        if not self._swappiness_inherited or self.io:
            self._pool.capacity = 0
        self._parents_ready = True

    def _sweep_stale(self) -> None:
        """Pooled cgroups an agent process left when it ended without draining (a crash):
        removed when an agent starts (they are empty; a busy one is not ours, left alone)."""
        self._rmdir_pooled(lambda name: name.startswith(PREFIX) and is_stale(name, psutil.pid_exists))

    def _rmdir_pooled(self, match: Callable[[str], bool]) -> None:
        """``rmdir`` every cgroup under the parents whose name ``match``es (errors ignored)."""
        for ctrl in self.CONTROLLERS:
            with contextlib.suppress(OSError):
                for e in list(os.scandir(os.path.join(self.root, ctrl, self.nested))):
                    if match(e.name):
                        with contextlib.suppress(OSError):
                            os.rmdir(e.path)

    def _cpu_plan(self, container_id: str, limits: Limits) -> list:
        cpu = self._dir("cpu", container_id)
        settings = {key: value for key, value in _settings(limits).items() if key.startswith("cpu.")}
        self._set.get(container_id, {}).update(settings)
        return [["write", f"{cpu}/{key}", value] for key, value in settings.items()]

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
                self._set.get(container_id, {})["memory.soft_limit_in_bytes"] = str(want)
            if keeps_memory(want, old, lambda: self._mem_usage(container_id)):
                return replace(limits, mem_bytes=old.mem_bytes)  # in use: keep the hard limit
        write_text(os.path.join(mem, "memory.limit_in_bytes"), str(want))
        self._set.get(container_id, {})["memory.limit_in_bytes"] = str(want)
        return limits

    def _mem_usage(self, container_id: str) -> int:
        """``memory.usage_in_bytes`` less a recycled cgroup's baseline (not ``memory.stat``)."""
        used = read_int(f"{self._dir('memory', container_id)}/memory.usage_in_bytes")
        return max(0, used - self._base.get(container_id, {}).get("usage_in_bytes", 0))

    def _mem_stats(self, container_id: str) -> dict[str, int]:
        """``memory.usage_in_bytes`` and ``memory.stat``, less a recycled cgroup's baseline."""
        mem = self._dir("memory", container_id)
        stats = parse_kv(read_text(f"{mem}/memory.stat"))
        stats["usage_in_bytes"] = read_int(f"{mem}/memory.usage_in_bytes")
        base = self._base.get(container_id)
        return stats if base is None else subtract(stats, base)

    def _procs_files(self, container_id: str) -> list[str]:
        return [f"{self._dir(c, container_id)}/cgroup.procs" for c in self.CONTROLLERS]

    def _oom_peak(self, container_id: str) -> int | None:
        mem = self._dir("memory", container_id)
        # Asked at every exit: three "key value" lines in one read (not parse_kv's per-line checks);
        # failcnt only where the kernel has no oom_kill count (before 4.13).
        oom = read_pairs(f"{mem}/memory.oom_control") or {}
        if oom.get(b"oom_kill", b"0") != b"0" or oom.get(b"under_oom", b"0") != b"0" or \
                (b"oom_kill" not in oom and read_int(f"{mem}/memory.failcnt") > 0):
            peak = read_int(f"{mem}/memory.max_usage_in_bytes")
            return max(0, peak - self._base.get(container_id, {}).get("usage_in_bytes", 0))
        return None

    def pids(self, container_id: str) -> list[int]:
        text = read_text(f"{self._dir('memory', container_id)}/cgroup.procs") or ""
        return [int(x) for x in text.split()]

    def usage(self, container_id: str) -> dict[str, Any] | None:
        acct_dir = self._dir("cpuacct", container_id)
        base = self._base.get(container_id)
        if (user_ns := read_text(f"{acct_dir}/{CPU_USER_NS}")) is not None:
            # ns counters, zeroed when a recycled cgroup is handed on (recycle_cgroups)
            user, system = int(user_ns or 0) / 1e9, read_int(f"{acct_dir}/{CPU_SYS_NS}") / 1e9
        else:  # kernels before 4.7: ticks, less a recycled cgroup's baseline
            acct = parse_kv(read_text(f"{acct_dir}/cpuacct.stat"))
            if not acct and not os.path.isdir(acct_dir):
                return None
            if base is not None:
                acct = subtract(acct, base)
            tick = os.sysconf("SC_CLK_TCK")
            user, system = acct.get("user", 0) / tick, acct.get("system", 0) / tick
        mstat = self._mem_stats(container_id)
        cstat = parse_kv(read_text(os.path.join(self._dir("cpu", container_id), "cpu.stat")))
        if base is not None:
            cstat = subtract(cstat, base)
        pids = self.pids(container_id)
        out: dict[str, Any] = {
            "cpus_user_time_secs": round(user, 3),
            "cpus_system_time_secs": round(system, 3),
            "cpus_nr_periods": cstat.get("nr_periods", 0),
            "cpus_nr_throttled": cstat.get("nr_throttled", 0),
            "cpus_throttled_time_secs": cstat.get("throttled_time", 0) / 1e9,
            "mem_total_bytes": mstat["usage_in_bytes"],
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
        if container_id in self._pooled:
            return []  # renamed into the pool already
        return [self._dir(ctrl, container_id) for ctrl in self.CONTROLLERS]

    def removed(self, container_id: str) -> None:
        self._pooled.discard(container_id)
        super().removed(container_id)

    def cleanup(self, container_id: str) -> bool:
        done = remove_cgroups(self.removal_dirs(container_id) or [])
        if done:
            self._pooled.discard(container_id)
            self._forget(container_id)
        return done

    def recycled(self, container_id: str, baseline: dict | None) -> str | None:
        if baseline is None:
            self._pool.answered(container_id, None)
            return None
        if container_id not in self._pool.pending:
            return None  # forgotten meanwhile: what it kept is removed with the pool (drain_pool)
        surplus = self._pool.answered(container_id, (baseline, self._set.get(container_id, FRESH)))
        self._pooled.add(container_id)
        self._forget(container_id)
        return surplus

    def _forget(self, container_id: str) -> None:
        super()._forget(container_id)
        self._pool.answered(container_id, None)  # an offer never answered (no exit in the helper)
        self._base.pop(container_id, None)
        self._set.pop(container_id, None)

    def drain_pool(self) -> None:
        """Every pooled cgroup of this agent, also one whose recycle answer never came (the
        helper stopped first), is removed."""
        self._pool.drain()
        self._rmdir_pooled(self._pool.owns)


# A new cgroup's settings (cpu.cfs_period_us stays the kernel's default, CFS_PERIOD_US).
FRESH = {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "memory.limit_in_bytes": "-1",
         "memory.soft_limit_in_bytes": "-1"}


def _settings(limits: Limits) -> dict[str, str]:
    """The cgroup files a container's limits set, and their values."""
    out = {}
    if limits.cpus > 0:
        out["cpu.shares"] = str(max(MIN_CPU_SHARES, int(1024 * limits.cpus)))
        out["cpu.cfs_quota_us"] = str(limits.cfs_quota_us())
    if limits.mem_bytes > 0:
        out["memory.limit_in_bytes"] = str(limits.cgroup_memory())
    return out


def _same_hierarchy(root: str, a: str, b: str) -> bool:
    """``root/a`` and ``root/b`` are one mounted hierarchy (a link to the other, or to a shared
    ``a,b`` mount)."""
    pa, pb = os.path.join(root, a), os.path.join(root, b)
    return os.path.isdir(pa) and os.path.realpath(pa) == os.path.realpath(pb)


__all__ = ["CgroupsV1Isolator"]

"""Recycled cgroups (cgroups v1): an ended container's empty cgroups are kept, renamed to a
pool name, and renamed again to a later container's id, instead of three ``rmdir`` now and
three ``mkdir`` at the next launch; a limit file whose value is already the new container's
is not written again (a ``cpu.cfs_quota_us`` write walks every cpu cgroup of the machine).

Why: creating and removing cgroups was about a third of the launch helper's CPU per launch
(``perf``; a removed memory cgroup also lingers offline while pages it charged live); a
``rename(2)`` within the parent is ≈ 10 µs (``bench/results/*-cgreuse17-*``).

Flow: the isolator's setup plan of a launch ends with a ``pool`` step (a pool name offered,
while the pool has room); when the child has exited the launcher helper, in a quiet turn,
keeps the cgroups (``cgroupfs.recycle_cgroups``) and tells the agent (``{"pooled": [id,
baseline]}`` → ``isolator.recycled``); the next launch's plan renames them (``rename`` step).
The agent drains the pool when it stops; a crashed agent's pool names carry its pid, so the
next agent removes them (:func:`is_stale`).

What a user sees (the agent's statistics, the task's limits and cgroup paths) stays a fresh
cgroup's: the helper keeps cgroups only when they are empty,
their memory cgroup never hit its limit (``oom_kill``, ``under_oom`` 0) and still charges at
most :func:`max_leftover` bytes (the kernel keeps some slab and per-cpu charge of the ended
task, all reclaimable: a /bin/true leaves 160-570 KiB here; ``memory.force_empty`` took
0.15 s to drop it); it zeroes the memory peaks (``memory.max_usage_in_bytes``,
``memory.failcnt``, the memsw ones) and the CPU counters (``cpuacct.usage``, which zeroes
``cpuacct.usage_user``/``_sys``: the isolator reads those, so a task never sees an earlier
tenant's CPU) and reads the rest as a *baseline* (``cpu.stat`` counters, the charge left and
``memory.stat``) that the isolator subtracts from the next container's statistics.
``cpuacct.stat`` is not read where those files exist: the kernel derives it through
``cputime_adjust()``, which never shows less than it showed before, so after a reset it stayed
at the ended container's total until the next one had burnt more, and a busy task read 0 CPU
(the dashboard's CPU plot flat). Kernels before 4.7 (no ``usage_user``) keep ``cpuacct.usage``
and subtract ``cpuacct.stat`` as a baseline. Every limit file holds the new
container's value (a fresh cgroup's where it sets none); the cgroup paths are named by its
container id.

This module is the pure core: names, bounds, which pooled cgroup a launch takes, which
pooled names a restarted agent may remove.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

CAPACITY = 64  # pooled cgroups per agent (each is an empty cgroup in every hierarchy)
PREFIX = "pool-"
_NAME = re.compile(r"pool-(\d+)-[0-9a-f]+-\d+")
_tokens = itertools.count(1)


def max_leftover(ncpus: int) -> int:
    """The most a kept memory cgroup may still charge: each CPU's charge stock (pages charged
    ahead, up to 64 of them, given back when another cgroup charges on that CPU) and 1 MiB of
    slab (dentries and inodes the ended tasks left, ≈ 45 KiB a /bin/true; a cgroup reused
    ≈ 20 times is then removed and a fresh one made)."""
    return ncpus * (256 << 10) + (1 << 20)


Baseline = dict[str, int]


class CgroupPool:
    """One agent's pool: pooled names with what the isolator keeps with them (the newest
    taken first: its kernel state is the warmest), at most ``capacity``, plus the names handed
    out to running containers for a recycle at their exit (``pending``: as many as run; a
    running container's cgroups exist anyway). A cgroup kept when the pool is full is surplus:
    removed as an ended container's would be."""

    def __init__(self, pid: int, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._prefix = f"{PREFIX}{pid}-{next(_tokens):x}-"
        self._seq = itertools.count(1)
        self._free: list[tuple[str, Any]] = []  # (name, the isolator's record: baseline, settings)
        self.pending: dict[str, str] = {}  # container id -> pool name it is being recycled to

    def __len__(self) -> int:
        return len(self._free)

    def offer(self, container_id: str) -> str | None:
        """The pool name a container's cgroups are renamed to when it has ended, or None: no
        pool here (capacity 0)."""
        if self.capacity <= 0:
            return None
        name = self.pending[container_id] = f"{self._prefix}{next(self._seq)}"
        return name

    def answered(self, container_id: str, kept: Any) -> str | None:
        """The helper's answer to :meth:`offer`: pooled (``kept``: what the isolator keeps with
        it) or not (None: removed as usual). Returns the pool name when the pool is full (to be
        removed). An unknown or answered container: nothing."""
        name = self.pending.pop(container_id, None)
        if name is None or kept is None:
            return None
        if len(self._free) >= self.capacity:
            return name
        self._free.append((name, kept))
        return None

    def owns(self, name: str) -> bool:
        """``name`` is one of this pool's (pooled, or handed out for a recycle)."""
        return name.startswith(self._prefix)

    def take(self) -> tuple[str, Any] | None:
        return self._free.pop() if self._free else None

    def drain(self) -> list[str]:
        """Every pooled name (the agent stops: they are removed)."""
        names = [name for name, _ in self._free]
        self._free.clear()
        return names


def is_stale(name: str, alive: Callable[[int], bool]) -> bool:
    """A pooled cgroup left by an agent process that is gone (a crash: no drain ran); another
    live agent's (this process's sibling agents too) are not ours to remove."""
    m = _NAME.fullmatch(name)
    return m is not None and not alive(int(m.group(1)))


def subtract(stats: dict[str, int], baseline: Baseline) -> dict[str, int]:
    """``stats`` less what the pooled cgroup had counted before this container (never below 0:
    reclaim may have shrunk a leftover charge since)."""
    return {k: max(0, v - baseline.get(k, 0)) for k, v in stats.items()}


__all__ = ["CAPACITY", "max_leftover", "Baseline", "CgroupPool", "is_stale", "subtract"]

"""Recycled cgroups (cgroups v1): an ended container's empty cgroups are kept, renamed to a
pool name, and renamed again to the next container's id, instead of an ``rmdir`` now and a
``mkdir`` at the next launch.

Why: a memory cgroup's creation and removal are the dearest cgroup steps of a launch (an
removed memcg lingers offline while pages it charged live, and each new one costs more the
more there are); a ``rename(2)`` within the parent is ≈ 10 µs (``bench/results/*-cgreuse17-*``).

What a user sees stays a fresh cgroup's: the helper takes a cgroup into the pool only when it
is empty, never hit its memory limit (``oom_kill`` and ``under_oom`` 0) and still charges at
most ``MAX_LEFTOVER`` bytes (the kernel keeps a few slab pages of the ended task charged; a
/bin/true leaves ≈ 160 KiB, ``memory.force_empty`` to drop them takes up to 0.15 s); it then
zeroes what can be zeroed (``cpuacct.usage``, ``memory.max_usage_in_bytes``, ``memory.failcnt``,
the memsw ones) and reads the rest as a *baseline* (``cpuacct.stat`` ticks, ``cpu.stat``
counters, the leftover charge): the isolator subtracts it from the next container's
statistics and adds the leftover to its memory limit, so statistics start from zero and the
task has its whole limit.

This module is the pure core: names, bounds, which pooled cgroup a launch takes, which
pooled names a restarted agent may remove. The file steps run in the launch helper
(``cgroupfs.recycle_cgroups`` at removal, a ``rename`` setup step at launch).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

CAPACITY = 128  # pooled cgroups per agent (each is an empty cgroup in every hierarchy)
MAX_LEFTOVER = 512 * 1024  # bytes a pooled memory cgroup may still charge
PREFIX = "pool-"
_NAME = re.compile(r"pool-(\d+)-[0-9a-f]+-\d+")
_tokens = itertools.count(1)

Baseline = dict[str, int]


class CgroupPool:
    """One agent's pool: pooled names with their baselines (the newest taken first: its
    kernel state is the warmest), plus names handed out for a recycle whose answer has not
    come back yet (``pending``), all within ``capacity``."""

    def __init__(self, pid: int, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._prefix = f"{PREFIX}{pid}-{next(_tokens):x}-"
        self._seq = itertools.count(1)
        self._free: list[tuple[str, Baseline]] = []
        self.pending: dict[str, str] = {}  # container id -> pool name it is being recycled to

    def __len__(self) -> int:
        return len(self._free)

    def offer(self, container_id: str) -> str | None:
        """The pool name an ended container's cgroups should be renamed to, or None: full."""
        if len(self._free) + len(self.pending) >= self.capacity:
            return None
        name = self.pending[container_id] = f"{self._prefix}{next(self._seq)}"
        return name

    def answered(self, container_id: str, baseline: Baseline | None) -> None:
        """The helper's answer to :meth:`offer`: pooled (with its baseline) or not (removed)."""
        name = self.pending.pop(container_id, None)
        if name is not None and baseline is not None:
            self._free.append((name, baseline))

    def owns(self, name: str) -> bool:
        """``name`` is one of this pool's (pooled, or handed out for a recycle)."""
        return name.startswith(self._prefix)

    def take(self) -> tuple[str, Baseline] | None:
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


__all__ = ["CAPACITY", "MAX_LEFTOVER", "Baseline", "CgroupPool", "is_stale", "subtract"]

"""``posix`` isolation: no kernel enforcement. The process tree is found from /proc (psutil
where /proc is missing) and its RSS is polled; a container over its memory limit is reported
as a memory limitation (and then destroyed by the containerizer). CPU is accounted, not limited.
"""

from __future__ import annotations

import os

import psutil

from .isolator import Isolator, Limits, memory_message

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int) -> int:
    """Resident bytes of one process from /proc/<pid>/statm (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _ppid_map() -> dict[int, int]:
    """pid -> parent pid for every process, from /proc (psutil's process_iter elsewhere)."""
    out: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        names = None
    if names is None:
        for p in psutil.process_iter(["ppid"]):
            out[p.pid] = p.info["ppid"] or 0
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            out[int(name)] = int(data[data.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree_stats(pid: int, wrappers: int = 0) -> dict[str, float] | None:
    """CPU times, RSS, process and thread counts of ``pid`` and its descendants (psutil).
    The top ``wrappers`` levels (the namespace waiter and init: forks of the agent that never
    exec'd, whose RSS is the agent's shared pages) are not counted."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    skip = _wrapper_pids(pid, wrappers)
    user = system = 0.0
    rss = threads = 0
    for p in procs:
        if p.pid in skip:
            continue
        try:
            with p.oneshot():
                ct = p.cpu_times()
                user += ct.user + ct.children_user
                system += ct.system + ct.children_system
                rss += p.memory_info().rss
                threads += p.num_threads()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return {"cpus_user_time_secs": round(user, 3), "cpus_system_time_secs": round(system, 3),
            "mem_rss_bytes": rss, "processes": len(procs), "threads": threads}


def _wrapper_pids(pid: int, levels: int) -> set[int]:
    """``pid`` and its first descendants, ``levels`` deep (each wrapper has one child)."""
    out: set[int] = set()
    cur = pid
    for _ in range(levels):
        out.add(cur)
        try:
            kids = psutil.Process(cur).children()
        except psutil.Error:
            break
        if len(kids) != 1:
            break
        cur = kids[0].pid
    return out


class PosixIsolator(Isolator):
    name = "posix"

    def __init__(self) -> None:
        self._pids: dict[str, tuple[int, Limits]] = {}
        self._peak: dict[str, int] = {}
        self._wrappers: dict[str, int] = {}

    def wrapped(self, container_id: str, levels: int) -> None:
        self._wrappers[container_id] = levels

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        self._pids[container_id] = (pid, limits)

    def update(self, container_id: str, limits: Limits) -> Limits:
        entry = self._pids.get(container_id)
        if entry is not None:  # the enforcement is this bookkeeping: the next poll uses it
            self._pids[container_id] = (entry[0], limits)
        return limits

    def usage(self, container_id: str) -> dict[str, float] | None:
        entry = self._pids.get(container_id)
        if entry is None:
            return None
        stats = tree_stats(entry[0], self._wrappers.get(container_id, 0))
        if stats is not None:
            self._peak[container_id] = max(self._peak.get(container_id, 0), int(stats["mem_rss_bytes"]))
        return stats

    def pids(self, container_id: str) -> list[int]:
        entry = self._pids.get(container_id)
        if entry is None:
            return []
        try:
            root = psutil.Process(entry[0])
            return [root.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    def limitation(self, container_id: str) -> str | None:
        entry = self._pids.get(container_id)
        if entry is None or entry[1].mem_bytes <= 0:
            return None
        stats = self.usage(container_id)
        used = int(stats["mem_rss_bytes"]) if stats else 0
        if used > entry[1].mem_bytes:
            return memory_message(entry[1].mem_bytes, used)
        return None

    def limitations(self, container_ids: list[str]) -> dict[str, str]:
        """One scan of the process table per poll, not one per container: with many live
        tasks a per-container ``children(recursive=True)`` walk is quadratic."""
        watched = [(cid, self._pids[cid]) for cid in container_ids
                   if cid in self._pids and self._pids[cid][1].mem_bytes > 0]
        if not watched:
            return {}
        parent_of = _ppid_map()
        children: dict[int, list[int]] = {}
        for pid, ppid in parent_of.items():
            children.setdefault(ppid, []).append(pid)
        out = {}
        for cid, (root, limits) in watched:
            if root not in parent_of:
                continue
            rss, stack = 0, [(root, 0)]
            levels = self._wrappers.get(cid, 0)
            while stack:
                pid, depth = stack.pop()
                if depth >= levels:  # the top ``levels`` are the agent's wrappers
                    rss += _rss(pid)
                stack.extend((k, depth + 1) for k in children.get(pid, ()))
            if rss > self._peak.get(cid, 0):
                self._peak[cid] = rss
            if rss > limits.mem_bytes:
                out[cid] = memory_message(limits.mem_bytes, rss)
        return out

    def cleanup(self, container_id: str) -> bool:
        self._pids.pop(container_id, None)
        self._peak.pop(container_id, None)
        self._wrappers.pop(container_id, None)
        return True


__all__ = ["PosixIsolator", "tree_stats"]

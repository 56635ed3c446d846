"""The isolator interface (:class:`Isolator`), the :class:`Limits` it enforces, and what the
two cgroup implementations share (:class:`CgroupIsolator`, the pre-exec :class:`CgroupJoin`;
their file helpers are in ``cgroupfs.py``). The implementations are ``posix_isolator.py``,
``cgroups_v1.py`` and ``cgroups_v2.py``; ``isolation.py`` picks one.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace

from .cgroupfs import write_text

CGROUP_ROOT = "/sys/fs/cgroup"
NESTED = "mesos_nb"
CFS_PERIOD_US = 100_000
MIN_CPU_SHARES = 2
MIN_MEMORY_BYTES = 32 * 1024 * 1024  # Mesos' MIN_MEMORY


@dataclass
class IoLimits:
    """Block I/O of one container on one device (``MAJ:MIN``); 0 = no limit / default weight."""
    device: str = ""
    weight: int = 0
    read_bps: int = 0
    write_bps: int = 0
    read_iops: int = 0
    write_iops: int = 0

    def __bool__(self) -> bool:
        return bool(self.weight or self.read_bps or self.write_bps or self.read_iops or self.write_iops)


@dataclass
class Limits:
    cpus: float = 0.0  # 0 = unlimited
    mem_bytes: int = 0  # 0 = unlimited
    disk_bytes: int = 0  # 0 = unlimited (enforced by disk/du when asked)
    io: IoLimits | None = None

    def cgroup_memory(self) -> int:
        """The bytes a cgroup's memory limit is set to (Mesos' floor applies); 0 = no limit."""
        return max(MIN_MEMORY_BYTES, self.mem_bytes) if self.mem_bytes > 0 else 0

    def cfs_quota_us(self) -> int:
        """CPU time per ``CFS_PERIOD_US`` (at least 1 ms, the kernel's minimum)."""
        return max(1000, int(CFS_PERIOD_US * self.cpus))


def cgroups_root_name(name: str) -> str:
    """``--cgroups-root`` checked: the one cgroup under each hierarchy that holds the agent's
    containers (Mesos' ``--cgroups_root``, default ``mesos``; ours ``mesos_nb``). Raises
    ValueError with a sentence."""
    if name in ("", ".", "..") or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"--cgroups-root {name!r} is not a cgroup name: use letters, digits, '-', '_' and '.'")
    return name


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f}MB"


def memory_message(limit: int, used: int) -> str:
    """Mesos' wording for a memory limitation."""
    return f"Memory limit exceeded: Requested: {_mb(limit)} Maximum Used: {_mb(used)}"


class CgroupJoin:
    """The child's pre-exec step: join each cgroup (writing "0" means "this process"), so not
    one instruction of the task runs outside its limits. Only os calls: it runs after fork.
    ``files`` lets the launcher helper (``launcher.py``) do the same join in its own child."""

    __slots__ = ("files",)

    def __init__(self, procs_files: list[str]) -> None:
        self.files = list(procs_files)

    def __call__(self) -> None:
        for p in self.files:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)


def cgroup_joiner(procs_files: list[str]) -> Callable[[], None]:
    """A :class:`CgroupJoin` for ``procs_files``."""
    return CgroupJoin(procs_files)


class Isolator:
    """Interface. ``prepare`` before launch, ``preexec`` runs in the child, ``isolate`` after
    launch (and after recovery), ``limitation`` is polled and asked once more at exit,
    ``usage`` feeds ``/monitor/statistics``, ``cleanup`` when the container is gone."""

    name = "posix"

    def prepare(self, container_id: str, limits: Limits) -> None:
        pass

    def prepare_plan(self, container_id: str, limits: Limits) -> list | None:
        """``prepare`` as a plan of plain file steps (``cgroupfs.apply_plan``) that the launcher
        helper carries out in the same round as the spawn (the agent records the container as
        prepared now); None: not expressible, call ``prepare``."""
        return []

    def preexec(self, container_id: str) -> Callable[[], None] | None:
        return None

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        pass

    def update(self, container_id: str, limits: Limits) -> Limits:
        """New limits for a running container (an executor's tasks come and go, as Mesos'
        containerizer ``update``); returns the limits in force. Memory is lowered only as far
        as it is not in use, so a shrink never kills what runs (Mesos then lowers only the
        soft limit). Raises OSError."""
        return limits

    def limitation(self, container_id: str) -> str | None:
        """A message when the container broke its memory limit, else None."""
        return None

    def usage(self, container_id: str) -> dict[str, float] | None:
        return None

    def limitations(self, container_ids: list[str]) -> dict[str, str]:
        """``limitation`` for many containers in one pass (the poller asks for all at once)."""
        out = {}
        for cid in container_ids:
            try:
                msg = self.limitation(cid)
            except OSError:
                msg = None
            if msg is not None:
                out[cid] = msg
        return out

    def pids(self, container_id: str) -> list[int]:
        return []

    def kill(self, container_id: str) -> None:
        """SIGKILL every process of the container (``pids``; cgroups v2: ``cgroup.kill``),
        also those that left its process group (a double fork, a daemon)."""
        for pid in self.pids(container_id):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def wrapped(self, container_id: str, levels: int) -> None:
        """The container's top ``levels`` processes are the agent's own wrappers (namespace
        waiter/init, forks that never exec): not the task's memory."""

    def cleanup(self, container_id: str) -> bool:
        """Remove the container's isolation state; False = try again later (still busy)."""
        return True

    def removal_dirs(self, container_id: str) -> list[str] | None:
        """``cleanup`` as the cgroup directories to remove (``cgroupfs.remove_cgroups``), so the
        launcher helper can remove them off the agent's process; None: call ``cleanup``.
        After a removal that left nothing, :meth:`removed`."""
        return None

    def removed(self, container_id: str) -> None:
        """The directories of :meth:`removal_dirs` are gone: forget the container."""

    def recycled(self, container_id: str, baseline: dict | None) -> str | None:
        """The launcher helper kept an ended container's cgroups for a later one (their
        ``baseline``), or could not (None), as the setup plan's ``pool`` step asked. Returns
        the kept cgroups' name when the pool has no room for them: removed like an ended
        container's."""
        return None

    def drain_pool(self) -> None:
        """The agent stops: remove what was kept for later containers."""


class CgroupIsolator(Isolator):
    """What both cgroup versions do alike: remember each container's limits, join the child to
    its cgroups before it execs (or move a recovered pid in after), and forget a removed one.
    A version says where its ``cgroup.procs`` files are (``_procs_files``, in join order) and
    writes its own limit files (``_write_limits``, also when a task resizes its executor's
    container through :meth:`update`)."""

    def __init__(self, root: str, io: bool) -> None:
        self.root = root
        self.io = io
        self._limits: dict[str, Limits] = {}
        self._joined: set[str] = set()  # containers whose child joined its cgroups itself

    def _procs_files(self, container_id: str) -> list[str]:
        raise NotImplementedError

    def prepare_plan(self, container_id: str, limits: Limits) -> list | None:
        return None  # a version that can say its setup as file steps overrides this

    def _oom_peak(self, container_id: str) -> int | None:
        """The memory used at the peak if the container hit its memory limit, else None."""
        raise NotImplementedError

    def _memory_limit(self, container_id: str) -> int:
        """The memory limit written to the cgroup (0 = none)."""
        return self._limits.get(container_id, Limits()).cgroup_memory()

    def limitation(self, container_id: str) -> str | None:
        limit = self._memory_limit(container_id)
        peak = self._oom_peak(container_id) if limit else None
        return None if peak is None else memory_message(limit, peak)

    def preexec(self, container_id: str) -> Callable[[], None] | None:
        self._joined.add(container_id)
        return cgroup_joiner(self._procs_files(container_id))

    def isolate(self, container_id: str, pid: int, limits: Limits) -> None:
        self._limits.setdefault(container_id, limits)
        if container_id in self._joined:
            return  # the child joined before exec (a failed join fails the launch)
        for procs in self._procs_files(container_id):
            with contextlib.suppress(OSError):  # a hierarchy that is gone
                write_text(procs, str(pid))

    def _forget(self, container_id: str) -> None:
        self._limits.pop(container_id, None)
        self._joined.discard(container_id)

    def removed(self, container_id: str) -> None:
        self._forget(container_id)

    def _write_limits(self, container_id: str, limits: Limits, old: Limits | None) -> Limits:
        raise NotImplementedError

    def update(self, container_id: str, limits: Limits) -> Limits:
        old = self._limits.get(container_id)
        if old is None:
            return limits
        now = self._limits[container_id] = replace(self._write_limits(container_id, limits, old), io=old.io)
        return now


def keeps_memory(want: int, old: Limits | None, in_use: Callable[[], int]) -> bool:
    """True when a new memory limit ``want`` must not be written: it would lower ``old``'s
    under what the container uses now (``in_use``, read only then)."""
    return old is not None and old.mem_bytes > 0 and want < old.mem_bytes and in_use() > want


__all__ = ["Isolator", "CgroupIsolator", "keeps_memory", "cgroups_root_name", "Limits", "IoLimits", "memory_message",
           "cgroup_joiner", "CgroupJoin", "CGROUP_ROOT", "NESTED", "CFS_PERIOD_US", "MIN_CPU_SHARES",
           "MIN_MEMORY_BYTES"]

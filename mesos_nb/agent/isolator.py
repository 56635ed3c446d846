"""The isolator interface (:class:`Isolator`), the :class:`Limits` it enforces, and the small
file helpers the cgroup implementations share. The implementations are ``posix_isolator.py``,
``cgroups_v1.py`` and ``cgroups_v2.py``; ``isolation.py`` picks one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

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


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def write_text(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def parse_kv(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out

def read_int(path: str) -> int:
    """A cgroup file holding one number (0 when it is missing or empty)."""
    return int((read_text(path) or "0").strip() or 0)


def mkdir_once(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass


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

    def wrapped(self, container_id: str, levels: int) -> None:
        """The container's top ``levels`` processes are the agent's own wrappers (namespace
        waiter/init, forks that never exec): not the task's memory."""

    def cleanup(self, container_id: str) -> bool:
        """Remove the container's isolation state; False = try again later (still busy)."""
        return True


class CgroupIsolator(Isolator):
    """What the cgroup isolators share: the limits in force per container and their update;
    each writes its own files (``_write_limits``)."""

    _limits: dict[str, Limits]

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


__all__ = ["Isolator", "CgroupIsolator", "keeps_memory", "cgroups_root_name", "Limits", "IoLimits", "memory_message", "read_text", "read_int", "write_text", "parse_kv", "mkdir_once",
           "cgroup_joiner", "CgroupJoin", "CGROUP_ROOT", "NESTED", "CFS_PERIOD_US", "MIN_CPU_SHARES",
           "MIN_MEMORY_BYTES"]

"""Is this pid still the process the agent started? A pid alone can be recycled after a
restart, so a process is identified by (pid, start time) or by the ``MESOS_CONTAINER_ID`` in
its environment; recovery kills only what passes (never a stranger that reused the pid).
"""

from __future__ import annotations

import contextlib
import logging
import os

import psutil

logger = logging.getLogger("mesos_nb.agent")

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_start(pid: int) -> float | None:
    """When ``pid`` started (seconds since boot): with the pid, a process's identity. Read
    straight from /proc: it is on every launch's path, and psutil.Process costs 10× more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19]) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int, start_time: float | None) -> bool:
    """``pid`` runs, is not a zombie, and (when known) started at ``start_time``."""
    st = process_start(pid)
    if st is None:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    return start_time is None or abs(st - start_time) < 1.0


def runs_container(pid: int, container_id: str | None) -> bool:
    """Whether ``pid`` is still the process this agent started for ``container_id`` (not a
    recycled pid): its environment names the container."""
    if not container_id:
        return False
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return b"MESOS_CONTAINER_ID=" + container_id.encode() + b"\0" in env


def kill_if_ours(pid: int, start_time: float | None, container_id: str | None) -> bool:
    """SIGKILL the process group of ``pid`` when it is provably the one we started."""
    ours = alive(pid, start_time) if start_time is not None else runs_container(pid, container_id)
    if ours:
        logger.info("killing an orphaned container pid=%d container=%s", pid, container_id)
        with contextlib.suppress(OSError):
            os.killpg(pid, 9)
    return ours


__all__ = ["process_start", "alive", "runs_container", "kill_if_ours"]

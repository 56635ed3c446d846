"""Removing ended containers' isolation (their cgroups) off the task's exit path: the final
status update does not wait for it. Exited containers are queued and removed in batches,
``CLEANUP_DELAY`` after an exit: by the launcher helper (``launcher.Launcher.remove``: one
message per batch, the ``rmdir``s in that process, not on the agent's loop nor in a worker
thread of the agent contending for its GIL) when the isolator can say its removal as
directories (cgroups v1: the helper may have kept them for a later container instead, as it
tells ``isolator.recycled``; see ``cgroup_pool``; that pool is removed when the agent stops), else by the isolator's ``cleanup`` in a worker thread. A busy one
(processes still dying) is retried, later each time, up to ``CLEANUP_ATTEMPTS``."""

from __future__ import annotations

import asyncio
import logging
import time

from .isolator import Isolator
from .launcher import Launcher, LauncherUnavailable

CLEANUP_DELAY = 0.2  # kernel isolation state (cgroups) is removed in batches, this long after exits
CLEANUP_ATTEMPTS = 50


class RemovalQueue:
    def __init__(self, isolator: Isolator, launcher: Launcher | None) -> None:
        self.isolator = isolator
        self.launcher = launcher
        self.pending: set[str] = set()  # containers whose isolation is not removed yet
        self._queue: dict[str, int] = {}  # container id -> attempts so far
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._inflight: dict[str, int] = {}  # the batch being removed now
        if launcher is not None:
            launcher.on_pooled = self._pooled

    def add(self, container_id: str, attempt: int = 0) -> None:
        self.pending.add(container_id)
        self._queue[container_id] = attempt
        if self._timer is None and (self._task is None or self._task.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(CLEANUP_DELAY * (1 + min(attempt, 10)), self._start)

    def _pooled(self, container_id: str, baseline: dict | None) -> None:
        """The helper kept (or could not keep) an ended container's cgroups for a later one."""
        if (surplus := self.isolator.recycled(container_id, baseline)) is not None:
            self.add(surplus)  # kept, but the pool is full: removed as a container's

    def _start(self) -> None:
        self._timer = None
        batch, self._queue = self._queue, {}
        if batch:
            self._inflight = batch
            self._task = asyncio.get_running_loop().create_task(self._run(batch))

    def _here(self, ids: list[str]) -> list[bool]:
        out = []
        for cid in ids:
            try:
                out.append(self.isolator.cleanup(cid))
            except OSError:
                out.append(False)
        return out

    async def _in_helper(self, ids: list[str]) -> list[bool] | None:
        """None when there is no helper or the isolator removes otherwise."""
        if self.launcher is None:
            return None
        groups = [(cid, self.isolator.removal_dirs(cid)) for cid in ids]
        if any(dirs is None for _, dirs in groups):
            return None
        try:
            left = set(await self.launcher.remove(groups))  # type: ignore[arg-type]
        except LauncherUnavailable:
            return None
        for cid in ids:
            if cid not in left:
                self.isolator.removed(cid)
        return [cid not in left for cid in ids]

    async def _run(self, batch: dict[str, int]) -> None:
        ids = list(batch)
        try:
            done = await self._in_helper(ids)
            if done is None:
                done = await asyncio.to_thread(self._here, ids)
        except RuntimeError:  # no more threads: the loop is closing
            done = self._here(ids)
        finally:
            self._inflight = {}
        for cid, ok in zip(ids, done, strict=True):
            if ok:
                self.pending.discard(cid)
            elif batch[cid] + 1 < CLEANUP_ATTEMPTS:
                self._queue[cid] = batch[cid] + 1
            else:
                logging.getLogger("mesos_nb.agent").warning("cannot remove the isolation of container=%s", cid)
        self._task = None
        if self._queue:
            attempt = min(self._queue.values())
            self._timer = asyncio.get_running_loop().call_later(CLEANUP_DELAY * (1 + min(attempt, 10)), self._start)

    def drain(self, timeout: float = 2.0) -> None:
        """The agent stops: remove what is queued now, here (killed processes take a moment)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queued, self._queue = {**self._inflight, **self._queue}, {}  # a batch the helper had: here too
        deadline = time.monotonic() + timeout
        while queued:
            for cid in list(queued):
                try:
                    if self.isolator.cleanup(cid):
                        del queued[cid]
                except OSError:
                    pass
            if not queued or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.isolator.drain_pool()


__all__ = ["CLEANUP_ATTEMPTS", "CLEANUP_DELAY", "RemovalQueue"]

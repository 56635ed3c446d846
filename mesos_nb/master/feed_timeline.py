"""The utilization feed's timeline: the task state changes of late, found without a core hook
by reading the tasks' status lists (each task's list only grows) and remembering how much of
each was seen.

Two ways in: :meth:`Timeline.scan_steps` reads every task (the way of the one-go reference
build the account is checked against, ``bench/feed_reference.py``),
:meth:`Timeline.add` only the tasks of the blocks :mod:`.feed_account` found changed.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Generator
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .feed_account import Account

MAX_RECENT = 200


class Timeline:
    def __init__(self) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=MAX_RECENT)
        self._seen: dict[tuple[str, str], int] = {}  # (framework, task) -> statuses seen
        self._seq = 0
        self._scanned_version = -1

    def scan_steps(self, core: Any, step: int) -> Generator[None, None, None]:
        """The new task states from every task, ``step`` tasks a loop step (the task lists are
        copied first: the core changes between steps)."""
        if core.version == self._scanned_version:
            return
        self._scanned_version = core.version
        newest: list[tuple[Any, ...]] = []
        live: set[tuple[str, str]] = set()
        # completed frameworks too: a teardown ends its tasks (TASK_KILLED) and removes the
        # framework in one step, and those last states must reach the timeline
        walked = 0
        for fw in (*core.frameworks.values(), *core.completed_frameworks):
            for group in (list(fw.tasks.values()), list(fw.completed_tasks)):
                for t in group:
                    walked += 1
                    if not walked % step:
                        yield
                    live.add((fw.id, t.id))
                    self._new_states(fw.id, t, newest)
        if len(self._seen) > len(live) + 10000:
            self._forget(live)
        self._record(newest)

    def add(self, account: Account) -> None:
        """The new task states of the tasks in the blocks the account made anew."""
        newest: list[tuple[Any, ...]] = []
        for fid, tasks in account.changed:
            for t in tasks:
                self._new_states(fid, t, newest)
        if len(self._seen) > account.listed + 10000:
            self._forget(account.live())
        self._record(newest)

    def _new_states(self, fid: str, t: Any, newest: list[tuple[Any, ...]]) -> None:
        """The task's updates not seen yet into ``newest``, a heap of the :data:`MAX_RECENT`
        newest in (time, framework, task, update) order -- the same whichever way the tasks
        are walked; an update older than all of them makes no record (a first look at 100,000
        tasks finds 300,000 updates)."""
        key = (fid, t.id)
        statuses = t.statuses
        n = len(statuses)
        k = self._seen.get(key, 0)
        if n <= k:
            return
        self._seen[key] = n
        for i in range(k, n):
            state, ts = statuses[i]
            if len(newest) < MAX_RECENT:
                heapq.heappush(newest, (ts, fid, t.id, i, t, state))
            elif ts >= newest[0][0]:
                item = (ts, fid, t.id, i, t, state)
                if item[:4] > newest[0][:4]:
                    heapq.heapreplace(newest, item)

    def _forget(self, live: set[tuple[str, str]]) -> None:
        """Tasks no longer listed anywhere (a completed list is bounded) are forgotten."""
        seen = self._seen
        for key in [k for k in seen if k not in live]:
            del seen[key]

    def _record(self, newest: list[tuple[Any, ...]]) -> None:
        for ts, fid, tid, _i, t, state in sorted(newest, key=_order):
            self._seq += 1
            self.recent.append({"time": ts, "framework_id": fid, "task_id": tid, "name": t.name,
                                "agent_id": t.agent_id, "state": state, "seq": self._seq})


_order = itemgetter(0, 1, 2, 3)

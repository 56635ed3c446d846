"""The utilization feed's account of allocated resources, kept between snapshots so that a
snapshot after a change recomputes what changed only.

A snapshot (``feed.py``) needs, from 100,000 tasks: what the running tasks hold per agent,
per framework and in all, the tasks per state, and the task states that are new since the
last one (the timeline). Walked task by task in Python that was ~0.25 s at 10,000 agents /
100,000 tasks, every time anything changed. The core has no change hook, so the account finds
what changed as the state renderers do (:mod:`.task_blocks`):

* every task list (a framework's running tasks, its completed tasks; those of completed
  frameworks for the timeline only) is listed with C-level passes and cut into the same
  content-defined blocks of ~256 tasks; a block whose tasks, states, update counts and latest
  updates are all unchanged is the same block object as last time;
* a block made anew sums its running tasks' resources per agent (integer thousandths, so
  that taking a block's share away again is exact) and counts its tasks per state; the
  per-agent sums of the account (:attr:`Account.alloc`) subtract the blocks that went and add
  the ones that came, and the agents they touch are the ones whose rows a snapshot rebuilds;
* the per-framework sums and the state counts add up a few hundred blocks.

The account is pure (no clock, no I/O) and runs in steps (a generator), as the feed's paced
snapshot build does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..protocol import messages as m
from .task_blocks import Listing

if TYPE_CHECKING:
    from .model import Task

SCALARS = ("cpus", "mem", "disk", "gpus")
BLOCK_STEP = 8  # new blocks summed per step (~256 tasks each)
RUNNING, COMPLETED, TIMELINE = 0, 1, 2  # kinds of list: what their blocks are counted for


def millis4(millis: dict[str, int]) -> tuple[int, int, int, int]:
    """The four plotted scalars of ``Resources.scalar_millis()``."""
    return (millis.get("cpus", 0), millis.get("mem", 0), millis.get("disk", 0), millis.get("gpus", 0))


def floats(v: Any) -> dict[str, float]:
    """Thousandths (four, or more: the first four are used) as the snapshot's resource dict."""
    return {"cpus": v[0] / 1000.0, "mem": v[1] / 1000.0, "disk": v[2] / 1000.0, "gpus": v[3] / 1000.0}


class _Block:
    __slots__ = ("fid", "tasks", "states", "counts", "latest", "by_agent", "alloc", "n", "per_state")

    def __init__(self, fid: str, tasks: list[Task], states: list[str], counts: list[int], latest: list[Any]) -> None:
        self.fid = fid
        self.tasks = tasks
        self.states = states
        self.counts = counts
        self.latest = latest
        self.by_agent: dict[str, list[int]] = {}  # agent -> [cpus, mem, disk, gpus, tasks] running
        self.alloc = [0, 0, 0, 0]
        self.n = 0
        self.per_state: Counter[str] = Counter()

    def sum_running(self) -> None:
        self.by_agent, self.alloc, self.n = sum_running(self.tasks, self.states)


def sum_running(tasks: list[Task], states: list[str]) -> tuple[dict[str, list[int]], list[int], int]:
    """What the tasks that are not terminal hold: per agent ``[cpus, mem, disk, gpus, tasks]``
    and in all ``[cpus, mem, disk, gpus]`` (thousandths), and how many they are."""
    terminal = m.TERMINAL_STATES
    by_agent: dict[str, list[int]] = {}
    alloc = [0, 0, 0, 0]
    n = 0
    for t, s in zip(tasks, states, strict=True):
        if s in terminal:
            continue
        c, me, d, g = millis4(t.resources.millis())
        acc = by_agent.get(t.agent_id)
        if acc is None:
            by_agent[t.agent_id] = [c, me, d, g, 1]
        else:
            acc[0] += c
            acc[1] += me
            acc[2] += d
            acc[3] += g
            acc[4] += 1
        alloc[0] += c
        alloc[1] += me
        alloc[2] += d
        alloc[3] += g
        n += 1
    return by_agent, alloc, n


def add_into(acc: dict[str, list[int]], by_agent: dict[str, list[int]]) -> None:
    """Add per-agent sums into ``acc`` (the lists of ``acc`` are its own)."""
    for aid, v in by_agent.items():
        cur = acc.get(aid)
        if cur is None:
            acc[aid] = list(v)
        else:
            for i in range(5):
                cur[i] += v[i]


class Account:
    """Allocated resources per agent and per framework, tasks per state, kept by block."""

    def __init__(self) -> None:
        self.core: Any = None
        self.version = -1
        self.alloc: dict[str, list[int]] = {}  # agent -> [cpus, mem, disk, gpus, running tasks]
        self.by_framework: dict[str, tuple[list[int], int]] = {}  # running: thousandths, tasks
        self.counts: dict[str, int] = {}  # tasks per state (running frameworks' lists)
        self.changed: list[tuple[str, list[Task]]] = []  # the tasks of the blocks made anew (timeline)
        self.listed = 0  # tasks in all the lists
        self.blocks_made = 0  # (tests read it)
        self._new: set[int] = set()  # ids of the blocks made by the update running
        self._blocks: tuple[dict[int, _Block], ...] = ({}, {}, {})

    def update_steps(self, core: Any) -> Generator[None, None, None]:
        """Bring the account to the core's records as they are now, in steps."""
        if core is not self.core:  # a new core (a new leader): start over
            self.__init__()  # type: ignore[misc]
            self.core = core
        self.version = core.version
        self.changed = []
        self.listed = 0
        fresh: tuple[dict[int, _Block], ...] = ({}, {}, {})
        by_framework: dict[str, tuple[list[int], int]] = {}
        counts: Counter[str] = Counter()
        lists = [(fw.id, RUNNING, list(fw.tasks.values())) for fw in core.frameworks.values()]
        lists += [(fw.id, COMPLETED, list(fw.completed_tasks)) for fw in core.frameworks.values()]
        for fw in core.completed_frameworks:
            lists += [(fw.id, TIMELINE, list(fw.tasks.values())), (fw.id, TIMELINE, list(fw.completed_tasks))]
        self._new = set()
        for fid, kind, tasks in lists:
            self.listed += len(tasks)
            blocks = yield from self._blocks_of(fid, tasks, kind, fresh[kind])
            if kind == RUNNING:
                alloc, n = [0, 0, 0, 0], 0
                for b in blocks:
                    a = b.alloc
                    alloc[0] += a[0]
                    alloc[1] += a[1]
                    alloc[2] += a[2]
                    alloc[3] += a[3]
                    n += b.n
                by_framework[fid] = (alloc, n)
            for b in blocks:
                if kind != TIMELINE:
                    counts.update(b.per_state)
                if id(b) in self._new:
                    self.changed.append((fid, b.tasks))
        self._settle(self._blocks[RUNNING], fresh[RUNNING])
        self._blocks = fresh
        self._new = set()
        self.by_framework = by_framework
        self.counts = dict(counts)

    def _settle(self, old: dict[int, _Block], fresh: dict[int, _Block]) -> None:
        """The per-agent sums: the running blocks that went taken away, the new ones added."""
        kept = {id(b) for b in fresh.values()}
        alloc = self.alloc
        for b in old.values():
            if id(b) in kept:
                continue
            for aid, v in b.by_agent.items():
                acc = alloc[aid]
                for i in range(5):
                    acc[i] -= v[i]
                if not acc[4]:  # no running task left there: nothing held (integers: exact)
                    del alloc[aid]
        for b in fresh.values():
            if id(b) in self._new:
                add_into(alloc, b.by_agent)

    def live(self) -> set[tuple[str, str]]:
        """(framework id, task id) of every task listed."""
        return {(b.fid, t.id) for blocks in self._blocks for b in blocks.values() for t in b.tasks}

    def _blocks_of(self, fid: str, tasks: list[Task], kind: int,
                   seen: dict[int, _Block]) -> Generator[None, None, list[_Block]]:
        if not tasks:
            return []
        listing = Listing(tasks)
        yield from listing.steps()
        old = self._blocks[kind]
        out = []
        start = made = 0
        for end in listing.ends:
            key = id(tasks[start])
            prev = old.get(key)
            if prev is None or not listing.same(prev, start, end):
                prev = _Block(fid, tasks[start:end], listing.states[start:end], listing.counts[start:end],
                              listing.latest[start:end])
                if kind == RUNNING:
                    prev.sum_running()
                if kind != TIMELINE:
                    prev.per_state = Counter(prev.states)
                self._new.add(id(prev))
                self.blocks_made += 1
                made += 1
                if not made % BLOCK_STEP:
                    yield
            seen[key] = prev
            out.append(prev)
            start = end
        return out

"""Task lists cut into blocks whose rendered JSON is kept while no task in them changes.

A state document at 100,000 tasks is mostly tasks, and between two renders few of them
change. Checking each task in Python costs more than the target allows (100,000 lookups and
comparisons is ~0.3 s on the development box), so the check is done a block at a time with
C-level passes (``map`` over ``attrgetter``) and list comparisons:

* a task list is cut after every task whose id hashes to 0 modulo :data:`BLOCK` (content
  defined, as rsync cuts files): a task added or removed changes its own block only, the
  others keep their edges and stay cached;
* a block is reused while the same tasks are in it with the same state, number of updates and
  latest update object (every change to a task the master makes appends an update or changes
  its state: ``tasks.py``, ``reachability.py``, ``agents.py``);
* a block that changed is rendered again from the tasks that changed only: the others'
  fragments are taken from the block's previous version;
* each block of running tasks also keeps the resources they use, summed per framework and per
  agent, so a render sums a few hundred blocks instead of 100,000 tasks.

Which document a block belongs to (``/master/state`` or the operator API's ``GET_STATE``) is
the caller's: each renderer owns a :class:`TaskBlocks` with its own per-task encoder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterable
from itertools import compress
from operator import attrgetter, not_
from typing import TYPE_CHECKING, Any

from ..protocol import messages as m
from ..protocol.resources import Resources
from .doc_render import total

if TYPE_CHECKING:
    from .model import Task

BLOCK = 256  # mean tasks per block (a power of two)
_MASK = BLOCK - 1
WINDOW = 8192  # tasks whose state is listed per loop step before the blocks are compared
_id = attrgetter("id")
_state = attrgetter("state")
_statuses = attrgetter("statuses")
_latest = attrgetter("latest")
_EMPTY = Resources()


def cut(tasks: list[Task], start: int = 0, last: bool = True) -> list[int]:
    """Where the blocks of ``tasks`` end: after each task whose id hashes to 0 mod BLOCK, and
    at the end (``last``); ``start``: the index of ``tasks[0]`` in the whole list (a window
    of it is cut the same as the whole list is there, the rule being per task)."""
    n = start + len(tasks)
    ends = list(compress(range(start + 1, n + 1), map(not_, map(_MASK.__and__, map(hash, map(_id, tasks))))))
    if last and (not ends or ends[-1] != n):
        ends.append(n)
    return ends


class Listing:
    """What a task list's blocks are compared by: each task's state, number of updates and
    latest update, and where the blocks end; listed :data:`WINDOW` tasks a step (the passes
    are C-level, yet ~60 ms at 100,000 tasks)."""

    __slots__ = ("tasks", "states", "counts", "latest", "ends")

    def __init__(self, tasks: list[Task]) -> None:
        self.tasks = tasks
        self.states: list[str] = []
        self.counts: list[int] = []
        self.latest: list[Any] = []
        self.ends: list[int] = []

    def steps(self) -> Generator[None, None, None]:
        tasks, n = self.tasks, len(self.tasks)
        for a in range(0, n, WINDOW):
            w = tasks[a:a + WINDOW]
            self.states += map(_state, w)
            self.counts += map(len, map(_statuses, w))
            self.latest += map(_latest, w)
            self.ends += cut(w, a, a + WINDOW >= n)
            yield

    def same(self, prev: Any, start: int, end: int) -> bool:
        """Whether ``prev`` (a block with ``tasks``, ``states``, ``counts``, ``latest``) holds
        ``tasks[start:end]`` as they are now."""
        return (prev.tasks == self.tasks[start:end] and prev.states == self.states[start:end]
                and prev.counts == self.counts[start:end] and prev.latest == self.latest[start:end])


class Block:
    """Tasks ``tasks`` as they were when rendered: their fragments joined per group, and (for
    running tasks) the resources they use, in all and per agent."""

    __slots__ = ("tasks", "states", "counts", "latest", "frags", "parts", "summed", "used", "by_agent")

    def __init__(self, tasks: list[Task], states: list[str], counts: list[int], latest: list[Any]) -> None:
        self.tasks = tasks
        self.states = states
        self.counts = counts
        self.latest = latest
        self.frags: list[bytes] = []
        self.parts: tuple[bytes, ...] = ()
        self.summed = False
        self.used: Resources = _EMPTY
        self.by_agent: dict[str, Resources] = {}


class TaskBlocks:
    """The block cache for one document's task lists.

    ``encode(task)`` is the task's JSON; ``group(task)`` the index of the list it goes in
    (``GET_STATE`` puts unreachable tasks apart), ``groups`` how many there are.
    """

    def __init__(self, encode: Callable[[Task], bytes], groups: int = 1,
                 group: Callable[[Task], int] | None = None) -> None:
        self.encode = encode
        self.groups = groups
        self.group = group
        self._blocks: dict[int, Block] = {}  # by the id of the block's first task
        self._seen: dict[int, Block] = {}
        self._by_last: dict[int, Block] = {}  # the same blocks, by the id of their last task
        self._seen_last: dict[int, Block] = {}
        self.rendered = 0  # tasks encoded since the cache was made (tests read it)

    def held(self) -> int:
        """Bytes of task JSON the cache keeps (each task's fragment and the blocks' joined parts)."""
        return sum(sum(map(len, b.frags)) + sum(map(len, b.parts)) for b in self._blocks.values())

    def begin(self) -> None:
        """A render starts: blocks not used by it are dropped at :meth:`end`."""
        self._seen = {}
        self._seen_last = {}

    def end(self) -> None:
        self._blocks, self._by_last = self._seen, self._seen_last
        self._seen, self._seen_last = {}, {}

    async def blocks(self, tasks: Iterable[Task], sums: bool, pause: Callable[[], Awaitable[None]]) -> list[Block]:
        """The blocks of ``tasks`` (in order), reused or rendered; ``sums``: add up the resources
        of the tasks that are not terminal (a framework's running tasks, not its completed ones).
        ``pause`` is awaited after each block and each :data:`WINDOW` of tasks listed (it lets
        the loop run when the step got long); the tasks are listed before the first block, so a
        task added meanwhile shows in the next render."""
        tasks = list(tasks)
        if not tasks:
            return []
        listing = Listing(tasks)
        for _ in listing.steps():
            await pause()
        states, counts, latest, ends = listing.states, listing.counts, listing.latest, listing.ends
        old, seen, old_last, seen_last = self._blocks, self._seen, self._by_last, self._seen_last
        out = []
        start = 0
        for end in ends:
            key = id(tasks[start])
            prev = old.get(key)
            bt = tasks[start:end]
            if prev is None or not listing.same(prev, start, end):
                # A block whose first task went, or whose edge went (it merged with the next),
                # is found again by its last task: its fragments are reused from both.
                olds = (prev, old_last.get(id(bt[-1])))
                prev = self._render(Block(bt, states[start:end], counts[start:end], latest[start:end]), olds, sums)
            elif sums and not prev.summed:
                self._sum(prev)
            seen[key] = prev
            seen_last[id(bt[-1])] = prev
            out.append(prev)
            start = end
            await pause()
        return out

    def _render(self, b: Block, olds: tuple[Block | None, ...], sums: bool) -> Block:
        reuse: dict[int, tuple[Task, str, int, Any, bytes]] = {}
        for prev in olds:
            if prev is not None:
                for t, s, c, lt, f in zip(prev.tasks, prev.states, prev.counts, prev.latest, prev.frags, strict=True):
                    reuse[id(t)] = (t, s, c, lt, f)
        frags = []
        for t, s, c, lt in zip(b.tasks, b.states, b.counts, b.latest, strict=True):
            hit = reuse.get(id(t))
            if hit is not None and hit[0] is t and hit[1] == s and hit[2] == c and hit[3] is lt:
                frags.append(hit[4])
            else:
                frags.append(self.encode(t))
                self.rendered += 1
        b.frags = frags
        if self.group is None:
            b.parts = (b",".join(frags),)
        else:
            lists: list[list[bytes]] = [[] for _ in range(self.groups)]
            for t, f in zip(b.tasks, frags, strict=True):
                lists[self.group(t)].append(f)
            b.parts = tuple(b",".join(x) for x in lists)
        if sums:
            self._sum(b)
        return b

    @staticmethod
    def _sum(b: Block) -> None:
        groups: dict[str, list[Resources]] = {}
        terminal = m.TERMINAL_STATES
        for t, s in zip(b.tasks, b.states, strict=True):
            if s not in terminal:
                rs = groups.get(t.agent_id)
                if rs is None:
                    groups[t.agent_id] = [t.resources]
                else:
                    rs.append(t.resources)
        b.by_agent = {aid: total(rs) for aid, rs in groups.items()}
        b.used = total(b.by_agent.values())
        b.summed = True


def used_of(blocks: list[Block]) -> Resources:
    """What the running tasks of these blocks use."""
    total = _EMPTY
    for b in blocks:
        total = total + b.used
    return total


def add_by_agent(acc: dict[str, Resources], blocks: list[Block]) -> None:
    """Add these blocks' use per agent into ``acc``."""
    for b in blocks:
        for aid, r in b.by_agent.items():
            cur = acc.get(aid)
            acc[aid] = r if cur is None else cur + r


def array(out: list[bytes], blocks: list[Block], group: int = 0, first: bool = True) -> bool:
    """Append the blocks' fragments of ``group`` to ``out`` as the inside of a JSON array
    (commas between), continuing one whose first element is still to come when ``first``;
    returns whether it still is."""
    for b in blocks:
        p = b.parts[group]
        if p:
            if not first:
                out.append(b",")
            out.append(p)
            first = False
    return first

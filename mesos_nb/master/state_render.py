"""``/master/state`` at scale: rendered in slices, tasks from cached fragments.

At 10,000 agents and 100,000 tasks the state document is ~50 MB of JSON. Rendered in one go
it held the master's event loop for seconds (no offers, no heartbeats meanwhile). Here:

* the render is a coroutine that yields to the loop every ``SLICE`` records, so no step of
  the loop is long whatever the size; what it reads is listed at the start (the frameworks'
  task lists, the agents) and each record is read whole, so a task changing meanwhile shows
  either its old or its new state, never half of one;
* each task's JSON is kept (bytes) with the state and status count it
  was rendered at, and reused while they are unchanged: a render after a few changes
  re-encodes those tasks only;
* resources in use are summed as scalar thousandths per framework and per agent in one pass
  over the tasks (ranges and sets, rare, as resources).

The document is assembled from pieces of bytes (agents in slices, each framework with its
tasks' JSON joined) in one final join: no single ``encode`` of 50 MB.

Concurrent requests share one render: a request that arrives while one is under way waits
for it and, if the state changed since that render began, starts the next one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ..protocol import messages as m
from ..protocol.resources import Resources

if TYPE_CHECKING:
    from .model import Task


class ReadOnlyViews(Protocol):
    """What the renderer needs of the read views (readonly.py owns them and imports this module,
    so this seam is named here instead of importing them back)."""

    master: Any

    def state_header(self, *args: Any, **kwargs: Any) -> Any: ...
    def _agent(self, *args: Any, **kwargs: Any) -> Any: ...
    def _framework(self, *args: Any, **kwargs: Any) -> Any: ...
    def _offered_by_agent(self, *args: Any, **kwargs: Any) -> Any: ...
    def _task(self, *args: Any, **kwargs: Any) -> Any: ...

SLICE = 2000  # records rendered per event-loop step
_enc = msgspec.json.Encoder()


class _Used:
    """Resources summed cheaply: scalars as thousandths, the rest (ports, sets) as resources."""

    __slots__ = ("millis", "other")

    def __init__(self) -> None:
        self.millis: dict[str, int] = {}
        self.other: Resources | None = None

    def add(self, r: Resources, millis: dict[str, int] | None = None) -> None:
        acc = self.millis
        for n, v in (r.scalar_millis() if millis is None else millis).items():
            acc[n] = acc.get(n, 0) + v
        if r._r or r._t:
            self.other = r if self.other is None else self.other + r

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}
        for n, v in self.millis.items():
            out[n] = v / 1000
        o = self.other
        if o is not None:
            full = o.summary()
            for n in {k[0] for k in o._r} | {k[0] for k in o._t}:
                out[n] = full[n]
        return out

    def resources_summary(self, plus: Resources) -> dict[str, Any]:
        u = _Used()
        u.millis = dict(self.millis)
        u.other = self.other
        u.add(plus)
        return u.summary()


class StateRenderer:
    def __init__(self, views: ReadOnlyViews) -> None:
        self.views = views
        # id(task) -> (task, state, status count, its JSON, its scalar resources)
        self._frags: dict[int, tuple[Task, str, int, bytes, dict[str, int]]] = {}
        self._cached: tuple[int, bytes] | None = None
        self._running: asyncio.Future[bytes] | None = None
        self._running_version = -1

    def task_json(self, t: Task) -> tuple[bytes, dict[str, int]]:
        """The task's JSON and scalar resources, from the cache while it is unchanged."""
        hit = self._frags.get(id(t))
        n = len(t.statuses)
        if hit is not None and hit[0] is t and hit[1] == t.state and hit[2] == n:
            return hit[3], hit[4]
        js = _enc.encode(self.views._task(t))
        millis = hit[4] if hit is not None and hit[0] is t else t.resources.scalar_millis()
        self._frags[id(t)] = (t, t.state, n, js, millis)
        return js, millis

    async def body(self) -> bytes:
        core = self.views.master.core
        v = core.version
        if self._cached is not None and self._cached[0] == v:
            return self._cached[1]
        while self._running is not None:
            started = self._running_version
            body = await asyncio.shield(self._running)
            if started == v:
                return body
            if self._cached is not None and self._cached[0] == core.version:
                return self._cached[1]
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._running, self._running_version = fut, v
        try:
            body = await self._render()
            self._cached = (v, body)
            fut.set_result(body)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiting requests see it, nobody else must
            raise
        finally:
            self._running = None
        return body

    async def _render(self) -> bytes:
        """The document as pieces of bytes joined once at the end: no step encodes more than a
        slice (one big ``encode`` of 50 MB was itself a long step)."""
        views = self.views
        core = views.master.core
        frameworks = [(fw, list(fw.tasks.values()), list(fw.completed_tasks)) for fw in core.frameworks.values()]
        done = [(fw, list(fw.tasks.values()), list(fw.completed_tasks)) for fw in core.completed_frameworks]
        agents = list(core.agents.values())
        self._live: set[int] = set()
        self._count = 0
        by_agent: dict[str, _Used] = {}
        fw_parts = [await self._framework(fw, active, completed, by_agent) for fw, active, completed in frameworks]
        done_parts = [await self._framework(fw, active, completed, None) for fw, active, completed in done]
        if len(self._frags) > len(self._live) + 1000:
            self._frags = {k: v for k, v in self._frags.items() if k in self._live}
        offered = views._offered_by_agent()
        empty = _Used()
        agent_parts = []
        for i in range(0, len(agents), SLICE):
            await asyncio.sleep(0)
            chunk = [views._agent(a, offered, used=by_agent.get(a.id, empty)) for a in agents[i:i + SLICE]]
            agent_parts.append(_enc.encode(chunk)[1:-1])
        head = views.state_header()
        for key in ("slaves", "frameworks", "completed_frameworks"):
            del head[key]
        await asyncio.sleep(0)
        return b"".join([
            _enc.encode(head)[:-1], b',"slaves":[', b",".join(agent_parts),
            b'],"frameworks":[', b",".join(fw_parts), b'],"completed_frameworks":[', b",".join(done_parts), b"]}",
        ])

    async def _framework(self, fw: Any, active: list[Task], completed: list[Task],
                         by_agent: dict[str, _Used] | None) -> bytes:
        used = _Used()
        live = self._live
        terminal = m.TERMINAL_STATES
        parts: list[list[bytes]] = [[], []]
        for group, out in ((active, parts[0]), (completed, parts[1])):
            chunk: list[bytes] = []
            for t in group:
                self._count += 1
                if not self._count % SLICE:
                    if chunk:
                        out.append(b",".join(chunk))
                        chunk = []
                    await asyncio.sleep(0)
                js, millis = self.task_json(t)
                chunk.append(js)
                live.add(id(t))
                if group is active and t.state not in terminal:
                    used.add(t.resources, millis)
                    if by_agent is not None:
                        acc = by_agent.get(t.agent_id)
                        if acc is None:
                            acc = by_agent[t.agent_id] = _Used()
                        acc.add(t.resources, millis)
            if chunk:
                out.append(b",".join(chunk))
        if by_agent is not None:  # a live framework: its executors hold their own resources too
            for agent_id, res in fw.executor_usage():
                used.add(res)
                by_agent.setdefault(agent_id, _Used()).add(res)
        d = self.views._framework(fw, True, used=used)
        del d["tasks"], d["completed_tasks"]
        return b"".join([_enc.encode(d)[:-1], b',"tasks":[', b",".join(parts[0]),
                         b'],"completed_tasks":[', b",".join(parts[1]), b"]}"])

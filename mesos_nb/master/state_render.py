"""``/master/state`` at scale: incremental, paced, and sent in chunks.

At 10,000 agents and 100,000 tasks the state document is ~50 MB of JSON; rendered whole it
held the master's event loop for seconds, and re-rendered from scratch each time it kept the
master busy while a tool polled it. Here a render after a few changes costs about what
changed plus a pass over the agents:

* tasks come from :mod:`.task_blocks` (blocks of ~256 tasks reused while none of their tasks
  changed; a changed block re-encodes its changed tasks only) together with the resources
  their running tasks use, per framework and per agent;
* each agent's JSON is a :class:`~.doc_render.Template` kept while the agent's record is
  unchanged, filled with its used and offered resources (kept by value);
* frameworks (few) are rendered whole, their offers (one from each agent, at most) a few
  dozen per step;
* the render runs as a paced coroutine (:class:`~.doc_render.Pacer`): no step over a few
  milliseconds, and it gives way to the scheduling path; it reads a framework's task list
  whole before rendering it, so a task changing meanwhile shows either its old or its new
  state, never half of one;
* the document stays a list of byte pieces, cached until the core's change counter moves,
  and is streamed in chunks (:func:`~.doc_render.respond`).
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ..protocol.resources import Resources
from .doc_render import Template, ValueBytes, total
from .operator_views import drain_key
from .task_blocks import Block, TaskBlocks, add_by_agent, array, used_of
from .warmer import BackgroundPacer, Warmed, WarmRender, templates_held

if TYPE_CHECKING:
    from .model import Agent, Offer


class ReadOnlyViews(Protocol):
    """What the renderer needs of the read views (readonly.py owns them and imports this module,
    so this seam is named here instead of importing them back)."""

    master: Any

    def state_header(self, *args: Any, **kwargs: Any) -> Any: ...
    def _agent(self, *args: Any, **kwargs: Any) -> Any: ...
    def _framework(self, *args: Any, **kwargs: Any) -> Any: ...
    def _offered_by_agent(self, *args: Any, **kwargs: Any) -> Any: ...
    def _task(self, *args: Any, **kwargs: Any) -> Any: ...
    def _offer(self, *args: Any, **kwargs: Any) -> Any: ...


_enc = msgspec.json.Encoder()
_EMPTY = Resources()
# what an agent's JSON depends on besides its used and offered resources
_agent_sig = attrgetter("hostname", "port", "registered_time", "total", "attributes", "version",
                        "connected", "active", "reregistered_time")


class StateRenderer(Warmed):
    def __init__(self, views: ReadOnlyViews) -> None:
        self.views = views
        self.tasks = TaskBlocks(lambda t: _enc.encode(views._task(t)))
        self._agents: dict[int, tuple[Agent, tuple[Any, ...], Template]] = {}
        self._offers: dict[int, tuple[Offer, bytes]] = {}
        self._offers_seen: dict[int, tuple[Offer, bytes]] = {}
        self._summary = ValueBytes(Resources.summary)
        self._shared = WarmRender(lambda: views.master.core.version, self._render, self._warm_blocks)

    async def pieces(self) -> list[bytes]:
        """The document as byte pieces (rendered once per change of the core)."""
        return await self._shared.pieces()

    def held(self) -> int:
        """Bytes of rendered JSON kept between renders: task blocks, agent templates (the last
        document a request had rendered is kept besides, until the next change)."""
        return self.tasks.held() + templates_held(self._agents)

    async def body(self) -> bytes:
        return await self._shared.body()

    async def _warm_blocks(self) -> None:
        """The task blocks a render would make, and nothing else (``warmer.py``)."""
        core = self.views.master.core
        pause = BackgroundPacer(self.pace)
        self.tasks.begin()
        for fw in [*core.frameworks.values(), *core.completed_frameworks]:
            await self.tasks.blocks(fw.tasks.values(), True, pause)
            await self.tasks.blocks(fw.completed_tasks, False, pause)
        self.tasks.end()
        pause.close()

    async def _render(self) -> list[bytes]:
        views = self.views
        core = views.master.core
        pause = BackgroundPacer(self.pace)
        frameworks = list(core.frameworks.values())
        done = list(core.completed_frameworks)
        agents = list(core.agents.values())
        doc = Template(views.state_header(), "slaves", "frameworks", "completed_frameworks")
        self.tasks.begin()
        self._offers_seen = {}
        self._summary.turn()
        by_agent: dict[str, Resources] = {}
        fw_parts, done_parts = [], []
        for group, out in ((frameworks, fw_parts), (done, done_parts)):
            for fw in group:
                active = await self.tasks.blocks(fw.tasks.values(), True, pause)
                completed = await self.tasks.blocks(fw.completed_tasks, False, pause)
                executors: list[tuple[str, Resources]] = []
                if group is frameworks:
                    add_by_agent(by_agent, active)
                    executors = list(fw.executor_usage())  # a live executor holds its own resources
                    for agent_id, res in executors:
                        by_agent[agent_id] = by_agent.get(agent_id, _EMPTY) + res
                out.append(await self._framework(fw, active, completed, executors, pause))
        self.tasks.end()
        self._offers = self._offers_seen
        await pause()
        agent_parts = await self._agents_json(agents, by_agent, pause)
        pieces: list[bytes] = [doc.pieces[0]]
        for i, parts in enumerate((agent_parts, fw_parts, done_parts)):
            pieces.append(b"[")
            for j, p in enumerate(parts):
                if j:
                    pieces.append(b",")
                pieces.extend(p)
            pieces.append(b"]")
            pieces.append(doc.pieces[i + 1])
        pause.close()
        return pieces

    async def _framework(self, fw: Any, active: list[Block], completed: list[Block],
                         executors: list[tuple[str, Resources]], pause: Any) -> list[bytes]:
        offers = self.views.master.core.offers
        mine = [o for o in map(offers.get, fw.offers) if o is not None]
        listed = []
        for i, o in enumerate(mine):  # a framework may hold an offer from each of 10,000 agents
            listed.append(self._offer_json(o))
            if i & 63 == 63:
                await pause()
        offered = total(o.resources for o in mine)
        used = used_of(active)
        for _, res in executors:
            used = used + res
        d = self.views._framework(fw, True, used=used, offered=offered)
        out: list[bytes] = []
        running: list[bytes] = [b"["]
        array(running, active)
        running.append(b"]")
        done: list[bytes] = [b"["]
        array(done, completed)
        done.append(b"]")
        Template(d, "tasks", "completed_tasks", "offers").fill(out, running, done, b"[" + b",".join(listed) + b"]")
        return out

    def _offer_json(self, o: Offer) -> bytes:
        hit = self._offers.get(id(o))
        if hit is None or hit[0] is not o:
            hit = self._offers[id(o)] = (o, _enc.encode(self.views._offer(o)))
        self._offers_seen[id(o)] = hit
        return hit[1]

    async def _agents_json(self, agents: list[Agent], by_agent: dict[str, Resources], pause: Any) -> list[list[bytes]]:
        views = self.views
        offered = views._offered_by_agent()
        cache = self._agents
        fresh: dict[int, tuple[Agent, tuple[Any, ...], Template]] = {}
        summary = self._summary
        core = views.master.core
        out = []
        for a in agents:
            sig = (_agent_sig(a), drain_key(core, a.id))  # drain state lives in the core, not the record
            hit = cache.get(id(a))
            if hit is None or hit[0] is not a or hit[1] != sig:
                d = views._agent(a, {}, used=_EMPTY)
                hit = (a, sig, Template(d, "used_resources", "offered_resources"))
            fresh[id(a)] = hit
            out.append([hit[2].join2(summary(by_agent.get(a.id, _EMPTY)), summary(offered.get(a.id, _EMPTY)))])
            await pause()
        self._agents = fresh
        return out

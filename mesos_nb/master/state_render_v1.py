"""The operator API's ``GET_STATE`` (and ``GET_TASKS``, ``GET_AGENTS``, ``GET_FRAMEWORKS``,
``GET_EXECUTORS``) rendered as ``/master/state`` is: incrementally, paced, streamed.

The shapes are :mod:`.operator_views`' (the typed documents of
:mod:`mesos_nb.protocol.operator_state`: each task, framework, executor and agent is encoded
from its ``*Doc``); this module only decides what is rendered again, and joins the kept
fragments in the order of ``GetStateDoc``'s fields. One render per change of the core's counter gives the four
sections; each call answers with the ones it names, so a tool asking for ``GET_TASKS`` and
another for ``GET_STATE`` at the same time cost one render. Tasks come from
:mod:`.task_blocks` (unreachable tasks of a running framework are a list apart, as Mesos has
them), agents from a :class:`~.doc_render.Template` kept while the agent is unchanged.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

from ..protocol import messages as m
from ..protocol.resources import Resources
from . import operator_views as v
from .doc_render import Template, ValueBytes, total
from .task_blocks import TaskBlocks, add_by_agent, array, used_of
from .warmer import BackgroundPacer, Warmed, WarmRender, templates_held

if TYPE_CHECKING:
    from .model import Agent

CALLS = ("GET_STATE", "GET_TASKS", "GET_AGENTS", "GET_FRAMEWORKS", "GET_EXECUTORS")
_enc = msgspec.json.Encoder()
_EMPTY = Resources()
_agent_sig = attrgetter("hostname", "port", "registered_time", "total", "resources", "attributes",
                        "version", "connected", "active", "reregistered_time")


def _task_json(t: Any) -> bytes:
    return _enc.encode(v.task(t))


def _proto_list(r: Resources) -> Any:
    return m.to_builtins(r.to_proto())


class OperatorStateRenderer(Warmed):
    def __init__(self, master: Any) -> None:
        self.master = master  # its ``core`` is read at each render (tests swap it)
        self.active = TaskBlocks(_task_json, groups=2, group=lambda t: t.state == "TASK_UNREACHABLE")
        self.completed = TaskBlocks(_task_json)
        self._agents: dict[int, tuple[Agent, tuple[Any, ...], Template]] = {}
        self._resources = ValueBytes(_proto_list)
        self._shared = WarmRender(lambda: master.core.version, self._render, self._warm_blocks)
        self._sections: dict[str, list[bytes]] = {}

    async def pieces(self, call: str) -> list[bytes]:
        """The answer to ``call`` (one of :data:`CALLS`) as byte pieces."""
        whole = await self._shared.pieces()
        field = call.lower()
        if call == "GET_STATE":
            return whole
        return [b'{"type":"%s","%s":' % (call.encode(), field.encode()), *self._sections[field], b"}"]

    def held(self) -> int:
        """Bytes of rendered JSON kept between renders: task blocks, agent templates (the last
        document a request had rendered is kept besides, until the next change)."""
        return self.active.held() + self.completed.held() + templates_held(self._agents)

    async def body(self, call: str) -> bytes:
        return b"".join(await self.pieces(call))

    async def _warm_blocks(self) -> None:
        """The task blocks a render would make, and nothing else (``warmer.py``)."""
        core = self.master.core
        pause = BackgroundPacer(self.pace)
        self.active.begin()
        self.completed.begin()
        for fw in list(core.frameworks.values()):
            await self.active.blocks(fw.tasks.values(), True, pause)
            await self.completed.blocks(fw.completed_tasks, False, pause)
        for fw in list(core.completed_frameworks):
            await self.completed.blocks([*fw.tasks.values(), *fw.completed_tasks], False, pause)
        self.active.end()
        self.completed.end()
        pause.close()

    async def _render(self) -> list[bytes]:
        core = self.core = self.master.core
        pause = BackgroundPacer(self.pace)
        frameworks = list(core.frameworks.values())
        done = list(core.completed_frameworks)
        agents = list(core.agents.values())
        tasks: list[bytes] = []
        unreachable: list[bytes] = []
        completed: list[bytes] = []
        firsts = [True, True, True]
        by_agent: dict[str, Resources] = {}
        fw_json: list[bytes] = []
        executors: list[bytes] = []
        self.active.begin()
        self.completed.begin()
        self._resources.turn()
        for fw in frameworks:
            live = await self.active.blocks(fw.tasks.values(), True, pause)
            gone = await self.completed.blocks(fw.completed_tasks, False, pause)
            firsts[0] = array(tasks, live, 0, firsts[0])
            firsts[1] = array(unreachable, live, 1, firsts[1])
            firsts[2] = array(completed, gone, 0, firsts[2])
            add_by_agent(by_agent, live)
            used = used_of(live)
            for agent_id, res in fw.executor_usage():  # a live executor holds its own resources
                by_agent[agent_id] = by_agent.get(agent_id, _EMPTY) + res
                used = used + res
            offered = total(o.resources for o in map(core.offers.get, fw.offers) if o is not None)
            fw_json.append(_enc.encode(v.framework(fw, used, offered)))
            executors.extend(_enc.encode(e) for e in v.executors(fw))
        done_json = []
        for fw in done:
            gone = await self.completed.blocks([*fw.tasks.values(), *fw.completed_tasks], False, pause)
            firsts[2] = array(completed, gone, 0, firsts[2])
            done_json.append(_enc.encode(v.framework(fw, _EMPTY, _EMPTY)))
        self.active.end()
        self.completed.end()
        await pause()
        agent_json = await self._agents_json(agents, by_agent, pause)
        s = self._sections
        s["get_tasks"] = [b'{"tasks":[', *tasks, b'],"unreachable_tasks":[', *unreachable,
                          b'],"completed_tasks":[', *completed, b"]}"]
        s["get_executors"] = [b'{"executors":[', b",".join(executors), b"]}"]
        s["get_frameworks"] = [b'{"frameworks":[', b",".join(fw_json), b'],"completed_frameworks":[',
                               b",".join(done_json), b"]}"]
        s["get_agents"] = [b'{"agents":[', *agent_json, b'],"recovered_agents":[]}']
        pause.close()
        return [b'{"type":"GET_STATE","get_state":{"get_tasks":', *s["get_tasks"], b',"get_executors":',
                *s["get_executors"], b',"get_frameworks":', *s["get_frameworks"], b',"get_agents":',
                *s["get_agents"], b"}}"]

    async def _agents_json(self, agents: list[Agent], by_agent: dict[str, Resources], pause: Any) -> list[bytes]:
        """The agents' JSON with commas between (``allocated_resources``: their running tasks')."""
        offered: dict[str, list[Resources]] = {}
        for o in self.core.offers.values():
            offered.setdefault(o.agent_id, []).append(o.resources)
        cache = self._agents
        fresh: dict[int, tuple[Agent, tuple[Any, ...], Template]] = {}
        res = self._resources
        out: list[bytes] = []
        for a in agents:
            sig = (_agent_sig(a), v.drain_key(self.core, a.id))
            hit = cache.get(id(a))
            if hit is None or hit[0] is not a or hit[1] != sig:
                hit = (a, sig, Template(v.agent(a, _EMPTY, _EMPTY, **v.drain_fields(self.core, a.id)),
                                        "allocated_resources", "offered_resources"))
            fresh[id(a)] = hit
            mine = offered.get(a.id)
            if out:
                out.append(b",")
            out.append(hit[2].join2(res(by_agent.get(a.id, _EMPTY)),
                                    res(_EMPTY if mine is None else mine[0] if len(mine) == 1 else total(mine))))
            await pause()
        self._agents = fresh
        return out

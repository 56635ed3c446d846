"""Read endpoints (/master/state, /state-summary, /metrics/snapshot, …).

Rendered from the core's records into bytes and cached by the core's change counter, so
tools polling ``/master/state`` cost one render per change, not one per request, and never
hold up the scheduling path for longer than one render.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import msgspec
import psutil
from aiohttp import web
from msgspec import UNSET

from ..protocol import messages as m
from ..protocol.resources import Resources
from ..protocol.routing import add_routes
from ..protocol.state import (
    AGENT_CAPABILITIES,
    COUNTED_STATES,
    AgentDoc,
    AgentsDoc,
    FrameworkDoc,
    FrameworkExecutorDoc,
    FrameworksDoc,
    LeaderInfoDoc,
    MasterStateDoc,
    OfferDoc,
    StateSummaryDoc,
    SummaryAgentDoc,
    SummaryFrameworkDoc,
    TaskDoc,
    TasksDoc,
)
from ..protocol.version import VERSION as __version__
from . import gcpolicy
from .doc_render import respond, total
from .security import SENT_AS_IS
from .state_render import StateRenderer
from .state_render_v1 import OperatorStateRenderer
from .warmer import Warmer, task_events

if TYPE_CHECKING:
    from .model import Agent, Framework, Offer, Task
    from .view import MasterView

_enc = msgspec.json.Encoder()


_NONE = Resources()


class ReadOnlyViews:
    def __init__(self, master: MasterView) -> None:
        self.master = master
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._state = StateRenderer(self)
        self.operator_state = OperatorStateRenderer(master)
        # both documents rendered in the background after changes: no reader pays a cold render
        self.warmer = Warmer(lambda: master.core.version, lambda: task_events(master.core),
                             (self._state, self.operator_state))

    def start(self) -> None:
        self.warmer.start()

    async def stop(self) -> None:
        await self.warmer.stop()

    def add_routes(self, r: web.UrlDispatcher) -> None:
        add_routes(r, ("", "/master"), {
            "GET /state": self.state,
            "GET /state.json": self.state,
            "GET /state-summary": self.state_summary,
            "GET /health": self.health,
            "GET /redirect": self.redirect,
            "GET /frameworks": self.frameworks,
            "GET /slaves": self.slaves,
            "GET /tasks": self.tasks,
        })
        r.add_get("/version", self.version)
        r.add_get("/metrics/snapshot", self.metrics)

    # ------------------------------------------------------------------ helpers
    def _cached(self, name: str, render) -> web.Response:
        v = self.master.core.version
        hit = self._cache.get(name)
        if hit is None or hit[0] != v:
            hit = (v, _enc.encode(render()))
            self._cache[name] = hit
        return web.Response(body=hit[1], content_type="application/json")

    def _task(self, t: Task) -> TaskDoc:
        latest = t.latest
        labels = t.info.labels
        return TaskDoc(
            id=t.id, name=t.name, framework_id=t.framework_id, executor_id=t.executor_id or "",
            slave_id=t.agent_id, agent_id=t.agent_id, state=t.state, resources=t.resources.summary(),
            role=t.role, statuses=_statuses(t),
            message=latest.message if latest is not None and latest.message else UNSET,
            labels=labels if labels is not None else UNSET,
        )

    def _framework(self, fw: Framework, full: bool, used: Resources | None = None,
                   offered: Resources | None = None, doc: type[FrameworkDoc] = FrameworkDoc) -> FrameworkDoc:
        """``used``, ``offered``: the framework's resources in use and offered, already summed
        (the state renderer does, and then fills ``tasks``, ``completed_tasks`` and ``offers``
        itself); ``full``: with its task, offer and executor lists."""
        core = self.master.core
        if offered is None:
            offered = total(o.resources for o in map(core.offers.get, fw.offers) if o is not None)
        rendered = used is not None
        if used is None:
            used = total([*(r for _, r in fw.executor_usage()),
                          *(t.resources for t in fw.tasks.values() if t.state not in m.TERMINAL_STATES)])
        info = fw.info
        d = doc(
            id=fw.id, name=info.name, user=info.user, hostname=info.hostname or "",
            webui_url=info.webui_url or "", roles=fw.roles, role=fw.roles[0],
            capabilities=[c.type for c in info.capabilities if c.type],
            failover_timeout=info.failover_timeout, checkpoint=info.checkpoint, active=fw.active,
            connected=fw.connected, recovered=False, registered_time=fw.registered_time,
            unregistered_time=fw.unregistered_time or 0, offered_resources=offered.summary(),
            suppressed_roles=sorted(fw.suppressed_roles), used_resources=used.summary(),
            resources=(used + offered).summary(),
            reregistered_time=fw.reregistered_time if fw.reregistered_time else UNSET,
            principal=info.principal if info.principal is not None else UNSET,
        )
        if full:
            d.tasks = [] if rendered else [self._task(t) for t in fw.tasks.values()]
            d.unreachable_tasks = []
            d.completed_tasks = [] if rendered else [self._task(t) for t in fw.completed_tasks]
            d.offers = [] if rendered else [
                self._offer(o) for o in (core.offers.get(x) for x in fw.offers) if o is not None
            ]
            d.executors = [
                FrameworkExecutorDoc(
                    executor_id=ex_id, name=ex.name or "", framework_id=fw.id, slave_id=agent_id,
                    resources=(Resources.from_proto(ex.resources) if ex.resources else Resources()).summary(),
                    command=m.to_builtins(ex.command) if ex.command else {},
                )
                for agent_id, exs in fw.executors.items()
                for ex_id, ex in exs.items()
            ]
        return d

    @staticmethod
    def _offer(o: Offer) -> OfferDoc:
        return OfferDoc(id=o.id, framework_id=o.framework_id, slave_id=o.agent_id,
                        allocation_info={"role": o.role}, resources=o.resources.summary())

    def _offered_by_agent(self) -> dict[str, Resources]:
        """One pass over the offers for a whole render (not one pass per agent)."""
        groups: dict[str, list[Resources]] = {}
        for o in self.master.core.offers.values():
            rs = groups.get(o.agent_id)
            if rs is None:
                groups[o.agent_id] = [o.resources]
            else:
                rs.append(o.resources)
        return {aid: rs[0] if len(rs) == 1 else total(rs) for aid, rs in groups.items()}

    def _agents(self) -> list[AgentDoc]:
        offered = self._offered_by_agent()
        return [self._agent(a, offered) for a in self.master.core.agents.values()]

    def _agent(self, a: Agent, offered_by_agent: dict[str, Resources], used: Resources | None = None,
               doc: type[AgentDoc] = AgentDoc) -> AgentDoc:
        core = self.master.core
        if used is None:
            held = [r for fw in core.frameworks.values() for aid, r in fw.executor_usage() if aid == a.id]
            for fid, tid in a.tasks:
                fw = core.frameworks.get(fid)
                t = fw.tasks.get(tid) if fw else None
                if t is not None and t.state not in m.TERMINAL_STATES:
                    held.append(t.resources)
            used = total(held)
        drain = core.maintenance.drains.get(a.id)  # DRAIN_AGENT's state, as GET_AGENTS shows it
        started = core.maintenance.drain_started.get(a.id) if drain is not None else None
        return doc(
            id=a.id, pid=a.pid, hostname=a.hostname, port=a.port, registered_time=a.registered_time,
            resources=a.total.summary(), used_resources=used.summary(),
            offered_resources=offered_by_agent.get(a.id, _NONE).summary(),
            reserved_resources={role: a.total.reserved(role).summary() for role in sorted(a.total.roles())},
            unreserved_resources=a.total.unreserved().summary(), attributes=a.attribute_map(),
            active=a.connected and a.active, deactivated=not a.active, connected=a.connected,
            version=a.version or __version__, capabilities=AGENT_CAPABILITIES,
            reregistered_time=a.reregistered_time if a.reregistered_time is not None else UNSET,
            drain_info=drain if drain is not None else UNSET,
            estimated_drain_start_time_seconds=started if started is not None else UNSET,
        )

    def render_state(self) -> MasterStateDoc:
        """The whole state in one synchronous step (the handler renders in slices instead)."""
        core = self.master.core
        doc = self.state_header()
        doc.slaves = self._agents()
        doc.frameworks = [self._framework(fw, True) for fw in core.frameworks.values()]
        doc.completed_frameworks = [self._framework(fw, True) for fw in core.completed_frameworks]
        return doc

    def state_header(self) -> MasterStateDoc:
        """``/master/state`` without its agents and frameworks."""
        srv = self.master
        core = srv.core
        agents = list(core.agents.values())
        info = srv.master_info()
        return MasterStateDoc(
            version=__version__, build_date="", build_time=srv.start_time, build_user="mesos-nb",
            start_time=srv.start_time, elected_time=srv.start_time, id=srv.master_id, pid=info.pid,
            hostname=srv.hostname, capabilities=[],
            activated_slaves=sum(1 for a in agents if a.connected and a.active),
            deactivated_slaves=sum(1 for a in agents if not a.active),
            unreachable_slaves=len(core.unreachable), leader=info.pid,
            leader_info=LeaderInfoDoc(id=srv.master_id, pid=info.pid, port=srv.port, hostname=srv.hostname),
            flags=srv.flags(),
        )

    # ------------------------------------------------------------------ handlers
    async def state(self, request: web.Request) -> web.StreamResponse:
        return await _send(request, await self._state.pieces())

    async def operator_call(self, request: web.Request, call: str) -> web.StreamResponse:
        """``GET_STATE``, ``GET_TASKS``, ``GET_AGENTS``, ``GET_FRAMEWORKS``, ``GET_EXECUTORS``."""
        return await _send(request, await self.operator_state.pieces(call))

    async def state_summary(self, request: web.Request) -> web.Response:
        def render() -> StateSummaryDoc:
            core = self.master.core
            slaves = []
            offered = self._offered_by_agent()
            for a in core.agents.values():
                d = self._agent(a, offered, doc=SummaryAgentDoc)
                fids = set()
                for fid, tid in a.tasks:
                    fw = core.frameworks.get(fid)
                    t = fw.tasks.get(tid) if fw else None
                    if t is not None:
                        _count(d, t.state)
                    fids.add(fid)
                d.framework_ids = sorted(fids)
                slaves.append(d)
            frameworks = []
            for fw in core.frameworks.values():
                f = self._framework(fw, False, doc=SummaryFrameworkDoc)
                for t in (*fw.tasks.values(), *fw.completed_tasks):
                    _count(f, t.state)
                f.slave_ids = sorted({t.agent_id for t in fw.tasks.values()})
                frameworks.append(f)
            return StateSummaryDoc(hostname=self.master.hostname, slaves=slaves, frameworks=frameworks)

        return self._cached("summary", render)

    async def frameworks(self, request: web.Request) -> web.Response:
        def render() -> FrameworksDoc:
            core = self.master.core
            return FrameworksDoc(
                frameworks=[self._framework(fw, True) for fw in core.frameworks.values()],
                completed_frameworks=[self._framework(fw, True) for fw in core.completed_frameworks],
            )

        return self._cached("frameworks", render)

    async def slaves(self, request: web.Request) -> web.Response:
        return self._cached(
            "slaves",
            lambda: AgentsDoc(slaves=self._agents()),
        )

    async def tasks(self, request: web.Request) -> web.Response:
        # As ReadOnlyHandler::tasks: unparsable numbers fall back to the defaults, -1 means "no
        # limit" (Mesos casts to size_t), a negative offset gives nothing, only "asc" sorts up.
        q = request.query
        limit = _int_param(q.get("limit"), 100)
        offset = _int_param(q.get("offset"), 0)
        order = q.get("order", "desc")
        fid_filter = q.get("framework_id")
        tid_filter = q.get("task_id")
        core = self.master.core
        tasks: list[Task] = []
        for fw in list(core.frameworks.values()) + list(core.completed_frameworks):
            if fid_filter is not None and fw.id != fid_filter:
                continue
            tasks.extend(fw.tasks.values())
            tasks.extend(fw.completed_tasks)
        if tid_filter is not None:
            tasks = [t for t in tasks if t.id == tid_filter]
        tasks.sort(key=lambda t: t.statuses[0][1] if t.statuses else 0, reverse=(order != "asc"))
        if offset < 0 or (limit < 0 and offset > 0):
            page: list[Task] = []
        else:
            page = tasks[offset:] if limit < 0 else tasks[offset : offset + limit]
        return web.Response(body=_enc.encode(TasksDoc(tasks=[self._task(t) for t in page])),
                            content_type="application/json")

    async def health(self, request: web.Request) -> web.Response:
        healthy, why = self.master.health()
        return web.Response(status=200) if healthy else web.Response(status=503, text=why)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "build_user": "mesos-nb", "build_date": "", "build_time": 0})

    async def redirect(self, request: web.Request) -> web.Response:
        leader = self.master.leader_address
        if leader is None:
            return web.Response(status=503, text="No master is currently leading")
        return web.Response(status=307, headers={"Location": f"//{leader}"})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.json_response(self.metrics_snapshot())

    def metrics_snapshot(self) -> dict[str, float]:
        srv = self.master
        core = srv.core
        snap: dict[str, float] = dict(core.metrics)
        total = Resources()
        for a in core.agents.values():
            if a.connected:
                total = total + a.total
        used = Resources()
        states: dict[str, int] = {}
        for fw in core.frameworks.values():
            for t in fw.tasks.values():
                states[t.state] = states.get(t.state, 0) + 1
                if t.state not in m.TERMINAL_STATES:
                    used = used + t.resources
        for name in ("cpus", "mem", "disk", "gpus"):
            tot = total.scalar(name)
            u = used.scalar(name)
            snap[f"master/{name}_total"] = tot
            snap[f"master/{name}_used"] = u
            snap[f"master/{name}_percent"] = (u / tot) if tot else 0.0
        for st in ("staging", "starting", "running", "killing", "unreachable"):
            snap[f"master/tasks_{st}"] = states.get("TASK_" + st.upper(), 0)
        agents = list(core.agents.values())
        snap["master/slaves_active"] = sum(1 for a in agents if a.active)
        snap["master/slaves_connected"] = sum(1 for a in agents if a.connected)
        snap["master/slaves_disconnected"] = sum(1 for a in agents if not a.connected)
        snap["master/slaves_inactive"] = sum(1 for a in agents if not a.active)
        snap["master/slaves_unreachable"] = sum(1 for a in agents if not a.connected)
        snap["master/operator_event_stream_subscribers"] = srv.operator_subscribers()
        fws = list(core.frameworks.values())
        snap["master/frameworks_active"] = sum(1 for f in fws if f.active)
        snap["master/frameworks_connected"] = sum(1 for f in fws if f.connected)
        snap["master/frameworks_disconnected"] = sum(1 for f in fws if not f.connected)
        snap["master/frameworks_inactive"] = sum(1 for f in fws if not f.active)
        snap["master/outstanding_offers"] = len(core.offers)
        snap["master/elected"] = 1
        snap["master/uptime_secs"] = time.time() - srv.start_time
        snap.update(gcpolicy.counters())  # the collector policy's full collections (its cost)
        shares = core.allocator.shares()
        for role, share in shares.get("roles", {}).items():
            snap[f"allocator/mesos/roles/{role}/shares/dominant"] = share
        snap["system/cpus_total"] = os.cpu_count() or 0
        load = os.getloadavg()
        snap["system/load_1min"], snap["system/load_5min"], snap["system/load_15min"] = load
        vm = psutil.virtual_memory()
        snap["system/mem_total_bytes"] = vm.total
        snap["system/mem_free_bytes"] = vm.available
        return snap


async def _send(request: web.Request, pieces: list[bytes]) -> web.StreamResponse:
    """Streamed when the answer goes out as is; whole when the guard may filter it."""
    if request.get(SENT_AS_IS):
        return await respond(request, pieces)
    return web.Response(body=b"".join(pieces), content_type="application/json")


def _count(d: Any, state: str) -> None:
    """One more task in ``state`` on a state-summary record (its counted states only)."""
    if state in COUNTED_STATES:
        setattr(d, state, getattr(d, state) + 1)


def _int_param(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value, 0) if value.strip().lower().startswith(("0x", "-0x")) else int(value)
    except ValueError:
        return default


def _statuses(t: Task) -> list[dict[str, Any]]:
    """The updates the agent reported (no master-made TASK_STAGING), each with its container."""
    latest = t.latest
    container = latest.container_status if latest is not None else None
    out = []
    for state, ts in t.statuses:
        if state == "TASK_STAGING":
            continue
        d: dict[str, Any] = {"state": state, "timestamp": ts}
        if container is not None:
            d["container_status"] = container
        if latest is not None and latest.state == state and latest.healthy is not None:
            d["healthy"] = latest.healthy
        out.append(d)
    return out

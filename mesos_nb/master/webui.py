"""The master's web UI at ``/``: tables, a sandbox log follower and the live Bokeh plots.

Everything is served by the master itself: the page and its script (``ui_static/``), BokehJS
from the installed ``bokeh`` package (``/static/bokeh/…``; no CDN), the plots as a Bokeh
``json_item`` built by :mod:`mesos_nb.dashboards.components`, and the plot updates computed by
:mod:`mesos_nb.dashboards.data` (the same transforms the notebook widget applies), streamed as
server-sent events. Tables are paginated and filtered on the server and the page refetches
only the visible page when the core's version changes, so 1,000 agents and 10,000 tasks stay
cheap. ``/master/files/read?agent_id=&path=`` proxies the agent's ``/files/read`` (no CORS).

Without ``bokeh`` installed the UI still serves the tables and logs, and says how to get plots.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ..protocol import messages as m
from .agent_reads import AgentReader, AgentReadError
from .feed import UtilizationFeed

if TYPE_CHECKING:
    from .view import MasterView

_enc = msgspec.json.Encoder()
STATIC = os.path.join(os.path.dirname(__file__), "ui_static")
PLOTTED_AGENTS = 40
MAX_PAGE = 500


def _bokeh_static() -> str | None:
    try:
        from bokeh.util.paths import bokehjs_path
    except ImportError:
        return None
    return str(bokehjs_path())


def _plots_item() -> dict[str, Any]:
    """The dashboard's Bokeh document with empty sources: built once, the data comes separately."""
    from bokeh.embed import json_item

    from ..dashboards.components import Dashboard

    return json_item(Dashboard().root, "plots")


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_enc.encode(obj), status=status, content_type="application/json")


def _int(request: web.Request, name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"'{name}' must be an integer.") from None
    if v < lo or (hi is not None and v > hi):
        raise web.HTTPBadRequest(text=f"'{name}' must be between {lo} and {hi}.")
    return v


class WebUI:
    def __init__(self, master: MasterView, interval: float = 1.0, reader: AgentReader | None = None) -> None:
        self.master = master
        self.reader = reader or AgentReader()  # agent_reads.py: the agent's scheme, the master's credential
        self.feed = UtilizationFeed(master, interval=interval, reader=self.reader)
        self._tasks_cache: tuple[int, list[dict[str, Any]]] | None = None
        self._bokeh = _bokeh_static()
        self._warm: asyncio.Task | None = None
        self._item: dict[str, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    def add_routes(self, r: web.UrlDispatcher) -> None:
        self.feed.add_routes(r)
        r.add_get("/", self.index)
        r.add_get("/index.html", self.index)
        r.add_static("/static/ui/", STATIC)
        if self._bokeh is not None:
            r.add_static("/static/bokeh/", self._bokeh)
        r.add_get("/master/ui/plots", self.plots)
        r.add_get("/master/ui/stream", self.stream)
        r.add_get("/master/ui/summary", self.summary)
        r.add_get("/master/ui/agents", self.agents)
        r.add_get("/master/ui/frameworks", self.frameworks)
        r.add_get("/master/ui/tasks", self.tasks)
        r.add_get("/master/ui/roles", self.roles)
        r.add_get("/master/files/read", self.files_read)

    def start(self) -> None:
        self.feed.start()

    def _warm_up(self) -> None:
        """Build the plots document off the event loop when someone opens the page, so it is
        ready when app.js asks for it; a master nobody looks at never pays for it."""
        if self._bokeh is not None and self._warm is None and self._item is None:
            self._warm = asyncio.get_running_loop().create_task(self._prepare())

    async def _prepare(self) -> None:
        if self._item is None:
            self._item = await asyncio.to_thread(_plots_item)

    async def stop(self) -> None:
        await self.feed.stop()
        if self._warm is not None and not self._warm.cancelled():  # cancelled: awaiting it would raise
            with contextlib.suppress(Exception):
                await self._warm
        await self.reader.close()

    # ------------------------------------------------------------------ page
    async def index(self, request: web.Request) -> web.Response:
        self._warm_up()
        with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as f:
            html = f.read()
        if self._bokeh is not None:
            import bokeh

            # app.js loads BokehJS itself, after it has asked for the tables: first paint and
            # the tables do not wait for 1 MB of script.
            scripts = f'<script>window.BOKEH_JS = "/static/bokeh/js/bokeh.min.js?v={bokeh.__version__}";</script>'
        else:
            scripts = ""
        html = html.replace("<!--BOKEH-->", scripts)
        return web.Response(text=html, content_type="text/html")

    async def plots(self, request: web.Request) -> web.Response:
        """The dashboard's Bokeh document (json_item), already filled with the current data."""
        if self._bokeh is None:
            return _json({"error": "bokeh is not installed: pip install 'mesos-nb[dashboard]'"}, 404)
        from ..dashboards import data as d

        if self._item is None and self._warm is not None:
            with contextlib.suppress(Exception):
                await self._warm
        if self._item is None:  # pure Python on a private document: off the event loop, once
            self._item = await asyncio.to_thread(_plots_item)
        snap = await self.feed.fresh(PLOTTED_AGENTS)
        updates = d.history_updates(list(self.feed.history))
        updates += [u for u in d.plot_updates(snap) if u["mode"] == "replace"]
        return _json({"item": self._item, "updates": updates, "time": snap["time"]})

    def _ui_event(self) -> bytes:
        from ..dashboards import data as d

        snap = self.feed.cached(PLOTTED_AGENTS)  # the stream refreshed it, paced
        return _enc.encode({
            "version": snap["version"], "time": snap["time"], "samples": snap["samples"],
            "summary": self._summary(snap), "plots": d.plot_updates(snap),
        })

    async def stream(self, request: web.Request) -> web.StreamResponse:
        return await self.feed.sse(request, self._ui_event, event="ui")

    def _summary(self, snap: dict[str, Any]) -> dict[str, Any]:
        core = self.master.core
        return {
            "master": self.master.address, "version": snap["version"], "time": snap["time"],
            "agents": snap["agents_total"], "frameworks": len(core.frameworks),
            "cluster": snap["cluster"], "offers": snap["offers"]["count"], "tasks": snap["tasks"],
        }

    async def summary(self, request: web.Request) -> web.Response:
        return _json(self._summary(await self.feed.fresh(0)))

    # ------------------------------------------------------------------ tables
    async def agents(self, request: web.Request) -> web.Response:
        offset = _int(request, "offset", 0)
        limit = _int(request, "limit", 50, 1, MAX_PAGE)
        q = request.query.get("q", "").lower()
        rows = (await self.feed.fresh(None))["agents"]
        if q:
            rows = [a for a in rows if q in a["id"].lower() or q in f"{a['hostname']}:{a['port']}".lower()]
        page = [{**a, **self._maintenance(a["id"], a["hostname"])} for a in rows[offset:offset + limit]]
        return _json({"total": len(rows), "offset": offset, "rows": page})

    def _maintenance(self, agent_id: str, hostname: str) -> dict[str, Any]:
        """The agent's machine mode (UP / DRAINING with its window / DOWN) and its drain state
        (DRAINING / DRAINED from DRAIN_AGENT, ``deactivated``, else None), for the table."""
        mt = self.master.core.maintenance
        key = mt.machine_of(hostname)
        mode = mt.modes[key] if key is not None else "UP"
        window = mt.unavailability.get(key) if key is not None and mode != "UP" else None
        drain = mt.drains.get(agent_id, {}).get("state") or ("deactivated" if agent_id in mt.deactivated else None)
        return {"maintenance": {"mode": mode, "window": window}, "drain": drain}

    async def frameworks(self, request: web.Request) -> web.Response:
        snap = await self.feed.fresh(0)
        return _json({"total": len(snap["frameworks"]), "rows": snap["frameworks"]})

    async def roles(self, request: web.Request) -> web.Response:
        """The roles table: weight, guarantee, limit, allocated (subtree) and DRF share."""
        from .roles_view import role_rows

        rows = role_rows(self.master.core)
        return _json({"total": len(rows), "rows": rows})

    def _task_rows(self) -> list[dict[str, Any]]:
        core = self.master.core
        if self._tasks_cache is not None and self._tasks_cache[0] == core.version:
            return self._tasks_cache[1]
        rows = []
        # finished tasks mostly belong to frameworks that are gone (mesos-nb run, a notebook's
        # disconnect): list the completed frameworks' tasks too, as /master/state does
        for fw in (*core.frameworks.values(), *core.completed_frameworks):
            for group in (fw.tasks.values(), fw.completed_tasks):
                for t in group:
                    millis = t.resources.scalar_millis()
                    ex = t.executor_id or t.id
                    rows.append({
                        "id": t.id, "name": t.name, "framework_id": fw.id, "framework": fw.info.name,
                        "agent_id": t.agent_id, "state": t.state, "active": t.state not in m.TERMINAL_STATES,
                        "cpus": millis.get("cpus", 0) / 1000, "mem": millis.get("mem", 0) / 1000,
                        "started": t.statuses[0][1] if t.statuses else 0.0,
                        "updated": t.statuses[-1][1] if t.statuses else 0.0,
                        "sandbox": f"/frameworks/{fw.id}/executors/{ex}/runs/latest",
                        "message": (t.latest.message if t.latest is not None else None) or "",
                    })
        rows.sort(key=lambda r: (not r["active"], -r["updated"]))
        self._tasks_cache = (core.version, rows)
        return rows

    async def tasks(self, request: web.Request) -> web.Response:
        offset = _int(request, "offset", 0)
        limit = _int(request, "limit", 50, 1, MAX_PAGE)
        q = request.query.get("q", "").lower()
        state = request.query.get("state", "")
        fid = request.query.get("framework_id", "")
        aid = request.query.get("agent_id", "")
        rows = self._task_rows()
        if state == "active":
            rows = [r for r in rows if r["active"]]
        elif state:
            rows = [r for r in rows if r["state"] == state]
        if fid:
            rows = [r for r in rows if r["framework_id"] == fid]
        if aid:
            rows = [r for r in rows if r["agent_id"] == aid]
        if q:
            rows = [r for r in rows if q in r["id"].lower() or q in r["name"].lower() or q in r["framework"].lower()]
        return _json({"total": len(rows), "offset": offset, "rows": rows[offset:offset + limit]})

    # ------------------------------------------------------------------ sandbox logs
    async def files_read(self, request: web.Request) -> web.Response:
        aid = request.query.get("agent_id")
        if not aid:
            return web.Response(status=400, text="Expecting 'agent_id=value' in query.")
        if "path" not in request.query:
            return web.Response(status=400, text="Expecting 'path=value' in query.")
        agent = self.master.core.agents.get(aid)
        if agent is None:
            return web.Response(status=404, text=f"Agent '{aid}' is not known to this master.")
        params = {k: request.query[k] for k in ("path", "offset", "length") if k in request.query}
        try:
            reply = await self.reader.get(agent, "/files/read", params)
        except AgentReadError as e:
            return web.Response(status=502, text=str(e))
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)

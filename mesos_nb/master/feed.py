"""The master's utilization feed: one place that knows allocated *and* used resources.

Every ``interval`` the feed asks the agents that run tasks for ``/monitor/statistics``
(concurrently, a bounded number at a time, each with a timeout; an agent that fails is backed
off; :mod:`.agent_reads` speaks each agent's scheme with the master's credential), turns the
executors' CPU-time counters into rates and their RSS into memory used, and keeps a short
history. Snapshots (:meth:`UtilizationFeed.snapshot`) combine that with the
core's records: per-agent total/allocated/offered/used, per-framework and per-role dominant
shares, outstanding offers, task counts and recent task state changes (found by reading the
tasks' status lists, no core hook needed).

Routes: ``GET /master/utilization`` (snapshot JSON, ``?agents=N`` caps the agent list) and
``GET /master/utilization/stream`` (server-sent events: an ``utilization`` event per sample
and soon after every change of the core). Nothing here runs inside the allocation path:
collection is plain async I/O on the event loop, and a snapshot after a change recomputes
what changed (:mod:`.feed_account`: the blocks of tasks that changed, the rows of the agents
whose figures changed), not the whole cluster.

The feed costs nothing while nobody looks: sampling, polling and snapshot building run only
while a stream is open or a snapshot was read in the last ``IDLE_AFTER`` seconds (the history
restarts when interest does). A tick polls at most ``max_polls`` agents, round-robin, so a
50,000-agent cluster is sampled over several ticks instead of 50,000 GETs a second; and a
snapshot that took long to build (a big cluster) is reused for ten times its build time
before the next rebuild, which bounds the feed's share of the master's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ..dashboards import data as plot_data
from ..protocol.queue_reader import QueueReader
from .agent_reads import AgentReader, AgentReadError
from .feed_account import Account, floats, millis4
from .feed_timeline import Timeline
from .roles_view import quota_snapshot
from .slices import run_all

if TYPE_CHECKING:
    from .view import MasterView

log = logging.getLogger("mesos_nb.master.feed")
_enc = msgspec.json.Encoder()

SCALARS = ("cpus", "mem", "disk", "gpus")
HISTORY = 600
DEFAULT_AGENT_CAP = 100
IDLE_AFTER = 30.0  # seconds after the last read that the feed keeps sampling
KEEP_ALIVE = 15.0  # seconds an SSE stream may stay silent before it writes a keep-alive comment
MAX_POLLS = 256  # agents asked for /monitor/statistics per tick
THROTTLE_ABOVE = 0.02  # a snapshot build slower than this is reused for 10x its cost
STEP_ITEMS = 4000  # tasks (or offers) a snapshot build walks per loop step (~2.5 µs each)
STEP_AGENTS = 1000  # agents a snapshot build lists per loop step


def _zero() -> dict[str, float]:
    return {"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}


class _AgentUsage:
    __slots__ = ("prev", "cpus", "mem", "disk", "sampled", "failures", "retry_at")

    def __init__(self) -> None:
        self.prev: dict[tuple[str, str], tuple[float, float]] = {}  # (fw, ex) -> (ts, cpu secs)
        self.cpus: float | None = None
        self.mem: float | None = None
        self.disk: float | None = None
        self.sampled = 0.0
        self.failures = 0
        self.retry_at = 0.0


class UtilizationFeed:
    def __init__(self, master: MasterView, interval: float = 1.0, timeout: float = 2.0,
                 concurrency: int = 32, collect: bool = True, max_polls: int = MAX_POLLS,
                 reader: AgentReader | None = None) -> None:
        self.master = master
        self.reader = reader or AgentReader()  # the agents' scheme and the master's credential
        self.interval = interval
        self.timeout = timeout
        self.concurrency = concurrency
        self.collect = collect
        self.max_polls = max_polls
        self._round: deque[str] = deque()  # agents still to visit in this polling round
        self._last_read = -1e18  # time.monotonic() of the last snapshot read (interest)
        self._built_at = -1e18
        self._build_cost = 0.0
        self.usage: dict[str, _AgentUsage] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.timeline = Timeline()  # recent task state changes
        self._account = Account()  # allocated resources per agent, kept between snapshots
        self._rows: dict[str, tuple[Any, tuple[Any, ...], dict[str, Any], str | None]] = {}  # id -> row, group
        self._offer_millis: dict[int, tuple[Any, tuple[int, int, int, int]]] = {}
        self.rows_built = 0  # agent rows built (tests read it)
        self.samples = 0
        self._snap_key: tuple[int, int] | None = None
        self._snap: dict[str, Any] | None = None
        self._building: asyncio.Task | None = None  # the paced build in progress, shared by its readers
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        self._tasks: list[asyncio.Task] = []
        self._sem: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Task] = {}

    # ------------------------------------------------------------------ lifecycle
    def add_routes(self, r: web.UrlDispatcher) -> None:
        r.add_get("/master/utilization", self.handle_snapshot)
        r.add_get("/master/utilization/stream", self.handle_stream)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._sample_loop()), loop.create_task(self._change_loop())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        for t in list(self._inflight.values()):
            t.cancel()
        for q in list(self._subscribers):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(b"")
        await self.reader.close()

    # ------------------------------------------------------------------ collection
    def interested(self) -> bool:
        """Someone streams, or read a snapshot lately: only then does the feed work."""
        return bool(self._subscribers) or time.monotonic() - self._last_read < IDLE_AFTER

    async def _sample_loop(self) -> None:
        while True:
            started = time.monotonic()
            if not self.interested():
                await asyncio.sleep(self.interval)
                continue
            if self.collect:
                try:
                    await self.collect_once()
                except Exception:  # pragma: no cover - never kill the loop
                    log.exception("utilization collection failed")
            self.samples += 1
            await self._refresh()
            snap = self._capped(DEFAULT_AGENT_CAP)
            self.history.append({"time": snap["time"], "cluster": snap["cluster"], "offers": snap["offers"]})
            self._broadcast(snap)
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    async def _change_loop(self) -> None:
        """Push a snapshot soon after the core changes (tasks appear without waiting a sample)."""
        last = self.master.core.version
        while True:
            await asyncio.sleep(0.25)
            v = self.master.core.version
            if v != last and self._subscribers:
                last = v
                await self._refresh()
                self._broadcast(self._capped(DEFAULT_AGENT_CAP))

    async def collect_once(self) -> None:
        core = self.master.core
        now = time.monotonic()
        busy = []
        if not self._round:  # a new round over every agent; forget the ones that are gone
            self._round.extend(core.agents)
            for gone in [k for k in self.usage if k not in core.agents]:
                del self.usage[gone]
        visited = 0
        while self._round and len(busy) < self.max_polls and visited < 16 * self.max_polls:
            visited += 1
            a = core.agents.get(self._round.popleft())
            if a is None:
                continue
            u = self.usage.get(a.id)
            if u is None:
                u = self.usage[a.id] = _AgentUsage()
            if not a.connected or not a.tasks:
                u.cpus, u.mem, u.disk = (0.0, 0.0, None) if a.connected else (None, None, None)
                u.prev.clear()
                continue
            if now < u.retry_at:
                continue
            busy.append(a)
        if not busy:
            return
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        for a in busy:
            if a.id not in self._inflight:  # a slow agent keeps its one request, never a pile
                t = loop.create_task(self._collect_limited(a.id, a.hostname, a.port))
                self._inflight[a.id] = t
                t.add_done_callback(lambda _t, aid=a.id: self._inflight.pop(aid, None))
        # Wait for the answers at most most of one interval: slow agents (timeouts) finish in the
        # background and count in a later sample; the feed keeps its once-a-second cadence.
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=max(0.1, 0.8 * self.interval))

    async def _collect_limited(self, agent_id: str, host: str, port: int) -> None:
        assert self._sem is not None
        async with self._sem:
            await self._collect_agent(agent_id, host, port)

    async def _collect_agent(self, agent_id: str, host: str, port: int) -> None:
        u = self.usage.get(agent_id)
        agent = self.master.core.agents.get(agent_id)
        if u is None or agent is None:
            return
        try:
            reply = await self.reader.get(agent, "/monitor/statistics", timeout=self.timeout)
            if reply.status != 200:
                raise RuntimeError(f"status {reply.status}")
            entries = msgspec.json.decode(reply.body)
        except Exception as e:
            u.failures += 1
            u.retry_at = time.monotonic() + min(30.0, self.interval * 2 ** min(u.failures, 5))
            u.cpus = u.mem = u.disk = None
            if isinstance(e, AgentReadError) and u.failures == 1:  # the operator must act: say so once
                log.warning("utilization feed cannot read agent=%s: %s", agent_id, e)
            else:
                log.debug("statistics from agent %s failed: %r", agent_id, e)
            return
        u.failures = 0
        self.ingest(agent_id, entries)

    def ingest(self, agent_id: str, entries: list[dict[str, Any]]) -> None:
        """Fold one ``/monitor/statistics`` answer (the Mesos array shape) into the agent's usage."""
        u = self.usage.get(agent_id)
        if u is None:
            u = self.usage[agent_id] = _AgentUsage()
        cpus = 0.0
        mem = 0.0
        disk: float | None = None
        prev = {}
        for e in entries or []:
            st = e.get("statistics") or {}
            key = (str(e.get("framework_id", "")), str(e.get("executor_id", "")))
            ts = float(st.get("timestamp") or time.time())
            secs = float(st.get("cpus_user_time_secs") or 0.0) + float(st.get("cpus_system_time_secs") or 0.0)
            before = u.prev.get(key)
            if before is not None and ts > before[0]:
                cpus += max(0.0, (secs - before[1]) / (ts - before[0]))
            prev[key] = (ts, secs)
            mem += float(st.get("mem_rss_bytes") or 0) / (1024 * 1024)
            if st.get("disk_used_bytes") is not None:
                disk = (disk or 0.0) + float(st["disk_used_bytes"]) / (1024 * 1024)
        u.prev = prev
        u.cpus, u.mem, u.disk = cpus, mem, disk
        u.sampled = time.time()

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, agent_cap: int | None = DEFAULT_AGENT_CAP) -> dict[str, Any]:
        """The newest snapshot (a read: it keeps the feed sampling for ``IDLE_AFTER`` s)."""
        self._last_read = time.monotonic()
        return self._snapshot(agent_cap)

    async def fresh(self, agent_cap: int | None = DEFAULT_AGENT_CAP) -> dict[str, Any]:
        """:meth:`snapshot` for the event loop: a build needed is paced (``STEP_ITEMS`` tasks
        a step; 100,000 tasks in one go held the loop 0.3 s) and shared by concurrent readers."""
        self._last_read = time.monotonic()
        await self._refresh()
        return self._capped(agent_cap)

    def cached(self, agent_cap: int | None = DEFAULT_AGENT_CAP) -> dict[str, Any]:
        """The last snapshot built (after a :meth:`fresh` / :meth:`_refresh` on the loop)."""
        return self._capped(agent_cap) if self._snap is not None else self._snapshot(agent_cap)

    def _key(self) -> tuple[int, int]:
        return (self.master.core.version, self.samples)

    def _stale(self) -> bool:
        return self._snap is None or (self._snap_key != self._key() and not self._throttled())

    async def _refresh(self) -> None:
        if not self._stale():
            return
        if self._building is None:
            self._building = asyncio.get_running_loop().create_task(self._build_paced())
        await asyncio.shield(self._building)

    async def _build_paced(self) -> None:
        key, steps, cost = self._key(), self._build_steps(), 0.0
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    next(steps)
                except StopIteration as stop:
                    self._store(stop.value, key, cost + time.perf_counter() - t0)
                    return
                cost += time.perf_counter() - t0
                await asyncio.sleep(0)
        finally:
            self._building = None

    def _store(self, snap: dict[str, Any], key: tuple[int, int], cost: float) -> None:
        """Keep ``snap`` (built for ``key``); ``cost``: the CPU its steps took, for throttling."""
        self._snap, self._snap_key = snap, key
        self._built_at = time.monotonic()
        self._build_cost = cost

    def _snapshot(self, agent_cap: int | None = DEFAULT_AGENT_CAP) -> dict[str, Any]:
        """The snapshot, built in one go if needed (off the loop's hot paths: tests, tools)."""
        if self._stale():
            key, t0 = self._key(), time.perf_counter()
            self._store(run_all(self._build_steps()), key, time.perf_counter() - t0)
        return self._capped(agent_cap)

    def _capped(self, agent_cap: int | None) -> dict[str, Any]:
        snap = self._snap
        assert snap is not None
        if agent_cap is not None and len(snap["agents"]) > agent_cap:
            snap = {**snap, "agents": snap["agents"][:agent_cap]}
        return snap

    def _throttled(self) -> bool:
        cost = self._build_cost
        return cost > THROTTLE_ABOVE and time.monotonic() - self._built_at < 10 * cost

    def _build_steps(self) -> Generator[None, None, dict[str, Any]]:
        """The snapshot from the account (:mod:`.feed_account`): after a change, the blocks of
        tasks that changed are summed again and the rows of the agents they touch rebuilt."""
        core = self.master.core
        acct = self._account
        if acct.core is not core or acct.version != core.version:
            yield from acct.update_steps(core)
            self.timeline.add(acct)
        shares = core.allocator.shares()
        offered_per_agent, offered = yield from self._offers_steps(self._offer_millis)
        cache, fresh = self._rows, {}
        alloc = acct.alloc
        usage = self.usage
        rows, keys = [], []
        for i, a in enumerate(list(core.agents.values())):
            if i and not i % STEP_AGENTS:
                yield
            al = alloc.get(a.id)
            off = offered_per_agent.get(a.id)
            u = usage.get(a.id)
            sig = (a.hostname, a.port, a.connected, a.active, a.total, a.attributes,
                   None if al is None else tuple(al), off, None if u is None else (u.cpus, u.mem, u.disk))
            hit = cache.get(a.id)
            if hit is None or hit[0] is not a or hit[1] != sig:  # what it shows changed: rebuilt
                hit = (a, sig, self._agent_row(a, al, off), _group_key(a))
                self.rows_built += 1
            fresh[a.id] = hit
            rows.append(hit[2])
            keys.append(hit[3])
        self._rows = fresh
        frameworks = [_framework_row(fw, *acct.by_framework.get(fw.id, ([0, 0, 0, 0], 0)), shares)
                      for fw in core.frameworks.values()]
        active = sum(v[4] for v in alloc.values())
        return self._finish(rows, keys, frameworks, acct.counts, active, offered, shares)

    def _offers_steps(self, cache: dict[int, tuple[Any, tuple[int, int, int, int]]]
                      ) -> Generator[None, None, tuple[dict[str, tuple[int, ...]], list[int]]]:
        """Offered thousandths per agent and in all (each offer's kept in ``cache`` by identity)."""
        per: dict[str, list[int]] = {}
        total = [0, 0, 0, 0]
        seen = {}
        for i, o in enumerate(list(self.master.core.offers.values())):
            if i and not i % STEP_ITEMS:
                yield
            hit = cache.get(id(o))
            if hit is None or hit[0] is not o:
                hit = (o, millis4(o.resources.millis()))
            seen[id(o)] = hit
            acc = per.setdefault(o.agent_id, [0, 0, 0, 0])
            for j, v in enumerate(hit[1]):
                acc[j] += v
                total[j] += v
        cache.clear()
        cache.update(seen)
        return {aid: tuple(v) for aid, v in per.items()}, total

    def _agent_row(self, a: Any, alloc: list[int] | None, offered: tuple[int, ...] | None) -> dict[str, Any]:
        """An agent as a snapshot lists it."""
        u = self.usage.get(a.id)
        return {
            "id": a.id, "hostname": a.hostname, "port": a.port, "active": a.connected and a.active,
            "total": floats(millis4(a.total.millis())),
            "allocated": floats(alloc) if alloc else _zero(), "offered": floats(offered) if offered else _zero(),
            "used": {"cpus": u.cpus if u else None, "mem": u.mem if u else None,
                     "disk": u.disk if u else None, "gpus": None},
            "tasks": alloc[4] if alloc else 0,
        }

    def _finish(self, rows: list[dict[str, Any]], keys: list[str | None], frameworks: list[dict[str, Any]], counts: dict[str, int],
                active: int, offered: list[int], shares: dict[str, Any]) -> dict[str, Any]:
        """The snapshot from its agents' rows (in the core's order) and the rest."""
        core = self.master.core
        total = _zero()
        allocated = _zero()
        used: dict[str, float | None] = {"cpus": 0.0, "mem": 0.0, "disk": None, "gpus": None}
        for row in rows:
            tot, alloc, au = row["total"], row["allocated"], row["used"]
            for r in SCALARS:
                total[r] += tot[r]
                allocated[r] += alloc[r]
            for r in ("cpus", "mem"):
                if au[r] is not None:
                    used[r] += au[r]
            if au["disk"] is not None:
                used["disk"] = (used["disk"] or 0.0) + au["disk"]
        # Many agents plot as groups (per rack, else per bucket of hostnames), summed over all of them.
        groups = plot_data.agent_groups(rows, keys) if len(rows) > plot_data.GROUP_ABOVE else []
        # The busiest agents first: those are the ones worth plotting when there are many.
        listed = sorted(rows, key=lambda x: (-x["allocated"]["cpus"], x["hostname"], x["port"], x["id"]))
        off = floats(offered)
        return {
            "time": time.time(),
            "version": core.version,
            "samples": self.samples,
            "interval": self.interval,
            "cluster": {"total": total, "allocated": allocated, "used": used, "offered": off},
            "agents_total": len(rows),
            "agents": listed,
            "groups": groups,
            "frameworks": frameworks,
            "roles": {k: float(v) for k, v in shares.get("roles", {}).items()},
            "quota": quota_snapshot(core),
            "offers": {"count": len(core.offers), "resources": off},
            "tasks": {"counts": counts, "active": active},
            "recent": list(self.timeline.recent),
        }

    # ------------------------------------------------------------------ HTTP
    async def handle_snapshot(self, request: web.Request) -> web.Response:
        cap = _cap(request.query.get("agents"))
        if cap is False:
            return web.Response(status=400, text="'agents' must be a non-negative integer or 'all'.")
        return web.Response(body=_enc.encode(await self.fresh(cap)), content_type="application/json")

    def _broadcast(self, snap: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            if q.empty():  # a wake-up is enough: each client renders the newest snapshot
                q.put_nowait(b"x")

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        cap = _cap(request.query.get("agents"))
        if cap is False:
            return web.Response(status=400, text="'agents' must be a non-negative integer or 'all'.")
        return await self.sse(request, lambda: _enc.encode(self._capped(cap)))

    async def sse(self, request: web.Request, render, event: str = "utilization") -> web.StreamResponse:
        """Server-sent events: ``render()`` now, then after every sample or change, until stop."""
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue[bytes] = asyncio.Queue()
        signals = QueueReader(q)  # a wake-up taken as the keep-alive's timeout fires is not lost
        self._subscribers.add(q)
        head = f"event: {event}\ndata: ".encode()
        try:
            while True:
                await self._refresh()  # render() reads the snapshot built here, paced
                await resp.write(head + render() + b"\n\n")
                while True:
                    try:
                        signal = await signals.get(KEEP_ALIVE)
                        break
                    except asyncio.TimeoutError:
                        await resp.write(b": keep-alive\n\n")
                if signal == b"":
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(q)
            await signals.close()
        return resp


def _framework_row(fw: Any, alloc: list[int], n: int, shares: dict[str, Any]) -> dict[str, Any]:
    return {"id": fw.id, "name": fw.info.name, "roles": fw.roles, "active": fw.active,
            "connected": fw.connected, "share": float(shares.get("frameworks", {}).get(fw.id, 0.0)),
            "allocated": floats(alloc), "tasks": n, "offers": len(fw.offers)}


def _group_key(a: Any) -> str | None:
    return plot_data.group_key(a.attribute_map()) if a.attributes else None


def _cap(value: str | None) -> int | None | bool:
    if value is None:
        return DEFAULT_AGENT_CAP
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        return False
    return n if n >= 0 else False

"""The operator SUBSCRIBE stream: SUBSCRIBED with the full state, then the cluster's changes.

Events are derived in the shell, not inside the core: while at least one operator is
subscribed, the stream watches the core's change counter and compares the records with
what it has already announced (tasks by the number of updates they had, agents and
frameworks by identity and (re)registration), so the core needs no hook and costs nothing
when nobody subscribes. Every subscriber writes through its own
:class:`~mesos_nb.protocol.bounded_stream.BoundedStream`: one that stops reading is
disconnected once ``queue_limit`` bytes wait for it, and past ``max_subscribers`` the
oldest subscriber is closed, as Mesos does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from aiohttp import web

from ..protocol import recordio
from ..protocol.bounded_stream import DEFAULT_LIMIT, BoundedStream
from . import operator_views as v

log = logging.getLogger("mesos_nb.master.operator")
_enc = msgspec.json.Encoder()

HEARTBEAT_SECONDS = 15.0
MAX_SUBSCRIBERS = 1000
POLL_SECONDS = 0.02


def _record(event: dict[str, Any]) -> bytes:
    return recordio.encode(_enc.encode(event))


class OperatorStreams:
    def __init__(self, server: Any, *, queue_limit: int = DEFAULT_LIMIT, heartbeat: float = HEARTBEAT_SECONDS,
                 max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.server = server
        self.queue_limit = queue_limit
        self.heartbeat = heartbeat
        self.max_subscribers = max_subscribers
        self.subscribers: list[BoundedStream] = []
        self.disconnected_slow = 0
        self._version = -1
        self._tasks: dict[tuple[str, str], int] = {}  # (framework, task) -> reported updates announced
        self._agents: dict[str, float] = {}  # agent id -> (re)registration time announced
        self._frameworks: dict[str, tuple[Any, tuple]] = {}  # id -> (info, signature) announced
        self._watcher: asyncio.Task | None = None

    # ------------------------------------------------------------------ baseline and diff
    def _baseline(self) -> None:
        core = self.server.core
        self._version = core.version
        self._tasks = {}
        for fw in core.frameworks.values():
            for t in fw.tasks.values():
                self._tasks[(fw.id, t.id)] = len(v.reported_statuses(t))
        self._agents = {a.id: a.reregistered_time or a.registered_time for a in core.agents.values()}
        self._frameworks = {fw.id: (fw.info, self._signature(fw)) for fw in core.frameworks.values()}

    @staticmethod
    def _signature(fw: Any) -> tuple:
        return (fw.active, fw.connected, fw.reregistered_time, fw.info)

    def scan(self) -> None:
        """Announce what changed since the last scan to every subscriber."""
        core = self.server.core
        if core.version == self._version:
            return
        self._version = core.version
        events: list[dict[str, Any]] = []
        view: v.StateView | None = None
        seen_fw = set()
        for fw in core.frameworks.values():
            seen_fw.add(fw.id)
            sig = self._signature(fw)
            old = self._frameworks.get(fw.id)
            if old is None or old[1] != sig:
                view = view or v.StateView(core)
                kind = "FRAMEWORK_ADDED" if old is None else "FRAMEWORK_UPDATED"
                events.append({"type": kind, kind.lower(): {"framework": view.framework(fw)}})
                self._frameworks[fw.id] = (fw.info, sig)
        for fid in [f for f in self._frameworks if f not in seen_fw]:
            info, _ = self._frameworks.pop(fid)
            info_json = v.m.to_builtins(info)
            info_json.setdefault("id", {"value": fid})
            events.append({"type": "FRAMEWORK_REMOVED", "framework_removed": {"framework_info": info_json}})
        seen_agents = set()
        for a in core.agents.values():
            seen_agents.add(a.id)
            stamp = a.reregistered_time or a.registered_time
            if self._agents.get(a.id) != stamp:
                view = view or v.StateView(core)
                events.append({"type": "AGENT_ADDED", "agent_added": {"agent": view.agent(a)}})
                self._agents[a.id] = stamp
        for aid in [x for x in self._agents if x not in seen_agents]:
            del self._agents[aid]
            events.append({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": {"value": aid}}})
        live = set()
        for fw in list(core.frameworks.values()) + list(core.completed_frameworks):
            for t in fw.tasks.values():
                key = (fw.id, t.id)
                live.add(key)
                self._task_events(key, t, events)
        for key in [k for k in self._tasks if k not in live]:
            t = self._find_completed(key)
            if t is not None:
                self._task_events(key, t, events)
            self._tasks.pop(key, None)
        if events:
            data = b"".join(_record(e) for e in events)
            for s in list(self.subscribers):
                self._push(s, data)

    def _task_events(self, key: tuple[str, str], t: Any, events: list[dict[str, Any]]) -> None:
        statuses = v.reported_statuses(t)
        known = self._tasks.get(key)
        if known is None:
            events.append({"type": "TASK_ADDED", "task_added": {"task": v.task_added(t)}})
            known = 0
        for state, ts in statuses[known:]:
            events.append({"type": "TASK_UPDATED", "task_updated": {
                "framework_id": {"value": t.framework_id}, "status": v.task_status(t, state, ts), "state": state}})
        self._tasks[key] = len(statuses)

    def _find_completed(self, key: tuple[str, str]) -> Any:
        core = self.server.core
        fw = core.frameworks.get(key[0])
        fws = [fw] if fw is not None else [f for f in core.completed_frameworks if f.id == key[0]]
        for f in fws:
            for t in reversed(f.completed_tasks):
                if t.id == key[1]:
                    return t
        return None

    def _push(self, s: BoundedStream, data: bytes) -> None:
        if not s.push(data) and s.overflowed:
            self.disconnected_slow += 1
            log.warning("operator subscriber disconnected: more than %d bytes unread", self.queue_limit)

    # ------------------------------------------------------------------ watcher
    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        beat = _record({"type": "HEARTBEAT"})
        while self.subscribers:
            await asyncio.sleep(POLL_SECONDS)
            self.scan()
            if loop.time() >= next_beat:
                next_beat = loop.time() + self.heartbeat
                for s in list(self.subscribers):
                    self._push(s, beat)
        self._watcher = None

    # ------------------------------------------------------------------ HTTP
    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        if self.subscribers:
            self.scan()  # the others see everything up to the snapshot the newcomer gets
        else:
            self._baseline()
        core = self.server.core
        subscribed = _record({"type": "SUBSCRIBED", "subscribed": {
            "get_state": v.StateView(core).get_state(), "heartbeat_interval_seconds": self.heartbeat}})
        stream = BoundedStream(self.queue_limit + len(subscribed))
        stream.push(subscribed)
        stream.push(_record({"type": "HEARTBEAT"}))
        while len(self.subscribers) >= self.max_subscribers:
            self.subscribers.pop(0).close()
        self.subscribers.append(stream)
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                        "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            await stream.pump(request, resp)
        finally:
            with contextlib.suppress(ValueError):
                self.subscribers.remove(stream)
        return resp

    async def stop(self) -> None:
        for s in list(self.subscribers):
            s.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher

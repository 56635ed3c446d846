"""The master's v1 operator API (``POST /api/v1``) and the v0 endpoints tools still call.

One handler validates a call the way ``Master::Http::api`` does (Content-Type, Accept, a
known ``type``, its payload) and answers it from the core's public records through
:mod:`.operator_views`; SUBSCRIBE goes to :mod:`.operator_stream`. Reservations and
persistent volumes go to :mod:`.reservations` / :mod:`.volumes`, maintenance and agent
draining to :mod:`.downtime`, all through the core. The v0 additions (``/flags``, ``/roles``,
``/weights``, ``/quota``, ``/maintenance/*``) and the trailing-slash rule (libprocess trims
one trailing ``/``) are installed here too, so ``server.py`` needs a single line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from aiohttp import web

from ..protocol import operator_answers as oa
from ..protocol.http_calls import CallRefused, accepts_json, check_json_content_type, decode_call
from ..protocol.operator_state import ResponseDoc
from ..protocol.routing import add_routes
from ..protocol.version import VERSION
from . import operator_views as v
from .big_calls import run_steps
from .connections import text_response as _text
from .core import CallError, validate_role
from .operator_stream import OperatorStreams
from .quota import QuotaOvercommit, quota_status
from .security import PRINCIPAL
from .state_render_v1 import CALLS as STATE_CALLS

log = logging.getLogger("mesos_nb.master.operator")
_enc = msgspec.json.Encoder()

CALLS = {
    "GET_HEALTH", "GET_FLAGS", "GET_VERSION", "GET_METRICS", "GET_LOGGING_LEVEL", "SET_LOGGING_LEVEL",
    "LIST_FILES", "READ_FILE", "GET_STATE", "GET_AGENTS", "GET_FRAMEWORKS", "GET_EXECUTORS",
    "GET_OPERATIONS", "GET_TASKS", "GET_ROLES", "GET_WEIGHTS", "UPDATE_WEIGHTS", "GET_MASTER", "SUBSCRIBE",
    "RESERVE_RESOURCES", "UNRESERVE_RESOURCES", "CREATE_VOLUMES", "DESTROY_VOLUMES", "GROW_VOLUME",
    "SHRINK_VOLUME", "GET_MAINTENANCE_STATUS", "GET_MAINTENANCE_SCHEDULE", "UPDATE_MAINTENANCE_SCHEDULE",
    "START_MAINTENANCE", "STOP_MAINTENANCE", "DRAIN_AGENT", "DEACTIVATE_AGENT", "REACTIVATE_AGENT",
    "GET_QUOTA", "UPDATE_QUOTA", "SET_QUOTA", "REMOVE_QUOTA", "TEARDOWN", "MARK_AGENT_GONE",
    "KILL_TASK",  # mesos-nb's own: kill one task by id (kept for existing tools)
}
# Maintenance and agent-state calls (downtime.py), each answered 200 with an empty body.
MAINTENANCE_CALLS = {"UPDATE_MAINTENANCE_SCHEDULE", "START_MAINTENANCE", "STOP_MAINTENANCE", "DRAIN_AGENT",
                     "DEACTIVATE_AGENT", "REACTIVATE_AGENT"}
# Payloads Mesos requires (validation.cpp): the call is a 400 without them.
REQUIRED = {"GET_METRICS", "SET_LOGGING_LEVEL", "LIST_FILES", "READ_FILE", "UPDATE_WEIGHTS", "TEARDOWN",
            "MARK_AGENT_GONE", "KILL_TASK", "UPDATE_QUOTA", "SET_QUOTA", "REMOVE_QUOTA",
            "RESERVE_RESOURCES", "UNRESERVE_RESOURCES", "CREATE_VOLUMES", "DESTROY_VOLUMES", "GROW_VOLUME",
            "SHRINK_VOLUME"} | MAINTENANCE_CALLS



def _json(body: Any) -> web.Response:
    return web.Response(body=_enc.encode(body), content_type="application/json")


def _answered(answer: Any) -> web.Response:
    """A call's typed answer in its ``Response`` (``{"type": …, "<call>": answer}``)."""
    return _json(oa.response(answer))


def _id_value(payload: Any, key: str) -> str | None:
    ident = payload.get(key) if isinstance(payload, dict) else None
    value = ident.get("value") if isinstance(ident, dict) else None
    return value if isinstance(value, str) else None


class OperatorApi:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.streams = OperatorStreams(server)
        self.logging_level = 0
        self._level_reset: asyncio.TimerHandle | None = None

    def install(self, app: web.Application) -> None:
        # no trailing_slash middleware here: the master's guard middleware (always installed,
        # first) applies libprocess's trailing-slash rule itself; a second layer cost every
        # request (every ACKNOWLEDGE) a middleware hop for nothing
        add_routes(app.router, ("", "/master"), {
            "POST /api/v1": self.handle,
            "GET /flags": self.flags,
            "GET /roles": self.roles,
            "GET /weights": self.weights,
            "PUT /weights": self.put_weights,
            "GET /quota": self.quota,
            "GET /maintenance/status": self.maintenance_status,
            "GET /maintenance/schedule": self.maintenance_schedule,
            "POST /maintenance/schedule": self.post_maintenance,
            "POST /machine/down": self.post_maintenance,
            "POST /machine/up": self.post_maintenance,
        })

    # ------------------------------------------------------------------ data
    def flag_map(self) -> dict[str, str]:
        srv = self.server
        c = srv.config
        flags = {
            "ip": c.host, "port": str(srv.port), "hostname": srv.hostname,
            "allocation_interval": f"{c.allocation_interval}secs",
            "agent_ping_timeout": f"{c.agent_ping_timeout}secs",
            "max_agent_ping_timeouts": str(c.max_agent_ping_timeouts),
            "http_framework_heartbeat_interval": f"{c.heartbeat_interval}secs",
            "max_operator_event_stream_subscribers": str(self.streams.max_subscribers),
            "authenticate_agents": "true" if c.agent_secret else "false",
        }
        if c.work_dir:
            flags["work_dir"] = c.work_dir
        if c.agent_http_credential:  # the file's path; its secret is never shown
            flags["agent_http_credential"] = c.agent_http_credential
        return flags  # the agent secret is never shown

    def weight_map(self) -> dict[str, float]:
        return self.server.core.allocator.weights()

    def metrics(self) -> dict[str, float]:
        return self.server.views.metrics_snapshot()

    # ------------------------------------------------------------------ POST /api/v1
    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            check_json_content_type(request.headers.get("Content-Type"))
            t, call = decode_call(await request.read(), "master", CALLS)
        except CallRefused as e:
            return _text(e.status, e.message)
        field = t.lower()
        payload = call.get(field)
        if t in REQUIRED and not isinstance(payload, dict):
            return _text(400, f"Failed to validate master::Call: Expecting '{field}' to be present")
        if not accepts_json(request.headers.get("Accept")):
            return _text(406, "Expecting 'Accept' to allow 'application/json'")
        if t == "SUBSCRIBE":
            return await self.streams.subscribe(request)
        if t in STATE_CALLS:  # rendered incrementally and streamed (state_render_v1.py)
            return await self.server.views.operator_call(request, t)
        if t == "DRAIN_AGENT" and payload.get("mark_gone") is True \
                and not self.server.guard.acls.allowed("mark_agents_gone", request.get(PRINCIPAL)):
            return _text(403, "Not authorized: DRAIN_AGENT with 'mark_gone' also needs mark_agents_gone")
        try:
            if t == "TEARDOWN":
                return await self._teardown(payload)
            if t == "UPDATE_WEIGHTS":
                return await self._update_weights(payload.get("weight_infos"))
            if t == "MARK_AGENT_GONE":
                return await self._mark_gone(payload)
            return self._answer(t, field, payload)
        except CallError as e:
            return _text(e.status, e.message)
        finally:
            self.server.flush()

    async def _teardown(self, payload: Any) -> web.Response:
        fid = _id_value(payload, "framework_id")
        if fid is None:
            return _text(400, "Failed to validate master::Call: Expecting 'teardown.framework_id' to be present")
        if fid not in self.server.core.frameworks:
            return _text(400, f"No framework found with specified ID '{fid}'")
        # in steps: a framework's 100,000 tasks (big_calls.run_steps)
        await run_steps(self.server, self.server.core.teardown_steps(fid, time.time()))
        return web.Response(status=200)

    async def _mark_gone(self, payload: Any) -> web.Response:
        aid = _id_value(payload, "agent_id")
        if aid is None:
            return _text(400, "Failed to validate master::Call: Expecting 'mark_agent_gone.agent_id' to be present")
        # CallError(404) for an unknown agent; its tasks ended in steps (an agent may run 20,000)
        await run_steps(self.server, self.server.core.mark_agent_gone_steps(aid, time.time()))
        log.info("agent marked gone by operator agent=%s", aid)
        return web.Response(status=200)

    def _answer(self, t: str, field: str, payload: Any) -> web.StreamResponse:
        srv = self.server
        core = srv.core
        if t == "GET_HEALTH":
            return _answered(oa.GetHealth(healthy=srv.health()[0]))
        if t == "GET_VERSION":
            return _answered(oa.GetVersion(version_info=oa.VersionInfo(
                version=VERSION, build_user="mesos-nb", build_time=srv.start_time, build_date="")))
        if t == "GET_FLAGS":
            return _answered(oa.GetFlags(flags=[oa.Flag(name=k, value=x) for k, x in self.flag_map().items()]))
        if t == "GET_METRICS":
            return _answered(oa.GetMetrics(metrics=[oa.Metric(name=k, value=x) for k, x in self.metrics().items()]))
        if t == "GET_LOGGING_LEVEL":
            return _answered(oa.GetLoggingLevel(level=self.logging_level))
        if t == "SET_LOGGING_LEVEL":
            return self._set_logging_level(payload)
        if t in ("LIST_FILES", "READ_FILE"):
            path = payload.get("path")
            if not isinstance(path, str):
                return _text(400, f"Failed to validate master::Call: Expecting '{field}.path' to be present")
            return _text(404, f"No file or directory found at path '{path}' (the master serves no files)")
        if t == "GET_OPERATIONS":
            return _answered(oa.GetOperations(operations=core.get_operations()))
        if t in ("RESERVE_RESOURCES", "UNRESERVE_RESOURCES"):
            core.reserve_operation(t, payload, time.time())  # CallError 400 / 404 / 409
            return web.Response(status=202)
        if t in ("CREATE_VOLUMES", "DESTROY_VOLUMES", "GROW_VOLUME", "SHRINK_VOLUME"):
            core.volume_operation(t, payload, time.time())  # CallError 400 / 404 / 409
            return web.Response(status=202)
        if t == "GET_ROLES":
            return _json(ResponseDoc(type=t, get_roles=v.StateView(core).get_roles(self.weight_map())))
        if t == "GET_WEIGHTS":
            return _answered(oa.GetWeights(weight_infos=[
                oa.WeightInfo(role=r, weight=w) for r, w in sorted(self.weight_map().items())]))
        if t == "GET_MASTER":
            return _answered(oa.GetMaster(master_info=core.master_info or srv.master_info(),
                                          start_time=srv.start_time, elected_time=srv.start_time))
        if t == "GET_MAINTENANCE_STATUS":
            return _answered(oa.GetMaintenanceStatus(status=self._maintenance_status()))
        if t == "GET_MAINTENANCE_SCHEDULE":
            return _answered(oa.GetMaintenanceSchedule(schedule=self._maintenance_schedule()))
        if t in MAINTENANCE_CALLS:
            return self._maintenance(t, payload)
        if t == "GET_QUOTA":
            return _answered(oa.GetQuota(status=quota_status(core)))
        if t in ("UPDATE_QUOTA", "SET_QUOTA", "REMOVE_QUOTA"):
            return self._update_quota(t, payload)
        # KILL_TASK
        task_id = _id_value(payload, "task_id")
        if task_id is None:
            return _text(400, "Expecting 'kill_task.task_id.value' to be present")
        if core.operator_kill(task_id, time.time()) is None:
            return _text(404, f"No active task with id '{task_id}'")
        return web.Response(status=202)

    def _maintenance(self, t: str, payload: Any) -> web.Response:
        """The calls that change maintenance or agent state; CallError 400/409 names the rule."""
        self.server.core.maintenance_call(t, payload, time.time())
        log.info("maintenance call=%s", t)
        return web.Response(status=200)

    def _set_logging_level(self, payload: dict[str, Any]) -> web.Response:
        level = payload.get("level")
        duration = payload.get("duration")
        secs = duration.get("nanoseconds") if isinstance(duration, dict) else None
        if not isinstance(level, int) or isinstance(level, bool) or level < 0:
            return _text(400, "Expecting 'set_logging_level.level' to be a non-negative integer")
        if not isinstance(secs, int) or isinstance(secs, bool) or secs < 0:
            return _text(400, "Expecting 'set_logging_level.duration.nanoseconds' to be a non-negative integer")
        self.logging_level = level
        logging.getLogger("mesos_nb").setLevel(logging.DEBUG if level > 0 else logging.NOTSET)
        if self._level_reset is not None:
            self._level_reset.cancel()
        self._level_reset = asyncio.get_running_loop().call_later(secs / 1e9, self._reset_level)
        return web.Response(status=200)

    def _reset_level(self) -> None:
        self.logging_level = 0
        self._level_reset = None
        logging.getLogger("mesos_nb").setLevel(logging.NOTSET)

    async def _update_weights(self, infos: Any) -> web.Response:
        if not isinstance(infos, list):
            return _text(400, "Expecting 'weight_infos' to be a list of {role, weight}")
        weights: dict[str, float] = {}
        for w in infos:
            role = w.get("role") if isinstance(w, dict) else None
            weight = w.get("weight") if isinstance(w, dict) else None
            if not isinstance(role, str) or not isinstance(weight, int | float) or isinstance(weight, bool):
                return _text(400, "Each weight info needs a string 'role' and a number 'weight'")
            problem = validate_role(role)
            if problem or role == "*":
                return _text(400, f"Invalid role '{role}': {problem or 'cannot set a weight for the default role'}")
            if not weight > 0:
                return _text(400, f"Weight for role '{role}' must be positive, got {weight}")
            weights[role] = float(weight)
        # every offer is rescinded, in steps: 50,000 in one step took 0.85 s (big_calls.run_steps)
        await run_steps(self.server, self.server.core.update_weights_steps(weights))
        return web.Response(status=200)

    def _update_quota(self, t: str, payload: dict[str, Any]) -> web.Response:
        """UPDATE_QUOTA (1.9+) and the deprecated SET_QUOTA / REMOVE_QUOTA, all-or-nothing.
        ``authorize`` is the hook for the ACL module (``update_quota`` per role)."""
        core = self.server.core
        authorize = getattr(self.server, "authorize_role_action", None)
        force = bool(payload.get("force", False))
        if t == "UPDATE_QUOTA":
            configs = payload.get("quota_configs")
        elif t == "REMOVE_QUOTA":
            role = payload.get("role")
            if not isinstance(role, str):
                return _text(400, "Expecting 'remove_quota.role' to be present")
            configs = [{"role": role}]
        else:  # SET_QUOTA: guarantees and limits both set to the given guarantee
            req = payload.get("quota_request")
            role = req.get("role") if isinstance(req, dict) else None
            guarantee = req.get("guarantee") if isinstance(req, dict) else None
            if not isinstance(role, str) or not isinstance(guarantee, list):
                return _text(400, "Expecting 'set_quota.quota_request' with a 'role' and a 'guarantee' list")
            if role in core.quota_configs:
                return _text(400, f"Failed to validate set quota request: quota cannot be set for role "
                                  f"'{role}' which already has quota")
            q = {r.get("name"): {"value": (r.get("scalar") or {}).get("value")}
                 for r in guarantee if isinstance(r, dict)}
            configs = [{"role": role, "guarantees": q, "limits": q}]
            force = bool(req.get("force", False))
        try:
            core.update_quota(configs, force, authorize)
        except QuotaOvercommit as e:
            if t == "SET_QUOTA":
                raise CallError(409, e.message) from None
            raise
        finally:
            self.server.flush()
        log.info("quota updated call=%s roles=%s", t,
                 ",".join(c.get("role", "?") for c in configs if isinstance(c, dict)))
        return web.Response(status=200)

    # ------------------------------------------------------------------ v0 additions
    async def flags(self, request: web.Request) -> web.Response:
        return _json({"flags": self.flag_map()})

    async def roles(self, request: web.Request) -> web.Response:
        from .roles_view import mesos_roles

        return _json(mesos_roles(self.server.core))

    async def weights(self, request: web.Request) -> web.Response:
        return _json([{"weight": w, "role": r} for r, w in sorted(self.weight_map().items())])

    async def put_weights(self, request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError as e:
            return _text(400, f"Failed to parse update weights request JSON: {e}")
        try:
            return await self._update_weights(body)
        finally:
            self.server.flush()

    async def quota(self, request: web.Request) -> web.Response:
        return _json(quota_status(self.server.core))

    async def maintenance_status(self, request: web.Request) -> web.Response:
        return _json(self._maintenance_status())

    async def maintenance_schedule(self, request: web.Request) -> web.Response:
        return _json(self._maintenance_schedule())

    def _maintenance_status(self) -> oa.ClusterStatus:
        """The maintenance records' ClusterStatus, checked against its type."""
        return msgspec.convert(self.server.core.maintenance_status(), oa.ClusterStatus)

    def _maintenance_schedule(self) -> oa.Schedule:
        return msgspec.convert(self.server.core.maintenance_schedule(), oa.Schedule)

    async def post_maintenance(self, request: web.Request) -> web.Response:
        """v0 ``POST /maintenance/schedule`` (a Schedule), ``/machine/down`` and ``/machine/up``
        (a list of MachineIDs): the v1 calls with the body as their payload."""
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError as e:
            return _text(400, f"Failed to parse the request body as JSON: {e}")
        t, key = {"/maintenance/schedule": ("UPDATE_MAINTENANCE_SCHEDULE", "schedule"),
                  "/machine/down": ("START_MAINTENANCE", "machines"),
                  "/machine/up": ("STOP_MAINTENANCE", "machines")}[request.path.removeprefix("/master")]
        try:
            return self._maintenance(t, {key: body})
        except CallError as e:
            return _text(e.status, e.message)
        finally:
            self.server.flush()

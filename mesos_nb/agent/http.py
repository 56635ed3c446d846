"""The agent's HTTP endpoints (one aiohttp app per agent).

``/state`` (+ ``/slave(1)/state``, ``/state.json``), ``/health``, ``/monitor/statistics``,
``/metrics/snapshot``, the ``/files`` endpoints (files.py) and the executor API
(executor_api.py), behind Basic authentication by realm (http_auth.py). Bad parameters get a 400 with a sentence.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec
import psutil
from aiohttp import web
from msgspec import UNSET

from ..protocol import event_loop
from ..protocol.state import AgentFrameworkDoc, AgentStateDoc, AgentTaskDoc, ExecutorDoc
from ..protocol.version import VERSION
from .app_key import AGENT_KEY, agent_of
from .attributes import attributes_dict
from .executor_api import handle_executor
from .files import add_routes as add_files_routes
from .files import with_jsonp as _with_jsonp
from .http_auth import make_middleware as make_auth

if TYPE_CHECKING:
    from .agent import Agent, ExecutorEntry, FrameworkEntry, TaskEntry




def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")


# ---------------------------------------------------------------------- /state
def _task_doc(agent: Agent, t: TaskEntry) -> AgentTaskDoc:
    return AgentTaskDoc(
        id=t.task_id, name=t.info.name, framework_id=t.framework_id,
        executor_id="" if not t.info.executor else t.executor_id,
        slave_id=agent.agent_id or "", state=t.state, resources=t.resources.summary(),
        statuses=[{"state": s, "timestamp": ts} for s, ts in t.statuses],
        labels=t.info.labels if t.info.labels is not None else UNSET,
    )


def _executor_doc(agent: Agent, ex: ExecutorEntry) -> ExecutorDoc:
    return ExecutorDoc(
        id=ex.executor_id, name=ex.info.name or "", source=ex.info.source or "",
        container=ex.container_id, directory=ex.directory, resources=ex.resources.summary(),
        type="DEFAULT" if ex.command_executor else (ex.info.type or "CUSTOM"),
        tasks=[_task_doc(agent, t) for t in ex.tasks.values()],
        queued_tasks=[],
        completed_tasks=[_task_doc(agent, t) for t in ex.completed_tasks],
    )


def _framework_doc(agent: Agent, fw: FrameworkEntry) -> AgentFrameworkDoc:
    info = fw.info
    return AgentFrameworkDoc(
        id=fw.framework_id, name=info.name, user=info.user,
        failover_timeout=info.failover_timeout, checkpoint=info.checkpoint, hostname=info.hostname or "",
        executors=[_executor_doc(agent, e) for e in fw.executors.values()],
        completed_executors=[_executor_doc(agent, e) for e in fw.completed_executors],
        principal=info.principal or UNSET,
        roles=list(info.roles) if info.roles else UNSET,
        role=UNSET if info.roles else (info.role or "*"),
    )


def state_doc(agent: Agent) -> AgentStateDoc:
    """The agent's ``/state`` as :mod:`mesos_nb.protocol.state`'s typed document."""
    cfg = agent.config
    return AgentStateDoc(
        version=VERSION, build_date="", build_time=0, build_user="",
        start_time=agent.start_time, id=agent.agent_id or "", pid=agent.pid, hostname=agent.hostname,
        capabilities=["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
        resources=agent.total.summary(), reserved_resources={}, unreserved_resources=agent.total.summary(),
        reserved_resources_full={}, unreserved_resources_full=[],
        attributes=attributes_dict(agent.attributes), master_hostname=None,
        flags={
            "master": cfg.master, "port": str(agent.port), "work_dir": cfg.work_dir,
            "isolation": cfg.isolation, "hostname": agent.hostname, "event_loop": event_loop.running(),
            "executor_shutdown_grace_period": f"{cfg.executor_shutdown_grace_period:g}secs",
            **({"resources": cfg.resources} if cfg.resources else {}),
            **({"attributes": cfg.attributes} if cfg.attributes else {}),
        },
        frameworks=[_framework_doc(agent, f) for f in agent.frameworks.values()],
        completed_frameworks=[_framework_doc(agent, f) for f in agent.completed_frameworks.values()],
    )


def state_json(agent: Agent) -> dict[str, Any]:
    """:func:`state_doc` as plain JSON values (for the JSONP writer and ``GET_FLAGS``)."""
    return msgspec.to_builtins(state_doc(agent))


# ---------------------------------------------------------------------- other endpoints
async def state(request: web.Request) -> web.Response:
    return _with_jsonp(request, state_json(agent_of(request)))


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


def _stats_for(pid: int) -> dict[str, float] | None:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    user = system = 0.0
    rss = 0
    threads = 0
    for p in procs:
        try:
            with p.oneshot():
                ct = p.cpu_times()
                user += ct.user
                system += ct.system
                rss += p.memory_info().rss
                threads += p.num_threads()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {"cpus_user_time_secs": round(user, 3), "cpus_system_time_secs": round(system, 3),
            "mem_rss_bytes": rss, "processes": len(procs), "threads": threads}


async def monitor_statistics(request: web.Request) -> web.Response:
    agent = agent_of(request)
    out = []
    usage = getattr(agent.containerizer, "usage", None)
    for fw in agent.frameworks.values():
        for ex in fw.executors.values():
            c = ex.container
            if c is None or c.exited:
                continue
            stats = usage(c) if usage is not None else None
            if stats is None:
                stats = _stats_for(c.pid)
            if stats is None:
                continue
            limits = ex.resources
            for t in ex.tasks.values():
                limits = limits + t.resources if not ex.command_executor else t.resources
            names = limits.names()
            stats.setdefault("cpus_limit", limits.scalar("cpus") if "cpus" in names else 0.0)
            stats.setdefault("mem_limit_bytes", int(limits.scalar("mem") * 1024 * 1024) if "mem" in names else 0)
            stats["timestamp"] = time.time()
            out.append({"framework_id": fw.framework_id, "executor_id": ex.executor_id,
                        "executor_name": ex.info.name or "", "source": ex.info.source or "",
                        "statistics": stats})
    return _with_jsonp(request, out)


def metrics(agent: Agent) -> dict[str, float]:
    c = agent.counters
    running = sum(1 for t in agent.tasks.values() if t.state == "TASK_RUNNING")
    staging = sum(1 for t in agent.tasks.values() if t.state == "TASK_STAGING")
    starting = sum(1 for t in agent.tasks.values() if t.state == "TASK_STARTING")
    killing = sum(1 for t in agent.tasks.values() if t.state == "TASK_KILLING")
    out: dict[str, float] = {
        "slave/registered": 1.0 if agent.registered else 0.0,
        "slave/uptime_secs": time.time() - agent.start_time,
        "slave/frameworks_active": float(len(agent.frameworks)),
        "slave/executors_running": float(sum(len(f.executors) for f in agent.frameworks.values())),
        "slave/executors_terminated": float(c["executors_terminated"]),
        "slave/tasks_running": float(running),
        "slave/tasks_staging": float(staging),
        "slave/tasks_starting": float(starting),
        "slave/tasks_killing": float(killing),
        "slave/tasks_finished": float(c["tasks_finished"]),
        "slave/tasks_failed": float(c["tasks_failed"]),
        "slave/tasks_killed": float(c["tasks_killed"]),
        "slave/tasks_lost": float(c["tasks_lost"]),
        "slave/valid_status_updates": float(c["status_updates"]),
        "slave/invalid_framework_messages": float(c["invalid_framework_messages"]),
        "slave/valid_framework_messages": float(c["valid_framework_messages"]),
    }
    for name in ("cpus", "mem", "disk", "gpus"):
        total = agent.total.scalar(name)
        used = agent.used.scalar(name)
        out[f"slave/{name}_total"] = total
        out[f"slave/{name}_used"] = used
        out[f"slave/{name}_percent"] = used / total if total else 0.0
    return out


async def metrics_snapshot(request: web.Request) -> web.Response:
    return _json(metrics(agent_of(request)))


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:  # never a traceback to the client
        logging.getLogger("mesos_nb.agent").exception("agent HTTP handler failed path=%s", request.path)
        return web.Response(status=500, text="Internal error; see the agent log.")


def make_app(agent: Agent) -> web.Application:
    app = web.Application(middlewares=[make_auth(agent.config, agent.http_credentials), _errors])
    app[AGENT_KEY] = agent
    r = app.router
    for p in ("/state", "/state.json", "/slave(1)/state", "/slave(1)/state.json"):
        r.add_get(p, state)
    r.add_get("/health", health)
    r.add_get("/slave(1)/health", health)
    add_files_routes(r)
    r.add_get("/monitor/statistics", monitor_statistics)
    r.add_get("/monitor/statistics.json", monitor_statistics)
    r.add_get("/metrics/snapshot", metrics_snapshot)
    r.add_post("/api/v1/executor", handle_executor)
    r.add_post("/slave(1)/api/v1/executor", handle_executor)
    return app


__all__ = ["make_app", "state_json", "metrics"]

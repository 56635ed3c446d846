"""The agent's HTTP endpoints (one aiohttp app per agent).

``/state`` (+ ``/slave(1)/state``, ``/state.json``), ``/health``, ``/files/{read,browse,
download,debug}``, ``/monitor/statistics``, ``/metrics/snapshot``. ``/files`` serves only
*attached* paths (each sandbox's real directory, its ``runs/latest`` link and the virtual
``/frameworks/<fw>/executors/<ex>/runs/latest``); the requested path is normalised first and
the resolved real path must stay inside the attached directory (symlinks included), so no
request can read outside a sandbox. Bad parameters get a 400 with a sentence.
"""

from __future__ import annotations

import grp
import json
import logging
import mimetypes
import os
import posixpath
import pwd
import stat
import time
from typing import TYPE_CHECKING, Any

import psutil
from aiohttp import web

from ..protocol.version import VERSION
from .app_key import AGENT_KEY, agent_of
from .attributes import attributes_dict
from .executor_api import handle_executor

if TYPE_CHECKING:
    from .agent import Agent, ExecutorEntry, FrameworkEntry, TaskEntry

READ_CAP = 16 * (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096)



def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")


def _bad(message: str) -> web.Response:
    return web.Response(status=400, text=message)


# ---------------------------------------------------------------------- /state
def _task_json(agent: Agent, t: TaskEntry) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": t.task_id, "name": t.info.name, "framework_id": t.framework_id,
        "executor_id": "" if not t.info.executor else t.executor_id,
        "slave_id": agent.agent_id, "state": t.state, "resources": t.resources.summary(),
        "statuses": [{"state": s, "timestamp": ts} for s, ts in t.statuses],
    }
    if t.info.labels is not None:
        d["labels"] = t.info.labels
    return d


def _executor_json(agent: Agent, ex: ExecutorEntry) -> dict[str, Any]:
    return {
        "id": ex.executor_id, "name": ex.info.name or "", "source": ex.info.source or "",
        "container": ex.container_id, "directory": ex.directory,
        "resources": ex.resources.summary(),
        "type": "DEFAULT" if ex.command_executor else (ex.info.type or "CUSTOM"),
        "tasks": [_task_json(agent, t) for t in ex.tasks.values()],
        "queued_tasks": [],
        "completed_tasks": [_task_json(agent, t) for t in ex.completed_tasks],
    }


def _framework_json(agent: Agent, fw: FrameworkEntry) -> dict[str, Any]:
    info = fw.info
    d: dict[str, Any] = {
        "id": fw.framework_id, "name": info.name, "user": info.user,
        "failover_timeout": info.failover_timeout, "checkpoint": info.checkpoint,
        "hostname": info.hostname or "",
        "executors": [_executor_json(agent, e) for e in fw.executors.values()],
        "completed_executors": [_executor_json(agent, e) for e in fw.completed_executors],
    }
    if info.principal:
        d["principal"] = info.principal
    if info.roles:
        d["roles"] = list(info.roles)
    else:
        d["role"] = info.role or "*"
    return d


def state_json(agent: Agent) -> dict[str, Any]:
    cfg = agent.config
    return {
        "version": VERSION,
        "build_date": "", "build_time": 0, "build_user": "",
        "start_time": agent.start_time,
        "id": agent.agent_id or "",
        "pid": agent.pid,
        "hostname": agent.hostname,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
        "resources": agent.total.summary(),
        "reserved_resources": {},
        "unreserved_resources": agent.total.summary(),
        "reserved_resources_full": {},
        "unreserved_resources_full": [],
        "attributes": attributes_dict(agent.attributes),
        "master_hostname": None,
        "flags": {
            "master": cfg.master, "port": str(agent.port), "work_dir": cfg.work_dir,
            "isolation": cfg.isolation, "hostname": agent.hostname,
            "executor_shutdown_grace_period": f"{cfg.executor_shutdown_grace_period:g}secs",
            **({"resources": cfg.resources} if cfg.resources else {}),
            **({"attributes": cfg.attributes} if cfg.attributes else {}),
        },
        "frameworks": [_framework_json(agent, f) for f in agent.frameworks.values()],
        "completed_frameworks": [_framework_json(agent, f) for f in agent.completed_frameworks.values()],
    }


# ---------------------------------------------------------------------- /files
class _Resolved:
    __slots__ = ("real", "root")

    def __init__(self, real: str, root: str) -> None:
        self.real = real
        self.root = root


def _normalize(path: str) -> str:
    if not path.startswith("/"):
        path = "/" + path
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def resolve(agent: Agent, path: str) -> tuple[int, _Resolved | None]:
    """(HTTP status, resolved) for a requested path: 200, 403 or 404."""
    if "\x00" in path:
        return 404, None
    norm = _normalize(path)
    files = agent.files
    prefix = norm
    rest = ""
    while True:
        root = files.get(prefix)
        if root is not None:
            break
        if prefix == "/":
            return 404, None
        prefix, tail = posixpath.split(prefix)
        rest = tail if not rest else tail + "/" + rest
    real_root = os.path.realpath(root)
    candidate = os.path.join(real_root, rest) if rest else real_root
    real = os.path.realpath(candidate)
    if real != real_root and not real.startswith(real_root + os.sep):
        return 403, None
    if not os.path.exists(real):
        return 404, None
    return 200, _Resolved(real, real_root)


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"Failed to parse {name}: '{raw}' is not an integer.") from None


def _with_jsonp(request: web.Request, obj: Any) -> web.Response:
    cb = request.query.get("jsonp")
    if cb:
        if not all(c.isalnum() or c in "_.$" for c in cb):
            return _bad("Invalid jsonp callback name.")
        return web.Response(text=f"{cb}({json.dumps(obj)});", content_type="text/javascript")
    return _json(obj)


async def files_read(request: web.Request) -> web.Response:
    agent = agent_of(request)
    path = request.query.get("path")
    if path is None:
        return _bad("Expecting 'path=value' in query.")
    offset = _int_param(request, "offset", 0)
    if offset < -1:
        return _bad(f"Negative offset provided: {offset}.")
    length = _int_param(request, "length", -1)
    if length < -1:
        return _bad(f"Negative length provided: {length}.")
    res = _resolve_or_raise(agent, path)
    if os.path.isdir(res.real):
        return _bad("Cannot read a directory.")
    try:
        with open(res.real, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset == -1:
                return _with_jsonp(request, {"data": "", "offset": size})
            if offset >= size:
                return _with_jsonp(request, {"data": "", "offset": offset})
            n = READ_CAP if length == -1 else min(length, READ_CAP)
            f.seek(offset)
            data = f.read(n)
    except PermissionError:
        raise web.HTTPForbidden(text="Access to this path is not allowed.") from None
    except OSError as e:
        raise web.HTTPNotFound(text=f"Failed to read '{path}': {e.strerror}.") from None
    return _with_jsonp(request, {"data": data.decode("utf-8", errors="replace"), "offset": offset})


def _mode_string(mode: int) -> str:
    return stat.filemode(mode)


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _file_info(virtual: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "path": virtual, "nlink": st.st_nlink, "size": st.st_size, "mtime": int(st.st_mtime),
        "mode": _mode_string(st.st_mode), "uid": _owner(st.st_uid), "gid": _group(st.st_gid),
    }


def _resolve_or_raise(agent: Agent, path: str) -> _Resolved:
    """An attached path's resolution, or the 403/404 that /files answers with."""
    code, res = resolve(agent, path)
    if code == 403:
        raise web.HTTPForbidden(text="Access to this path is not allowed.")
    if res is None:
        raise web.HTTPNotFound(text=f"Path '{path}' was not found.")
    return res


def _requested(request: web.Request) -> tuple[str, _Resolved] | web.Response:
    """The ``path`` query parameter and its resolution, or the 400 when it is missing (a
    forbidden or unknown path raises the 403/404)."""
    path = request.query.get("path")
    if path is None:
        return _bad("Expecting 'path=value' in query.")
    return path, _resolve_or_raise(agent_of(request), path)


async def files_browse(request: web.Request) -> web.Response:
    got = _requested(request)
    if isinstance(got, web.Response):
        return got
    path, res = got
    shown = _normalize(path)
    out = []
    try:
        if os.path.isdir(res.real):
            for name in sorted(os.listdir(res.real)):
                try:
                    st = os.lstat(os.path.join(res.real, name))
                except OSError:
                    continue
                out.append(_file_info(posixpath.join(shown, name), st))
        else:
            out.append(_file_info(shown, os.stat(res.real)))
    except PermissionError:
        raise web.HTTPForbidden(text="Access to this path is not allowed.") from None
    return _with_jsonp(request, out)


async def files_download(request: web.Request) -> web.StreamResponse:
    got = _requested(request)
    if isinstance(got, web.Response):
        return got
    _, res = got
    if os.path.isdir(res.real):
        return _bad("Cannot download a directory.")
    ctype = mimetypes.guess_type(res.real)[0] or "application/octet-stream"
    name = os.path.basename(res.real).replace('"', "")
    return web.FileResponse(res.real, headers={
        "Content-Type": ctype, "Content-Disposition": f'attachment; filename="{name}"',
    })


async def files_debug(request: web.Request) -> web.Response:
    agent = agent_of(request)
    return _json(dict(agent.files))


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
    app = web.Application(middlewares=[_errors])
    app[AGENT_KEY] = agent
    r = app.router
    for p in ("/state", "/state.json", "/slave(1)/state", "/slave(1)/state.json"):
        r.add_get(p, state)
    r.add_get("/health", health)
    r.add_get("/slave(1)/health", health)
    for name, handler in (("read", files_read), ("browse", files_browse),
                          ("download", files_download), ("debug", files_debug)):
        r.add_get(f"/files/{name}", handler)
        r.add_get(f"/files/{name}.json", handler)
    r.add_get("/monitor/statistics", monitor_statistics)
    r.add_get("/monitor/statistics.json", monitor_statistics)
    r.add_get("/metrics/snapshot", metrics_snapshot)
    r.add_post("/api/v1/executor", handle_executor)
    r.add_post("/slave(1)/api/v1/executor", handle_executor)
    return app


__all__ = ["make_app", "state_json", "resolve", "metrics"]

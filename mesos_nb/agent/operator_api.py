"""The agent's v1 operator API (``POST /api/v1``) and the v0 endpoints tools still call.

Media types follow ``src/slave/http.cpp``: requests are JSON, except ATTACH_CONTAINER_INPUT,
which must be a ``application/recordio`` stream of JSON records; replies are JSON, except
LAUNCH_NESTED_CONTAINER_SESSION and ATTACH_CONTAINER_OUTPUT, which stream RecordIO ProcessIO
records. Reads come from the Agent's in-memory state (the same data as ``/state``); the
nested-container calls go to :mod:`.nested`. Calls that are not built answer 501 with a
sentence. Also installs ``/flags``, ``/version``, ``/containers`` and the trailing-slash rule.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ..protocol import messages as m
from ..protocol import recordio
from ..protocol.http_calls import CallRefused, decode_call, media_types
from ..protocol.routing import trailing_slash
from ..protocol.version import VERSION
from . import files, safe_path
from . import http as v0
from .nested import HEARTBEAT_RECORD, NestedContainers, NestedError, SwitchboardSession

if TYPE_CHECKING:
    from .agent import Agent
    from .records import ExecutorEntry, TaskEntry

_enc = msgspec.json.Encoder()
NESTED_KEY = web.AppKey("nested", object)
HEARTBEAT_SECONDS = 30.0
SWITCHBOARD_DISABLED = "I/O switchboard server was disabled for this container"
STREAMING = {"LAUNCH_NESTED_CONTAINER_SESSION", "ATTACH_CONTAINER_OUTPUT"}
CALLS = {
    "GET_HEALTH", "GET_FLAGS", "GET_VERSION", "GET_METRICS", "GET_LOGGING_LEVEL", "SET_LOGGING_LEVEL",
    "LIST_FILES", "READ_FILE", "GET_STATE", "GET_CONTAINERS", "GET_FRAMEWORKS", "GET_EXECUTORS", "GET_TASKS",
    "GET_AGENT", "GET_OPERATIONS", "GET_RESOURCE_PROVIDERS", "LAUNCH_NESTED_CONTAINER",
    "WAIT_NESTED_CONTAINER", "KILL_NESTED_CONTAINER", "REMOVE_NESTED_CONTAINER",
    "LAUNCH_NESTED_CONTAINER_SESSION", "ATTACH_CONTAINER_INPUT", "ATTACH_CONTAINER_OUTPUT",
    "LAUNCH_CONTAINER", "WAIT_CONTAINER", "KILL_CONTAINER", "REMOVE_CONTAINER", "ADD_RESOURCE_PROVIDER_CONFIG",
    "UPDATE_RESOURCE_PROVIDER_CONFIG", "REMOVE_RESOURCE_PROVIDER_CONFIG", "MARK_RESOURCE_PROVIDER_GONE",
    "PRUNE_IMAGES",
}
NOT_BUILT = {"LAUNCH_NESTED_CONTAINER", "LAUNCH_CONTAINER", "SET_LOGGING_LEVEL", "ADD_RESOURCE_PROVIDER_CONFIG",
             "UPDATE_RESOURCE_PROVIDER_CONFIG", "REMOVE_RESOURCE_PROVIDER_CONFIG", "MARK_RESOURCE_PROVIDER_GONE",
             "PRUNE_IMAGES"}


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)


def _json(body: Any) -> web.Response:
    return web.Response(body=_enc.encode(body), content_type="application/json")


def _id(value: str) -> dict[str, str]:
    return {"value": value}


# ---------------------------------------------------------------------- state in v1 shapes
def _task(agent: Agent, t: TaskEntry, container_id: str | None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": t.info.name, "task_id": _id(t.task_id), "framework_id": _id(t.framework_id),
        "executor_id": _id(t.executor_id), "agent_id": _id(agent.agent_id or ""), "state": t.state,
        "resources": m.to_builtins(t.info.resources),
        "statuses": [{"task_id": _id(t.task_id), "state": s, "timestamp": ts,
                      **({"container_status": {"container_id": _id(container_id)}} if container_id else {})}
                     for s, ts in t.statuses],
    }
    for key in ("labels", "discovery", "container", "health_check"):
        value = getattr(t.info, key, None)
        if value is not None:
            d[key] = m.to_builtins(value)
    return d


def _executor_info(ex: ExecutorEntry) -> dict[str, Any]:
    info = m.to_builtins(ex.info)
    info.setdefault("framework_id", _id(ex.framework_id))
    return info


def get_tasks(agent: Agent) -> dict[str, Any]:
    launched, terminated, completed = [], [], []
    for fw in list(agent.frameworks.values()) + list(agent.completed_frameworks.values()):
        for ex in list(fw.executors.values()) + list(fw.completed_executors):
            for t in ex.tasks.values():
                (terminated if m.is_terminal(t.state) else launched).append(_task(agent, t, ex.container_id))
            completed.extend(_task(agent, t, ex.container_id) for t in ex.completed_tasks)
    return {"launched_tasks": launched, "terminated_tasks": terminated, "completed_tasks": completed}


def get_executors(agent: Agent) -> dict[str, Any]:
    live, done = [], []
    for fw in agent.frameworks.values():
        live.extend({"executor_info": _executor_info(ex)} for ex in fw.executors.values())
        done.extend({"executor_info": _executor_info(ex)} for ex in fw.completed_executors)
    return {"executors": live, "completed_executors": done}


def get_frameworks(agent: Agent) -> dict[str, Any]:
    def info(fw: Any) -> dict[str, Any]:
        return {"framework_info": m.to_builtins(fw.info)}

    return {"frameworks": [info(f) for f in agent.frameworks.values()],
            "completed_frameworks": [info(f) for f in agent.completed_frameworks.values()]}


def containers(agent: Agent, v1: bool) -> list[dict[str, Any]]:
    out = []
    for fw in agent.frameworks.values():
        for ex in fw.executors.values():
            c = ex.container
            if c is None or c.exited:
                continue
            status = {"container_id": _id(ex.container_id), "executor_pid": c.pid}
            if v1:
                out.append({"framework_id": _id(fw.framework_id), "executor_id": _id(ex.executor_id),
                            "executor_name": ex.info.name or "", "container_id": _id(ex.container_id),
                            "container_status": status})
            else:
                out.append({"framework_id": fw.framework_id, "executor_id": ex.executor_id,
                            "executor_name": ex.info.name or "", "source": ex.info.source or "",
                            "container_id": ex.container_id, "status": status})
    return out


def _file_info(path: str, st: os.stat_result) -> dict[str, Any]:
    return {"path": path, "nlink": st.st_nlink, "size": st.st_size, "mtime": {"nanoseconds": st.st_mtime_ns},
            "mode": st.st_mode, "uid": files._owner(st.st_uid), "gid": files._group(st.st_gid)}


def agent_info(agent: Agent) -> dict[str, Any]:
    return {"hostname": agent.hostname, "port": agent.port, "id": _id(agent.agent_id or ""),
            "resources": m.to_builtins(agent.total.to_proto()),
            **({"attributes": m.to_builtins(agent.attributes)} if agent.attributes else {})}


# ---------------------------------------------------------------------- the handler
class AgentOperatorApi:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.nested = NestedContainers(agent)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(trailing_slash)
        app[NESTED_KEY] = self.nested
        r = app.router
        for prefix in ("", "/slave(1)"):
            r.add_post(prefix + "/api/v1", self.handle)
            r.add_get(prefix + "/flags", self.flags)
            r.add_get(prefix + "/containers", self.containers_v0)
        r.add_get("/version", self.version)

        async def _cleanup(_app: web.Application) -> None:
            self.nested.destroy_all()

        app.on_cleanup.append(_cleanup)

    async def flags(self, request: web.Request) -> web.Response:
        return _json({"flags": v0.state_json(self.agent)["flags"]})

    async def version(self, request: web.Request) -> web.Response:
        return _json({"version": VERSION, "build_user": "mesos-nb", "build_date": "", "build_time": 0})

    async def containers_v0(self, request: web.Request) -> web.Response:
        return _json(containers(self.agent, v1=False))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ctypes = media_types(request.headers.get("Content-Type"))
        if not ctypes:
            return _text(400, "Expecting 'Content-Type' to be present")
        ctype = next(iter(ctypes))
        if ctype == "application/recordio":
            if "application/json" not in media_types(request.headers.get("Message-Content-Type")):
                return _text(400, "Expecting 'Message-Content-Type' of application/json for a recordio body")
            return await self._attach_input(request)
        if ctype != "application/json":
            return _text(415, f"Expecting 'Content-Type' of application/json or application/recordio, got '{ctype}'")
        try:
            t, call = decode_call(await request.read(), "agent", CALLS)
        except CallRefused as e:
            return _text(e.status, e.message)
        if t == "ATTACH_CONTAINER_INPUT":
            return _text(415, "Expecting 'Content-Type' of application/recordio for ATTACH_CONTAINER_INPUT")
        field = t.lower()
        payload = call.get(field)
        accept = media_types(request.headers.get("Accept"))
        wants_stream = "application/recordio" in accept and not accept & {"application/json", "*/*"}
        if wants_stream and t not in STREAMING:
            return _text(406, f"Streaming ('application/recordio') is not supported for {t}")
        if accept and not accept & {"application/json", "application/recordio", "*/*", "application/*"}:
            return _text(406, "Expecting 'Accept' to allow 'application/json' or 'application/recordio'")
        if t in NOT_BUILT:
            return _text(501, f"{t} is not supported by mesos-nb yet")
        needs = {"LIST_FILES", "READ_FILE", "WAIT_NESTED_CONTAINER", "KILL_NESTED_CONTAINER",
                 "REMOVE_NESTED_CONTAINER", "WAIT_CONTAINER", "KILL_CONTAINER", "REMOVE_CONTAINER",
                 "LAUNCH_NESTED_CONTAINER_SESSION", "ATTACH_CONTAINER_OUTPUT", "GET_METRICS"}
        if t in needs and not isinstance(payload, dict):
            return _text(400, f"Failed to validate agent::Call: Expecting '{field}' to be present")
        try:
            if t == "LAUNCH_NESTED_CONTAINER_SESSION":
                return await self._session(request, payload)
            if t == "ATTACH_CONTAINER_OUTPUT":
                return await self._attach_output(request, payload)
            if t in ("WAIT_NESTED_CONTAINER", "WAIT_CONTAINER"):
                status = await self.nested.wait(payload.get("container_id"))
                return _json({"type": t, field: {"exit_status": status}})
            if t in ("KILL_NESTED_CONTAINER", "KILL_CONTAINER"):
                sig = payload.get("signal", signal.SIGKILL)
                if not isinstance(sig, int) or isinstance(sig, bool) or not 0 < sig < signal.NSIG:
                    return _text(400, "Expecting 'signal' to be a signal number")
                self.nested.kill(payload.get("container_id"), sig)
                return web.Response(status=200)
            if t in ("REMOVE_NESTED_CONTAINER", "REMOVE_CONTAINER"):
                if self.nested.find(payload.get("container_id")) is not None:
                    return _text(500, "Container is still running")
                return web.Response(status=200)
            return await self._read(t, field, payload)
        except NestedError as e:
            return _text(e.status, str(e))

    async def _read(self, t: str, field: str, payload: Any) -> web.Response:
        agent = self.agent
        if t == "GET_HEALTH":
            return _json({"type": t, field: {"healthy": True}})
        if t == "GET_VERSION":
            return _json({"type": t, field: {"version_info": {"version": VERSION, "build_user": "mesos-nb"}}})
        if t == "GET_FLAGS":
            flags = v0.state_json(agent)["flags"]
            return _json({"type": t, field: {"flags": [{"name": k, "value": str(x)} for k, x in flags.items()]}})
        if t == "GET_METRICS":
            return _json({"type": t, field: {"metrics": [{"name": k, "value": x}
                                                         for k, x in v0.metrics(agent).items()]}})
        if t == "GET_LOGGING_LEVEL":
            return _json({"type": t, field: {"level": 0}})
        if t == "GET_STATE":
            return _json({"type": t, field: {"get_tasks": get_tasks(agent), "get_executors": get_executors(agent),
                                             "get_frameworks": get_frameworks(agent)}})
        if t == "GET_CONTAINERS":
            return _json({"type": t, field: {"containers": containers(agent, v1=True)}})
        if t == "GET_FRAMEWORKS":
            return _json({"type": t, field: get_frameworks(agent)})
        if t == "GET_EXECUTORS":
            return _json({"type": t, field: get_executors(agent)})
        if t == "GET_TASKS":
            return _json({"type": t, field: get_tasks(agent)})
        if t == "GET_AGENT":
            return _json({"type": t, field: {"agent_info": agent_info(agent)}})
        if t == "GET_OPERATIONS":
            return _json({"type": t, field: {}})
        if t == "GET_RESOURCE_PROVIDERS":
            return _json({"type": t, field: {}})
        return self._files(t, field, payload)

    def _files(self, t: str, field: str, payload: dict[str, Any]) -> web.Response:
        path = payload.get("path")
        if not isinstance(path, str):
            return _text(400, f"Failed to validate agent::Call: Expecting '{field}.path' to be present")
        found = files.split_attached(self.agent.files, path)
        if found is None:
            return _text(404, f"No such file or directory: '{path}'")
        try:  # opened beneath the attached directory without a race (safe_path), as /files does
            fd = safe_path.open_beneath(found[0], found[1], path)
        except safe_path.PathError as e:
            return _text(e.status, f"Cannot access '{path}'" if e.status == 403 else f"No such file or directory: '{path}'")
        try:
            what, st = safe_path.kind(fd)
            if t == "LIST_FILES":
                if what != "dir":
                    infos = [_file_info(path, st)]
                else:
                    infos = [_file_info(path.rstrip("/") + "/" + name, est) for name, est in safe_path.list_dir(fd)]
                return _json({"type": t, field: {"file_infos": infos}})
            offset, length = payload.get("offset", 0), payload.get("length")
            if not isinstance(offset, int) or offset < 0 or (length is not None and (not isinstance(length, int)
                                                                                     or length < 0)):
                return _text(400, "Expecting 'offset' and 'length' to be non-negative integers")
            if what == "dir":
                return _text(400, "Cannot read a directory")
            if what != "file":
                return _text(403, f"Cannot access '{path}'")
            size = st.st_size
            data = os.pread(fd, min(length if length is not None else files.READ_CAP, files.READ_CAP), offset)
        finally:
            os.close(fd)
        return _json({"type": t, field: {"size": size, "data": base64.b64encode(data).decode()}})

    # ------------------------------------------------------------------ streams
    async def _stream_out(self, request: web.Request, session: Any, stream: Any, on_close: Any = None) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/recordio",
                                                       "Message-Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def beat() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT_SECONDS)
                stream.push(HEARTBEAT_RECORD)

        beater = asyncio.get_running_loop().create_task(beat())
        try:
            await stream.pump(request, resp)
        finally:
            beater.cancel()
            if on_close is not None and not session.output_done.is_set():
                on_close()
        return resp

    async def _session(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        container = payload.get("container")
        tty = isinstance(container, dict) and isinstance(container.get("tty_info"), dict)
        session = await self.nested.launch(payload.get("container_id"), payload.get("command"), tty)
        stream = session.add_output()
        # The session dies with the connection that launched it, as in Mesos.
        return await self._stream_out(request, session, stream, on_close=session.kill)

    async def _attach_output(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        cid = payload.get("container_id")
        session = self.nested.find(cid)
        if session is None:
            if self.nested.without_tty(cid):  # Mesos' exact words; the CLI keys on them
                return _text(500, SWITCHBOARD_DISABLED)
            return _text(404, "Container cannot be found")
        if isinstance(session, SwitchboardSession):
            return await self._stream_out(request, session, await session.connect_output())
        return await self._stream_out(request, session, session.add_output())

    async def _attach_input(self, request: web.Request) -> web.Response:
        dec = recordio.Decoder(max_record=1024 * 1024)
        session = None
        try:
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                for rec in dec.feed(chunk):
                    msg = msgspec.json.decode(rec)
                    body = msg.get("attach_container_input") if isinstance(msg, dict) else None
                    if not isinstance(body, dict):
                        return _text(400, "Expecting 'attach_container_input' in every record")
                    if session is None:
                        if msg.get("type") != "ATTACH_CONTAINER_INPUT" or body.get("type") != "CONTAINER_ID":
                            return _text(400, "The first record must be an ATTACH_CONTAINER_INPUT with CONTAINER_ID")
                        session = self.nested.find(body.get("container_id"))
                        if session is None:
                            if self.nested.without_tty(body.get("container_id")):
                                return _text(500, SWITCHBOARD_DISABLED)
                            return _text(404, "Container cannot be found")
                        if session.input_attached:
                            session = None
                            return _text(409, "Another input is already attached to this container")
                        session.input_attached = True
                        if isinstance(session, SwitchboardSession):
                            await session.open_input()
                        continue
                    self._input_record(session, body.get("process_io"))
        except (recordio.RecordIOError, msgspec.DecodeError, ValueError, TypeError) as e:
            return _text(400, f"Bad ATTACH_CONTAINER_INPUT record: {e}")
        except OSError as e:
            return _text(500, f"Failed to write to the container's input: {e}")
        except NestedError as e:
            return _text(e.status, str(e))
        finally:
            if session is not None:
                session.input_attached = False
                if isinstance(session, SwitchboardSession):
                    session.close_input()
        if session is None:
            return _text(400, "Expecting an ATTACH_CONTAINER_INPUT record with CONTAINER_ID")
        return web.Response(status=200)

    @staticmethod
    def _input_record(session: Any, pio: Any) -> None:
        if not isinstance(pio, dict):
            raise ValueError("expecting 'process_io'")
        if pio.get("type") == "DATA":
            data = pio.get("data") or {}
            raw = base64.b64decode(data.get("data", ""), validate=True)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                session.write_stdin(raw)
        elif pio.get("type") == "CONTROL":
            control = pio.get("control") or {}
            if control.get("type") == "TTY_INFO":
                size = (control.get("tty_info") or {}).get("window_size") or {}
                rows, cols = size.get("rows"), size.get("columns")
                if isinstance(rows, int) and isinstance(cols, int) and 0 <= rows < 65536 and 0 <= cols < 65536:
                    session.resize(rows, cols)
        else:
            raise ValueError(f"unknown process_io type {pio.get('type')!r}")


def install(agent: Agent, app: web.Application) -> None:
    AgentOperatorApi(agent).install(app)


__all__ = ["install", "AgentOperatorApi"]

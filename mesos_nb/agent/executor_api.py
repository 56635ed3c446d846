"""The v1 executor HTTP API on the agent: ``POST /api/v1/executor`` (reference §2).

Calls: SUBSCRIBE (answered with a 200 chunked RecordIO stream of events), UPDATE, MESSAGE,
HEARTBEAT (202). Events sent on the stream: SUBSCRIBED, LAUNCH, LAUNCH_GROUP, KILL,
ACKNOWLEDGED, MESSAGE, SHUTDOWN, ERROR, HEARTBEAT. There is no ``Mesos-Stream-Id``.

Validation order follows Mesos: 503 while recovering; 401 without a valid executor token
when ``--authenticate-http-executors`` is on (auth.py); 415 wrong Content-Type; 406 an
``Accept`` without JSON; 413 body over the limit; 400 malformed JSON / missing ids / unknown
call / "Framework cannot be found" / "Executor cannot be found" / "Not a valid UUID"; 403 a
non-SUBSCRIBE call from an executor that is not subscribed, or a token of another container. A rejected call changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from mesos_nb.protocol import recordio
from mesos_nb.protocol.messages import ExecutorCall, ExecutorSubscribe

from .app_key import agent_of
from .auth import executor_token_container

if TYPE_CHECKING:
    from .agent import Agent, ExecutorEntry

MAX_BODY = 4 * 1024 * 1024
CALL_TYPES = frozenset({"SUBSCRIBE", "UPDATE", "MESSAGE", "HEARTBEAT"})
HEARTBEAT_INTERVAL = 30 * 60.0


_decoder = msgspec.json.Decoder(ExecutorCall)
_encoder = msgspec.json.Encoder()


class ExecutorStream:
    """One subscribed executor's event stream (RecordIO records queued, written by the handler)."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []
        self.wake = asyncio.Event()
        self.closed = False

    def send(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        self.queue.append(recordio.encode(_encoder.encode(event)))
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


async def pump(stream: ExecutorStream, write: Callable[[bytes], Awaitable[None]],
               heartbeat: float = HEARTBEAT_INTERVAL) -> None:
    """Write the stream's records as they come, a HEARTBEAT after ``heartbeat`` idle seconds,
    until it is closed.

    Why not ``asyncio.wait_for(stream.wake.wait(), heartbeat)``: on Python < 3.12 wait_for
    runs the wait in a task of its own, and when that task finishes in the same loop turn in
    which this one is cancelled, wait_for returns its result and drops the cancellation: the
    handler would go on serving a stream that the agent meant to stop. ``asyncio.wait`` never
    swallows a cancellation and never cancels what it waits on; the one waiter is kept until
    it fires and cancelled on the way out."""
    waiter: asyncio.Future[Any] | None = None
    try:
        while True:
            if stream.queue:
                data = b"".join(stream.queue)
                stream.queue.clear()
                await write(data)
                continue
            if stream.closed:
                return
            if waiter is None or waiter.done():
                stream.wake.clear()
                waiter = asyncio.ensure_future(stream.wake.wait())
            done, _ = await asyncio.wait((waiter,), timeout=heartbeat)
            if not done:
                stream.send({"type": "HEARTBEAT"})
    finally:
        if waiter is not None:
            waiter.cancel()


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)


def _accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("application/json", "application/*", "*/*", "application/recordio"):
            return True
    return False


def parse_call(body: bytes) -> ExecutorCall | str:
    """The call, or the 400 message saying what is wrong with it."""
    try:
        call = _decoder.decode(body)
    except msgspec.ValidationError as e:
        return f"Failed to validate executor::Call: {e}"
    except msgspec.DecodeError as e:
        return f"Failed to parse body into JSON: {e}"
    if call.type is None:
        return "Expecting 'type' to be present"
    if call.type not in CALL_TYPES:
        return f"Unknown or unsupported executor call type '{call.type}'"
    if call.executor_id is None or not call.executor_id.value:
        return "Expecting 'executor_id' to be present"
    if call.framework_id is None or not call.framework_id.value:
        return "Expecting 'framework_id' to be present"
    if call.type == "SUBSCRIBE" and call.subscribe is None:
        return "Expecting 'subscribe' to be present"
    if call.type == "UPDATE":
        if call.update is None:
            return "Expecting 'update' to be present"
        status = call.update.status
        if status.uuid is None or len(status.uuid) != 16:
            return "Not a valid UUID"
        if status.state == "TASK_STAGING":
            return "Received TASK_STAGING from executor"
        if status.source is not None and status.source != "SOURCE_EXECUTOR":
            return f"Received wrong source {status.source} (expecting SOURCE_EXECUTOR)"
        if status.executor_id is not None and status.executor_id.value != call.executor_id.value:
            return "ExecutorID in Call and TaskStatus do not match"
    if call.type == "MESSAGE" and call.message is None:
        return "Expecting 'message' to be present"
    return call


async def handle_executor(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    if agent.recovering:
        return _text(503, "Agent has not finished recovery")
    token_container = None
    if agent.executor_key is not None:
        token_container = executor_token_container(agent.executor_key, request.headers.get("Authorization"))
        if token_container is None:
            return web.Response(status=401, text="Executor authentication failed: a valid "
                                "'Authorization: Bearer $MESOS_EXECUTOR_AUTHENTICATION_TOKEN' is required",
                                headers={"WWW-Authenticate": 'Bearer realm="mesos-agent-executor"'})
    if request.content_type != "application/json":
        return _text(415, f"Expecting 'Content-Type' of application/json (got '{request.content_type}')")
    accept = request.headers.get("Accept", "")
    if accept and not _accepts_json(accept):
        return _text(406, "Expecting 'Accept' to allow application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _text(413, f"Request body of {request.content_length} bytes exceeds the limit of {MAX_BODY} bytes")
    try:
        body = await request.content.read(MAX_BODY + 1)
    except (asyncio.IncompleteReadError, ConnectionError):
        return _text(400, "Incomplete request body")
    if len(body) > MAX_BODY:
        return _text(413, f"Request body exceeds the limit of {MAX_BODY} bytes")
    call = parse_call(body)
    if isinstance(call, str):
        return _text(400, call)
    if call.type == "HEARTBEAT":
        return web.Response(status=202)
    assert call.framework_id is not None and call.executor_id is not None
    fw = agent.frameworks.get(call.framework_id.value)
    if fw is None:
        return _text(400, "Framework cannot be found")
    ex = fw.executors.get(call.executor_id.value)
    if ex is None or ex.command_executor:
        return _text(400, "Executor cannot be found")
    if token_container is not None and token_container != ex.container_id:
        return _text(403, f"The executor token is for container '{token_container}', not for executor "
                          f"'{ex.executor_id}' (container '{ex.container_id}')")
    if call.type == "SUBSCRIBE":
        assert call.subscribe is not None
        return await _subscribe(agent, ex, call.subscribe, request)
    if ex.stream is None:
        return _text(403, "Executor is not subscribed")
    if call.type == "UPDATE":
        assert call.update is not None
        err = agent.executor_update(ex, call.update.status)
        if err:
            return _text(400, err)
        return web.Response(status=202)
    assert call.message is not None
    agent.executor_message(ex, call.message.data)
    return web.Response(status=202)


async def _subscribe(agent: Agent, ex: ExecutorEntry, sub: ExecutorSubscribe,
                     request: web.Request) -> web.StreamResponse:
    if ex.state in ("TERMINATING", "TERMINATED"):
        return _text(400, "Executor is terminating")
    stream = ExecutorStream()
    err = agent.executor_subscribed(ex, stream, sub)
    if err:
        return _text(400, err)
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        await pump(stream, resp.write)
    except (ConnectionResetError, asyncio.CancelledError, RuntimeError, OSError):
        pass
    finally:
        stream.closed = True
        agent.executor_disconnected(ex, stream)
    try:
        await resp.write_eof()
    except Exception:
        pass
    return resp


__all__ = ["handle_executor", "parse_call", "pump", "ExecutorCall", "ExecutorStream", "MAX_BODY"]

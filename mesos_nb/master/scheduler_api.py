"""The v1 scheduler API's HTTP end (``POST /api/v1/scheduler``): the transport checks Mesos
makes (Content-Type, Accept, a known ``type`` with its payload, the framework and its
``Mesos-Stream-Id``), then one :class:`~mesos_nb.master.core.MasterCore` call with ``now``; a
SUBSCRIBE holds the framework's RecordIO stream open until it ends.

A mixin of :class:`~mesos_nb.master.server.MasterServer` (the handlers are its methods, ``self``
is the server), so that the shell module keeps lifecycle, effects and timers and the scheduler
calls have room here; it names what it needs of the server below and never imports it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from ..protocol import messages as m
from ..protocol import recordio
from ..protocol.http_calls import CallRefused, accepts_json, check_json_content_type
from . import big_calls
from .connections import Stream, basic_principal
from .connections import text_response as _text
from .core import CallError
from .security import PRINCIPAL

if TYPE_CHECKING:
    from .core import MasterCore
    from .outbox import Outbox
    from .security import Guard

log = logging.getLogger("mesos_nb.master")
_PAYLOAD_REQUIRED = frozenset(("ACCEPT", "DECLINE", "KILL", "SHUTDOWN", "ACKNOWLEDGE", "RECONCILE", "MESSAGE",
                               "UPDATE_FRAMEWORK"))  # calls whose body field must be present


class SchedulerApi:
    """``handle_scheduler`` and the SUBSCRIBE stream, mixed into the server."""

    core: MasterCore
    guard: Guard
    outbox: Outbox
    streams: dict[str, Stream]  # framework id -> its current stream
    streams_by_id: dict[str, Stream]  # stream id -> stream (old ones too, until closed)

    if TYPE_CHECKING:
        def flush(self) -> None: ...

    async def handle_scheduler(self, request: web.Request) -> web.StreamResponse:
        try:
            check_json_content_type(request.headers.get("Content-Type"))
        except CallRefused as e:
            return _text(e.status, e.message)
        body = await request.read()
        try:
            call = await big_calls.decode_call(body)
        except m.ProtocolError as e:
            return _text(400, f"Failed to parse body into Call: {e}")
        if call.type is None:
            return _text(400, "Expecting 'type' to be present")
        if call.type == "UNKNOWN":
            return _text(501, "Received an UNKNOWN call")
        if call.type not in m.CALL_TYPES:
            return _text(400, f"Failed to parse body into Call: unknown call type '{call.type}'")
        if call.type == "SUBSCRIBE":
            return await self._subscribe(request, call)
        if call.framework_id is None:
            return _text(400, "Expecting 'framework_id' to be present")
        payload_field = call.type.lower()
        if call.type in _PAYLOAD_REQUIRED and getattr(call, payload_field, None) is None:
            return _text(400, f"Expecting '{payload_field}' to be present")
        fid = call.framework_id.value
        fw = self.core.frameworks.get(fid)
        if fw is None:
            return _text(400, "Framework cannot be found")
        refused = self.guard.check_framework_call(request.get(PRINCIPAL), fw)
        if refused is not None:
            return _text(403, refused)
        if not fw.connected:
            return _text(403, "Framework is not subscribed")
        sid = request.headers.get("Mesos-Stream-Id")
        if sid is None:
            return _text(400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
        if sid != fw.stream_id:
            return _text(400, f"The stream ID '{sid}' included in this request didn't match the stream ID currently associated with framework ID {fid}")
        now = time.time()
        core = self.core
        try:
            t = call.type
            if t == "ACCEPT":
                await big_calls.run_steps(self, core.accept_steps(fid, call.accept, now))
            elif t == "DECLINE":
                await big_calls.run_steps(self, big_calls.decline_steps(core, fid, call.decline, now))
            elif t == "ACKNOWLEDGE":
                core.acknowledge(fid, call.acknowledge, now)
            elif t == "KILL":
                core.kill(fid, call.kill, now)
            elif t == "REVIVE":
                core.revive(fid, call.revive.roles if call.revive else None)
            elif t == "SUPPRESS":
                core.suppress(fid, call.suppress.roles if call.suppress else None)
            elif t == "RECONCILE":
                await big_calls.run_steps(self, core.reconcile_steps(fid, call.reconcile, now))
            elif t == "MESSAGE":
                core.framework_message(fid, call.message)
            elif t == "SHUTDOWN":
                core.shutdown_executor(fid, call.shutdown)
            elif t == "TEARDOWN":
                await big_calls.run_steps(self, core.teardown_steps(fid, now))
            elif t == "UPDATE_FRAMEWORK":
                core.update_framework(fid, m.to_builtins(call.update_framework), now)
                return web.Response(status=200)
            elif t in ("ACCEPT_INVERSE_OFFERS", "DECLINE_INVERSE_OFFERS"):
                core.answer_inverse_offers(fid, getattr(call, t.lower()), t.startswith("ACCEPT"), now)
            else:
                pass  # REQUEST, operation acks/reconciliation: accepted, nothing to do
        except CallError as e:
            return _text(e.status, e.message)
        finally:
            self.flush()
        if t in ("ACCEPT", "ACKNOWLEDGE"):  # RUN_TASK / the ACK that frees TASK_RUNNING is on the launch path,
            await asyncio.sleep(0)  # not the 202: the channel writer sends it first
        return web.Response(status=202)

    async def _subscribe(self, request: web.Request, call: m.Call) -> web.StreamResponse:
        if "Mesos-Stream-Id" in request.headers:
            return _text(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
        if call.subscribe is None:
            return _text(400, "Expecting 'subscribe' to be present")
        info_id = call.subscribe.framework_info.id
        top = call.framework_id
        if (info_id is None) != (top is None) or (info_id is not None and top is not None and info_id.value != top.value):
            return _text(400, "'framework_id' differs from 'subscribe.framework_info.id'")
        if not accepts_json(request.headers.get("Accept")):
            return _text(406, "Expecting 'Accept' to allow 'application/json'")
        if self.outbox.error is not None:
            # Admitting a framework needs a registry write; answer now rather than hold the stream.
            return _text(503, f"The master's registry is not writable ({self.outbox.error}); retry later")
        stream_id = str(uuid.uuid4())
        if self.guard.config.authenticate_frameworks:
            principal = request.get(PRINCIPAL)
        else:  # authentication off: the name is only recorded
            principal = basic_principal(request.headers.get("Authorization"))
        existing = self.core.frameworks.get(info_id.value) if info_id is not None else None
        refused = self.guard.check_subscribe(principal, call.subscribe.framework_info, existing)
        if refused is not None:
            log.warning("subscribe refused principal=%s framework=%s: %s", principal,
                        info_id.value if info_id else None, refused[1])
            return _text(*refused)
        try:
            fw, rest = self.core.subscribe_steps(call.subscribe, stream_id, time.time(), principal)
        except CallError as e:
            self.flush()
            if e.message == "Framework has been removed":
                return await self._error_stream(request, e.message)
            return _text(e.status, e.message)
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/json", "Mesos-Stream-Id": stream_id, "Cache-Control": "no-cache"},
        )
        resp.enable_chunked_encoding()
        stream = Stream(fw.id, stream_id)
        self.streams[fw.id] = stream
        self.streams_by_id[stream_id] = stream
        self.flush()
        failover = asyncio.get_running_loop().create_task(big_calls.paced_steps(self, stream, rest))
        try:
            await resp.prepare(request)
            await stream.pump(request, resp)
        finally:
            failover.cancel()
            if self.streams.get(fw.id) is stream:
                del self.streams[fw.id]
            self.streams_by_id.pop(stream_id, None)
            await big_calls.run_steps(self, self.core.disconnect_steps(fw.id, stream_id, time.time()))
            self.flush()
        return resp

    async def _error_stream(self, request: web.Request, message: str) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(recordio.encode(m.encode(m.Event(type="ERROR", error=m.Error(message=message)))))
        await resp.write_eof()
        return resp



"""The master's imperative shell: HTTP, the agent channel, timers.

It owns the sockets, the clock, random ids and the registry, and nothing else: every input is
handed to :class:`~mesos_nb.master.core.MasterCore` and the effects it queues are carried out
here by an :class:`~mesos_nb.master.outbox.Outbox` (registry writes, retried while they fail;
then subscription streams and agent channels). Allocation runs every ``allocation_interval``
and, batched, soon after anything that frees or adds resources.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from ..protocol import channel as ch
from ..protocol import event_loop, recordio
from ..protocol import messages as m
from ..protocol.http_calls import CallRefused, accepts_json, check_json_content_type
from ..protocol.routing import add_routes
from ..protocol.tls import server_context, server_settings
from ..protocol.version import VERSION as __version__
from . import big_calls, turn_budget
from .allocator import HierarchicalDRFAllocator
from .connections import Channel, Stream, basic_principal, ip_as_uint32
from .core import CallError, MasterCore
from .effects import EndStream, ToAgent, ToChannel, ToFramework
from .ha import Leadership, fail_stop
from .operator_api import OperatorApi
from .outbox import Outbox
from .partitions import (
    AGENT_PING_TIMEOUT,
    MAX_AGENT_PING_TIMEOUTS,
    REGISTRY_MAX_AGENT_AGE,
    REGISTRY_MAX_AGENT_COUNT,
    PartitionConfig,
)
from .readonly import ReadOnlyViews
from .registry import NullRegistry, Registry
from .registry_sqlite import SqliteRegistry
from .security import PRINCIPAL, Guard, SecurityConfig

log = logging.getLogger("mesos_nb.master")
_PAYLOAD_REQUIRED = frozenset(("ACCEPT", "DECLINE", "KILL", "SHUTDOWN", "ACKNOWLEDGE", "RECONCILE", "MESSAGE",
                               "UPDATE_FRAMEWORK"))  # calls whose body field must be present

MAX_BODY = 16 * 1024 * 1024


@dataclass
class MasterConfig:
    host: str = "127.0.0.1"
    port: int = m.DEFAULT_MASTER_PORT
    hostname: str | None = None
    work_dir: str | None = None
    allocation_interval: float = 1.0
    # Mesos --[no-]filter_gpu_resources: GPU agents offered only to GPU_RESOURCES frameworks
    filter_gpu_resources: bool = True
    heartbeat_interval: float = m.DEFAULT_HEARTBEAT_INTERVAL
    agent_ping_timeout: float = AGENT_PING_TIMEOUT
    max_agent_ping_timeouts: int = MAX_AGENT_PING_TIMEOUTS
    agent_secret: str | None = None
    security: SecurityConfig | None = None
    tls_cert: str | None = None  # else LIBPROCESS_SSL_* when LIBPROCESS_SSL_ENABLED
    tls_key: str | None = None
    tls_ca: str | None = None
    agent_http_credential: str | None = None  # FILE: what the master presents to agents' read endpoints

    # --zk mode (ha.py): contend for leadership, registry in ZooKeeper
    zk: str | None = None
    quorum: int | None = None
    zk_session_timeout: float = 10.0
    # agents recovered after a failover have this long to re-register (Mesos default 10 min)
    agent_reregister_timeout: float = 600.0
    registry_max_agent_age: float = REGISTRY_MAX_AGENT_AGE
    registry_max_agent_count: int = REGISTRY_MAX_AGENT_COUNT


class MasterServer:
    """Implements :class:`~mesos_nb.master.view.MasterView` for the read side."""

    exit_on_fail_stop = True

    def __init__(self, config: MasterConfig | None = None, registry: Registry | None = None) -> None:
        self.config = config or MasterConfig()
        self.master_id = str(uuid.uuid4())
        c = self.config
        self.leadership: Leadership | None = Leadership(self) if c.zk else None
        self.leading = self.leadership is None  # a follower serves redirects only
        if registry is None:
            if c.work_dir and self.leadership is None:
                registry = SqliteRegistry(os.path.join(c.work_dir, "registry.sqlite"))
            else:
                registry = NullRegistry()  # --zk: the ZooKeeper registry, once elected
        self.registry: Registry = registry
        # Authentication, authorization and request hygiene (security.py); TLS on the listener.
        self.guard = Guard(c.security, lambda: self.config.agent_secret, lambda: self.core)
        self.ssl_context = server_context(server_settings(c.tls_cert, c.tls_key, c.tls_ca))
        self.core = self._new_core()
        self.outbox = Outbox(self.registry, self._deliver)
        self._retry_handle: asyncio.TimerHandle | None = None
        self.streams: dict[str, Stream] = {}  # framework id -> its current stream
        self.streams_by_id: dict[str, Stream] = {}  # stream id -> stream (old ones too, until closed)
        self.channels: set[Channel] = set()
        self.start_time = time.time()
        self.port = c.port
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._alloc_handle: asyncio.Handle | None = None
        self.views = ReadOnlyViews(self)
        self.app = self._make_app()

    def _new_core(self) -> MasterCore:
        c = self.config
        core = MasterCore(
            self.master_id, allocator=HierarchicalDRFAllocator(filter_gpu_resources=c.filter_gpu_resources),
            agent_reregister_timeout=c.agent_reregister_timeout,
            unreachable_timeout=c.agent_ping_timeout * c.max_agent_ping_timeouts,
            partition=PartitionConfig(c.agent_ping_timeout, c.max_agent_ping_timeouts,
                                      c.registry_max_agent_age, c.registry_max_agent_count))
        core.authorize_task = self.guard.authorize_task  # run_tasks ACL
        core.authorize_operation = self.guard.authorize_operation  # reserve/volume ACLs in ACCEPT
        return core

    # ------------------------------------------------------------------ lifecycle
    @property
    def leader_address(self) -> str | None:
        """``host:port`` of the leading master (this one unless --zk says otherwise)."""
        if self.leadership is None or self.leading:
            return self.address
        return self.leadership.leader

    @property
    def hostname(self) -> str:
        return self.config.hostname or self.config.host

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.hostname}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"

    def master_info(self) -> m.MasterInfo:
        ip = self.config.host if self.config.host not in ("0.0.0.0", "") else "127.0.0.1"
        return m.MasterInfo(
            id=self.master_id,
            ip=ip_as_uint32(ip),
            port=self.port,
            pid=f"master@{ip}:{self.port}",
            hostname=self.hostname,
            version=__version__,
            address=m.MasterAddress(hostname=self.hostname, ip=ip, port=self.port),
        )

    def flags(self) -> dict[str, str]:
        c = self.config
        return {
            "port": str(self.port),
            "allocation_interval": f"{c.allocation_interval}secs",
            "agent_ping_timeout": f"{c.agent_ping_timeout}secs",
            "max_agent_ping_timeouts": str(c.max_agent_ping_timeouts),
            "agent_reregister_timeout": f"{c.agent_reregister_timeout}secs",
            "registry_max_agent_age": f"{c.registry_max_agent_age}secs",
            "registry_max_agent_count": str(c.registry_max_agent_count),
            "event_loop": event_loop.running(),
            **({"agent_http_credential": c.agent_http_credential} if c.agent_http_credential else {}),
            **(self.leadership.flags() if self.leadership is not None else {}),
        }

    def health(self) -> tuple[bool, str]:
        err = self.outbox.error
        if err is not None:
            return False, f"Registry writes are failing ({err}); {len(self.outbox.pending)} effects held back"
        return True, ""

    def operator_subscribers(self) -> int:
        return len(self.operator.streams.subscribers)

    async def start(self) -> None:
        if self.leadership is None:
            self.core.recover(self.registry.recover(), time.time())
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, keepalive_timeout=86400.0,
            handler_cancellation=True,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True,
                           ssl_context=self.ssl_context)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        self.core.master_info = self.master_info()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._allocation_loop()),
            loop.create_task(self._tick_loop()),
            loop.create_task(self._heartbeat_loop()),
        ]
        self.webui.start()
        self.views.start()
        log.info("master started id=%s url=%s", self.master_id, self.url)
        if self.leadership is not None:
            await self.leadership.start()

    def become_leader(self, registry: Registry, state: Any) -> None:
        """Elected and the registry recovered: rebuild the core from it and lead (ha.py)."""
        assert self.leadership is not None
        self.leadership.lead(registry, state)

    def write_finished(self, done: Any, exc: BaseException | None) -> None:
        """A registry write submitted to the worker thread ended (loop thread)."""
        delay = done(exc)
        if delay is not None:
            self._schedule_retry(delay)

    def fail_stop(self, reason: str) -> None:
        """Stop acting as leader at once: exit non-zero (see :func:`.ha.fail_stop`)."""
        fail_stop(self, reason)

    async def stop(self) -> None:
        if self.leadership is not None:
            await self.leadership.stop()
        await self.webui.stop()
        await self.views.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        for chan in list(self.channels):
            await chan.ws.close()
        for s in list(self.streams.values()):
            s.closed = True
            s.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        if self.outbox.error is not None and self.outbox.retry() is not None:
            log.warning("master stopping with registry writes still failing: %d effects lost", len(self.outbox.pending))
        self.registry.close()
        log.info("master stopped id=%s", self.master_id)

    # ------------------------------------------------------------------ effects
    def flush(self) -> None:
        """Carry out the effects the core queued; never raises for a failing registry."""
        core = self.core
        out = core.out
        if out:
            core.out = []
            delay = self.outbox.run(out)
            if delay is not None:
                self._schedule_retry(delay)
        if core.wants_allocation and self._alloc_handle is None:
            self._alloc_handle = asyncio.get_running_loop().call_later(0.002, self._allocate_now, False)  # changed agents only

    def _schedule_retry(self, delay: float) -> None:
        if self._retry_handle is None:
            self._retry_handle = asyncio.get_running_loop().call_later(delay, self._retry_writes)

    def _retry_writes(self) -> None:
        self._retry_handle = None
        delay = self.outbox.retry()
        if delay is not None:
            self._schedule_retry(delay)

    def _deliver(self, eff: Any) -> None:
        t = type(eff)
        if t is ToFramework:
            s = self.streams.get(eff.framework_id)
            if s is not None and not s.closed:
                s.push(m.encode(eff.event))
        elif t is ToAgent:
            agent = self.core.agents.get(eff.agent_id)
            if agent is not None and agent.channel is not None:
                agent.channel.send(eff.msg)
        elif t is ToChannel:
            eff.channel.send(eff.msg)
        elif t is EndStream:
            s = self.streams_by_id.pop(eff.stream_id, None)
            if s is not None:
                if eff.message is not None:
                    s.push(m.encode(m.Event(type="ERROR", error=m.Error(message=eff.message))))
                s.finish()
                if self.streams.get(eff.framework_id) is s:
                    del self.streams[eff.framework_id]

    def _allocate_now(self, full: bool = True) -> None:
        self._alloc_handle = None
        if big_calls.sliced_allocation(self, full):
            return
        try:
            self.core.allocate(time.time(), full)
        except Exception:  # pragma: no cover - a bug must not kill the master
            log.exception("allocation failed")
        self.flush()

    async def _allocation_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.allocation_interval)
            self._allocate_now()

    async def _tick_loop(self) -> None:
        c = self.config
        period = min(1.0, c.agent_ping_timeout)
        next_ping = time.monotonic() + c.agent_ping_timeout
        while True:
            await asyncio.sleep(period)
            await big_calls.run_steps(self, self.core.tick_steps(time.time()))
            mono = time.monotonic()
            limit = c.agent_ping_timeout * c.max_agent_ping_timeouts
            for chan in list(self.channels):
                if mono - chan.last_heard > limit:
                    log.info("agent channel timed out peer=%s silent=%.1fs", chan.peer, mono - chan.last_heard)
                    self.channels.discard(chan)
                    await self._lose_channel(chan, f"no answer to pings for {limit:g}s")
                    asyncio.get_running_loop().create_task(chan.ws.close())  # may wait on a dead link
            if mono >= next_ping:
                next_ping = mono + c.agent_ping_timeout
                for chan in self.channels:
                    chan.send(ch.Ping())
            self.flush()

    async def _lose_channel(self, chan: Channel, unreachable: str | None) -> None:
        """The agents of a silent channel marked unreachable (``unreachable``: why), or those
        of a broken one disconnected, in slices (one process may carry 10,000 agents)."""
        core = self.core
        now = time.time()
        if unreachable is None:
            steps = big_calls.lost_channel_steps(core, chan, lambda a: core.disconnect_agent(a, now))
        else:
            steps = big_calls.lost_channel_steps(core, chan, lambda a: core.mark_unreachable_steps(a.id, now, unreachable))
        try:
            await big_calls.run_steps(self, steps)
        finally:
            self.flush()  # (cancelled: run_steps finished the steps at once)

    async def _heartbeat_loop(self) -> None:
        hb = m.encode(m.Event(type="HEARTBEAT"))
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            for s in list(self.streams.values()):
                if not s.closed:
                    s.push(hb)

    # ------------------------------------------------------------------ app
    def _make_app(self) -> web.Application:
        mws = [self.leadership.middleware] if self.leadership is not None else []
        self.turns = turn_budget.TurnBudget()  # a turn's budget, shared by HTTP handlers and agent-channel slices
        mws += [self.guard.middleware, self.turns.middleware]  # a follower redirects first
        app = web.Application(client_max_size=MAX_BODY, middlewares=mws)
        r = app.router
        add_routes(r, ("", "/master"), {"POST /api/v1/scheduler": self.handle_scheduler})
        r.add_get("/api/v1/agent-channel", self.handle_channel)
        self.operator = OperatorApi(self); self.operator.install(app)  # noqa: E702 - POST /api/v1, v0 extras
        self.views.add_routes(r)
        from .agent_reads import AgentReader
        from .webui import WebUI  # the web UI and its utilization feed (/, /master/utilization)

        c = self.config
        self.webui = WebUI(self, reader=AgentReader.from_flags(c.agent_http_credential, c.tls_ca, c.tls_cert, c.tls_key))
        self.webui.add_routes(r)
        return app

    # ------------------------------------------------------------------ scheduler API
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

    # ------------------------------------------------------------------ agent channel
    async def handle_channel(self, request: web.Request) -> web.StreamResponse:
        # The middleware has authenticated the agent process (credential or in-process secret).
        ws = web.WebSocketResponse(max_msg_size=MAX_BODY, heartbeat=None)
        await ws.prepare(request)
        chan = Channel(ws, request.remote or "?", request.get(PRINCIPAL))
        self.channels.add(chan)
        writer = asyncio.get_running_loop().create_task(self._channel_writer(chan))
        log.info("agent channel opened peer=%s", chan.peer)
        core = self.core
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                chan.last_heard = time.monotonic()
                place = await self.turns.admit(ahead=turn_budget.CHANNEL_AHEAD)  # the frame, then each slice
                try:
                    msgs = ch.decode_to_master(msg.data)
                except Exception as e:  # msgspec errors
                    log.warning("bad agent channel frame peer=%s: %s", chan.peer, e)
                    continue
                now = time.time()
                for i, x in enumerate(msgs):
                    if i and not i % ch.HANDLE_SLICE:  # a full frame is handled in slices
                        self.flush()
                        await self.turns.admit(place)  # the frame keeps its place in line
                        now = time.time()
                    tx = type(x)
                    try:
                        if tx is ch.RegisterAgent:
                            self.guard.register_agent(core, x, chan, now)
                        elif tx is ch.Pong:
                            pass
                        elif not self.guard.from_channel(core, x, chan):
                            continue  # an agent speaking for an agent or task that is not its own
                        elif tx is ch.StatusUpdate:
                            core.status_update(x, now)
                        elif tx is ch.ExecutorExited:
                            core.executor_exited(x)
                        elif tx is ch.ExecutorToFramework:
                            core.executor_message(x)
                        elif tx is ch.UnregisterAgent:
                            agent = core.agents.get(x.agent_id)
                            if agent is not None and agent.channel is chan:
                                await big_calls.run_steps(self, core.remove_agent_steps(
                                    x.agent_id, now, "REASON_AGENT_REMOVED", "Agent shut down"))
                    except Exception:
                        log.exception("agent channel message failed peer=%s type=%s", chan.peer, tx.__name__)
                self.flush()
        finally:
            chan.closed = True
            chan.wake.set()
            self.channels.discard(chan)
            writer.cancel()
            await self._lose_channel(chan, None)
            log.info("agent channel closed peer=%s", chan.peer)
        return ws

    async def _channel_writer(self, chan: Channel) -> None:
        try:
            while not chan.closed:
                if not chan.pending:
                    chan.wake.clear()
                    await chan.wake.wait()
                    continue
                batch, chan.pending = chan.pending, []
                for frame in ch.encode_frames(batch):  # one bounded frame per loop step
                    await chan.ws.send_str(frame.decode())
                    await asyncio.sleep(0)
        except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
            pass


def _loads(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise ValueError(str(e)) from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)

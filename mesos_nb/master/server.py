"""The master's imperative shell: its lifecycle, the effects of the core, timers, the app.

It owns the sockets, the clock, random ids and the registry, and nothing else: every input is
handed to :class:`~mesos_nb.master.core.MasterCore` and the effects it queues are carried out
here by an :class:`~mesos_nb.master.outbox.Outbox` (registry writes, retried while they fail;
then subscription streams and agent channels). Allocation runs every ``allocation_interval``
and, batched, soon after anything that frees or adds resources. The scheduler API's handlers
are in :mod:`.scheduler_api` and the agent channel's in :mod:`.agent_channel` (mixins of
:class:`MasterServer`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..protocol import channel as ch
from ..protocol import event_loop
from ..protocol import messages as m
from ..protocol.routing import add_routes
from ..protocol.tls import server_context, server_settings
from ..protocol.version import VERSION as __version__
from . import big_calls, turn_budget
from .agent_channel import AgentChannels
from .allocator import HierarchicalDRFAllocator
from .connections import MAX_BODY, Channel, Stream, ip_as_uint32
from .core import MasterCore
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
from .scheduler_api import SchedulerApi
from .security import Guard, SecurityConfig

log = logging.getLogger("mesos_nb.master")


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


class MasterServer(SchedulerApi, AgentChannels):
    """Implements :class:`~mesos_nb.master.view.MasterView` for the read side; the scheduler API
    (:mod:`.scheduler_api`) and the agent channel (:mod:`.agent_channel`) are its mixins."""

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

"""``AgentProcess``: one or more agents behind ONE channel connection to the master.

Lifecycle: ``start()`` serves each agent's HTTP app, connects the WebSocket
(``ws://MASTER/api/v1/agent-channel``, ``Authorization: Bearer <secret>`` when set), sends a
REGISTER per agent and waits until every agent is REGISTERED. The connection loop then reads
frames and dispatches each message to its agent (by ``agent_id``; by ``key`` for REGISTERED
and REFUSED), answers PING with PONG, and on a broken connection reconnects with jittered
exponential backoff and re-REGISTERs every agent with its known id and task reports.
Outgoing messages queued in one event-loop turn are coalesced into one frame by a single
writer task. ``stop()`` kills the tasks, sends UNREGISTER and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from mesos_nb.protocol.backoff import Backoff
from mesos_nb.protocol.channel import (
    AgentRegistered,
    Ping,
    Pong,
    Refused,
    UnregisterAgent,
    decode_to_agent,
    encode_frame,
)

from .agent import Agent
from .config import AgentConfig
from .http import make_app
from .operator_api import install as install_operator_api

logger = logging.getLogger("mesos_nb.agent")

CHANNEL_PATH = "/api/v1/agent-channel"


def parse_master(master: str) -> tuple[str, str]:
    """``host:port`` / ``http://host:port`` / ``https://…`` -> (WebSocket URL, "host:port").
    (``zk://`` URLs are followed by :class:`AgentProcess` through a ``MasterDetector``.)"""
    m = master.strip()
    if m.startswith("zk://"):
        raise ValueError("a zk:// URL names a ZooKeeper group, not one master; the agent follows its leader")
    scheme = "ws"
    if "://" in m:
        given, m = m.split("://", 1)
        if given not in ("http", "https", "ws", "wss"):
            raise ValueError(f"Unsupported master URL scheme '{given}://'.")
        scheme = "wss" if given in ("https", "wss") else "ws"
    m = m.split("/", 1)[0]
    if not m:
        raise ValueError(f"Bad master address '{master}': expected HOST:PORT.")
    if not (m.rsplit(":", 1)[-1].isdigit() and ":" in m):
        m = f"{m}:5050"
    return f"{scheme}://{m}{CHANNEL_PATH}", m


class AgentProcess:
    def __init__(
        self,
        configs: list[AgentConfig],
        *,
        master: str | None = None,
        secret: str | None = None,
        register_timeout: float = 15.0,
        backoff_min: float = 0.1,
        backoff_max: float = 15.0,
        zk_session_timeout: float = 10.0,
        master_ping_timeout: float = 75.0,
    ) -> None:
        if not configs:
            raise ValueError("AgentProcess needs at least one AgentConfig.")
        self.configs = configs
        given = (master or configs[0].master).strip()
        # zk://: follow the leading master (MasterDetector); until one is known, connect nowhere
        self.zk_url: str | None = given if given.startswith("zk://") else None
        self.zk_session_timeout = zk_session_timeout
        # a master silent this long is gone (Mesos DEFAULT_MASTER_PING_TIMEOUT, 15 s x 5): drop
        # the channel and connect again (after a partition heals, to the leader of the moment)
        self.master_ping_timeout = master_ping_timeout
        self._detector: Any = None
        self._backoff: Backoff | None = None
        self._leader_changed: asyncio.Event | None = None
        if self.zk_url is not None:
            from mesos_nb.protocol.zk_url import parse_zk_url

            parse_zk_url(self.zk_url)  # ValueError naming the problem
            self.ws_url: str | None = None
            self.master_address = self.zk_url
        else:
            self.ws_url, self.master_address = parse_master(given)
        self.secret = secret if secret is not None else configs[0].agent_secret
        self.register_timeout = register_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._agents = [Agent(cfg, key=f"a{i}") for i, cfg in enumerate(configs)]
        for a in self._agents:
            a.set_sender(self._send)
        self._by_key = {a.key: a for a in self._agents}
        self._by_id: dict[str, Agent] = {}
        self._out: list[Any] = []
        self._out_event: asyncio.Event | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runners: list[web.AppRunner] = []
        self._conn_task: asyncio.Task | None = None
        self._ready: asyncio.Future | None = None
        self._closing = False
        self.connected: asyncio.Event | None = None  # set in start(); set while the channel is up
        self.reconnects = 0

    # ------------------------------------------------------------------ public
    @property
    def agents(self) -> list[Agent]:
        return list(self._agents)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._out_event = asyncio.Event()
        self.connected = asyncio.Event()
        self._ready = loop.create_future()
        try:
            for agent in self._agents:
                os.makedirs(agent.config.work_dir, exist_ok=True)
                agent.recovering = True
                app = make_app(agent)
                install_operator_api(agent, app)  # POST /api/v1 (operator), /flags, /version, /containers
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                self._runners.append(runner)
                port = agent.config.port or agent.previous_port()
                try:
                    site = web.TCPSite(runner, agent.config.host, port)
                    await site.start()
                except OSError:
                    if port == agent.config.port:
                        raise
                    site = web.TCPSite(runner, agent.config.host, agent.config.port)
                    await site.start()
                agent.port = int(runner.addresses[0][1])
        except OSError as e:
            await self._teardown()
            raise OSError(e.errno, f"cannot start the agent's HTTP server: {e.strerror or e}") from None
        # Recover after listening (recovered executors re-subscribe to this port), before registering.
        for agent in self._agents:
            try:
                agent.recover()
            finally:
                agent.recovering = False
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        self._session = aiohttp.ClientSession(headers=headers)
        self._leader_changed = asyncio.Event()
        if self.zk_url is not None:
            try:
                await self._start_detector()
            except Exception as e:
                await self._teardown()
                raise ConnectionError(f"cannot follow the masters at {self.zk_url}: {e}") from None
        self._conn_task = loop.create_task(self._connection_loop())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.register_timeout)
        except asyncio.TimeoutError:
            await self._teardown()
            raise ConnectionError(f"cannot reach the master at {self.master_address}") from None
        except ConnectionError:
            await self._teardown()
            raise

    async def stop(self, kill_tasks: bool = True) -> None:
        if self._closing:
            return
        self._closing = True
        if kill_tasks:
            await asyncio.gather(*(a.kill_all_tasks() for a in self._agents), return_exceptions=True)
            for a in self._agents:
                if a.agent_id is not None:
                    self._out.append(UnregisterAgent(agent_id=a.agent_id))
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(ws), 5)
            with contextlib.suppress(Exception):
                await ws.close()
        await self._teardown()

    # ------------------------------------------------------------------ leader detection (zk://)
    async def _start_detector(self) -> None:
        from mesos_nb.protocol.zk_detector import MasterDetector

        loop = asyncio.get_running_loop()
        det = MasterDetector(self.zk_url or "", session_timeout=self.zk_session_timeout, on_change=self._on_leader,
                             loop=loop)
        await loop.run_in_executor(None, det.start)
        self._detector = det
        if det.leader is not None:
            self._on_leader(det.leader)

    def _on_leader(self, leader: str | None) -> None:
        """A new leading master: re-register with it (Mesos agents ignore masters while none is
        known, so a lost leader keeps the current connection until a new one is detected)."""
        if leader is None or self._closing:
            return
        ws_url, _ = parse_master(leader)
        if ws_url == self.ws_url:
            return
        logger.info("leading master detected master=%s zk=%s", leader, self.zk_url)
        self.ws_url = ws_url
        self.master_address = leader
        if self._backoff is not None:
            self._backoff.reset()  # a new master: try it promptly (it may answer 503 while it recovers)
        assert self._leader_changed is not None
        self._leader_changed.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            asyncio.get_running_loop().create_task(ws.close())

    async def _pause(self, delay: float) -> None:
        """Back off before the next attempt, cut short when a new leader is detected."""
        ev = self._leader_changed
        if ev is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ev.wait(), delay)
        ev.clear()

    # ------------------------------------------------------------------ internals
    async def _teardown(self) -> None:
        self._closing = True
        det, self._detector = self._detector, None
        if det is not None:
            await asyncio.get_running_loop().run_in_executor(None, det.stop)
        if self._conn_task is not None:
            self._conn_task.cancel()
            with contextlib.suppress(BaseException):
                await self._conn_task
            self._conn_task = None
        for a in self._agents:
            await a.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        for r in self._runners:
            with contextlib.suppress(Exception):
                await r.cleanup()
        self._runners.clear()

    def _send(self, msg: Any) -> None:
        if self._ws is None:
            return  # reliable messages are re-sent after re-registration
        self._out.append(msg)
        assert self._out_event is not None
        self._out_event.set()

    async def _flush(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self._out:
            batch, self._out = self._out, []
            await ws.send_str(encode_frame(batch).decode())

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        event = self._out_event
        assert event is not None
        while True:
            await event.wait()
            event.clear()
            await self._flush(ws)

    async def _connection_loop(self) -> None:
        backoff = self._backoff = Backoff(self.backoff_min, self.backoff_max)
        assert self._session is not None
        while not self._closing:
            if self.ws_url is None:  # zk:// and no leader known yet
                await self._pause(1.0)
                continue
            try:
                # aiohttp closes the socket when a PING goes unanswered for heartbeat/2
                ws = await self._session.ws_connect(self.ws_url, max_msg_size=0, autoping=True,
                                                    heartbeat=self.master_ping_timeout / 1.5)
            except aiohttp.WSServerHandshakeError as e:
                if e.status in (401, 403) and self._ready is not None and not self._ready.done():
                    self._ready.set_exception(ConnectionError(
                        f"the master at {self.master_address} refused the agent (HTTP {e.status}: "
                        "check --agent-secret)"))
                    return
                logger.warning("agent channel handshake failed master=%s status=%s", self.master_address, e.status)
                await self._pause(backoff.next())
                continue
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                logger.debug("cannot reach master=%s: %s", self.master_address, e)
                await self._pause(backoff.next())
                continue
            backoff.reset()
            await self._serve(ws)
            if not self._closing:
                self.reconnects += 1
                logger.warning("agent channel closed master=%s; reconnecting", self.master_address)
                await self._pause(backoff.next())

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._out = [a.register_message() for a in self._agents]
        assert self._out_event is not None and self.connected is not None
        self._out_event.set()
        self.connected.set()
        writer = asyncio.get_running_loop().create_task(self._writer(ws))
        logger.info("agent channel connected master=%s agents=%d", self.master_address, len(self._agents))
        try:
            async for msg in ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._dispatch(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
            # A writer failure (socket gone) also ends the connection.
        finally:
            self._ws = None
            self.connected.clear()
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
            for a in self._agents:
                a.on_disconnected()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()

    def _dispatch(self, data: str | bytes) -> None:
        try:
            msgs = decode_to_agent(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            logger.error("bad frame from master=%s: %s", self.master_address, e)
            return
        for m in msgs:
            if isinstance(m, Ping):
                self._send(Pong(seq=m.seq))
            elif isinstance(m, AgentRegistered):
                self._on_registered(m)
            elif isinstance(m, Refused):
                logger.error("master refused agent key=%s: %s", m.key, m.message)
                if self._ready is not None and not self._ready.done():
                    self._ready.set_exception(ConnectionError(
                        f"the master at {self.master_address} refused the agent: {m.message}"))
            else:
                agent = self._by_id.get(m.agent_id)
                if agent is None:
                    logger.warning("message for unknown agent=%s type=%s", m.agent_id, type(m).__name__)
                    continue
                try:
                    agent.handle(m)
                except Exception:
                    logger.exception("agent handler failed agent=%s type=%s", m.agent_id, type(m).__name__)

    def _on_registered(self, m: AgentRegistered) -> None:
        agent = self._by_key.get(m.key)
        if agent is None:
            logger.warning("REGISTERED for unknown key=%s", m.key)
            return
        if agent.agent_id is not None and agent.agent_id != m.agent_id:
            self._by_id.pop(agent.agent_id, None)
        agent.on_registered(m)
        self._by_id[m.agent_id] = agent
        if self._ready is not None and not self._ready.done() and all(a.registered for a in self._agents):
            self._ready.set_result(None)


__all__ = ["AgentProcess", "parse_master", "CHANNEL_PATH"]

"""The agents' channel (``GET /api/v1/agent-channel``, a WebSocket of JSON frames): each frame
is decoded and its messages handed to the core (registration, status updates, executor events),
a full frame in slices with the loop let run between them; one writer task per channel sends
what the core queued for it; a channel that breaks or goes silent has its agents disconnected or
marked unreachable, in slices.

A mixin of :class:`~mesos_nb.master.server.MasterServer` (``self`` is the server), like
:mod:`.scheduler_api`; it names what it needs of the server below and never imports it back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from ..protocol import channel as ch
from . import big_calls, turn_budget
from .connections import MAX_BODY, Channel
from .security import PRINCIPAL

if TYPE_CHECKING:
    from .core import MasterCore
    from .security import Guard

log = logging.getLogger("mesos_nb.master")


class AgentChannels:
    """``handle_channel``, its writer and the loss of a channel's agents, mixed into the server."""

    core: MasterCore
    guard: Guard
    channels: set[Channel]
    turns: turn_budget.TurnBudget

    if TYPE_CHECKING:
        def flush(self) -> None: ...

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

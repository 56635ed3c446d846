"""Thousands of emulated agents in ONE process, over the real agent channel.

Each agent registers with a real master exactly as ``mesos_nb.agent.process.AgentProcess``
does (``GET /api/v1/agent-channel`` WebSocket, ``Authorization: Bearer <secret>``, JSON arrays
of :mod:`mesos_nb.protocol.channel` messages, many agents multiplexed per connection), answers
PING with PONG, and plays a task's life without running anything: on RUN_TASK it reports
TASK_STARTING then TASK_RUNNING, and TASK_FINISHED after the task's declared duration; KILL_TASK
ends a task with TASK_KILLED, SHUTDOWN_FRAMEWORK drops the framework's tasks and their
updates. Updates are reliable as the real agent's status-update manager makes them: per
task one update in flight, the next one sent when the master forwards the framework's ACK
for the head's uuid, heads resent every ``retry_interval``. Frames carry at most 2,000
messages (the master closes a channel whose message exceeds 16 MiB).

A task's duration: the label ``bench.duration`` (seconds), else a command ``sleep N``, else
it runs until killed. ``report_starting=False`` (``--no-starting``) skips TASK_STARTING, as
executors older than Mesos 1.1 did: half the updates, for benchmarks that need many tasks.

Library::

    async with EmulatedAgents("127.0.0.1:5050", 10_000) as agents:
        ...                       # agents.stats, agents.agent_ids

Script: ``python -m bench.emulated_agents --master HOST:PORT --agents N`` prints
``ready <n> <seconds>`` once every agent is registered and, on SIGTERM/SIGINT, its counters as
one JSON line. The secret comes from ``--secret-file`` or ``$BENCH_AGENT_SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from mesos_nb.protocol import channel as ch
from mesos_nb.protocol.messages import ID, TaskInfo, TaskStatus
from mesos_nb.protocol.resources import Resources

from .harness import run_loop

log = logging.getLogger("bench.emulated_agents")

CHANNEL_PATH = "/api/v1/agent-channel"
DURATION_LABEL = "bench.duration"
MAX_FRAME_MESSAGES = ch.MAX_FRAME_MESSAGES  # well under the master's 16 MiB frame limit
DEFAULT_RESOURCES = "cpus:8;mem:16384;disk:65536;ports:[31000-32000]"
_SLEEP = re.compile(r"^\s*(?:exec\s+)?sleep\s+([0-9]*\.?[0-9]+)\s*$")


def task_duration(task: TaskInfo) -> float | None:
    """Seconds the emulated task runs: label ``bench.duration``, else ``sleep N``, else None."""
    labels = task.labels
    if isinstance(labels, dict):
        for kv in labels.get("labels") or []:
            if isinstance(kv, dict) and kv.get("key") == DURATION_LABEL:
                with contextlib.suppress(TypeError, ValueError):
                    return max(0.0, float(kv.get("value")))
    cmd = task.command.value if task.command is not None else None
    if cmd:
        mt = _SLEEP.match(cmd)
        if mt:
            return float(mt.group(1))
    return None


def duration_labels(seconds: float) -> dict[str, Any]:
    """``TaskInfo.labels`` telling emulated agents how long the task runs."""
    return {"labels": [{"key": DURATION_LABEL, "value": f"{seconds:.3f}"}]}


@dataclass
class _Task:
    framework_id: str
    task_id: str
    executor_id: str
    agent_id: str
    pending: deque = field(default_factory=deque)  # StatusUpdate, head in flight
    sent_at: float = 0.0
    terminal: bool = False
    timer: asyncio.TimerHandle | None = None


class _Conn:
    """One WebSocket carrying a slice of the agents."""

    def __init__(self, owner: EmulatedAgents, keys: list[str]) -> None:
        self.owner = owner
        self.keys = keys
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.out: list[Any] = []
        self.wake = asyncio.Event()
        self.registered = 0
        self.batch_done = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def send(self, msg: Any) -> None:
        self.out.append(msg)
        self.wake.set()

    async def writer(self) -> None:
        assert self.ws is not None
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.out:
                # bounded frames: the master refuses a WebSocket message over 16 MiB and
                # closes the channel (a burst of updates from thousands of agents gets there)
                batch, self.out = self.out[:MAX_FRAME_MESSAGES], self.out[MAX_FRAME_MESSAGES:]
                await self.ws.send_str(ch.encode_frame(batch).decode())
                self.owner.stats["frames_sent"] += 1

    async def reader(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    msgs = ch.decode_to_agent(msg.data)
                except (msgspec.ValidationError, msgspec.DecodeError) as e:
                    log.error("bad frame from the master: %s", e)
                    continue
                self.owner._dispatch(self, msgs)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                break
        self.owner.stats["disconnects"] += 1
        if not self.owner._closing:
            log.error("agent channel closed by the master (%d agents on it)", len(self.keys))


class EmulatedAgents:
    def __init__(
        self,
        master: str,
        n: int,
        *,
        resources: str = DEFAULT_RESOURCES,
        secret: str | None = None,
        per_connection: int = 5000,
        register_batch: int = 1000,
        hostname_prefix: str = "emu",
        retry_interval: float = 10.0,
        register_timeout: float = 600.0,
        report_starting: bool = True,
    ) -> None:
        if n < 1:
            raise ValueError("EmulatedAgents needs at least one agent")
        m = master.split("://", 1)[-1].rstrip("/")
        self.ws_url = f"ws://{m}{CHANNEL_PATH}"
        self.n = n
        self.resources = Resources.parse(resources).to_proto()
        self.secret = secret
        self.per_connection = max(1, per_connection)
        self.register_batch = max(1, register_batch)
        self.hostname_prefix = hostname_prefix
        self.retry_interval = retry_interval
        self.register_timeout = register_timeout
        self.report_starting = report_starting
        self.agent_ids: dict[str, str] = {}  # key -> agent id
        self._conn_of: dict[str, _Conn] = {}  # agent id -> its connection
        self._tasks: dict[tuple[str, str], _Task] = {}  # (framework id, task id)
        self._conns: list[_Conn] = []
        self._session: aiohttp.ClientSession | None = None
        self._retry: asyncio.Task | None = None
        self._closing = False
        self.registration_s: float | None = None
        self.stats: dict[str, int] = dict.fromkeys(
            ("registered", "refused", "launched", "running", "finished", "killed", "updates_sent",
             "acks", "resent", "pings", "frames_sent", "disconnects", "unknown_agent"), 0)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> EmulatedAgents:
        t0 = time.perf_counter()
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        self._session = aiohttp.ClientSession(headers=headers)
        keys = [f"e{i}" for i in range(self.n)]
        for i in range(0, self.n, self.per_connection):
            self._conns.append(_Conn(self, keys[i:i + self.per_connection]))
        try:
            await asyncio.wait_for(asyncio.gather(*(self._open(c) for c in self._conns)), self.register_timeout)
        except BaseException:
            await self.stop()
            raise
        self.registration_s = time.perf_counter() - t0
        self._retry = asyncio.get_running_loop().create_task(self._retry_loop())
        return self

    async def _open(self, conn: _Conn) -> None:
        assert self._session is not None
        try:
            conn.ws = await self._session.ws_connect(self.ws_url, max_msg_size=0, autoping=True)
        except aiohttp.WSServerHandshakeError as e:
            raise ConnectionError(f"the master refused the agent channel (HTTP {e.status})") from None
        loop = asyncio.get_running_loop()
        conn.tasks = [loop.create_task(conn.writer()), loop.create_task(conn.reader())]
        offset = int(conn.keys[0][1:])
        for b in range(0, len(conn.keys), self.register_batch):
            want = min(len(conn.keys), b + self.register_batch)
            conn.batch_done.clear()
            for j, key in enumerate(conn.keys[b:want], start=b):
                conn.send(ch.RegisterAgent(
                    key=key, hostname=f"{self.hostname_prefix}-{offset + j}", port=5051,
                    resources=self.resources, version="bench"))
            while conn.registered < want:
                if conn.tasks[1].done():
                    raise ConnectionError("the master closed the agent channel during registration")
                done = loop.create_task(conn.batch_done.wait())
                await asyncio.wait({done, conn.tasks[1]}, return_when=asyncio.FIRST_COMPLETED)
                done.cancel()
                conn.batch_done.clear()

    async def stop(self, unregister: bool = True) -> None:
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
        for c in self._conns:
            if unregister and c.ws is not None and not c.ws.closed:
                for key in c.keys:
                    aid = self.agent_ids.get(key)
                    if aid is not None:
                        c.out.append(ch.UnregisterAgent(agent_id=aid))
                if c.out:
                    with contextlib.suppress(Exception):
                        batch, c.out = c.out, []
                        await asyncio.wait_for(c.ws.send_str(ch.encode_frame(batch).decode()), 30)
            for t in c.tasks:
                t.cancel()
            if c.ws is not None:
                with contextlib.suppress(Exception):
                    await c.ws.close()
        for t in self._tasks.values():
            if t.timer is not None:
                t.timer.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> EmulatedAgents:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ------------------------------------------------------------------ messages
    def _dispatch(self, conn: _Conn, msgs: list[Any]) -> None:
        for m in msgs:
            t = type(m)
            if t is ch.Ping:
                self.stats["pings"] += 1
                conn.send(ch.Pong(seq=m.seq))
            elif t is ch.AckUpdate:
                self._on_ack(m)
            elif t is ch.RunTask:
                tasks = [m.task] if m.task is not None else list(m.task_group)
                ex = m.executor.executor_id.value if m.executor is not None else None
                fid = m.framework.id.value if m.framework.id is not None else ""
                for info in tasks:
                    self._launch(conn, m.agent_id, fid, info, ex)
            elif t is ch.AgentRegistered:
                self.agent_ids[m.key] = m.agent_id
                self._conn_of[m.agent_id] = conn
                conn.registered += 1
                self.stats["registered"] += 1
                conn.batch_done.set()
            elif t is ch.KillTask:
                task = self._tasks.get((m.framework_id, m.task_id))
                if task is not None and not task.terminal:
                    self._end(task, "TASK_KILLED")
            elif t is ch.ShutdownFramework:
                # as the real agent: kill its tasks and drop their pending updates (nobody
                # is left to acknowledge them)
                for key in [k for k, x in self._tasks.items() if x.framework_id == m.framework_id
                            and x.agent_id == m.agent_id]:
                    task = self._tasks.pop(key)
                    if task.timer is not None:
                        task.timer.cancel()
                    if not task.terminal:
                        self.stats["running"] -= 1
                        self.stats["killed"] += 1
            elif t is ch.Refused:
                self.stats["refused"] += 1
                log.error("the master refused agent %s: %s", m.key, m.message)
            # SHUTDOWN_EXECUTOR / FRAMEWORK_MESSAGE: nothing runs here, nothing to do

    def _launch(self, conn: _Conn, agent_id: str, fid: str, info: TaskInfo, ex: str | None) -> None:
        key = (fid, info.task_id.value)
        if key in self._tasks:
            return  # duplicate RUN_TASK
        task = _Task(fid, info.task_id.value, ex or info.task_id.value, agent_id)
        self._tasks[key] = task
        self.stats["launched"] += 1
        if self.report_starting:
            self._update(task, "TASK_STARTING")
        self._update(task, "TASK_RUNNING")
        self.stats["running"] += 1
        d = task_duration(info)
        if d is not None:
            task.timer = asyncio.get_running_loop().call_later(d, self._end, task, "TASK_FINISHED")

    def _end(self, task: _Task, state: str) -> None:
        if task.terminal:
            return
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        self.stats["running"] -= 1
        self.stats["finished" if state == "TASK_FINISHED" else "killed"] += 1
        self._update(task, state)
        task.terminal = True

    def _update(self, task: _Task, state: str) -> None:
        status = TaskStatus(
            task_id=ID(value=task.task_id), state=state, source="SOURCE_EXECUTOR",  # type: ignore[arg-type]
            agent_id=ID(value=task.agent_id), executor_id=ID(value=task.executor_id),
            timestamp=time.time(), uuid=uuid.uuid4().bytes)
        task.pending.append(ch.StatusUpdate(agent_id=task.agent_id, framework_id=task.framework_id, status=status))
        if len(task.pending) == 1:
            self._send_head(task)

    def _send_head(self, task: _Task) -> None:
        conn = self._conn_of.get(task.agent_id)
        if conn is None:
            self.stats["unknown_agent"] += 1
            return
        task.sent_at = time.monotonic()
        conn.send(task.pending[0])
        self.stats["updates_sent"] += 1

    def _on_ack(self, m: ch.AckUpdate) -> None:
        task = self._tasks.get((m.framework_id, m.task_id))
        if task is None or not task.pending or task.pending[0].status.uuid != m.uuid:
            return
        self.stats["acks"] += 1
        task.pending.popleft()
        if task.pending:
            self._send_head(task)
        elif task.terminal:
            del self._tasks[(m.framework_id, m.task_id)]

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            cutoff = time.monotonic() - self.retry_interval
            for task in list(self._tasks.values()):
                if task.pending and task.sent_at < cutoff:
                    self.stats["resent"] += 1
                    self._send_head(task)

    @property
    def live_tasks(self) -> int:
        return sum(1 for t in self._tasks.values() if not t.terminal)


async def _amain(a: argparse.Namespace) -> None:
    secret = None
    if a.secret_file:
        with open(a.secret_file) as f:
            secret = f.read().strip()
    secret = secret or os.environ.get("BENCH_AGENT_SECRET") or None
    agents = EmulatedAgents(a.master, a.agents, resources=a.resources, secret=secret,
                            per_connection=a.per_connection, register_batch=a.register_batch,
                            report_starting=not a.no_starting)
    await agents.start()
    print(f"ready {agents.stats['registered']} {agents.registration_s:.3f}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    out = dict(agents.stats, registration_s=agents.registration_s, live_tasks=agents.live_tasks)
    await agents.stop(unregister=not a.no_unregister)
    print(json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="N emulated agents on the real agent channel")
    ap.add_argument("--master", required=True, help="HOST:PORT of the master")
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--resources", default=DEFAULT_RESOURCES)
    ap.add_argument("--per-connection", type=int, default=5000, help="agents per WebSocket")
    ap.add_argument("--register-batch", type=int, default=1000, help="REGISTERs in flight per WebSocket")
    ap.add_argument("--secret-file", help="file holding the master's --agent-secret")
    ap.add_argument("--no-starting", action="store_true", help="report TASK_RUNNING without TASK_STARTING")
    ap.add_argument("--no-unregister", action="store_true", help="just drop the connections at exit")
    a = ap.parse_args(argv)
    if a.agents < 1:
        print("--agents must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        run_loop(_amain(a))
    except (ConnectionError, OSError, asyncio.TimeoutError) as e:
        print(f"emulated agents: {e or type(e).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Agent integration tests: real subprocesses, a real WebSocket channel.

The master side is a small aiohttp endpoint speaking ``mesos_nb.protocol.channel`` (a test
double for the master only), so each test controls ACKs, kills and disconnections exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from conftest import async_wait_for

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.protocol.channel import (
    AckUpdate,
    AgentRegistered,
    ExecutorExited,
    KillTask,
    Ping,
    Pong,
    RegisterAgent,
    RunTask,
    ShutdownFramework,
    StatusUpdate,
    UnregisterAgent,
    decode_to_master,
    encode_frame,
)
from mesos_nb.protocol.messages import (
    ID,
    CommandInfo,
    DurationInfo,
    Environment,
    EnvironmentVariable,
    ExecutorInfo,
    FrameworkInfo,
    KillPolicy,
    TaskInfo,
)
from mesos_nb.protocol.resources import Resources

FW = "fw-1"


async def wait_for(pred, timeout: float = 15.0, what: str = "condition"):
    return await async_wait_for(pred, timeout, 0.01, what)


class FakeMaster:
    def __init__(self, *, auto_ack: bool = True, secret: str | None = None) -> None:
        self.auto_ack = auto_ack
        self.secret = secret
        self.received: list = []
        self.frames = 0
        self.ws: web.WebSocketResponse | None = None
        self.connections = 0
        self._n = 0
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/agent-channel", self.handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        await self.runner.cleanup()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if self.secret and request.headers.get("Authorization") != f"Bearer {self.secret}":
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        self.connections += 1
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            self.frames += 1
            for m in decode_to_master(msg.data):
                self.received.append(m)
                if isinstance(m, RegisterAgent):
                    self._n += 1
                    await self.send(AgentRegistered(key=m.key, agent_id=m.agent_id or f"AG-{self._n}", master_id="M1"))
                elif isinstance(m, StatusUpdate) and self.auto_ack:
                    await self.ack(m)
        return ws

    async def send(self, *msgs) -> None:
        assert self.ws is not None
        await self.ws.send_str(encode_frame(list(msgs)).decode())

    async def ack(self, m: StatusUpdate) -> None:
        await self.send(AckUpdate(agent_id=m.agent_id, framework_id=m.framework_id,
                                  task_id=m.status.task_id.value, uuid=m.status.uuid))

    def of(self, typ) -> list:
        return [m for m in self.received if isinstance(m, typ)]

    def updates(self, task_id: str) -> list[StatusUpdate]:
        return [m for m in self.of(StatusUpdate) if m.status.task_id.value == task_id]

    def states(self, task_id: str) -> list[str]:
        out: list[str] = []
        for u in self.updates(task_id):
            if not out or out[-1] != u.status.state:
                out.append(u.status.state)
        return out

    async def wait_state(self, task_id: str, state: str, timeout: float = 15.0) -> StatusUpdate:
        await wait_for(lambda: any(u.status.state == state for u in self.updates(task_id)), timeout,
                       f"{task_id} {state}")
        return next(u for u in self.updates(task_id) if u.status.state == state)


def framework(caps: list[str] | None = None) -> FrameworkInfo:
    from mesos_nb.protocol.messages import Capability

    return FrameworkInfo(user="u", name="fw", id=ID(value=FW), capabilities=[Capability(type=c) for c in caps or []])


def run_task(agent_id: str, task_id: str, cmd: str | None = None, *, shell: bool = True, args=(),
             grace: float | None = None, resources: str = "cpus:0.1;mem:32", env=None, executor=None,
             caps=None) -> RunTask:
    command = None
    if cmd is not None:
        command = CommandInfo(value=cmd, shell=shell, arguments=list(args),
                              environment=Environment(variables=[EnvironmentVariable(name=k, value=v) for k, v in (env or {}).items()]) if env else None)
    task = TaskInfo(
        name=task_id, task_id=ID(value=task_id), agent_id=ID(value=agent_id),
        resources=Resources.parse(resources).to_proto(), command=command, executor=executor,
        kill_policy=KillPolicy(grace_period=DurationInfo(nanoseconds=int(grace * 1e9))) if grace is not None else None,
    )
    return RunTask(agent_id=agent_id, framework=framework(caps), task=task)


@pytest.fixture
async def master():
    m = FakeMaster()
    await m.start()
    yield m
    await m.stop()


@pytest.fixture
async def cluster(master, tmp_path):
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"),
                      resources="cpus:4;mem:1024;disk:1000;ports:[31000-31009]", attributes="rack:a;zone:1",
                      status_update_retry_min=0.3, status_update_retry_max=1.0,
                      executor_shutdown_grace_period=2.0, detect_gpus=False)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    yield master, proc, proc.agents[0]
    await proc.stop()


@contextlib.asynccontextmanager
async def agents_on_fake_masters(work_dir: Path, resources: str) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``make(isolation, **config)`` starts a FakeMaster and one agent process with that
    isolation (each in a work dir of its own); all are stopped at the end."""
    made: list[tuple[AgentProcess, FakeMaster]] = []

    async def make(isolation: str, **kw: Any) -> tuple[FakeMaster, Any]:
        master = FakeMaster()
        await master.start()
        cfg = AgentConfig(master=master.address, port=0, work_dir=str(work_dir / f"agent{len(made)}"),
                          isolation=isolation, resources=resources, detect_gpus=False,
                          executor_shutdown_grace_period=0.5, **kw)
        proc = AgentProcess([cfg], register_timeout=10)
        await proc.start()
        made.append((proc, master))
        return master, proc.agents[0]

    try:
        yield make
    finally:
        for proc, master in made:
            await proc.stop()
            await master.stop()


def group_members(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    return out


async def test_register_and_state(cluster):
    master, proc, agent = cluster
    reg = master.of(RegisterAgent)[0]
    assert reg.port == agent.port and reg.agent_id is None
    assert Resources.from_proto(reg.resources).scalar("cpus") == 4
    assert {a.name for a in reg.attributes} == {"rack", "zone"}
    assert agent.agent_id == "AG-1"
    async with aiohttp.ClientSession() as s:
        for path in ("/state", "/state.json", "/slave(1)/state"):
            async with s.get(agent.url + path) as r:
                assert r.status == 200
                st = await r.json()
        assert st["id"] == "AG-1" and st["pid"] == f"slave(1)@127.0.0.1:{agent.port}"
        assert st["resources"]["cpus"] == 4 and st["resources"]["ports"] == "[31000-31009]"
        assert st["attributes"] == {"rack": "a", "zone": 1}
        async with s.get(agent.url + "/health") as r:
            assert r.status == 200
        async with s.get(agent.url + "/metrics/snapshot") as r:
            m = await r.json()
            assert m["slave/registered"] == 1 and m["slave/cpus_total"] == 4


async def test_failed_task_reports_exit_status_and_files(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-fail", "echo hi; echo oops >&2; exit 3"))
    failed = await master.wait_state("t-fail", "TASK_FAILED")
    assert master.states("t-fail") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"]
    assert failed.status.message == "Command exited with status 3"
    assert failed.status.reason is None  # Mesos' command executor sets no reason for a non-zero exit
    assert failed.status.source == "SOURCE_EXECUTOR"
    assert failed.status.agent_id.value == agent.agent_id and failed.status.executor_id.value == "t-fail"
    assert failed.status.uuid and failed.status.timestamp
    # A command executor's exit is no FAILURE for the framework (Mesos sends it for custom executors
    # only); it would have been sent in the same step as TASK_FAILED.
    assert not master.of(ExecutorExited)

    async with aiohttp.ClientSession() as s:
        async with s.get(agent.url + "/state") as r:
            st = await r.json()
        fws = st["frameworks"] + st["completed_frameworks"]
        exs = [e for f in fws for e in f["executors"] + f["completed_executors"]]
        directory = exs[0]["directory"]
        assert directory.startswith(agent.config.work_dir + "/slaves/AG-1/frameworks/fw-1/executors/t-fail/runs/")
        assert exs[0]["completed_tasks"][0]["state"] == "TASK_FAILED"
        with open(os.path.join(directory, "stdout")) as f:
            assert f.read() == "hi\n"

        async def read(**q):
            async with s.get(agent.url + "/files/read", params={k: str(v) for k, v in q.items()}) as r:
                return r.status, (await r.json() if r.status == 200 else await r.text())

        assert await read(path=directory + "/stdout") == (200, {"data": "hi\n", "offset": 0})
        assert await read(path=directory + "/stderr", offset=1) == (200, {"data": "ops\n", "offset": 1})
        assert await read(path=directory + "/stdout", offset=-1) == (200, {"data": "", "offset": 3})
        assert await read(path=directory + "/stdout", offset=10) == (200, {"data": "", "offset": 10})
        assert await read(path=directory + "/stdout", length=1) == (200, {"data": "h", "offset": 0})
        virt = "/frameworks/fw-1/executors/t-fail/runs/latest"
        assert await read(path=virt + "/stdout") == (200, {"data": "hi\n", "offset": 0})
        latest = os.path.join(os.path.dirname(directory), "latest")
        assert await read(path=latest + "/stdout") == (200, {"data": "hi\n", "offset": 0})

        # Refused: traversal, unattached, symlink escape.
        code, _ = await read(path=directory + "/../../../../../../../../etc/passwd")
        assert code in (403, 404)
        code, _ = await read(path=virt + "/../../../../../etc/passwd")
        assert code in (403, 404)
        assert (await read(path="/etc/passwd"))[0] == 404
        assert (await read(path=agent.config.work_dir))[0] == 404
        os.symlink("/etc/passwd", os.path.join(directory, "escape"))
        code, body = await read(path=directory + "/escape")
        assert code == 403 and "root:" not in body
        # Bad parameters.
        assert await read(offset=0) == (400, "Expecting 'path=value' in query.")
        assert (await read(path=directory + "/stdout", offset=-2))[0] == 400
        assert (await read(path=directory + "/stdout", offset="abc"))[0] == 400
        assert (await read(path=directory + "/stdout", length=-5))[0] == 400
        assert await read(path=directory) == (400, "Cannot read a directory.")

        async with s.get(agent.url + "/files/browse", params={"path": virt}) as r:
            entries = await r.json()
        names = {e["path"] for e in entries}
        assert {virt + "/stdout", virt + "/stderr"} <= names
        assert all(set(e) == {"path", "nlink", "size", "mtime", "mode", "uid", "gid"} for e in entries)
        async with s.get(agent.url + "/files/download", params={"path": virt + "/stdout"}) as r:
            assert r.status == 200 and await r.read() == b"hi\n"
        async with s.get(agent.url + "/files/download", params={"path": virt}) as r:
            assert r.status == 400
        async with s.get(agent.url + "/files/download", params={"path": "/etc/passwd"}) as r:
            assert r.status == 404
        async with s.get(agent.url + "/files/debug") as r:
            dbg = await r.json()
            assert dbg[virt] == directory


async def test_finished_task_and_environment(cluster):
    master, proc, agent = cluster
    cmd = 'echo "$MESOS_TASK_ID $MESOS_FRAMEWORK_ID $MESOS_EXECUTOR_ID $MESOS_SLAVE_ID $PORT0 $PORTS $FOO" > env.txt; pwd > pwd.txt; echo "$MESOS_SANDBOX" > sb.txt'
    await master.send(run_task(agent.agent_id, "t-env", cmd, resources="cpus:0.1;mem:32;ports:[31002-31003]",
                               env={"FOO": "bar"}))
    done = await master.wait_state("t-env", "TASK_FINISHED")
    assert done.status.message == "Command exited with status 0"
    fw = agent.frameworks.get(FW) or agent.completed_frameworks[FW]
    ex = fw.completed_executors[-1]
    with open(os.path.join(ex.directory, "env.txt")) as f:
        assert f.read().split() == ["t-env", FW, "t-env", agent.agent_id, "31002", "31002,31003", "bar"]
    with open(os.path.join(ex.directory, "pwd.txt")) as f:
        assert os.path.realpath(f.read().strip()) == os.path.realpath(ex.directory)
    await wait_for(lambda: agent.used.scalar("cpus") == 0, what="resources released")


async def test_argv_command(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-argv", "/bin/sh", shell=False, args=["sh", "-c", "exit 7"]))
    failed = await master.wait_state("t-argv", "TASK_FAILED")
    assert failed.status.message == "Command exited with status 7"


async def test_spawn_failure(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-nope", "/no/such/binary", shell=False))
    failed = await master.wait_state("t-nope", "TASK_FAILED")
    assert failed.status.reason == "REASON_CONTAINER_LAUNCH_FAILED"
    assert "/no/such/binary" in failed.status.message


async def test_custom_executor_that_exits_fails_its_task(cluster):
    master, proc, agent = cluster
    ex = ExecutorInfo(executor_id=ID(value="ex1"), command=CommandInfo(value="exit 3"))
    await master.send(run_task(agent.agent_id, "t-custom", None, executor=ex))
    failed = await master.wait_state("t-custom", "TASK_FAILED")
    assert failed.status.reason == "REASON_EXECUTOR_TERMINATED"
    assert failed.status.message == "Executor terminated: Command exited with status 3"
    assert failed.status.source == "SOURCE_AGENT"
    exited = await wait_for(lambda: master.of(ExecutorExited), what="EXECUTOR_EXITED")
    assert exited[0].executor_id == "ex1" and exited[0].status == 3 << 8


async def test_kill_kills_whole_process_group(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-kill", "sleep 60 & sleep 60 & wait", caps=["TASK_KILLING_STATE"]))
    running = await master.wait_state("t-kill", "TASK_RUNNING")
    pid = running.status.container_status["executor_pid"]
    await wait_for(lambda: len(group_members(pid)) >= 3, what="the sleeps")
    await master.send(KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="t-kill"))
    killed = await master.wait_state("t-kill", "TASK_KILLED")
    assert master.states("t-kill") == ["TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]
    assert "signal" in killed.status.message
    await wait_for(lambda: not group_members(pid), timeout=5, what="process group gone")


async def test_sigterm_ignored_gets_sigkill_after_grace(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-stubborn", "trap '' TERM; echo ready; sleep 60 & wait; sleep 60",
                               grace=0.5))
    running = await master.wait_state("t-stubborn", "TASK_RUNNING")
    pid = running.status.container_status["executor_pid"]
    fw = agent.frameworks[FW]
    stdout = os.path.join(fw.executors["t-stubborn"].directory, "stdout")
    await wait_for(lambda: os.path.exists(stdout) and open(stdout).read() == "ready\n", what="trap installed")
    t0 = time.monotonic()
    await master.send(KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="t-stubborn"))
    killed = await master.wait_state("t-stubborn", "TASK_KILLED")
    assert time.monotonic() - t0 >= 0.45
    assert killed.status.message == "Command terminated with signal Killed"
    await wait_for(lambda: not group_members(pid), timeout=5, what="process group gone")


async def test_kill_policy_from_kill_message(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-k2", "trap '' TERM; echo ready; sleep 60", grace=30))
    await master.wait_state("t-k2", "TASK_RUNNING")
    stdout = os.path.join(agent.frameworks[FW].executors["t-k2"].directory, "stdout")
    await wait_for(lambda: os.path.exists(stdout) and open(stdout).read() == "ready\n", what="trap installed")
    await master.send(KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="t-k2",
                               kill_policy=KillPolicy(grace_period=DurationInfo(nanoseconds=100_000_000))))
    await master.wait_state("t-k2", "TASK_KILLED", timeout=10)


async def test_updates_resent_until_ack(cluster):
    master, proc, agent = cluster
    master.auto_ack = False
    await master.send(run_task(agent.agent_id, "t-retry", "true"))
    await wait_for(lambda: len(master.updates("t-retry")) >= 3, what="resends")
    ups = master.updates("t-retry")
    assert {u.status.state for u in ups} == {"TASK_STARTING"}
    assert len({u.status.uuid for u in ups}) == 1
    await master.ack(ups[0])
    await master.wait_state("t-retry", "TASK_RUNNING")
    running = master.updates("t-retry")[-1]
    await master.ack(running)
    fin = await master.wait_state("t-retry", "TASK_FINISHED")
    await master.ack(fin)
    await wait_for(lambda: ("fw-1", "t-retry") not in agent.tasks, what="stream done")
    n = len(master.updates("t-retry"))
    await asyncio.sleep(0.7)  # longer than retry_min: nothing more is sent after the final ack
    assert len(master.updates("t-retry")) == n


async def test_reconnect_reregisters_with_tasks_and_resends(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-long", "sleep 60"))
    await master.wait_state("t-long", "TASK_RUNNING")
    master.auto_ack = False
    await master.ws.close()
    await wait_for(lambda: master.connections == 2 and len(master.of(RegisterAgent)) == 2, what="re-register")
    reg = master.of(RegisterAgent)[-1]
    assert reg.agent_id == agent.agent_id
    assert [(t.task.task_id.value, t.state, t.framework_id) for t in reg.tasks] == [("t-long", "TASK_RUNNING", FW)]
    # Kill while unacknowledged, drop the connection again: the KILLED head is resent after re-registration.
    await master.send(KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="t-long"))
    killed = await master.wait_state("t-long", "TASK_KILLED")
    await master.ws.close()
    await wait_for(lambda: len(master.of(RegisterAgent)) == 3, what="re-register 2")
    await wait_for(lambda: [u for u in master.updates("t-long") if u.status.uuid == killed.status.uuid][1:],
                   what="resend after reconnect")
    reg = master.of(RegisterAgent)[-1]
    # An unacknowledged terminal task is reported in its last non-terminal state: the (resent)
    # terminal update is what tells the master, once, how it ended (and frees its resources).
    assert [(t.task.task_id.value, t.state) for t in reg.tasks] == [("t-long", "TASK_RUNNING")]


async def test_ping_pong_and_coalesced_frames(cluster):
    master, proc, agent = cluster
    await master.send(Ping(seq=7))
    await wait_for(lambda: any(p.seq == 7 for p in master.of(Pong)), what="pong")
    frames_before = master.frames
    await master.send(*[run_task(agent.agent_id, f"t-many-{i}", "true") for i in range(20)])
    for i in range(20):
        await master.wait_state(f"t-many-{i}", "TASK_FINISHED")
    # 20 tasks x (3 updates + executor exit) = 80 messages, coalesced into fewer frames
    assert master.frames - frames_before < 80


async def test_shutdown_framework_kills_tasks(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-sf", "sleep 60"))
    running = await master.wait_state("t-sf", "TASK_RUNNING")
    pid = running.status.container_status["executor_pid"]
    await master.send(ShutdownFramework(agent_id=agent.agent_id, framework_id=FW))
    await wait_for(lambda: not group_members(pid), what="framework tasks gone")
    # The framework completes as its last executor ends; shutdown_framework drops the
    # framework's pending updates a loop turn later (after its kills are reported).
    await wait_for(lambda: not agent.frameworks and not agent.status_updates.pending(FW),
                   what="framework completed, its updates dropped")


async def test_stop_kills_and_unregisters(master, tmp_path):
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path), resources="cpus:1;mem:64",
                      detect_gpus=False)
    proc = AgentProcess([cfg, AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "b"),
                                          resources="cpus:1;mem:64", detect_gpus=False)])
    await proc.start()
    a, b = proc.agents
    assert a.agent_id != b.agent_id and a.port != b.port
    assert master.connections == 1
    await master.send(run_task(a.agent_id, "t-stop", "sleep 60"))
    running = await master.wait_state("t-stop", "TASK_RUNNING")
    pid = running.status.container_status["executor_pid"]
    await proc.stop()
    await wait_for(lambda: len(master.of(UnregisterAgent)) == 2, what="unregister")
    assert master.states("t-stop")[-1] == "TASK_KILLED"
    assert not group_members(pid)


async def test_unreachable_master(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = AgentProcess([AgentConfig(master=f"127.0.0.1:{port}", port=0, work_dir=str(tmp_path),
                                     resources="cpus:1;mem:64", detect_gpus=False)], register_timeout=0.5)
    with pytest.raises(ConnectionError, match=f"cannot reach the master at 127.0.0.1:{port}"):
        await proc.start()


async def test_secret_sent_and_wrong_secret_refused(tmp_path):
    m = FakeMaster(secret="s3cret")
    await m.start()
    try:
        ok = AgentProcess([AgentConfig(master=f"http://{m.address}", port=0, work_dir=str(tmp_path),
                                       resources="cpus:1;mem:64", detect_gpus=False)], secret="s3cret")
        await ok.start()
        await ok.stop()
        bad = AgentProcess([AgentConfig(master=m.address, port=0, work_dir=str(tmp_path),
                                        resources="cpus:1;mem:64", agent_secret="nope", detect_gpus=False)],
                           register_timeout=5)
        with pytest.raises(ConnectionError, match="refused"):
            await bad.start()
    finally:
        await m.stop()


async def test_kill_during_launch(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-early", "sleep 60"),
                      KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="t-early"))
    killed = await master.wait_state("t-early", "TASK_KILLED")
    assert killed.status.reason == "REASON_TASK_KILLED_DURING_LAUNCH"
    assert "TASK_RUNNING" not in master.states("t-early")


async def test_monitor_statistics(cluster):
    master, proc, agent = cluster
    await master.send(run_task(agent.agent_id, "t-mon", "sleep 60", resources="cpus:0.5;mem:64"))
    await master.wait_state("t-mon", "TASK_RUNNING")

    async def sample() -> dict | None:
        async with aiohttp.ClientSession() as s, s.get(agent.url + "/monitor/statistics") as r:
            entry = next(e for e in await r.json() if e["executor_id"] == "t-mon")
        assert entry["framework_id"] == FW
        # TASK_RUNNING can come before the command's process has a resident page (a busy box)
        return entry["statistics"] if entry["statistics"]["mem_rss_bytes"] > 0 else None

    st = await wait_for(sample, 15, what="a resident set in the statistics")
    assert st["cpus_limit"] == 0.5 and st["mem_limit_bytes"] == 64 * 1024 * 1024
    assert st["mem_rss_bytes"] > 0 and st["timestamp"] > 0
    await master.send(KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="t-mon"))
    await master.wait_state("t-mon", "TASK_KILLED")

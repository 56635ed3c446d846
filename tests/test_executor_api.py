"""The v1 executor HTTP API on the agent, driven by hand (the test plays the executor).

A custom executor whose command never calls back (``sleep``) is launched through a fake
master; the test then SUBSCRIBEs as that executor and exercises every call, including
hostile ones, which must get a 4xx naming the problem and change nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import aiohttp
import pytest
from test_agent_integration import FW, FakeMaster, framework, run_task, wait_for

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.protocol import recordio
from mesos_nb.protocol.channel import (
    ExecutorExited,
    ExecutorToFramework,
    FrameworkToExecutor,
    KillTask,
    RunTask,
    ShutdownExecutor,
    StatusUpdate,
)
from mesos_nb.protocol.messages import ID, CommandInfo, ExecutorInfo

EX = "my-executor"


def executor_info(cmd: str = "sleep 60") -> ExecutorInfo:
    return ExecutorInfo(executor_id=ID(value=EX), command=CommandInfo(value=cmd))


@pytest.fixture
async def env(tmp_path):
    master = FakeMaster()
    await master.start()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation="posix",
                      resources="cpus:4;mem:1024;disk:1000;ports:[31000-31009]",
                      status_update_retry_min=0.3, status_update_retry_max=1.0,
                      executor_shutdown_grace_period=0.5, detect_gpus=False)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    agent = proc.agents[0]
    await master.send(run_task(agent.agent_id, "t1", None, executor=executor_info(), resources="cpus:0.1;mem:32"))
    await wait_for(lambda: agent.frameworks.get(FW) and EX in agent.frameworks[FW].executors
                   and agent.frameworks[FW].executors[EX].state == "REGISTERING", what="executor launched")
    session = aiohttp.ClientSession()
    yield master, agent, session
    await session.close()
    await proc.stop()
    await master.stop()


def call(type_: str, fw: str = FW, ex: str = EX, **body) -> dict:
    return {"type": type_, "framework_id": {"value": fw}, "executor_id": {"value": ex}, **body}


def update(task_id: str, state: str, uid: bytes | None = None) -> dict:
    status = {"task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
              "timestamp": 1795543809.5}
    status["uuid"] = base64.b64encode(uid if uid is not None else uuid.uuid4().bytes).decode()
    return call("UPDATE", update={"status": status})


class Subscription:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.dec = recordio.Decoder()
        self.events: list[dict] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for chunk in self.resp.content.iter_any():
            self.events.extend(json.loads(r) for r in self.dec.feed(chunk))

    def of(self, t: str) -> list[dict]:
        return [e for e in self.events if e["type"] == t]

    async def close(self) -> None:
        self.task.cancel()
        self.resp.close()


async def subscribe(session, agent, **sub) -> Subscription:
    resp = await session.post(f"{agent.url}/api/v1/executor",
                              json=call("SUBSCRIBE", subscribe={"unacknowledged_tasks": [], "unacknowledged_updates": [], **sub}))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    return Subscription(resp)


async def post(session, agent, body, *, content_type="application/json", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(f"{agent.url}/api/v1/executor", data=data,
                            headers={"Content-Type": content_type, **(headers or {})}) as r:
        return r.status, await r.text()


async def test_hostile_calls_get_4xx_and_change_nothing(env):
    master, agent, session = env
    ex = agent.frameworks[FW].executors[EX]
    before = (len(master.received), ex.state, agent.tasks[(FW, "t1")].state)
    cases = [
        (dict(body=call("SUBSCRIBE", subscribe={}), content_type="text/plain"), 415, "Content-Type"),
        (dict(body=call("SUBSCRIBE", subscribe={}), headers={"Accept": "text/html"}), 406, "Accept"),
        (dict(body=b"{not json"), 400, "Failed to parse"),
        (dict(body=b"[1, 2]"), 400, "Failed to validate"),
        (dict(body={"framework_id": {"value": FW}, "executor_id": {"value": EX}}), 400, "'type'"),
        (dict(body=call("LAUNCH")), 400, "Unknown or unsupported"),
        (dict(body={"type": "UPDATE", "framework_id": {"value": FW}}), 400, "'executor_id'"),
        (dict(body=call("SUBSCRIBE")), 400, "'subscribe'"),
        (dict(body=call("SUBSCRIBE", fw="no-such-fw", subscribe={})), 400, "Framework cannot be found"),
        (dict(body=call("SUBSCRIBE", ex="wrong-executor", subscribe={})), 400, "Executor cannot be found"),
        (dict(body=update("t1", "TASK_RUNNING")), 403, "not subscribed"),
        (dict(body=call("MESSAGE", message={"data": "aGk="})), 403, "not subscribed"),
        (dict(body=b"x" * (5 * 1024 * 1024)), 413, "exceeds"),
        (dict(body=update("t1", "TASK_RUNNING", uid=b"short")), 400, "Not a valid UUID"),
    ]
    for kwargs, status, words in cases:
        got, text = await post(session, agent, **kwargs)
        assert (got, words in text) == (status, True), (kwargs.get("body", b"")[:80], got, text)
    async with session.get(f"{agent.url}/api/v1/executor") as r:
        assert r.status == 405
    # Subscribed now: bad updates are still refused.
    sub = await subscribe(session, agent)
    await wait_for(lambda: sub.of("LAUNCH"), what="LAUNCH")
    bad_updates = [
        (update("t1", "TASK_RUNNING", uid=b"x" * 15), "Not a valid UUID"),
        (update("t1", "TASK_STAGING"), "TASK_STAGING"),
        (update("other-task", "TASK_RUNNING"), "not known"),
        (update("t1", "NOT_A_STATE"), "Failed to validate"),
    ]
    bad = update("t1", "TASK_RUNNING")
    bad["update"]["status"]["uuid"] = "!!!not base64!!!"
    bad_updates.append((bad, "Failed to validate"))
    wrong_src = update("t1", "TASK_RUNNING")
    wrong_src["update"]["status"]["source"] = "SOURCE_MASTER"
    bad_updates.append((wrong_src, "wrong source"))
    wrong_ex = update("t1", "TASK_RUNNING")
    wrong_ex["update"]["status"]["executor_id"] = {"value": "someone-else"}
    bad_updates.append((wrong_ex, "do not match"))
    for body, words in bad_updates:
        got, text = await post(session, agent, body)
        assert got == 400 and words in text, (got, text)
    assert len(master.received) == before[0]
    assert agent.tasks[(FW, "t1")].state == before[2] == "TASK_STAGING"
    assert not master.of(StatusUpdate)
    assert not sub.of("ACKNOWLEDGED")
    await sub.close()


async def test_subscribe_update_message_launch_kill_shutdown(env):
    master, agent, session = env
    sub = await subscribe(session, agent)
    await wait_for(lambda: sub.of("LAUNCH"), what="LAUNCH")
    subscribed = sub.of("SUBSCRIBED")[0]["subscribed"]
    assert subscribed["executor_info"]["executor_id"] == {"value": EX}
    assert subscribed["framework_info"]["id"] == {"value": FW}
    assert subscribed["agent_info"]["id"] == {"value": agent.agent_id}
    assert sub.of("LAUNCH")[0]["launch"]["task"]["task_id"] == {"value": "t1"}
    # UPDATE: 202, forwarded with agent_id/executor_id filled in, ACKNOWLEDGED with the same uuid.
    uid = uuid.uuid4().bytes
    assert (await post(session, agent, update("t1", "TASK_RUNNING", uid)))[0] == 202
    running = await master.wait_state("t1", "TASK_RUNNING")
    assert running.status.agent_id.value == agent.agent_id and running.status.executor_id.value == EX
    assert running.status.uuid == uid and running.agent_id == agent.agent_id
    await wait_for(lambda: sub.of("ACKNOWLEDGED"), what="ACKNOWLEDGED")
    ack = sub.of("ACKNOWLEDGED")[0]["acknowledged"]
    assert ack == {"task_id": {"value": "t1"}, "uuid": base64.b64encode(uid).decode()}
    # The same update again (same uuid) is not forwarded twice.
    assert (await post(session, agent, update("t1", "TASK_RUNNING", uid)))[0] == 202
    # MESSAGE both ways.
    assert (await post(session, agent, call("MESSAGE", message={"data": base64.b64encode(b"pong").decode()})))[0] == 202
    msgs = await wait_for(lambda: master.of(ExecutorToFramework), what="executor message")
    assert msgs[0].data == b"pong" and msgs[0].executor_id == EX
    await master.send(FrameworkToExecutor(agent_id=agent.agent_id, framework_id=FW, executor_id=EX, data=b"ping"))
    await wait_for(lambda: sub.of("MESSAGE"), what="framework message")
    assert base64.b64decode(sub.of("MESSAGE")[0]["message"]["data"]) == b"ping"
    # LAUNCH a second task into the running executor (same executor id), then LAUNCH_GROUP.
    await master.send(run_task(agent.agent_id, "t2", None, executor=executor_info()))
    await wait_for(lambda: len(sub.of("LAUNCH")) == 2, what="second LAUNCH")
    t3 = run_task(agent.agent_id, "t3", None, executor=executor_info()).task
    await master.send(RunTask(agent_id=agent.agent_id, framework=framework(), executor=executor_info(), task_group=[t3]))
    await wait_for(lambda: sub.of("LAUNCH_GROUP"), what="LAUNCH_GROUP")
    assert [t["task_id"]["value"] for t in sub.of("LAUNCH_GROUP")[0]["launch_group"]["task_group"]["tasks"]] == ["t3"]
    assert len(agent.frameworks[FW].executors) == 1
    # KILL goes to the executor; it answers TASK_KILLED.
    await master.send(KillTask(agent_id=agent.agent_id, framework_id=FW, task_id="t2"))
    await wait_for(lambda: sub.of("KILL"), what="KILL")
    assert sub.of("KILL")[0]["kill"]["task_id"] == {"value": "t2"}
    assert (await post(session, agent, update("t2", "TASK_KILLED")))[0] == 202
    await master.wait_state("t2", "TASK_KILLED")
    assert (await post(session, agent, update("t1", "TASK_FINISHED")))[0] == 202
    await master.wait_state("t1", "TASK_FINISHED")
    assert [u.status.uuid for u in master.updates("t1")].count(uid) == 1
    # SHUTDOWN: event, then the container is destroyed after the grace period; t3 fails.
    await master.send(ShutdownExecutor(agent_id=agent.agent_id, framework_id=FW, executor_id=EX))
    await wait_for(lambda: sub.of("SHUTDOWN"), what="SHUTDOWN")
    exited = await wait_for(lambda: master.of(ExecutorExited), what="ExecutorExited")
    assert exited[0].executor_id == EX
    t3_end = await master.wait_state("t3", "TASK_KILLED")
    assert t3_end.status.source == "SOURCE_AGENT"
    await sub.close()


async def test_registration_timeout_fails_tasks(tmp_path):
    master = FakeMaster()
    await master.start()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation="posix",
                      resources="cpus:4;mem:1024", executor_registration_timeout=0.5, detect_gpus=False)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    try:
        agent = proc.agents[0]
        await master.send(run_task(agent.agent_id, "t1", None, executor=executor_info("sleep 60")))
        failed = await master.wait_state("t1", "TASK_FAILED")
        assert failed.status.reason == "REASON_EXECUTOR_REGISTRATION_TIMEOUT"
        assert "did not register within 0.5 secs" in failed.status.message
        await wait_for(lambda: master.of(ExecutorExited), what="executor destroyed")
        assert not agent.frameworks.get(FW) or not agent.frameworks[FW].executors
    finally:
        await proc.stop()
        await master.stop()


async def test_executor_environment(tmp_path):
    """MESOS_* for a custom executor: MESOS_CHECKPOINT only when the framework checkpoints; ports."""
    master = FakeMaster()
    await master.start()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation="posix",
                      resources="cpus:4;mem:1024;ports:[31000-31009]", detect_gpus=False)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    try:
        agent = proc.agents[0]
        cmd = "env > env.txt; sleep 60"
        await master.send(run_task(agent.agent_id, "t1", None, executor=executor_info(cmd),
                                   resources="cpus:0.1;mem:32;ports:[31003-31004]"))
        ex = await wait_for(lambda: agent.frameworks.get(FW) and agent.frameworks[FW].executors.get(EX))
        path = f"{ex.directory}/env.txt"

        def env_file():
            try:
                text = open(path).read()
            except OSError:
                return None
            return dict(line.split("=", 1) for line in text.splitlines() if "=" in line) if "PORTS" in text else None

        e = await wait_for(env_file, what="env.txt")
        assert e["MESOS_AGENT_ENDPOINT"] == agent.endpoint
        assert e["MESOS_FRAMEWORK_ID"] == FW and e["MESOS_EXECUTOR_ID"] == EX
        assert e["MESOS_SLAVE_ID"] == agent.agent_id and e["MESOS_DIRECTORY"] == ex.directory
        assert e["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"].endswith("secs")
        assert "MESOS_CHECKPOINT" not in e
        assert e["PORT0"] == "31003" and e["PORTS"] == "31003,31004"
        # The executor runs in its own session. Its command can write env.txt before the agent
        # has handled the launcher's reply, so wait for the container to be recorded.
        import os
        await wait_for(lambda: ex.container is not None, what="the executor's container recorded")
        assert os.getsid(ex.container.pid) == ex.container.pid
    finally:
        await proc.stop()
        await master.stop()

"""Attack 2, "anyone can be an agent", performed against a secure-by-default local cluster.

Each test is the attack as an outsider (or a holder of a credential that is not the real
agent's) would run it against the agent channel, and what the master does about it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.local import LocalCluster
from mesos_nb.master.security import validate_agent_address
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.credentials import basic_header
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver, command_task

pytest.importorskip("mesos_nb.agent.process")


@pytest.fixture
async def cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    c = LocalCluster(agents=1, port=0, work_dir=str(tmp_path / "c"), agent_resources="cpus:2;mem:512",
                     authenticate=True)
    await c.start()
    yield c
    await c.stop()


def auth(c: LocalCluster) -> dict[str, str]:
    return {"Authorization": basic_header(c.principal, c.secret)}


async def get_state(c: LocalCluster) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers=auth(c)) as s, s.get(c.master_url + "/master/state") as r:
        assert r.status == 200
        return await r.json()


class Rogue:
    """A process speaking the agent channel by hand."""

    def __init__(self, c: LocalCluster, headers: dict[str, str] | None = None) -> None:
        self.url = c.master_url.replace("http://", "ws://") + "/api/v1/agent-channel"
        self.headers = headers or {}
        self.session: aiohttp.ClientSession | None = None
        self.ws: Any = None
        self.received: list[Any] = []

    async def __aenter__(self) -> Rogue:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url, headers=self.headers)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.ws.close()
        await self.session.close()

    async def send(self, *msgs: Any) -> None:
        await self.ws.send_str(ch.encode_frame(list(msgs)).decode())

    async def wait(self, kind: type, timeout: float = 10.0) -> Any:
        async def one() -> Any:
            while True:
                for x in self.received:
                    if isinstance(x, kind):
                        return x
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"channel closed: {msg}")
                self.received.extend(ch.decode_to_agent(msg.data))

        return await asyncio.wait_for(one(), timeout)


def register(key: str = "r", hostname: str = "127.0.0.1", port: int = 40000, agent_id: str | None = None,
             tasks: list[ch.TaskReport] | None = None) -> ch.RegisterAgent:
    return ch.RegisterAgent(key=key, hostname=hostname, port=port, agent_id=agent_id,
                            resources=Resources.parse("cpus:64;mem:65536").to_proto(), tasks=tasks or [])


class Sleeper(Scheduler):
    def __init__(self) -> None:
        self.updates: list[m.TaskStatus] = []
        self.launched = False

    async def offers(self, driver, offers):
        if not self.launched:
            self.launched = True
            env = {"DB_PASSWORD": "hunter2"}
            await driver.launch([offers[0].id], [command_task(offers[0], "sleep 60", cpus=0.1, mem=32,
                                                              task_id="victim", env=env)])
        else:
            await driver.decline([o.id for o in offers], refuse_seconds=60)

    def update(self, driver, status):
        self.updates.append(status)


async def running_victim(c: LocalCluster) -> tuple[SchedulerDriver, Sleeper]:
    sched = Sleeper()
    # no principal given: the SDK finds the local cluster's credentials by itself
    driver = SchedulerDriver(sched, m.FrameworkInfo(user="", name="victim-fw"), c.master_address)
    await driver.start()
    await async_wait_for(lambda: any(u.state == "TASK_RUNNING" for u in sched.updates), 20)
    return driver, sched


async def test_channel_without_credentials_is_refused(cluster):
    async with aiohttp.ClientSession() as s:
        url = cluster.master_url.replace("http://", "ws://") + "/api/v1/agent-channel"
        for headers in ({}, {"Authorization": "Bearer guess"},
                        {"Authorization": basic_header(cluster.principal, "wrong")}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(url, headers=headers)
            assert e.value.status == 401
        # a web page cannot open the channel with the browser's cached credentials
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await s.ws_connect(url, headers={**auth(cluster), "Origin": "http://evil.example"})
        assert e.value.status == 403
    state = await get_state(cluster)
    assert len(state["slaves"]) == 1


async def test_a_credential_cannot_take_over_a_real_agents_id(cluster):
    driver, sched = await running_victim(cluster)
    try:
        real = (await get_state(cluster))["slaves"][0]["id"]
        async with Rogue(cluster, auth(cluster)) as rogue:
            await rogue.send(register(agent_id=real))
            refused = await rogue.wait(ch.Refused)
            assert real in refused.message and "another" in refused.message
        state = await get_state(cluster)
        task = state["frameworks"][0]["tasks"][0]
        assert task["id"] == "victim" and task["state"] == "TASK_RUNNING" and task["slave_id"] == real
        assert not any(m.is_terminal(u.state) for u in sched.updates)
    finally:
        await driver.stop()


async def test_status_updates_only_for_the_agents_own_tasks(cluster):
    driver, sched = await running_victim(cluster)
    try:
        real = (await get_state(cluster))["slaves"][0]["id"]
        fid = driver.framework_id
        async with Rogue(cluster, auth(cluster)) as rogue:
            await rogue.send(register())
            mine = (await rogue.wait(ch.AgentRegistered)).agent_id
            forged = [
                ch.StatusUpdate(agent_id=agent_id, framework_id=fid, status=m.TaskStatus(
                    task_id=m.ID(value="victim"), state="TASK_FAILED", uuid=b"0123456789abcdef",
                    source="SOURCE_EXECUTOR", message="forged"))
                for agent_id in (mine, real)
            ]
            await rogue.send(*forged)
            # a message the master answers proves the forged ones were processed before it
            await rogue.send(ch.UnregisterAgent(agent_id=mine))
            await async_wait_for(lambda: len(cluster.master.core.agents) == 1, 10)
        state = await get_state(cluster)
        task = state["frameworks"][0]["tasks"][0]
        assert task["state"] == "TASK_RUNNING"
        assert not any(u.state == "TASK_FAILED" for u in sched.updates)
    finally:
        await driver.stop()


async def test_a_rogue_agent_is_never_sent_tasks_or_secrets(cluster):
    """Without a credential nothing registers; a rogue with the agent's stolen id gets nothing."""
    async with aiohttp.ClientSession() as s:
        url = cluster.master_url.replace("http://", "ws://") + "/api/v1/agent-channel"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(url)
    driver, sched = await running_victim(cluster)
    try:
        state = await get_state(cluster)
        assert [s["resources"]["cpus"] for s in state["slaves"]] == [2]
        assert json.dumps(state).count("hunter2") <= 1  # the task's own env in state; no rogue got it
    finally:
        await driver.stop()


@pytest.mark.parametrize("hostname,port", [
    ("127.0.0.1:5050/admin/secret?", 40000),
    ("evil.example/x", 40000),
    ("host name", 40000),
    ("127.0.0.1", 0),
    ("127.0.0.1", 70000),
    ("user@127.0.0.1", 40000),
])
async def test_agent_address_that_would_steer_callbacks_is_refused(cluster, hostname, port):
    async with Rogue(cluster, auth(cluster)) as rogue:
        await rogue.send(register(hostname=hostname, port=port))
        refused = await rogue.wait(ch.Refused)
        assert "Invalid agent" in refused.message
    assert len((await get_state(cluster))["slaves"]) == 1


def test_agent_address_rules():
    assert validate_agent_address("127.0.0.1", 5051) is None
    assert validate_agent_address("node-1.example.com", 5051) is None
    assert validate_agent_address("::1", 5051) is None
    assert validate_agent_address("127.0.0.1:1/x?", 5051) is not None
    assert validate_agent_address("a" * 300, 5051) is not None

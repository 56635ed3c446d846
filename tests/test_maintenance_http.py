"""Maintenance and draining over HTTP against a real master and real agents on two
addresses (127.0.0.1 and 127.0.0.2): a pymesos framework gets an inverse offer and loses its
task at START_MAINTENANCE with Mesos's reason; DRAIN_AGENT kills with each task's grace
period capped by max_grace_period; deactivation stops offers; ACLs apply."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.master.security import SecurityConfig
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol.messages import DurationInfo, FrameworkInfo, KillPolicy
from mesos_nb.scheduler import Scheduler, SchedulerDriver, command_task

pytest.importorskip("mesos_nb.agent.process")
from mesos_nb.agent.config import AgentConfig  # noqa: E402
from mesos_nb.agent.process import AgentProcess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "pymesos_apps" / "maintenance_scheduler.py"
PYMESOS_PY = Path(os.environ.get("MESOS_NB_PYMESOS_PYTHON", ROOT / ".venv-pymesos" / "bin" / "python"))
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
HOUR_NS = 3_600_000_000_000
M2 = {"hostname": "127.0.0.2", "ip": "127.0.0.2"}


async def call(url: str, body: dict, status: int = 200):
    async with aiohttp.ClientSession() as s, s.post(url + "/api/v1", json=body, headers=JSON) as r:
        text = await r.text()
        assert r.status == status, (body, r.status, text)
        return json.loads(text) if text and r.content_type == "application/json" else text


def agent_config(master: MasterServer, host: str, work_dir: Path) -> AgentConfig:
    return AgentConfig(master=f"127.0.0.1:{master.port}", host=host, port=0, resources="cpus:2;mem:512",
                       work_dir=str(work_dir))


async def start_agents(master: MasterServer, tmp: Path, *hosts: str) -> AgentProcess:
    configs = [agent_config(master, h, tmp / f"agent-{h}-{i}") for i, h in enumerate(hosts)]
    proc = AgentProcess(configs, master=master.url, secret=master.config.agent_secret, register_timeout=5.0)
    await proc.start()
    return proc


@pytest.fixture
async def two_hosts(tmp_path):
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1, agent_secret="s3cret"))
    await master.start()
    agents = await start_agents(master, tmp_path, "127.0.0.1", "127.0.0.2")
    try:
        yield master, agents
    finally:
        await agents.stop(kill_tasks=True)
        await master.stop()


def agent_id_at(master: MasterServer, host: str) -> str:
    return next(a.id for a in master.core.agents.values() if a.hostname == host)


class AppOutput:
    """The pymesos app's JSON lines as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            if raw.startswith(b"{"):
                self.lines.append(json.loads(raw))

    def events(self, kind: str) -> list[dict]:
        return [x for x in self.lines if x.get("event") == kind]


@pytest.mark.pymesos
@pytest.mark.skipif(not PYMESOS_PY.exists() and not os.environ.get("CI"), reason=f"no pymesos virtualenv at {PYMESOS_PY}")
async def test_pymesos_framework_gets_inverse_offer_then_task_lost_at_machine_down(two_hosts, tmp_path):
    master, _agents = two_hosts
    url = master.url
    proc = await asyncio.create_subprocess_exec(str(PYMESOS_PY), str(APP), f"127.0.0.1:{master.port}", "127.0.0.2",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    app = AppOutput(proc)
    try:
        await async_wait_for(lambda: (t := master.core.find_task("long")) is not None and t.state == "TASK_RUNNING",
                             timeout=30, message="the pymesos task running on 127.0.0.2")
        start_ns = int((time.time() + 3600) * 1e9)
        unavailability = {"start": {"nanoseconds": start_ns}, "duration": {"nanoseconds": HOUR_NS}}
        schedule = {"windows": [{"machine_ids": [M2], "unavailability": unavailability}]}
        await call(url, {"type": "UPDATE_MAINTENANCE_SCHEDULE", "update_maintenance_schedule": {"schedule": schedule}})
        got = await call(url, {"type": "GET_MAINTENANCE_SCHEDULE"})
        assert got["get_maintenance_schedule"]["schedule"] == schedule
        # the framework using the machine gets an inverse offer; offers from it carry the window
        await async_wait_for(lambda: app.events("inverse_offer"), timeout=20, message="an inverse offer")
        io = app.events("inverse_offer")[0]
        assert io["agent_id"] == agent_id_at(master, "127.0.0.2") and io["unavailability"] == unavailability
        await async_wait_for(lambda: app.events("offer_unavailability"), timeout=20, message="an offer with unavailability")
        assert {x["hostname"] for x in app.events("offer_unavailability")} == {"127.0.0.2"}

        async def declined() -> bool:
            st = (await call(url, {"type": "GET_MAINTENANCE_STATUS"}))["get_maintenance_status"]["status"]
            return [s["status"] for d in st.get("draining_machines", []) for s in d.get("statuses", [])] == ["DECLINE"]

        await async_wait_for(declined, timeout=20, message="the DECLINE shown by GET_MAINTENANCE_STATUS")
        async with aiohttp.ClientSession() as s, s.get(url + "/master/maintenance/status") as r:
            assert (await r.json())["draining_machines"][0]["id"] == M2

        await call(url, {"type": "START_MAINTENANCE", "start_maintenance": {"machines": [{"hostname": "nope"}]}}, 400)
        await call(url, {"type": "START_MAINTENANCE", "start_maintenance": {"machines": [M2]}})
        await asyncio.wait_for(proc.wait(), 60)
        await asyncio.wait_for(app.reader, 10)
        assert app.lines[-1]["done"] is True, app.lines
        assert app.lines[-1]["result"] == {"state": "TASK_LOST", "reason": "REASON_AGENT_REMOVED",
                                           "message": "Agent 127.0.0.2 removed: Operator initiated 'Machine DOWN'"}
        agents = (await call(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
        assert [a["agent_info"]["hostname"] for a in agents] == ["127.0.0.1"]
        status = (await call(url, {"type": "GET_MAINTENANCE_STATUS"}))["get_maintenance_status"]["status"]
        assert status == {"down_machines": [M2]}
        # the agent was told to shut down: its task process is gone
        await async_wait_for(lambda: not [a for a in _agents.agents if a.config.host == "127.0.0.2" and a.tasks],
                             timeout=20, message="the DOWN agent's tasks killed")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # an agent on the DOWN machine is refused until STOP_MAINTENANCE (v0 /machine/up here)
    with pytest.raises(ConnectionError, match="DOWN"):
        await start_agents(master, tmp_path / "again", "127.0.0.2")
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/master/machine/up", json=[{"hostname": "nope"}]) as r:
            assert r.status == 400 and "not in DOWN mode" in await r.text()
        async with s.post(url + "/master/machine/up", json=[M2]) as r:
            assert r.status == 200, await r.text()
    back = await start_agents(master, tmp_path / "back", "127.0.0.2")
    try:
        assert (await call(url, {"type": "GET_MAINTENANCE_SCHEDULE"}))["get_maintenance_schedule"]["schedule"] == {}
        assert len(master.core.agents) == 2
    finally:
        await back.stop()


TRAP = ("trap 'touch {d}/{name}.term; sleep {handler}; touch {d}/{name}.done; exit 0' TERM; "
        "touch {d}/{name}.up; while :; do sleep 0.1; done")


class Drained(Scheduler):
    """Launches queued tasks on agent ``host``; records updates and offers by agent."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.pending: list = []
        self.updates: list = []
        self.offers_at: dict[str, float] = {}

    async def offers(self, driver, offers):
        for offer in offers:
            self.offers_at[offer.hostname] = time.monotonic()
            if self.pending and offer.hostname == self.host:
                tasks = []
                for tid, cmd, grace in self.pending:
                    t = command_task(offer, cmd, cpus=0.1, mem=16, task_id=tid)
                    t.kill_policy = KillPolicy(grace_period=DurationInfo(nanoseconds=int(grace * 1e9)))
                    tasks.append(t)
                self.pending = []
                await driver.launch([offer.id], tasks)
            else:
                await driver.decline([offer.id], refuse_seconds=0.2)

    def update(self, driver, status):
        self.updates.append((time.monotonic(), status))

    def last(self, tid: str):
        got = [s for _, s in self.updates if s.task_id.value == tid]
        return got[-1] if got else None


async def test_drain_agent_kills_with_capped_grace_then_drained_and_reactivated(two_hosts, tmp_path):
    master, _ = two_hosts
    url = master.url
    d = tmp_path / "marks"
    d.mkdir()
    fw = Drained("127.0.0.1")
    # both ask for 10 s of grace; the drain caps it at 3 s: "quick" finishes its handler in
    # 0.5 s, "stubborn" would need 30 s and is SIGKILLed at the cap
    fw.pending = [("quick", TRAP.format(d=d, name="quick", handler=0.5), 10),
                  ("stubborn", TRAP.format(d=d, name="stubborn", handler=30), 10)]
    driver = SchedulerDriver(fw, FrameworkInfo(user="tester", name="drained"), f"127.0.0.1:{master.port}")
    await driver.start()
    try:
        await async_wait_for(lambda: all((s := fw.last(t)) is not None and s.state == "TASK_RUNNING"
                                         for t in ("quick", "stubborn")), timeout=30, message="both tasks running")
        await async_wait_for(lambda: (d / "quick.up").exists() and (d / "stubborn.up").exists(), timeout=20,
                             message="both traps installed")
        aid = agent_id_at(master, "127.0.0.1")
        await call(url, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "ghost"}}}, 400)
        await call(url, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": aid},
                                                                "max_grace_period": "10mins"}}, 400)
        t0 = time.monotonic()
        await call(url, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": aid},
                                                                "max_grace_period": {"seconds": 3}}})
        await async_wait_for(lambda: all((s := fw.last(t)) is not None and s.state == "TASK_KILLED"
                                         for t in ("quick", "stubborn")), timeout=30, message="both tasks killed")
        for tid in ("quick", "stubborn"):
            assert fw.last(tid).reason == "REASON_AGENT_DRAINING"
            assert (d / f"{tid}.term").exists()  # SIGTERM first
        assert (d / "quick.done").exists()  # its grace was honoured: the handler finished
        assert not (d / "stubborn.done").exists()  # SIGKILL at the 3 s cap, not after 10 s or 30 s
        killed_at = next(t for t, s in fw.updates if s.task_id.value == "stubborn" and s.state == "TASK_KILLED")
        assert killed_at - t0 >= 2.5  # it had (about) its capped grace before the SIGKILL

        async def drained() -> dict | None:
            agents = (await call(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
            a = next(x for x in agents if x["agent_info"]["id"]["value"] == aid)
            return a if a.get("drain_info", {}).get("state") == "DRAINED" else None

        a = await async_wait_for(drained, timeout=20, message="the agent DRAINED")
        assert a["deactivated"] is True
        assert a["drain_info"]["config"] == {"mark_gone": False, "max_grace_period": {"nanoseconds": 3_000_000_000}}
        async with aiohttp.ClientSession() as s, s.get(url + "/master/state") as r:  # the v0 view agrees
            slave = next(x for x in (await r.json())["slaves"] if x["id"] == aid)
        assert slave["drain_info"]["state"] == "DRAINED" and slave["deactivated"] is True
        # no offers from a deactivated agent, while the other agent's keep coming
        since = time.monotonic()
        await async_wait_for(lambda: fw.offers_at.get("127.0.0.2", 0) > since + 0.5, timeout=20)
        assert fw.offers_at.get("127.0.0.1", 0) < since
        await call(url, {"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": aid}}})
        await async_wait_for(lambda: fw.offers_at.get("127.0.0.1", 0) > since, timeout=20, message="offers again")
        await call(url, {"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": aid}}}, 400)
        # DEACTIVATE_AGENT alone: offers stop (and the outstanding one is rescinded)
        await call(url, {"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": aid}}})
        agents = (await call(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
        assert next(x for x in agents if x["agent_info"]["id"]["value"] == aid)["deactivated"] is True
        assert not [o for o in master.core.offers.values() if o.agent_id == aid]
    finally:
        await driver.stop()


async def test_acls_apply_to_maintenance_and_drain_calls(tmp_path):
    acls = {"permissive": True,
            "drain_agents": [{"principals": {"type": "ANY"}, "agents": {"type": "NONE"}}],
            "start_maintenances": [{"principals": {"type": "ANY"}, "machines": {"type": "NONE"}}],
            "update_maintenance_schedules": [{"principals": {"type": "ANY"}, "machines": {"type": "NONE"}}]}
    master = MasterServer(MasterConfig(port=0, security=SecurityConfig(acls=json.dumps(acls))))
    await master.start()
    try:
        url = master.url
        await call(url, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "a"}}}, 403)
        await call(url, {"type": "START_MAINTENANCE", "start_maintenance": {"machines": [M2]}}, 403)
        await call(url, {"type": "UPDATE_MAINTENANCE_SCHEDULE",
                         "update_maintenance_schedule": {"schedule": {"windows": []}}}, 403)
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/master/machine/down", json=[M2]) as r:
                assert r.status == 403
            async with s.post(url + "/master/maintenance/schedule", json={"windows": []}) as r:
                assert r.status == 403
        # allowed calls go through: STOP_MAINTENANCE is not restricted here (400: not DOWN)
        text = await call(url, {"type": "STOP_MAINTENANCE", "stop_maintenance": {"machines": [M2]}}, 400)
        assert "not in DOWN mode" in text
    finally:
        await master.stop()


async def test_schedule_and_down_machines_survive_a_master_restart(tmp_path):
    schedule = {"windows": [{"machine_ids": [{"hostname": "m1"}, M2],
                             "unavailability": {"start": {"nanoseconds": 1}}}]}
    master = MasterServer(MasterConfig(port=0, work_dir=str(tmp_path / "master")))
    await master.start()
    try:
        await call(master.url, {"type": "UPDATE_MAINTENANCE_SCHEDULE",
                                "update_maintenance_schedule": {"schedule": schedule}})
        await call(master.url, {"type": "START_MAINTENANCE", "start_maintenance": {"machines": [{"hostname": "m1"}]}})
    finally:
        await master.stop()
    again = MasterServer(MasterConfig(port=0, work_dir=str(tmp_path / "master")))
    await again.start()
    try:
        got = await call(again.url, {"type": "GET_MAINTENANCE_SCHEDULE"})
        assert got["get_maintenance_schedule"]["schedule"] == schedule
        status = (await call(again.url, {"type": "GET_MAINTENANCE_STATUS"}))["get_maintenance_status"]["status"]
        assert status == {"draining_machines": [{"id": M2}], "down_machines": [{"hostname": "m1"}]}
    finally:
        await again.stop()

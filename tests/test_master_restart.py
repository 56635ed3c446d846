"""A master restarted on the same work dir remembers frameworks and agents (SQLite registry).

Real processes end to end: the agents keep running through the master's death and
re-register with their tasks; the framework's SDK driver re-subscribes by itself.
"""

from __future__ import annotations

import asyncio

import aiohttp
from conftest import async_wait_for

from mesos_nb.agent.config import AgentConfig
from mesos_nb.agent.process import AgentProcess
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import command_task


class OneTask(Scheduler):
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd
        self.launched = False
        self.states: list[str] = []

    async def offers(self, driver, offers):
        for offer in offers:
            if not self.launched:
                self.launched = True
                await driver.launch([offer.id], [command_task(offer, self.cmd, cpus=0.1, mem=16, task_id="long")])
            else:
                await driver.decline([offer.id], refuse_seconds=3600)

    async def update(self, driver, status):
        self.states.append(status.state)


async def state(url: str) -> dict:
    async with aiohttp.ClientSession() as s:
        return await (await s.get(url + "/master/state")).json()


async def test_restarted_master_keeps_framework_agents_and_tasks(tmp_path):
    cfg = MasterConfig(port=0, work_dir=str(tmp_path / "master"), agent_ping_timeout=1.0, max_agent_ping_timeouts=10)
    master = MasterServer(cfg)
    await master.start()
    port = master.port
    agents = AgentProcess(
        [AgentConfig(master=f"127.0.0.1:{port}", port=0, resources="cpus:1;mem:256", work_dir=str(tmp_path / "agent"))],
        master=f"127.0.0.1:{port}",
    )
    await agents.start()
    keeper = OneTask("sleep 60")
    driver = SchedulerDriver(keeper, FrameworkInfo(user="u", name="keeper", failover_timeout=60), f"127.0.0.1:{port}",
                             backoff_max=0.5)
    fid = await driver.start()
    try:
        await async_wait_for(lambda: "TASK_RUNNING" in keeper.states, timeout=20)
        subscriptions = driver.subscriptions

        # The master dies and comes back on the same port and work dir.
        await master.stop()
        master2 = MasterServer(MasterConfig(port=port, work_dir=cfg.work_dir, agent_ping_timeout=1.0, max_agent_ping_timeouts=10))
        await master2.start()
        try:
            # Before anyone reconnects, the registry already knows the framework and the agent.
            st = await state(master2.url)
            assert [f["id"] for f in st["frameworks"]] == [fid]
            assert len(st["slaves"]) == 1

            async def back() -> bool:
                st = await state(master2.url)
                fws = [f for f in st["frameworks"] if f["id"] == fid]
                return bool(fws and fws[0]["connected"] and [t["state"] for t in fws[0]["tasks"]] == ["TASK_RUNNING"]
                            and st["slaves"][0]["connected"])

            await async_wait_for(back, timeout=30)
            assert driver.subscriptions > subscriptions
            # The task was never restarted: still one launch, no terminal state.
            assert not any(s in ("TASK_KILLED", "TASK_LOST", "TASK_FAILED") for s in keeper.states)
        finally:
            await driver.stop()
            await agents.stop()
            await master2.stop()
    finally:
        if driver.running:
            await driver.stop()


async def test_framework_that_never_returns_is_removed_after_master_restart(tmp_path):
    cfg = MasterConfig(port=0, work_dir=str(tmp_path / "master"), agent_ping_timeout=1.0, max_agent_ping_timeouts=10)
    master = MasterServer(cfg)
    await master.start()
    port = master.port
    agents = AgentProcess(
        [AgentConfig(master=f"127.0.0.1:{port}", port=0, resources="cpus:1;mem:256", work_dir=str(tmp_path / "agent"))],
        master=f"127.0.0.1:{port}",
    )
    await agents.start()
    sched = OneTask("sleep 60")
    driver = SchedulerDriver(sched, FrameworkInfo(user="u", name="goner", failover_timeout=2), f"127.0.0.1:{port}")
    fid = await driver.start()
    await async_wait_for(lambda: "TASK_RUNNING" in sched.states, timeout=20)
    await driver.stop(failover=True)  # gone for good, without TEARDOWN
    await master.stop()
    master2 = MasterServer(MasterConfig(port=port, work_dir=cfg.work_dir, agent_ping_timeout=1.0, max_agent_ping_timeouts=10))
    await master2.start()
    try:
        async def removed():
            st = await state(master2.url)
            done = [f for f in st["completed_frameworks"] if f["id"] == fid]
            return done and done[0]

        fw = await async_wait_for(removed, timeout=30)
        assert [t["state"] for t in fw["completed_tasks"]] == ["TASK_KILLED"]

        async def agent_idle():
            for a in agents.agents:
                if a.running_tasks():
                    return False
            return True

        await async_wait_for(agent_idle, timeout=30)
    finally:
        await agents.stop()
        await master2.stop()
    _ = asyncio

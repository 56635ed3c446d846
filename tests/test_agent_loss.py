"""The master notices an agent process that stops answering, and frameworks hear of it.

A real agent process is frozen with SIGSTOP (it keeps its TCP connection open, so only the
master's pings can tell); after ``agent_ping_timeout × max_agent_ping_timeouts`` the master
drops the channel, gives the agent the same time to come back, then removes it: its tasks
become TASK_LOST (no uuid: master-generated) and the framework gets a FAILURE for the agent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import aiohttp
import psutil
from conftest import REPO, async_wait_for, cli_env

from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import command_task


class Watcher(Scheduler):
    def __init__(self) -> None:
        self.launched = False
        self.statuses = []
        self.failures = []

    async def offers(self, driver, offers):
        for offer in offers:
            if not self.launched:
                self.launched = True
                await driver.launch([offer.id], [command_task(offer, "sleep 120", cpus=0.1, mem=16, task_id="victim")])
            else:
                await driver.decline([offer.id], refuse_seconds=3600)

    async def update(self, driver, status):
        self.statuses.append(status)

    async def failure(self, driver, agent_id, executor_id, status):
        self.failures.append((agent_id, executor_id))


async def test_frozen_agent_is_removed_and_its_tasks_lost(tmp_path):
    master = MasterServer(MasterConfig(port=0, agent_ping_timeout=0.3, max_agent_ping_timeouts=3))
    await master.start()
    agent = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "agent", "--master", master.address, "--port", "0",
         "--resources", "cpus:1;mem:128", "--work-dir", str(tmp_path / "agent")],
        env=cli_env(), cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sched = Watcher()
    driver = SchedulerDriver(sched, FrameworkInfo(user="u", name="watcher"), master.address)
    try:
        await async_wait_for(lambda: len(master.core.agents) == 1, timeout=30)
        await driver.start()
        await async_wait_for(lambda: any(s.state == "TASK_RUNNING" for s in sched.statuses), timeout=30)
        agent_id = next(iter(master.core.agents))

        os.killpg(agent.pid, signal.SIGSTOP)  # frozen: socket open, no answers
        lost = await async_wait_for(
            lambda: next((s for s in sched.statuses if s.state == "TASK_LOST"), None), timeout=30
        )
        assert lost.task_id.value == "victim" and lost.uuid is None
        assert lost.reason == "REASON_AGENT_REMOVED"
        assert (agent_id, None) in sched.failures
        async with aiohttp.ClientSession() as s:
            st = await (await s.get(master.url + "/master/state")).json()
        assert st["slaves"] == []
        # Exactly one terminal state for the task.
        assert [s.state for s in sched.statuses if s.state.startswith("TASK_") and s.state in
                ("TASK_LOST", "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED")] == ["TASK_LOST"]
    finally:
        try:
            os.killpg(agent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        agent.wait(10)
        # The task process was in its own session: end it too (the agent is gone for good).
        for p in psutil.process_iter(["cwd"]):
            if (p.info.get("cwd") or "").startswith(str(tmp_path)):
                p.kill()
        await driver.stop()
        await master.stop()

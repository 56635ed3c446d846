"""--zk wiring of the master shell, the agent and the SDK, in one process (fast to debug).

Two masters contend in a real ZooKeeper; followers answer 307 to the leader; an agent and a
framework given the zk:// URL follow the leader. The leader withdraws; the other master is
elected, recovers the ZooKeeper registry, the agent re-registers with its running task (not
killed) and the framework re-subscribes with its id. The SIGKILL form with real processes is
``test_ha_failover.py``.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from conftest import async_wait_for, cli_env

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.client.master import master_url
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import command_task

pytest_plugins = ["zk_fixture"]


class Sched(Scheduler):
    def __init__(self) -> None:
        self.statuses: list = []
        self.launched = False
        self.subs = 0

    def subscribed(self, driver, framework_id, master_info):
        self.subs += 1

    async def offers(self, driver, offers):
        for o in offers:
            if not self.launched:
                self.launched = True
                await driver.launch([o.id], [command_task(o, "sleep 300", cpus=0.1, mem=16, task_id="t1")])
            else:
                await driver.decline([o.id], refuse_seconds=1)

    def update(self, driver, status):
        self.statuses.append(status)


def _master(url: str) -> MasterServer:
    srv = MasterServer(MasterConfig(port=0, zk=url, zk_session_timeout=2.0, agent_ping_timeout=1.0,
                                    max_agent_ping_timeouts=5, allocation_interval=0.2))
    srv.exit_on_fail_stop = False
    return srv


async def test_follower_redirects_and_the_cluster_follows_a_new_leader(zk_server, tmp_path):
    url = zk_server.unique_url()
    a, b = _master(url), _master(url)
    await a.start()
    await async_wait_for(lambda: a.leading, timeout=20)
    await b.start()
    await async_wait_for(lambda: b.leadership.leader == a.address, timeout=20)
    assert not b.leading
    agent = AgentProcess([AgentConfig(master=url, port=0, work_dir=str(tmp_path / "agent"), isolation="posix",
                                      resources="cpus:1;mem:256")], register_timeout=30)
    sched = Sched()
    driver = SchedulerDriver(sched, FrameworkInfo(user="u", name="ha", failover_timeout=3600,
                                                  checkpoint=True), url, start_timeout=30)
    try:
        async with aiohttp.ClientSession() as s:
            r = await s.get(b.url + "/master/state?x=1", allow_redirects=False)
            assert r.status == 307 and r.headers["Location"] == f"//{a.address}/master/state?x=1"
            r = await s.get(b.url + "/master/redirect", allow_redirects=False)
            assert r.status == 307 and r.headers["Location"] == f"//{a.address}"
            r = await s.post(b.url + "/api/v1/scheduler", data=b"{}", allow_redirects=False)
            assert r.status == 307
            r = await s.get(b.url + "/health")
            assert r.status == 200
        await agent.start()
        fid = await driver.start()
        await async_wait_for(lambda: any(x.state == "TASK_RUNNING" for x in sched.statuses), timeout=60)
        agent_id = agent.agents[0].agent_id
        assert set(a.core.agents) == {agent_id}

        await a.stop()  # the leader withdraws: its znode goes, b is elected
        await async_wait_for(lambda: b.leading, timeout=30)
        assert fid in b.core.frameworks  # recovered from the ZooKeeper registry
        await async_wait_for(lambda: agent_id in b.core.agents and b.core.agents[agent_id].connected, timeout=30)
        await async_wait_for(lambda: sched.subs >= 2 and driver.connected, timeout=30)
        assert driver.master == b.url
        task = b.core.frameworks[fid].tasks["t1"]
        assert task.state == "TASK_RUNNING"  # adopted from the agent, not killed
        assert not any(x.state in ("TASK_KILLED", "TASK_LOST", "TASK_FAILED") for x in sched.statuses)
        async with aiohttp.ClientSession() as s:
            st = await (await s.get(b.url + "/master/state")).json()
            assert st["leader"] == b.master_info().pid
        # the client and the CLI given the zk:// URL talk to the leader of the moment
        assert await asyncio.to_thread(master_url, url) == b.url
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mesos_nb", "--master", url, "agents", env=cli_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await cli.communicate()
        assert cli.returncode == 0, err.decode()
        assert agent_id in out.decode()
    finally:
        await driver.stop()
        await agent.stop()
        await b.stop()
        if a.leadership is not None and a.leadership.contender is not None:
            await a.stop()

"""A master that restarts relearns what a custom executor holds itself: the re-registering
agent reports its live executors (Mesos' executor_infos), not only its tasks, so an idle warm
executor's own resources stay in use and are not offered a second time.

Real processes: a ``mesos-nb master`` with a registry, restarted on the same work dir and
port; a ``mesos-nb agent``; an executor that is a real ``sleep`` the test subscribes for and
whose one task it finishes (the executor stays, idle, as a warm executor between cells)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from conftest import REPO, async_wait_for, cli_env, free_port, get_json, stop_process_groups
from test_executor_api import EX, Subscription, call, update
from test_health_checks import OneTask

from mesos_nb.protocol.messages import ID, CommandInfo, ExecutorInfo, FrameworkInfo, TaskInfo
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mesos_nb", *args], env=cli_env(), cwd=str(REPO),
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115


def stop(proc: subprocess.Popen) -> None:
    stop_process_groups([proc])


def cell_in_executor(offer) -> TaskInfo:
    """One task in a custom executor holding cpus 0.5 / mem 64 itself (a warm executor's shape)."""
    ex = ExecutorInfo(executor_id=ID(value=EX), command=CommandInfo(value="exec sleep 600"),
                      resources=Resources.parse("cpus:0.5;mem:64").to_proto())
    return TaskInfo(name="cell-1", task_id=ID(value="cell-1"), agent_id=offer.agent_id, executor=ex,
                    resources=Resources.parse("cpus:0.25;mem:32").to_proto())


class Offered(Scheduler):
    def __init__(self) -> None:
        self.seen: list[Resources] = []

    async def offers(self, driver, offers):
        for offer in offers:
            self.seen.append(Resources.from_proto(offer.resources))
        await driver.decline([o.id for o in offers], refuse_seconds=60)


async def test_an_idle_executors_own_resources_survive_a_master_restart(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    master_args = ["master", "--port", str(port), "--work-dir", str(tmp_path / "master"), "--allocation-interval", "0.2"]
    master = spawn(master_args, tmp_path / "master.log")
    agent = spawn(["agent", "--master", f"127.0.0.1:{port}", "--port", "0", "--work-dir", str(tmp_path / "agent"),
                   "--resources", "cpus:2;mem:512", "--isolation", "posix"], tmp_path / "agent.log")
    sched = OneTask(cell_in_executor)
    driver = SchedulerDriver(sched, FrameworkInfo(user="", name="warm", checkpoint=True, failover_timeout=300),
                             f"127.0.0.1:{port}")
    session = aiohttp.ClientSession()
    sub = None
    executor_pgid = None

    def slaves() -> list[dict]:
        try:
            return get_json(url + "/master/state")["slaves"]
        except OSError:
            return []

    def used() -> dict | None:
        s = slaves()
        return {k: s[0]["used_resources"][k] for k in ("cpus", "mem")} if s and s[0]["active"] else None

    try:
        await async_wait_for(lambda: slaves(), 60, message="agent registered")
        fid = await driver.start()
        agent_url = f"http://127.0.0.1:{slaves()[0]['port']}"
        await async_wait_for(lambda: used() == {"cpus": 0.75, "mem": 96.0}, 60, message="executor + its task")
        containers: list[dict] = []

        async def container_started() -> bool:
            # the master counts the executor as soon as it sends the launch; the agent's
            # launcher starts the container a moment later
            containers[:] = json.loads(await (await session.get(agent_url + "/containers")).text())
            return bool(containers)

        await async_wait_for(container_started, 30, message="the executor's container started")
        executor_pgid = containers[0]["status"]["executor_pid"]
        resp = await session.post(agent_url + "/api/v1/executor", json=call(
            "SUBSCRIBE", fw=fid, subscribe={"unacknowledged_tasks": [], "unacknowledged_updates": []}))
        assert resp.status == 200, await resp.text()
        sub = Subscription(resp)
        await async_wait_for(lambda: sub.of("LAUNCH"), 30, message="the task handed to the executor")
        body = update("cell-1", "TASK_FINISHED")
        body["framework_id"] = {"value": fid}
        async with session.post(agent_url + "/api/v1/executor", json=body) as r:
            assert r.status == 202, await r.text()
        # the task is done; the idle executor keeps what it holds itself
        await async_wait_for(lambda: used() == {"cpus": 0.5, "mem": 64.0}, 30, message="executor alone")
        # the agent has the framework's acknowledgement (else it would report the task as running)
        meta = tmp_path / "agent" / "meta"
        await async_wait_for(lambda: any('"ack"' in p.read_text() for p in meta.rglob("tasks/cell-1/task.updates")),
                             30, message="TASK_FINISHED acknowledged at the agent")

        await driver.stop(failover=True)
        stop(master)
        master = spawn(master_args, tmp_path / "master.log")
        await async_wait_for(lambda: used() is not None, 60, message="agent re-registered with the new master")
        # main: {"cpus": 0.0, "mem": 0.0} -- offered again to any framework
        assert used() == {"cpus": 0.5, "mem": 64.0}
        other = Offered()
        other_driver = SchedulerDriver(other, FrameworkInfo(user="", name="other"), f"127.0.0.1:{port}")
        try:
            await other_driver.start()
            await async_wait_for(lambda: other.seen, 30, message="an offer to another framework")
            offer = other.seen[0]
            assert (offer.scalar("cpus"), offer.scalar("mem")) == (1.5, 448)  # the agent less the executor's
        finally:
            await other_driver.stop()
    finally:
        if sub is not None:
            await sub.close()
        await session.close()
        with contextlib.suppress(Exception):
            await driver.stop(failover=True)
        stop(agent)
        stop(master)
        if executor_pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(executor_pgid, signal.SIGKILL)

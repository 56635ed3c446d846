"""Task health checks (COMMAND, HTTP, TCP) end to end: real master, real agent, SDK framework.

A health-checked task reports ``healthy=true`` on a TASK_RUNNING update; when its check starts
failing the framework gets TASK_RUNNING ``healthy=false`` (REASON_TASK_HEALTH_CHECK_STATUS_UPDATED)
and then, once ``consecutive_failures`` checks failed in a row, TASK_KILLED.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import async_wait_for, free_port

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol.messages import (
    ID,
    CommandInfo,
    FrameworkInfo,
    TaskInfo,
    TaskStatus,
    is_terminal,
)
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver

REASON = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"


async def until(pred, timeout: float, what: str):
    return await async_wait_for(pred, timeout, 0.02, what)


class OneTask(Scheduler):
    def __init__(self, make) -> None:
        self.make = make  # offer -> TaskInfo
        self.launched = False
        self.updates: list[TaskStatus] = []

    async def offers(self, driver, offers):
        for offer in offers:
            if self.launched:
                await driver.decline([offer.id], refuse_seconds=60)
                continue
            self.launched = True
            await driver.launch([offer.id], [self.make(offer)])

    async def update(self, driver, status):
        self.updates.append(status)


@pytest.fixture
async def cluster(tmp_path):
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.05))
    await master.start()
    port = free_port()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation="posix",
                      resources=f"cpus:2;mem:1024;disk:100;ports:[{port}-{port}]", detect_gpus=False,
                      executor_shutdown_grace_period=1.0)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    drivers: list[SchedulerDriver] = []

    async def run(task_of) -> OneTask:
        sched = OneTask(task_of)
        driver = SchedulerDriver(sched, FrameworkInfo(user="", name="health"), master.address)
        drivers.append(driver)
        await driver.start()
        return sched

    yield run, port
    for d in drivers:
        await d.stop()
    await proc.stop()
    await master.stop()


def task(offer, cmd: str, check: dict, port: int | None = None) -> TaskInfo:
    res = "cpus:0.1;mem:32" + (f";ports:[{port}-{port}]" if port else "")
    return TaskInfo(name="hc", task_id=ID(value="hc"), agent_id=offer.agent_id,
                    resources=Resources.parse(res).to_proto(), command=CommandInfo(value=cmd),
                    health_check=check)


def fast(kind: str, grace: float = 0.5, **spec) -> dict:
    return {"type": kind, "delay_seconds": 0, "interval_seconds": 0.2, "timeout_seconds": 5,
            "grace_period_seconds": grace, "consecutive_failures": 2, **spec}


async def _healthy_then_killed(sched: OneTask, break_it) -> None:
    healthy = await until(lambda: next((u for u in sched.updates if u.state == "TASK_RUNNING" and u.healthy is True),
                                       None), 60, "TASK_RUNNING healthy=true")
    assert healthy.reason == REASON
    assert not any(u.healthy is False for u in sched.updates)
    break_it()
    await until(lambda: any(is_terminal(u.state) for u in sched.updates), 60, "the task killed")
    states = [(u.state, u.healthy) for u in sched.updates]
    i_unhealthy = next(i for i, u in enumerate(sched.updates) if u.state == "TASK_RUNNING" and u.healthy is False)
    unhealthy = sched.updates[i_unhealthy]
    assert unhealthy.reason == REASON, states
    terminal = [u for u in sched.updates if is_terminal(u.state)]
    assert [u.state for u in terminal] == ["TASK_KILLED"], states
    assert sched.updates.index(terminal[0]) > i_unhealthy, states
    assert terminal[0].reason == REASON
    await asyncio.sleep(0.5)  # a late duplicate would show up here
    assert len([u for u in sched.updates if is_terminal(u.state)]) == 1


async def test_command_health_check_healthy_then_unhealthy_then_killed(cluster, tmp_path):
    run, _ = cluster
    flag = tmp_path / "alive"
    flag.touch()
    sched = await run(lambda offer: task(offer, "sleep 120", fast("COMMAND", command={"value": f"test -f {flag}"})))
    await _healthy_then_killed(sched, flag.unlink)


def _server_task(pidfile: Path) -> str:
    # The server runs in the background of the task's shell, so the test can kill only the server
    # (the task itself keeps running, now unhealthy) and the kill is the health checker's doing.
    return (f"{sys.executable} -m http.server $PORT0 --bind 127.0.0.1 >/dev/null 2>&1 & echo $! > {pidfile}; "
            "while :; do sleep 0.1; done")


def _kill_server(pidfile: Path):
    def kill() -> None:
        os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
    return kill


# HTTP and TCP: the grace period only covers the server's start (failures before the first
# success are ignored); it ends at the first success, so a long one costs the test nothing.
async def test_http_health_check_healthy_then_killed_when_server_dies(cluster, tmp_path):
    run, port = cluster
    pidfile = tmp_path / "server.pid"
    sched = await run(lambda offer: task(offer, _server_task(pidfile),
                                         fast("HTTP", grace=60, http={"port": port, "path": "/"}), port))
    await _healthy_then_killed(sched, _kill_server(pidfile))
    unhealthy = next(u for u in sched.updates if u.healthy is False)
    assert unhealthy.state == "TASK_RUNNING"


async def test_tcp_health_check_healthy_then_killed_when_server_dies(cluster, tmp_path):
    run, port = cluster
    pidfile = tmp_path / "server.pid"
    sched = await run(lambda offer: task(offer, _server_task(pidfile), fast("TCP", grace=60, tcp={"port": port}), port))
    await _healthy_then_killed(sched, _kill_server(pidfile))


async def test_failures_inside_the_grace_period_are_ignored(cluster, tmp_path):
    """A check that fails from the start is not counted during the grace period: the task gets
    no health update before it ends, and is killed only after the grace period."""
    run, _ = cluster
    flag = tmp_path / "never"
    t0 = time.monotonic()
    sched = await run(lambda offer: task(offer, "sleep 120",
                                         fast("COMMAND", grace=1.5, command={"value": f"test -f {flag}"})))
    await until(lambda: any(is_terminal(u.state) for u in sched.updates), 60, "the task killed")
    assert time.monotonic() - t0 >= 1.5
    assert [u.state for u in sched.updates if is_terminal(u.state)] == ["TASK_KILLED"]
    assert any(u.healthy is False for u in sched.updates)
    assert not any(u.healthy is True for u in sched.updates)

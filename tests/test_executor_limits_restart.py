"""An executor's container resized with its tasks keeps its limits across an agent restart:
the agent checkpoints each resize in ``run.info``, so the restarted agent adopts the container
with the limits it has (before, it came back with those it started with).

Real processes: the agent is a ``mesos-nb agent`` subprocess, SIGKILLed and started again on
the same work dir; the executor is a real ``sleep`` that the test re-subscribes for, as an
executor does after an agent restart. The master side is the channel test double."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import aiohttp
from conftest import REPO, cli_env, stop_process_groups
from test_agent_integration import FW, FakeMaster, run_task, wait_for
from test_executor_api import EX, subscribe

from mesos_nb.protocol.channel import RegisterAgent, RunTask
from mesos_nb.protocol.messages import ID, CommandInfo, ExecutorInfo, FrameworkInfo
from mesos_nb.protocol.resources import Resources

MB = 1024 * 1024


def start_agent(master: str, work: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "agent", "--master", master, "--port", "0", "--work-dir", str(work),
         "--resources", "cpus:4;mem:2048", "--isolation", "posix"],
        env=cli_env(), cwd=str(REPO), stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True)


def statistics(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/monitor/statistics", timeout=5) as r:
        return json.loads(r.read())


def executor_pid(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/containers", timeout=5) as r:
        return next(c["status"]["executor_pid"] for c in json.loads(r.read()) if c["executor_id"] == EX)


def executor_mem_limit(port: int) -> int | None:
    for entry in statistics(port):
        if entry["executor_id"] == EX:
            return entry["statistics"]["mem_limit_bytes"]
    return None


def task(agent_id: str, task_id: str, mem: int) -> RunTask:
    ex = ExecutorInfo(executor_id=ID(value=EX), command=CommandInfo(value="exec sleep 600"),
                      resources=Resources.parse("cpus:0.5;mem:64").to_proto())
    rt = run_task(agent_id, task_id, None, executor=ex, resources=f"cpus:0.25;mem:{mem}")
    return RunTask(agent_id=agent_id, framework=FrameworkInfo(user="", name="fw", id=ID(value=FW), checkpoint=True),
                   task=rt.task)


async def test_a_resized_executor_container_keeps_its_limits_across_an_agent_restart(tmp_path):
    master = FakeMaster()
    await master.start()
    work, log = tmp_path / "agent", tmp_path / "agent.log"
    agent = start_agent(master.address, work, log)
    session = aiohttp.ClientSession()
    sub = None
    pids: list[int] = []
    try:
        await wait_for(lambda: master.of(RegisterAgent), 60, "agent registered")
        port = master.of(RegisterAgent)[-1].port
        agent_id = master.of(RegisterAgent)[-1].agent_id or "AG-1"
        await master.send(task(agent_id, "t1", 100))
        await wait_for(lambda: executor_mem_limit(port) == (64 + 100) * MB, 60, "executor container started")
        pids.append(executor_pid(port))
        sub = await subscribe(session, SimpleNamespace(url=f"http://127.0.0.1:{port}"))
        await wait_for(lambda: sub.of("LAUNCH"), 30, "t1 handed to the executor")
        await master.send(task(agent_id, "t2", 200))  # launched into the running executor: it grows
        await wait_for(lambda: executor_mem_limit(port) == (64 + 100 + 200) * MB, 30, "grown by t2")
        await sub.close()
        sub = None

        os.killpg(agent.pid, signal.SIGKILL)  # the executor is in its own session: it lives on
        agent.wait(10)
        registrations = len(master.of(RegisterAgent))
        agent = start_agent(master.address, work, log)
        await wait_for(lambda: len(master.of(RegisterAgent)) > registrations, 60, "agent re-registered")
        port = master.of(RegisterAgent)[-1].port
        sub = await subscribe(session, SimpleNamespace(url=f"http://127.0.0.1:{port}"))  # re-subscribed
        await wait_for(lambda: executor_mem_limit(port) is not None, 30, "executor container adopted")
        # main: 164 MB, the limits it started with; the kernel-side enforcement followed that
        assert executor_mem_limit(port) == (64 + 100 + 200) * MB
        assert executor_pid(port) == pids[0]  # the very same executor process
    finally:
        if sub is not None:
            await sub.close()
        await session.close()
        stop_process_groups([agent])
        await master.stop()
        for pid in pids:  # the executor (its own session) outlives its agent by design
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

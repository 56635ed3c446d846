"""Agent crash recovery: SIGKILL the agent process with 20 checkpointed tasks running, start it
again on the same work dir; every task keeps running and ends once, a task that ended while
the agent was down is reported after the restart, nothing is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil
from conftest import async_wait_for

from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol.messages import ID, CommandInfo, FrameworkInfo, TaskInfo, is_terminal
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver

REPO = Path(__file__).resolve().parent.parent


async def until(pred, timeout: float, what: str):
    return await async_wait_for(pred, timeout, 0.05, what)


def start_agent(master: str, work_dir: Path, log: Path, extra: list[str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_NB_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "agent", "--master", master, "--port", "0",
         "--work-dir", str(work_dir), "--resources", "cpus:8;mem:4096;disk:1000",
         *(extra or ["--isolation", "posix"])],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=str(REPO), start_new_session=True,
    )


def stop_agent(agent: subprocess.Popen) -> None:
    """SIGTERM an agent process still running (SIGKILL after 20 s)."""
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()


class Recorder(Scheduler):
    def __init__(self, tasks: dict[str, str]) -> None:
        self.to_launch = dict(tasks)
        self.updates: dict[str, list[str]] = defaultdict(list)

    async def offers(self, driver, offers):
        for offer in offers:
            if not self.to_launch:
                await driver.decline([offer.id], refuse_seconds=60)
                continue
            infos = []
            for tid, cmd in list(self.to_launch.items()):
                infos.append(TaskInfo(name=tid, task_id=ID(value=tid), agent_id=offer.agent_id,
                                      resources=Resources.parse("cpus:0.1;mem:16").to_proto(),
                                      command=CommandInfo(value=cmd)))
                del self.to_launch[tid]
            await driver.launch([offer.id], infos)

    async def update(self, driver, status):
        self.updates[status.task_id.value].append(status.state)

    def terminal(self, tid: str) -> list[str]:
        return [s for s in self.updates.get(tid, []) if is_terminal(s)]


def marker_procs(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in a for a in (p.info["cmdline"] or [])) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


async def test_agent_sigkill_and_restart_keeps_tasks_and_reports_each_end_once(tmp_path):
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1, agent_ping_timeout=1.0,
                                       max_agent_ping_timeouts=60))
    await master.start()
    flags = tmp_path / "flags"
    flags.mkdir()
    marker = f"mnb-recovery-{os.getpid()}-{time.monotonic_ns()}"
    tasks = {f"t{i:02d}": f"echo {marker} >/dev/null; while [ ! -f {flags}/all ]; do sleep 0.1; done"
             for i in range(19)}
    tasks["quick"] = f"echo {marker} >/dev/null; while [ ! -f {flags}/quick ]; do sleep 0.1; done; exit 0"
    sched = Recorder(tasks)
    fw = FrameworkInfo(user="", name="recovery", checkpoint=True, failover_timeout=300)
    driver = SchedulerDriver(sched, fw, master.address)
    work = tmp_path / "agent"
    log = tmp_path / "agent.log"
    agent = start_agent(master.address, work, log)
    try:
        await driver.start()
        await until(lambda: all(sched.updates.get(t, [])[-1:] == ["TASK_RUNNING"] for t in tasks), 60,
                    "20 tasks running")
        running_pids = {p.pid for p in marker_procs(marker)}
        assert len(running_pids) >= 20
        # Crash the agent. The tasks (under their supervisors) survive it.
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        (flags / "quick").touch()
        meta = work / "meta"
        await until(lambda: list(meta.rglob("tasks/quick")) and
                    list(meta.rglob("exit.status")), 30, "quick task ended while the agent was down")
        assert sched.terminal("quick") == []
        agent = start_agent(master.address, work, log)
        await until(lambda: sched.terminal("quick"), 60, "quick task reported after restart")
        assert sched.terminal("quick") == ["TASK_FINISHED"]
        # The other 19 are still the same processes, still running.
        still = {p.pid for p in marker_procs(marker)}
        assert len(still) >= 19 and still <= running_pids
        assert all(sched.terminal(t) == [] for t in tasks if t != "quick")
        (flags / "all").touch()
        await until(lambda: all(sched.terminal(t) for t in tasks), 60, "all tasks finished")
        await asyncio.sleep(1.0)  # a late duplicate would show up here
        assert {t: sched.terminal(t) for t in tasks} == {t: ["TASK_FINISHED"] for t in tasks}
        # Nothing left behind; the checkpoints of finished executors are gone.
        await until(lambda: not marker_procs(marker), 10, "no task process left")
        await until(lambda: not list(meta.rglob("task.updates")), 15, "checkpoints garbage-collected")
    finally:
        await driver.stop()
        stop_agent(agent)
        for p in marker_procs(marker):
            p.kill()
        await master.stop()


async def test_image_task_in_a_pid_namespace_survives_an_agent_restart(tmp_path):
    """A checkpointed task in a busybox image and its own PID namespace: the agent is SIGKILLed,
    the task keeps running, ends while the agent is down, and the restarted agent reports how it
    ended (the namespace's host-side waiter wrote the status) and removes the rootfs."""
    import pytest
    from images_support import busybox_path, make_image, save_manifest_tar

    from mesos_nb.agent.isolation import namespaces_unavailable

    why = namespaces_unavailable() or (None if busybox_path() else "busybox-static is not installed")
    if why:
        pytest.skip(why)
    images = tmp_path / "images"
    save_manifest_tar(make_image("recovered-image"), images / "busybox-test:latest.tar")
    flags = tmp_path / "flags"
    flags.mkdir()
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1, agent_ping_timeout=1.0,
                                       max_agent_ping_timeouts=60))
    await master.start()

    class ImageRecorder(Recorder):
        async def offers(self, driver, offers):
            for offer in offers:
                if not self.to_launch:
                    await driver.decline([offer.id], refuse_seconds=60)
                    continue
                self.to_launch = {}
                container = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox-test"}}},
                             "volumes": [{"container_path": "/flags", "mode": "RO",
                                          "source": {"type": "HOST_PATH", "host_path": {"path": str(flags)}}}]}
                await driver.launch([offer.id], [TaskInfo(
                    name="img", task_id=ID(value="img"), agent_id=offer.agent_id,
                    resources=Resources.parse("cpus:0.1;mem:16").to_proto(), container=container,
                    command=CommandInfo(value="while ! test -f /flags/go; do sleep 0.1; done; exit 7"))])

    sched = ImageRecorder({"img": ""})
    driver = SchedulerDriver(sched, FrameworkInfo(user="", name="img-recovery", checkpoint=True,
                                                  failover_timeout=300), master.address)
    work, log = tmp_path / "agent", tmp_path / "agent.log"
    extra = ["--isolation", "posix,filesystem/linux,namespaces/pid", "--docker-registry", str(images)]
    agent = start_agent(master.address, work, log, extra)
    try:
        await driver.start()
        await until(lambda: sched.updates.get("img", [])[-1:] == ["TASK_RUNNING"], 60, "image task running")
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        (flags / "go").touch()
        await until(lambda: list((work / "meta").rglob("exit.status")), 30, "the task ended while the agent was down")
        agent = start_agent(master.address, work, log, extra)
        await until(lambda: sched.terminal("img"), 60, "the end reported after the restart")
        assert sched.terminal("img") == ["TASK_FAILED"]
        provisioner = work / "provisioner"
        await until(lambda: not any(any(d.iterdir()) for d in provisioner.iterdir()), 15, "rootfs removed")
    finally:
        await driver.stop()
        stop_agent(agent)
        await master.stop()

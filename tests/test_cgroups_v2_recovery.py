"""A restarted agent and the cgroups its previous process left: through the real agent (a
subprocess SIGKILLed and started again on its work dir), on whichever cgroup version this
machine gives the agent (v2 where the unified hierarchy has cpu and memory; on a hybrid
machine v1; the v2 isolator's part of it runs on the real unified hierarchy in
test_cgroups_v2.py). A task that ended while the agent was down had left a daemon (its own
session, so no process-group kill reaches it) in its cgroup: the restarted agent kills it and
removes the cgroup; a task still running is adopted and keeps its cgroup and processes."""

from __future__ import annotations

import os
import signal
import uuid

import psutil
import pytest
from test_recovery import Recorder, start_agent, stop_agent, until

from mesos_nb.agent.cgroups_v2 import cgroup2_mount, kill_cgroup
from mesos_nb.agent.isolation import detect_isolation
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol.messages import FrameworkInfo
from mesos_nb.scheduler import SchedulerDriver

KIND, WHY = detect_isolation()
pytestmark = pytest.mark.skipif(not KIND.startswith("cgroups"), reason=f"no cgroups for the agent here: {WHY}")


def _cgroup_dirs(pid: int) -> list[str]:
    """Every cgroup directory ``pid`` is in under the agent's hierarchies (v1: one per mount)."""
    out = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls in ("memory", "cpu", "cpuacct", "cpu,cpuacct") or (ctrls == "" and KIND == "cgroups/v2"):
                base = cgroup2_mount() if ctrls == "" else f"/sys/fs/cgroup/{ctrls}"
                out.append(f"{base}{path}")
    return out


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_the_restarted_agent_kills_a_dead_containers_daemon_and_removes_its_cgroups(tmp_path):
    root = f"mesos-nb-test-{uuid.uuid4().hex[:12]}"
    flags = tmp_path / "flags"
    flags.mkdir()
    task = ("setsid sleep 300 & echo $! > {f}/{t}.daemon; echo $$ > {f}/{t}.sh; exec sleep 300")
    sched = Recorder({t: task.format(f=flags, t=t) for t in ("gone", "stays")})
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1, agent_ping_timeout=1.0,
                                       max_agent_ping_timeouts=60))
    await master.start()
    driver = SchedulerDriver(sched, FrameworkInfo(user="", name="cg-recovery", checkpoint=True,
                                                  failover_timeout=300), master.address)
    work, log = tmp_path / "agent", tmp_path / "agent.log"
    extra = ["--isolation", "cgroups", "--cgroups-root", root]
    agent = start_agent(master.address, work, log, extra)
    daemons: dict[str, int] = {}
    try:
        await driver.start()
        await until(lambda: all(sched.updates.get(t, [])[-1:] == ["TASK_RUNNING"] for t in ("gone", "stays"))
                    and all((flags / f"{t}.daemon").exists() and (flags / f"{t}.daemon").read_text().strip()
                            for t in ("gone", "stays")), 60, "both tasks running")
        daemons = {t: int((flags / f"{t}.daemon").read_text()) for t in ("gone", "stays")}
        dirs = {t: _cgroup_dirs(daemons[t]) for t in daemons}
        assert all(dirs[t] and all(f"/{root}/" in d for d in dirs[t]) for t in dirs), dirs
        os.kill(agent.pid, signal.SIGKILL)  # the agent dies...
        agent.wait(10)
        os.killpg(os.getpgid(int((flags / "gone.sh").read_text())), signal.SIGKILL)  # ...then a task's group
        await until(lambda: sched.terminal("gone") == [] and _alive(daemons["gone"]), 5, "the daemon outlives it")
        agent = start_agent(master.address, work, log, extra)
        await until(lambda: sched.terminal("gone"), 60, "the ended task reported after the restart")
        await until(lambda: not _alive(daemons["gone"]), 20, "the dead container's daemon killed")
        await until(lambda: not any(os.path.exists(d) for d in dirs["gone"]), 20, "its cgroups removed")
        # The live one was adopted: its processes and cgroups are untouched.
        assert sched.terminal("stays") == [] and _alive(daemons["stays"])
        assert all(os.path.isdir(d) for d in dirs["stays"])
    finally:
        await driver.stop()
        stop_agent(agent)
        await master.stop()
        for pid in daemons.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        for base in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct",
                     "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            top = os.path.join(base, root)
            if os.path.isdir(top):
                for e in os.scandir(top):
                    if e.is_dir():
                        kill_cgroup(e.path, use_kill_file=KIND == "cgroups/v2")
                        os.rmdir(e.path)
                os.rmdir(top)

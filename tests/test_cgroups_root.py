"""``--cgroups-root`` (Mesos' ``--cgroups_root``): the cgroup under each hierarchy that holds an
agent's containers, so that agents (or whole clusters) on one machine need not share one parent
(CPU weight is shared between sibling cgroups whatever their processes' nice values)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_agent_integration import FakeMaster, run_task, wait_for

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.agent.containerizer import make_containerizer
from mesos_nb.agent.isolation import detect_isolation

CGROUPS = detect_isolation()[0]
NO_CGROUPS = None if CGROUPS.startswith("cgroups") else "; ".join(
    f"{k}: {v}" for k, v in detect_isolation()[1].items())


@pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no writable cgroup controllers here: {NO_CGROUPS}")
async def test_an_agents_containers_live_under_its_cgroups_root(tmp_path):
    root = f"mesos_nb_test_{os.getpid()}"
    master = FakeMaster()
    await master.start()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation=CGROUPS,
                      cgroups_root=root, resources="cpus:2;mem:1024", detect_gpus=False,
                      executor_shutdown_grace_period=0.5)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    try:
        agent = proc.agents[0]
        await master.send(run_task(agent.agent_id, "sleepy", "sleep 30", resources="cpus:0.5;mem:96"))
        await master.wait_state("sleepy", "TASK_RUNNING")
        ex = agent.frameworks["fw-1"].executors["sleepy"]
        pid = ex.container.pid
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        memory = [ln.split(":", 2)[2] for ln in lines if ln.split(":")[1] in ("memory", "")]
        assert any(p == f"/{root}/{ex.container.container_id}" for p in memory), lines
        iso = agent.containerizer.isolator
        limit_file = (os.path.join(iso._dir("memory", ex.container.container_id), "memory.limit_in_bytes")
                      if CGROUPS == "cgroups/v1" else os.path.join(iso._dir(ex.container.container_id), "memory.max"))
        assert f"/{root}/" in limit_file
        with open(limit_file) as f:
            assert int(f.read()) == 96 * 1024 * 1024
    finally:
        await proc.stop()
        await master.stop()
        for ctrl in ("cpu", "cpuacct", "memory", "blkio", "unified", ""):
            d = os.path.join("/sys/fs/cgroup", ctrl, root)
            if os.path.isdir(d):
                await wait_for(lambda d=d: not any(os.scandir(d)) or _rmdir_children(d), 10, "containers gone")
                os.rmdir(d)


def _rmdir_children(d: str) -> bool:
    for e in os.scandir(d):
        if e.is_dir():
            try:
                os.rmdir(e.path)
            except OSError:
                return False
    return True


def test_a_bad_cgroups_root_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="is not a cgroup name"):
        make_containerizer("posix", cgroups_root="../escape")
    out = subprocess.run([sys.executable, "-m", "mesos_nb", "agent", "--master", "127.0.0.1:1", "--port", "0",
                          "--cgroups-root", "a/../b"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.returncode == 2, out
    assert "is not a cgroup name" in out.stderr and "Traceback" not in out.stderr

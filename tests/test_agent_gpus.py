"""GPU detection and CUDA_VISIBLE_DEVICES assignment, with a fake ``nvidia-smi`` on PATH
(the real-GPU check runs separately on a GPU machine)."""

from __future__ import annotations

import os
import stat

import pytest
from test_agent_integration import FakeMaster, run_task, wait_for

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.agent.detect import detect_gpus
from mesos_nb.protocol.channel import RegisterAgent
from mesos_nb.protocol.resources import Resources

FAKE_SMI = """#!/bin/sh
# fake nvidia-smi: three GPUs
case "$*" in
  *--query-gpu=index*) printf '0\\n1\\n2\\n' ;;
  *) echo "fake nvidia-smi" ;;
esac
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return smi


def test_detect_gpus_counts_nvidia_smi_lines(fake_smi):
    assert detect_gpus() == 3


def test_no_nvidia_smi_no_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == 0


async def test_cuda_visible_devices_assigned_disjoint_and_given_back(fake_smi, tmp_path):
    master = FakeMaster()
    await master.start()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation="posix",
                      resources="cpus:4;mem:1024;disk:100", detect_gpus=True, executor_shutdown_grace_period=0.5)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    try:
        agent = proc.agents[0]
        reg = master.of(RegisterAgent)[0]
        assert Resources.from_proto(reg.resources).scalar("gpus") == 3
        out = tmp_path / "out"
        out.mkdir()
        flag = tmp_path / "go"

        def cmd(name: str) -> str:
            return (f"printf '%s' \"$CUDA_VISIBLE_DEVICES\" > {out}/{name}.tmp && mv {out}/{name}.tmp {out}/{name}; "
                    f"while [ ! -f {flag} ]; do sleep 0.05; done")

        await master.send(run_task(agent.agent_id, "one", cmd("one"), resources="cpus:0.1;mem:32;gpus:1"))
        await master.send(run_task(agent.agent_id, "two", cmd("two"), resources="cpus:0.1;mem:32;gpus:2"))
        await master.send(run_task(agent.agent_id, "none", cmd("none"), resources="cpus:0.1;mem:32"))
        await wait_for(lambda: all((out / n).exists() for n in ("one", "two", "none")), 30, "tasks wrote their env")
        one = (out / "one").read_text().split(",")
        two = (out / "two").read_text().split(",")
        assert len(one) == 1 and len(two) == 2
        assert sorted(one + two) == ["0", "1", "2"]  # disjoint, all of them
        assert (out / "none").read_text() == ""  # a task without gpus sees none
        flag.touch()
        for t in ("one", "two", "none"):
            await master.wait_state(t, "TASK_FINISHED", timeout=30)
        # All three are free again: a three-GPU task gets them all.
        flag.unlink()
        await master.send(run_task(agent.agent_id, "three", cmd("three"), resources="cpus:0.1;mem:32;gpus:3"))
        await wait_for(lambda: (out / "three").exists(), 30, "three wrote its env")
        assert sorted((out / "three").read_text().split(",")) == ["0", "1", "2"]
        flag.touch()
        await master.wait_state("three", "TASK_FINISHED", timeout=30)
    finally:
        await proc.stop()
        await master.stop()

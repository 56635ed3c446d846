"""``cgroups/blkio``: I/O ceilings and weights from task labels, I/O counters in
``/monitor/statistics``. Direct writes (``oflag=direct``) so the page cache does not hide the
device; the ceiling (bytes per second) is the reliably testable control."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.request

import pytest
from test_agent_integration import FakeMaster, run_task

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.agent.io_control import block_device, io_limits
from mesos_nb.agent.isolation import blkio_unavailable, detect_isolation

KIND = detect_isolation()[0]
WHY = blkio_unavailable(KIND)
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"cgroup I/O control unavailable: {WHY}")
MB = 1 << 20


def _weight_unavailable() -> str | None:
    if KIND == "cgroups/v1":
        base = "/sys/fs/cgroup/blkio"
        if not any(os.path.exists(os.path.join(base, f)) for f in ("blkio.weight", "blkio.bfq.weight")):
            return ("the blkio hierarchy has no blkio.weight / blkio.bfq.weight: the disk's I/O scheduler "
                    "has no group weights (CFQ/BFQ with group scheduling)")
        return None
    if not os.path.exists("/sys/fs/cgroup/mesos_nb/io.weight"):
        return "cgroup2 has no io.weight here (needs iocost or BFQ)"
    return None


@pytest.fixture
async def agent_on(tmp_path):
    made = []

    async def _make():
        master = FakeMaster()
        await master.start()
        cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"),
                          isolation="cgroups/cpu,cgroups/mem,cgroups/blkio", resources="cpus:4;mem:2048",
                          detect_gpus=False, executor_shutdown_grace_period=0.5)
        proc = AgentProcess([cfg], register_timeout=10)
        await proc.start()
        made.append((proc, master))
        agent = proc.agents[0]
        if not block_device(cfg.work_dir):
            pytest.skip(f"{cfg.work_dir} is not on a block device (tmpfs/overlay): nothing to throttle")
        return master, agent

    yield _make
    for proc, master in made:
        await proc.stop()
        await master.stop()


def io_task(agent_id: str, task_id: str, cmd: str, labels: dict[str, int]):
    msg = run_task(agent_id, task_id, cmd, resources="cpus:0.5;mem:128")
    msg.task.labels = {"labels": [{"key": f"mesos_nb.io.{k}", "value": str(v)} for k, v in labels.items()]}
    return msg


DD = "dd if=/dev/zero of=out bs=256K count={n} oflag=direct 2>&1 | tail -1"


def _seconds(stdout: str) -> float:
    m = re.search(r"copied, ([0-9.]+) s", stdout)
    assert m, stdout
    return float(m.group(1))


def _stdout(agent, task_id: str) -> str:
    fw = agent.frameworks.get("fw-1") or agent.completed_frameworks["fw-1"]
    ex = fw.executors.get(task_id) or next(e for e in fw.completed_executors if e.executor_id == task_id)
    return open(os.path.join(ex.directory, "stdout")).read()


async def test_write_ceilings_set_the_throughput_ratio(agent_on):
    master, agent = await agent_on()
    slow, fast = 2 * MB, 4 * MB
    n = 24  # 6 MB each: ~3 s at 2 MB/s, ~1.5 s at 4 MB/s
    await master.send(io_task(agent.agent_id, "slow", DD.format(n=n), {"write_bps": slow}),
                      io_task(agent.agent_id, "fast", DD.format(n=n), {"write_bps": fast}))
    for t in ("slow", "fast"):
        await master.wait_state(t, "TASK_FINISHED", timeout=60)
    t_slow, t_fast = _seconds(_stdout(agent, "slow")), _seconds(_stdout(agent, "fast"))
    rate_slow, rate_fast = 6 * MB / t_slow, 6 * MB / t_fast
    assert rate_slow <= slow * 1.25 and rate_fast <= fast * 1.25, (rate_slow, rate_fast)
    assert 1.5 <= t_slow / t_fast <= 2.6, (t_slow, t_fast)


async def test_io_counters_in_monitor_statistics(agent_on):
    master, agent = await agent_on()
    await master.send(io_task(agent.agent_id, "io", DD.format(n=16) + "; sleep 60", {"write_bps": 16 * MB}))
    await master.wait_state("io", "TASK_RUNNING", timeout=30)

    def written() -> int:
        with urllib.request.urlopen(agent.url + "/monitor/statistics", timeout=5) as r:
            entries = json.load(r)
        st = next((e["statistics"] for e in entries if e["executor_id"] == "io"), {})
        return st.get("io_write_bytes", 0) if st.get("blkio_statistics", {}).get("throttling") else 0

    async def poll() -> bool:
        return (await asyncio.to_thread(written)) >= 4 * MB

    deadline = asyncio.get_running_loop().time() + 30
    while not await poll():
        assert asyncio.get_running_loop().time() < deadline, "no I/O counted"
        await asyncio.sleep(0.1)


async def test_weights_share_the_disk_in_proportion(agent_on):
    why = _weight_unavailable()
    if why is not None:
        pytest.skip(why)
    master, agent = await agent_on()
    cmd = "timeout 4 dd if=/dev/zero of=out bs=256K count=100000 oflag=direct 2>&1 | tail -1"
    await master.send(io_task(agent.agent_id, "light", cmd, {"weight": 100}),
                      io_task(agent.agent_id, "heavy", cmd, {"weight": 400}))
    for t in ("light", "heavy"):
        await master.wait_state(t, "TASK_FINISHED", timeout=60)

    def copied(s: str) -> int:
        return int(s.split()[0])

    light, heavy = copied(_stdout(agent, "light")), copied(_stdout(agent, "heavy"))
    assert heavy >= 1.5 * light, (light, heavy)


def test_bad_io_labels_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match="whole number"):
        io_limits({"labels": [{"key": "mesos_nb.io.write_bps", "value": "fast"}]}, "8:0")
    with pytest.raises(ValueError, match="unknown I/O label"):
        io_limits({"labels": [{"key": "mesos_nb.io.speed", "value": "1"}]}, "8:0")
    lim = io_limits({"labels": [{"key": "mesos_nb.io.read_bps", "value": "1048576"}]}, "8:0")
    assert lim.device == "8:0" and lim.read_bps == 1048576 and lim
    assert io_limits({"labels": [{"key": "other", "value": "x"}]}, "8:0") is None



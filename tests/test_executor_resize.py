"""A custom executor's container grows and shrinks with its tasks (Mesos' containerizer
``update``): its limits are the executor's resources plus those of its live tasks, read from
the cgroup's own files under cgroups and from the posix isolator's enforcement bookkeeping.

The test plays the executor (SUBSCRIBE, UPDATE) against a real agent; the executor's process
is a real ``sleep`` in a real container."""

from __future__ import annotations

import os

import aiohttp
import pytest
from test_agent_integration import FW, FakeMaster, run_task, wait_for
from test_executor_api import EX, subscribe, update

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.agent.isolation import detect_isolation
from mesos_nb.protocol.messages import ID, CommandInfo, ExecutorInfo
from mesos_nb.protocol.resources import Resources

CGROUPS = detect_isolation()[0]
NO_CGROUPS = None if CGROUPS.startswith("cgroups") else "; ".join(
    f"{k}: {v}" for k, v in detect_isolation()[1].items())
MB = 1024 * 1024


def executor() -> ExecutorInfo:
    return ExecutorInfo(executor_id=ID(value=EX), command=CommandInfo(value="sleep 60"),
                        resources=Resources.parse("cpus:0.5;mem:64").to_proto())


def memory_limit(agent, isolation: str) -> int:
    """The limit the isolator enforces on the executor's container right now."""
    ex = agent.frameworks[FW].executors[EX]
    iso = agent.containerizer.isolator
    cid = ex.container.container_id
    if isolation == "posix":
        return iso._pids[cid][1].mem_bytes
    if isolation.startswith("cgroups/v1"):
        with open(os.path.join(iso._dir("memory", cid), "memory.limit_in_bytes")) as f:
            return int(f.read())
    with open(os.path.join(iso._dir(cid), "memory.max")) as f:
        return int(f.read())


def cpu_quota(agent, isolation: str) -> int | None:
    ex = agent.frameworks[FW].executors[EX]
    iso = agent.containerizer.isolator
    cid = ex.container.container_id
    if isolation.startswith("cgroups/v1"):
        with open(os.path.join(iso._dir("cpu", cid), "cpu.cfs_quota_us")) as f:
            return int(f.read())
    if isolation.startswith("cgroups/v2"):
        with open(os.path.join(iso._dir(cid), "cpu.max")) as f:
            return int(f.read().split()[0])
    return None


@pytest.mark.parametrize("isolation", [
    "posix",
    pytest.param(CGROUPS, marks=pytest.mark.skipif(NO_CGROUPS is not None,
                                                  reason=f"no writable cgroup controllers here: {NO_CGROUPS}")),
], ids=["posix", "cgroups"])
async def test_the_executor_container_grows_with_each_task_and_shrinks_when_they_end(tmp_path, isolation):
    master = FakeMaster()
    await master.start()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation=isolation,
                      resources="cpus:4;mem:2048", detect_gpus=False, executor_shutdown_grace_period=0.5)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    session = aiohttp.ClientSession()
    sub = None
    try:
        agent = proc.agents[0]
        assert agent.isolation == isolation
        await master.send(run_task(agent.agent_id, "t1", None, executor=executor(), resources="cpus:0.25;mem:100"))
        await wait_for(lambda: (ex := agent.frameworks.get(FW) and agent.frameworks[FW].executors.get(EX))
                       and ex.container is not None, what="executor container started")
        assert memory_limit(agent, isolation) == (64 + 100) * MB  # executor + its first task
        sub = await subscribe(session, agent)
        await wait_for(lambda: sub.of("LAUNCH"), what="t1 handed to the executor")
        # a second task launched into the running executor grows its container
        await master.send(run_task(agent.agent_id, "t2", None, executor=executor(), resources="cpus:0.5;mem:200"))
        await wait_for(lambda: len(sub.of("LAUNCH")) == 2, what="t2 handed to the executor")
        assert memory_limit(agent, isolation) == (64 + 100 + 200) * MB
        if isolation != "posix":
            assert cpu_quota(agent, isolation) == int(100_000 * 1.25)
        stats = agent.containerizer.usage(agent.frameworks[FW].executors[EX].container)
        assert stats["mem_limit_bytes"] == (64 + 100 + 200) * MB and stats["cpus_limit"] == 1.25
        # ... and shrinks as they end, back to the executor's own
        async with session.post(f"{agent.url}/api/v1/executor", json=update("t2", "TASK_FINISHED")) as r:
            assert r.status == 202
        await master.wait_state("t2", "TASK_FINISHED")
        await wait_for(lambda: memory_limit(agent, isolation) == (64 + 100) * MB, what="shrunk by t2")
        async with session.post(f"{agent.url}/api/v1/executor", json=update("t1", "TASK_FINISHED")) as r:
            assert r.status == 202
        await master.wait_state("t1", "TASK_FINISHED")
        await wait_for(lambda: memory_limit(agent, isolation) == 64 * MB, what="shrunk to the executor's own")
        if isolation != "posix":
            assert cpu_quota(agent, isolation) == 50_000
        assert agent.frameworks[FW].executors[EX].container.limits.mem_bytes == 64 * MB
    finally:
        if sub is not None:
            await sub.close()
        await session.close()
        await proc.stop()
        await master.stop()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_shrink_never_lowers_the_memory_limit_below_what_is_in_use(tmp_path, version):
    """Lowering the hard limit under the usage would OOM-kill the executor (v2) or stall in
    reclaim (v1); the limit stays until the memory is given back (the isolators' own files,
    in a directory standing in for the cgroup mount)."""
    from mesos_nb.agent.cgroups_v1 import CgroupsV1Isolator
    from mesos_nb.agent.cgroups_v2 import CgroupsV2Isolator
    from mesos_nb.agent.isolator import Limits

    iso = CgroupsV1Isolator(root=str(tmp_path)) if version == "v1" else CgroupsV2Isolator(root=str(tmp_path))
    iso.prepare("c1", Limits(cpus=1.0, mem_bytes=300 * MB))
    mem_dir = iso._dir("memory", "c1") if version == "v1" else iso._dir("c1")
    limit_file, usage_file = (("memory.limit_in_bytes", "memory.usage_in_bytes") if version == "v1"
                              else ("memory.max", "memory.current"))

    def write(name: str, n: int) -> None:
        with open(os.path.join(mem_dir, name), "w") as f:
            f.write(str(n))

    def limit() -> int:
        with open(os.path.join(mem_dir, limit_file)) as f:
            return int(f.read())

    write(usage_file, 200 * MB)
    assert iso.update("c1", Limits(cpus=0.5, mem_bytes=100 * MB)).mem_bytes == 300 * MB
    assert limit() == 300 * MB  # 200 MB in use: kept
    assert iso.update("c1", Limits(cpus=0.5, mem_bytes=250 * MB)).mem_bytes == 250 * MB
    assert limit() == 250 * MB  # fits above the usage: lowered
    write(usage_file, 50 * MB)
    assert iso.update("c1", Limits(cpus=0.5, mem_bytes=100 * MB)).mem_bytes == 100 * MB
    assert limit() == 100 * MB and iso.usage("c1")["mem_limit_bytes"] == 100 * MB

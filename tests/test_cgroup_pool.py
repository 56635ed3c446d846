"""Recycled cgroups (cgroups v1, ``agent/cgroup_pool.py``): an ended container's empty cgroups
are renamed into a per-agent pool and renamed to a later container's id; what that
container's user sees is a fresh cgroup's (its limits, statistics from zero, its id's path)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import async_wait_for
from test_isolation import NO_CGROUPS
from test_launcher import _rmdir_parents as _cleanup
from test_launcher import _spec
from test_launcher import _v1_isolator as _v1

from mesos_nb.agent.cgroup_pool import CgroupPool, is_stale, subtract
from mesos_nb.agent.containerizer import PosixContainerizer, describe_status
from mesos_nb.agent.isolator import Limits

NEEDS_V1 = pytest.mark.skipif(NO_CGROUPS is not None, reason=f"no cgroups: {NO_CGROUPS}")
BURN = [sys.executable, "-S", "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"]


def test_the_pool_is_bounded_and_hands_out_the_newest_first():
    pool = CgroupPool(123, capacity=2)
    a, b, c = pool.offer("c1"), pool.offer("c2"), pool.offer("c3")  # running containers: no bound
    assert len({a, b, c}) == 3 and len(pool) == 0
    assert pool.answered("c1", "one") is None and pool.answered("c2", None) is None  # c2: not kept
    assert pool.answered("c3", "three") is None and len(pool) == 2
    d = pool.offer("c4")
    assert pool.answered("c4", "four") == d and len(pool) == 2  # full: the surplus is to be removed
    assert pool.answered("c4", "again") is None  # answered already
    assert pool.take() == (c, "three") and pool.take() == (a, "one") and pool.take() is None
    assert pool.owns(a) and not CgroupPool(123).owns(a)  # another agent in this process
    assert CgroupPool(123, capacity=0).offer("c5") is None
    assert pool.drain() == []


def test_only_a_gone_processs_pooled_cgroups_are_stale():
    assert is_stale("pool-999999999-1-3", lambda pid: False)
    assert not is_stale("pool-42-1-3", lambda pid: True)
    assert not is_stale("0b5a6f3c-container-id", lambda pid: False)  # a container's own: never


def test_a_kernel_without_cpuacct_usage_user_keeps_the_cpu_counter_and_reads_cpuacct_stat_as_baseline(tmp_path):
    """Before Linux 4.7 there is no ``cpuacct.usage_user``: zeroing ``cpuacct.usage`` would leave
    ``cpuacct.stat`` stuck, so the counter stays and its ticks are the next task's baseline
    (a plain directory stands in for the cgroup: these are its files as such a kernel has them)."""
    from mesos_nb.agent.cgroupfs import recycle_cgroups

    def cgroup(name: str, files: dict[str, str]) -> str:
        d = tmp_path / name
        d.mkdir()
        for k, v in {"cgroup.procs": "", **files}.items():
            (d / k).write_text(v)
        return str(d)

    old = cgroup("acct", {"cpuacct.stat": "user 31\nsystem 4\n", "cpuacct.usage": "350000000\n"})
    base = recycle_cgroups([old], {"acct": old, "to": [str(tmp_path / "pooled")]})
    assert base == {"user": 31, "system": 4}
    assert (tmp_path / "pooled" / "cpuacct.usage").read_text() == "350000000\n"  # not zeroed
    new = cgroup("acct2", {"cpuacct.stat": "user 31\nsystem 4\n", "cpuacct.usage": "350000000\n",
                           "cpuacct.usage_user": "300000000\n"})
    assert recycle_cgroups([new], {"acct": new, "to": [str(tmp_path / "pooled2")]}) == {}
    # zeroed (usage_user/_sys with it): "0" written over the file's first byte, as a plain file takes it
    assert (tmp_path / "pooled2" / "cpuacct.usage").read_text().startswith("05")


def test_statistics_are_counted_from_the_baseline_never_below_zero():
    assert subtract({"user": 30, "system": 4, "other": 9}, {"user": 20, "system": 6}) == \
        {"user": 10, "system": 0, "other": 9}


@contextlib.asynccontextmanager
async def _containerizer(name: str, **kw):  # noqa: ANN202 - yields (isolator, containerizer)
    """A v1 containerizer under a parent of its own; at the end every exit handled, the
    containerizer stopped (its pool drained) and the parent cgroups removed."""
    iso = _v1(f"{name}-{os.getpid()}")
    c = PosixContainerizer(iso, **kw)
    try:
        yield iso, c
        await async_wait_for(lambda: not c._live, 10, message="every exit handled (then the stop removes it)")
    finally:
        c.close()
        await _parents_removed(iso)


async def _parents_removed(iso) -> None:
    """The test's parent cgroups removed (a parent whose child was just removed can be busy
    for a moment)."""
    def gone() -> bool:
        _cleanup(iso)
        return not any(os.path.exists(os.path.join(iso.root, ctrl, iso.nested)) for ctrl in iso.CONTROLLERS)

    await async_wait_for(gone, 10, message="the test's parent cgroups removed")


def _read(iso, ctrl: str, cid: str, name: str) -> int:
    with open(os.path.join(iso._dir(ctrl, cid), name)) as f:
        return int(f.read().split()[0])


async def _pooled(c, iso, ct, n: int = 1) -> None:
    assert describe_status(await ct.wait())[0]
    await async_wait_for(lambda: len(iso._pool) == n, 15, message=lambda: f"the ended container's cgroups pooled "
                         f"(pool {len(iso._pool)}, offers {iso._pool.pending}, pooled {iso._pooled})")


@NEEDS_V1
async def test_a_task_in_a_recycled_cgroup_sees_its_own_limits_and_ids_and_statistics_from_zero(tmp_path):
    async with _containerizer("cgpool-reuse") as (iso, c):
        first = await c.launch(_spec(tmp_path, "t1", BURN, limits=Limits(cpus=2, mem_bytes=128 << 20)))
        old_dirs = iso.removal_dirs("t1")
        await _pooled(c, iso, first)
        assert not any(os.path.exists(d) for d in old_dirs)  # renamed away, not left under t1's name
        second = await c.launch(_spec(tmp_path, "t2", ["sh", "-c", "cat /proc/self/cgroup; exec sleep 30"],
                                      limits=Limits(cpus=0.5, mem_bytes=32 << 20)))
        assert len(iso._pool) == 0 and "t2" in iso._base  # t1's cgroups, recycled
        # t1 burnt 0.3 s there: a task reading its own cgroup's CPU counter sees none of it
        assert _read(iso, "cpuacct", "t2", "cpuacct.usage") < 0.1e9
        await async_wait_for(lambda: "memory" in (tmp_path / "t2" / "stdout").read_text(), 10, message="output")
        lines = (tmp_path / "t2" / "stdout").read_text().splitlines()
        assert {"memory", "cpu", "cpuacct"} <= {ln.split(":")[1] for ln in lines if ln.endswith(f"/{iso.nested}/t2")}
        assert _read(iso, "cpu", "t2", "cpu.cfs_quota_us") == 50_000 and _read(iso, "cpu", "t2", "cpu.shares") == 512
        assert 32 << 20 <= _read(iso, "memory", "t2", "memory.limit_in_bytes") <= (32 << 20) + (512 << 10)
        stats = c.usage(second)
        assert stats["cpus_user_time_secs"] + stats["cpus_system_time_secs"] < 0.1
        assert stats["mem_limit_bytes"] == 32 << 20 and stats["processes"] == 1
        assert stats["mem_total_bytes"] < (32 << 20)
        await c.destroy(second, 0)
        await async_wait_for(lambda: len(iso._pool) == 1, 15, message="t2's cgroups pooled in turn")
        third = await c.launch(_spec(tmp_path, "t3", ["sleep", "30"]))  # no limits: a fresh cgroup's values
        assert "t3" in iso._base
        assert _read(iso, "cpu", "t3", "cpu.cfs_quota_us") == -1 and _read(iso, "cpu", "t3", "cpu.shares") == 1024
        assert _read(iso, "memory", "t3", "memory.limit_in_bytes") > 1 << 40
        await c.destroy(third, 0)


@NEEDS_V1
async def test_an_oom_in_a_recycled_memory_cgroup_is_reported_and_that_cgroup_not_recycled(tmp_path):
    async with _containerizer("cgpool-oom", poll_interval=0.05) as (iso, c):
        await _pooled(c, iso, await c.launch(_spec(tmp_path, "ok", ["true"], limits=Limits(cpus=1, mem_bytes=256 << 20))))
        hog = await c.launch(_spec(tmp_path, "hog", [sys.executable, "-S", "-c", "b = bytearray(200 << 20)"],
                                   limits=Limits(cpus=1, mem_bytes=48 << 20)))
        assert "hog" in iso._base  # it runs in the recycled cgroup
        await hog.wait()
        assert hog.limitation is not None and hog.limitation.startswith("Memory limit exceeded: Requested: 48MB")
        dirs = iso.removal_dirs("hog")
        await async_wait_for(lambda: not any(os.path.exists(d) for d in dirs), 15, message="hog's cgroups gone")
        assert len(iso._pool) == 0  # an OOM'd memory cgroup keeps counting it: removed, not pooled
        ok = await c.launch(_spec(tmp_path, "after", ["true"], limits=Limits(cpus=1, mem_bytes=48 << 20)))
        await ok.wait()
        assert ok.limitation is None


@NEEDS_V1
async def test_a_kill_of_a_recycled_container_kills_only_its_processes(tmp_path):
    async with _containerizer("cgpool-kill") as (iso, c):
        # One that leaves a process behind (its own session: the group kill misses it) is not
        # pooled while it is there: the straggler is killed first, so no later task meets it.
        left = await c.launch(_spec(tmp_path, "l", ["sh", "-c", "setsid sh -c 'echo $$ > s.tmp; mv s.tmp pid; "
                                                                "exec sleep 60' & while [ ! -s pid ]; do :; done"],
                                    limits=Limits(cpus=1)))
        await left.wait()
        straggler = int((tmp_path / "l" / "pid").read_text())
        dirs = iso.removal_dirs("l")
        await async_wait_for(lambda: not any(os.path.exists(d) for d in dirs), 15, message="l's cgroups gone")
        await async_wait_for(lambda: not os.path.exists(f"/proc/{straggler}") or _zombie(straggler), 15,
                             message="the straggler killed")
        assert len(iso._pool) == 0
        await _pooled(c, iso, await c.launch(_spec(tmp_path, "p", ["true"], limits=Limits(cpus=1))))
        reused = await c.launch(_spec(tmp_path, "r", ["sleep", "60"], limits=Limits(cpus=1)))
        other = await c.launch(_spec(tmp_path, "o", ["sleep", "60"], limits=Limits(cpus=1)))
        assert "r" in iso._base and "o" not in iso._base
        assert iso.pids("r") == [reused.pid]  # nothing of an earlier task in it
        await c.destroy(reused, 0)
        assert not other.exited and os.path.exists(f"/proc/{other.pid}")
        await c.destroy(other, 0)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@NEEDS_V1
async def test_a_full_pool_removes_what_it_has_no_room_for(tmp_path):
    async with _containerizer("cgpool-full") as (iso, c):
        iso._pool.capacity = 1
        running = [await c.launch(_spec(tmp_path, f"f{i}", ["sleep", "60"], limits=Limits(cpus=1))) for i in range(3)]
        for ct in running:
            await c.destroy(ct, 0)
        await async_wait_for(lambda: len(_pooled_names(iso)) == len(iso.CONTROLLERS) and not c._removal.pending,
                             15, message=lambda: f"one kept, two removed: {_pooled_names(iso)}")
        assert len(iso._pool) == 1 and not any(os.path.exists(d) for i in range(3) for d in iso.removal_dirs(f"f{i}"))


def _pooled_names(iso) -> list[str]:
    out = []
    for ctrl in iso.CONTROLLERS:
        with contextlib.suppress(OSError):
            out += [e.name for e in os.scandir(os.path.join(iso.root, ctrl, iso.nested)) if e.name.startswith("pool-")]
    return out


@NEEDS_V1
async def test_no_pooled_cgroup_outlives_its_agent_a_stop_or_a_crash(tmp_path):
    name = f"cgpool-life-{os.getpid()}"
    iso = _v1(name)
    c = PosixContainerizer(iso)
    try:
        await _pooled(c, iso, await c.launch(_spec(tmp_path, "a", ["true"], limits=Limits(cpus=1))))
        assert len(_pooled_names(iso)) == len(iso.CONTROLLERS)
    finally:
        c.close()  # the agent stops: its pool is removed
    assert _pooled_names(iso) == []
    # A crash: an agent process pools a cgroup and dies without a drain; the next agent removes it.
    box = tmp_path / "crash"
    box.mkdir()
    script = textwrap.dedent(f"""
        import asyncio, os, sys
        sys.path[:0] = {sys.path!r}
        from mesos_nb.agent.containerizer import LaunchSpec, PosixContainerizer
        from mesos_nb.agent.isolation import make_isolator
        from mesos_nb.agent.isolator import Limits
        async def main():
            iso = make_isolator("cgroups", {name!r})
            c = PosixContainerizer(iso)
            ct = await c.launch(LaunchSpec(container_id="x", argv=["true"], env={{}}, cwd={str(box)!r},
                                           stdout_path=os.devnull, stderr_path=os.devnull, limits=Limits(cpus=1)))
            await ct.wait()
            while not len(iso._pool):
                await asyncio.sleep(0.01)
            os._exit(0)
        asyncio.run(main())
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    try:
        assert len(_pooled_names(iso)) == len(iso.CONTROLLERS)  # left behind by the crash
        restarted = _v1(name)
        assert _pooled_names(restarted) == []
    finally:
        await _parents_removed(iso)


@NEEDS_V1
async def test_a_busy_task_in_a_recycled_cgroup_shows_its_own_cpu(tmp_path):
    """The dashboard reads a task's CPU from these statistics: a busy second task in the first
    one's recycled cgroups must show what it burns, not the first one's total subtracted to 0."""
    async with _containerizer("cgpool-busy") as (iso, c):
        await _pooled(c, iso, await c.launch(_spec(tmp_path, "b1", BURN, limits=Limits(cpus=1))))
        long_burn = [sys.executable, "-S", "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 5: pass"]
        second = await c.launch(_spec(tmp_path, "b2", long_burn, limits=Limits(cpus=1)))
        assert "b2" in iso._base  # it took the recycled set
        await async_wait_for(lambda: (s := c.usage(second)) is not None
                             and s["cpus_user_time_secs"] + s["cpus_system_time_secs"] >= 0.1, 30,
                             message=lambda: f"the busy task's CPU shows: {c.usage(second)}")
        await second.wait()


BURN_THEN_SLEEP = (f"{sys.executable} -S -c \"import time\nt = time.process_time()\n"
                   "while time.process_time() - t < {secs}: pass\nopen('burnt', 'w').close()\ntime.sleep(60)\"")


@NEEDS_V1
async def test_agent_statistics_show_a_busy_tasks_cpu_in_a_cgroup_a_busier_task_used(tmp_path):
    """What the dashboard plots: the agent's ``/monitor/statistics`` for a task in recycled
    cgroups whose earlier task burnt MORE CPU than it. A zeroed ``cpuacct.usage`` left
    ``cpuacct.stat`` at the earlier task's total (the kernel's ``cputime_adjust`` never shows
    less), so the baseline subtraction read 0 for the whole of the later task (CI: the second
    dashboard notebook's spin task showed no CPU)."""
    import aiohttp
    from test_agent_integration import agents_on_fake_masters, run_task

    async with agents_on_fake_masters(tmp_path, "cpus:2;mem:1024") as make:
        master, agent = await make("cgroups/v1")
        iso = agent.containerizer.isolator
        await master.send(run_task(agent.agent_id, "warm", BURN_THEN_SLEEP.replace("time.sleep(60)", "")
                                   .format(secs=1.5), resources="cpus:1;mem:64"))
        await master.wait_state("warm", "TASK_FINISHED", timeout=60)
        await async_wait_for(lambda: len(iso._pool) == 1, 15, message="warm's cgroups pooled")
        await master.send(run_task(agent.agent_id, "busy", BURN_THEN_SLEEP.format(secs=0.5), resources="cpus:1;mem:64"))
        await master.wait_state("busy", "TASK_RUNNING")
        busy = agent.frameworks["fw-1"].executors["busy"]
        assert busy.container_id in iso._base  # it runs in warm's recycled cgroups
        await async_wait_for(lambda: os.path.exists(os.path.join(busy.directory, "burnt")), 60,
                             message="the busy task burnt its 0.5 s")
        async with aiohttp.ClientSession() as s, s.get(f"{agent.url}/monitor/statistics") as r:
            st = next(e for e in await r.json() if e["executor_id"] == "busy")["statistics"]
        assert st["cpus_user_time_secs"] + st["cpus_system_time_secs"] >= 0.4, st

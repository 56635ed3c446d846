"""Soak: many short command tasks from two frameworks (one checkpointing, one not) on two real
agent processes that are SIGKILLed and restarted at random (seeded RNG; the seed is printed and
``MESOS_NB_SOAK_SEED`` replays it).

Every task id reaches exactly one terminal state at its framework (every terminal update is
counted, whenever it arrives); tasks of the checkpointing framework that were running survive
the agent kills and finish; nothing is left running under the test's work dir afterwards.

The short form (``MESOS_NB_SOAK_TASKS``, default 150) always runs; the long form
(``-m slow``, default 2000 tasks) kills agents more often, for longer.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest
from conftest import async_wait_for

from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol.messages import ID, CommandInfo, FrameworkInfo, TaskInfo, is_terminal
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver

REPO = Path(__file__).resolve().parent.parent
TASK_RES = Resources.parse("cpus:0.1;mem:16")


async def until(pred, timeout: float, what) -> object:
    return await async_wait_for(pred, timeout, 0.05, what)


class AgentProc:
    def __init__(self, name: str, master: str, work: Path) -> None:
        self.name = name
        self.master = master
        self.work = work / name
        self.log = work / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_NB_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mesos_nb", "agent", "--master", self.master, "--port", "0",
             "--work-dir", str(self.work), "--resources", "cpus:4;mem:4096;disk:1000", "--isolation", "posix"],
            env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, cwd=str(REPO), start_new_session=True,
        )

    def sigkill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Soak(Scheduler):
    def __init__(self, prefix: str, n: int, rng: random.Random) -> None:
        self.pending = [f"{prefix}-{i:05d}" for i in range(n)]
        self.all = list(self.pending)
        self.cmds = {t: f"sleep 0.0{rng.randint(1, 9)}; true" for t in self.pending}
        self.updates: dict[str, list[str]] = defaultdict(list)
        self.terminal: dict[str, list[str]] = defaultdict(list)
        self.terminal_uuids: dict[str, set] = defaultdict(set)
        self.max_in_flight = 40

    def in_flight(self) -> int:
        return len(self.all) - len(self.pending) - len(self.terminal)

    async def offers(self, driver, offers):
        for offer in offers:
            have = Resources.from_proto(offer.resources)
            infos = []
            while self.pending and self.in_flight() + len(infos) < self.max_in_flight and have.contains(TASK_RES):
                tid = self.pending.pop(0)
                infos.append(TaskInfo(name=tid, task_id=ID(value=tid), agent_id=offer.agent_id,
                                      resources=TASK_RES.to_proto(), command=CommandInfo(value=self.cmds[tid])))
                have = have - TASK_RES
            if infos:
                await driver.launch([offer.id], infos, filters=None)
            else:
                await driver.decline([offer.id], refuse_seconds=0.2)

    async def update(self, driver, status):
        tid = status.task_id.value
        self.updates[tid].append(status.state)
        if is_terminal(status.state):
            self.terminal[tid].append(status.state)
            self.terminal_uuids[tid].add(status.uuid)

    def done(self) -> bool:
        return not self.pending and all(t in self.terminal for t in self.all)

    def missing(self) -> str:
        left = [t for t in self.all if t not in self.terminal]
        return f"{len(left)} tasks without a terminal state, e.g. " + ", ".join(
            f"{t}:{self.updates.get(t)}" for t in left[:5])


def procs_under(root: Path) -> list[psutil.Process]:
    out = []
    prefix = str(root)
    for p in psutil.process_iter(["pid"]):
        try:
            cwd = p.cwd()
            if (cwd == prefix or cwd.startswith(prefix + os.sep)) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.Error, OSError):
            pass
    return out


async def soak(tmp_path: Path, n: int, kills: int, period: tuple[float, float], timeout: float) -> None:
    seed = int(os.environ.get("MESOS_NB_SOAK_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"soak seed {seed} (MESOS_NB_SOAK_SEED={seed} replays it), tasks {n}, kills {kills}")
    rng = random.Random(seed)
    work = tmp_path / "work"
    work.mkdir()
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.05, agent_ping_timeout=1.0,
                                       max_agent_ping_timeouts=60))
    await master.start()
    agents = [AgentProc(f"agent{i}", master.address, work) for i in range(2)]
    ck = Soak("ck", n // 2, rng)
    nc = Soak("nc", n - n // 2, rng)
    drivers = [
        SchedulerDriver(ck, FrameworkInfo(user="", name="soak-ck", checkpoint=True, failover_timeout=600),
                        master.address),
        SchedulerDriver(nc, FrameworkInfo(user="", name="soak-nc"), master.address),
    ]
    try:
        for a in agents:
            a.start()
        for d in drivers:
            await d.start()
        t0 = time.monotonic()
        done = 0
        # Chaos: kill a random agent, restart it shortly after, while tasks remain.
        while done < kills and not (ck.done() and nc.done()):
            await asyncio.sleep(rng.uniform(*period))
            victim = rng.choice(agents)
            victim.sigkill()
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            victim.start()
            done += 1
            print(f"  {time.monotonic() - t0:6.1f}s killed+restarted {victim.name}; "
                  f"terminal ck={len(ck.terminal)} nc={len(nc.terminal)}")
        await until(lambda: ck.done() and nc.done(), timeout,
                    lambda: f"every task to end (ck: {ck.missing()}; nc: {nc.missing()})")
        await asyncio.sleep(1.0)  # late duplicates would show up here
        print(f"  all {n} tasks ended after {time.monotonic() - t0:.1f}s, {done} agent kills")
        for sched, name in ((ck, "checkpointing"), (nc, "non-checkpointing")):
            # Delivery is at least once (reference 6.3): an agent killed after forwarding a
            # checkpointed terminal update but before its ack arrived sends it again after the
            # restart -- the same update (same uuid). A second terminal *state* never happens.
            multi = {t: s for t, s in sched.terminal.items() if len(set(s)) != 1 or len(sched.terminal_uuids[t]) != 1}
            assert not multi, f"{name}: tasks with more than one terminal state: {dict(list(multi.items())[:5])}"
            resent = sum(len(s) - 1 for s in sched.terminal.values())
            print(f"  {name}: {resent} retransmitted terminal updates (same uuid)")
            assert set(sched.terminal) == set(sched.all)
        # The checkpointing framework's tasks survive agent kills: a task that ran finishes.
        for tid in ck.all:
            if "TASK_RUNNING" in ck.updates[tid]:
                assert ck.terminal[tid] == ["TASK_FINISHED"], (tid, ck.updates[tid])
            else:  # launched into a dying agent: it never ran
                assert ck.terminal[tid][0] in ("TASK_FINISHED", "TASK_LOST", "TASK_DROPPED", "TASK_GONE"), \
                    (tid, ck.updates[tid])
        states = defaultdict(int)
        for sched in (ck, nc):
            for s in sched.terminal.values():
                states[s[0]] += 1
        print("  terminal states:", dict(states))
        assert states["TASK_FINISHED"] > 0
    finally:
        for d in drivers:
            await d.stop()
        for a in agents:
            a.stop()
        await master.stop()
    await until(lambda: not procs_under(work), 30,
                lambda: f"no process left under {work}: {[(p.pid, p.cmdline()) for p in procs_under(work)]}")


async def test_soak_short(tmp_path):
    n = int(os.environ.get("MESOS_NB_SOAK_TASKS") or 150)
    await soak(tmp_path, n, kills=3, period=(0.5, 1.5), timeout=120)


@pytest.mark.slow
async def test_soak_long(tmp_path):
    n = int(os.environ.get("MESOS_NB_SOAK_TASKS") or 2000)
    await soak(tmp_path, n, kills=max(5, n // 100), period=(1.0, 4.0), timeout=600)


async def test_non_checkpointing_tasks_do_not_outlive_an_agent_crash(tmp_path):
    """A non-checkpointing framework's tasks keep running when the agent is SIGKILLed (they are
    in their own sessions); the restarted agent kills them from its pid log, and the framework
    is told once per task."""
    work = tmp_path / "work"
    work.mkdir()
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.05, agent_ping_timeout=1.0,
                                       max_agent_ping_timeouts=60))
    await master.start()
    agent = AgentProc("agent0", master.address, work)
    sched = Soak("orph", 4, random.Random(0))
    for tid in sched.all:
        sched.cmds[tid] = "sleep 300"
    driver = SchedulerDriver(sched, FrameworkInfo(user="", name="orphans"), master.address)
    try:
        agent.start()
        await driver.start()
        await until(lambda: all("TASK_RUNNING" in sched.updates[t] for t in sched.all), 60, "tasks running")
        assert len(procs_under(work)) >= 4
        agent.sigkill()
        assert len(procs_under(work)) >= 4  # orphans now
        assert not sched.terminal
        agent.start()
        await until(lambda: not procs_under(work), 30, lambda: f"orphans killed: {procs_under(work)}")
        await until(sched.done, 60, lambda: sched.missing())
        await asyncio.sleep(0.5)  # a late duplicate would show up here
        assert all(len(s) == 1 for s in sched.terminal.values()), dict(sched.terminal)  # nothing checkpointed
        assert agent.log.read_text().count("killing an orphaned container") >= 4
    finally:
        await driver.stop()
        agent.stop()
        await master.stop()

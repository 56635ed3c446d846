"""Masters that fail over in seconds: three real master processes, ZooKeeper, two agents.

The leader is SIGKILLed while 100 tasks run (60 of an SDK framework, 40 of an unmodified
pymesos framework, both given the zk:// URL). A new leader is elected and recovers the
ZooKeeper registry; both agents re-register; both frameworks re-subscribe with their ids; no
task is killed; released afterwards, every task reports exactly one terminal state.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from ha_cluster import HaCluster, running_tasks

from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import command_task

pytest_plugins = ["zk_fixture"]

ROOT = Path(__file__).resolve().parent.parent
PYMESOS_PY = Path(os.environ.get("MESOS_NB_PYMESOS_PYTHON", ROOT / ".venv-pymesos" / "bin" / "python"))
PYMESOS_APP = ROOT / "tests" / "pymesos_apps" / "ha_scheduler.py"
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
            "TASK_GONE", "TASK_GONE_BY_OPERATOR"}
SDK_TASKS, PYMESOS_TASKS = 60, 40

needs_pymesos = pytest.mark.skipif(not PYMESOS_PY.exists() and not os.environ.get("CI"),
                                   reason=f"no pymesos virtualenv at {PYMESOS_PY} (scripts/test.sh makes it)")


class Sdk(Scheduler):
    def __init__(self, n: int, release: Path) -> None:
        self.n, self.release = n, release
        self.launched = 0
        self.updates: list[tuple[str, str]] = []
        self.subscribed_at: list[float] = []

    def subscribed(self, driver, framework_id, master_info):
        self.subscribed_at.append(time.monotonic())

    async def offers(self, driver, offers):
        for o in offers:
            k = min(self.n - self.launched, 30)
            if k <= 0:
                await driver.decline([o.id], refuse_seconds=5)
                continue
            tasks = [command_task(o, f"while [ ! -e {self.release} ]; do sleep 1; done", cpus=0.1, mem=16,
                                  task_id=f"sdk-{self.launched + i:03d}") for i in range(k)]
            self.launched += k
            await driver.launch([o.id], tasks)

    def update(self, driver, status):
        self.updates.append((status.task_id.value, status.state))


class PymesosApp:
    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    async def start(self, master: str, n: int, release: Path) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            str(PYMESOS_PY), str(PYMESOS_APP), master, str(n), str(release),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            if line.startswith(b"{"):
                self.lines.append(json.loads(line))

    def updates(self) -> list[tuple[str, str]]:
        return [(x["task_id"], x["state"]) for x in self.lines if x.get("event") == "update"]

    def subscriptions(self) -> int:
        return sum(1 for x in self.lines if x.get("event") in ("registered", "reregistered"))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


async def until(pred, timeout: float, what: str, cluster: HaCluster):
    """Poll ``pred`` (blocking HTTP allowed: it runs in a thread) until true, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = await asyncio.to_thread(pred)
        except Exception:
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s\n{cluster.logs()}")
        await asyncio.sleep(0.05)


def states_by_task(updates: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for tid, st in updates:
        out.setdefault(tid, []).append(st)
    return out


async def run_failover(zk, tmp_path: Path, rounds: int) -> None:
    release = tmp_path / "release"
    cluster = HaCluster(zk.url("/mesos"), tmp_path)
    sdk = Sdk(SDK_TASKS, release)
    driver = SchedulerDriver(sdk, FrameworkInfo(user="u", name="sdk-ha", failover_timeout=3600, checkpoint=True),
                             cluster.zk_url, start_timeout=60, zk_session_timeout=2.0)
    pm = PymesosApp()
    try:
        cluster.start(agents=2)
        await until(lambda: len((cluster.leader_state() or {}).get("slaves", [])) == 2, 90, "two agents", cluster)
        await driver.start()
        await pm.start(cluster.zk_url, PYMESOS_TASKS, release)
        total = SDK_TASKS + PYMESOS_TASKS
        await until(lambda: Counter(running_tasks(cluster.leader_state()).values())["TASK_RUNNING"] == total,
                    180, f"{total} running tasks", cluster)
        for r in range(rounds):
            old = cluster.leader()
            assert old is not None
            sdk_subs, pm_subs = len(sdk.subscribed_at), pm.subscriptions()
            cluster.kill_master(old)
            new = await until(lambda o=old: (lambda p: p if p not in (None, o) else None)(cluster.leader()),
                              60, f"round {r + 1}: a new leader", cluster)
            # both agents re-register with the new leader and it adopts every task, running
            await until(lambda: len([s for s in (cluster.leader_state() or {}).get("slaves", []) if s["active"]]) == 2
                        and Counter(running_tasks(cluster.leader_state()).values())["TASK_RUNNING"] == total,
                        90, f"round {r + 1}: agents back on {new} with {total} running tasks", cluster)
            await until(lambda s=sdk_subs, p=pm_subs: len(sdk.subscribed_at) > s and pm.subscriptions() > p
                        and driver.connected, 90, f"round {r + 1}: both frameworks re-subscribed (sdk: "
                        f"{len(sdk.subscribed_at)}/{sdk_subs} master={driver.master} error={driver._last_error}; "
                        f"pymesos {pm.subscriptions()}/{pm_subs})", cluster)
            st = cluster.leader_state()
            names = {fw["name"] for fw in st["frameworks"] if fw["active"]}
            assert {"sdk-ha", "pymesos-ha"} <= names
            # nothing was killed or lost
            for tid, sts in {**states_by_task(sdk.updates), **states_by_task(pm.updates())}.items():
                assert not set(sts) & TERMINAL, f"{tid} ended during failover: {sts}"
            cluster.start_master(old)  # the supervisor restarts the killed master (a follower now)
        release.touch()
        await until(lambda: all(set(s) & TERMINAL for s in states_by_task(sdk.updates).values())
                    and len(states_by_task(sdk.updates)) == SDK_TASKS
                    and len([1 for s in states_by_task(pm.updates()).values() if set(s) & TERMINAL]) == PYMESOS_TASKS,
                    180, "every task to finish", cluster)
        for tid, sts in {**states_by_task(sdk.updates), **states_by_task(pm.updates())}.items():
            terminal = [s for s in sts if s in TERMINAL]
            assert terminal == ["TASK_FINISHED"], f"{tid}: {sts}"
    finally:
        await pm.stop()
        await driver.stop(failover=True)
        cluster.stop()


@needs_pymesos
async def test_leader_sigkill_with_100_tasks_two_rounds(zk, tmp_path):
    await run_failover(zk, tmp_path, rounds=2)


@needs_pymesos
@pytest.mark.slow
async def test_leader_sigkill_ten_times_in_a_row(zk, tmp_path):
    await run_failover(zk, tmp_path, rounds=10)

"""The SDK against a real in-process cluster (master + 2 agents): what a framework author sees."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest
from conftest import async_wait_for

from mesos_nb.protocol.messages import ID, FrameworkInfo, TaskStatus
from mesos_nb.scheduler import Scheduler, SchedulerDriver, command_task, fits

pytest.importorskip("mesos_nb.agent.process")


class Framework(Scheduler):
    """Launches queued commands on the first offers that fit; records every update."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []
        self.updates: list[TaskStatus] = []
        self.offers_seen = 0
        self.agents: dict[str, str] = {}
        self.subscribed_ids: list[str] = []

    def subscribed(self, driver, framework_id, master_info):
        self.subscribed_ids.append(framework_id)

    async def offers(self, driver, offers):
        self.offers_seen += len(offers)
        unused = []
        for offer in offers:
            if self.pending and fits(offer, {"cpus": 0.1, "mem": 32}):
                tid, cmd = self.pending.pop(0)
                self.agents[tid] = offer.agent_id.value
                await driver.launch([offer.id], [command_task(offer, cmd, cpus=0.1, mem=32, task_id=tid)])
            else:
                unused.append(offer.id)
        if unused:
            await driver.decline(unused, refuse_seconds=0.5)

    def update(self, driver, status):
        self.updates.append(status)

    def states(self, task_id: str) -> list[str]:
        return [u.state for u in self.updates if u.task_id.value == task_id]

    def last(self, task_id: str) -> TaskStatus | None:
        got = [u for u in self.updates if u.task_id.value == task_id]
        return got[-1] if got else None


async def launch(driver: SchedulerDriver, fw: Framework, task_id: str, cmd: str) -> None:
    fw.pending.append((task_id, cmd))
    await driver.revive()


async def master_state(url: str) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        with urllib.request.urlopen(url + "/master/state", timeout=5) as r:
            return json.load(r)

    return await asyncio.to_thread(get)


def info(name: str, **kw: Any) -> FrameworkInfo:
    return FrameworkInfo(user="tester", name=name, **kw)


async def test_subscribe_offers_launch_updates_to_finished(local_cluster):
    fw = Framework()
    driver = SchedulerDriver(fw, info("sdk-basic"), local_cluster.master_address)
    fid = await driver.start()
    assert fid and driver.connected and driver.stream_id
    await async_wait_for(lambda: fw.offers_seen > 0, timeout=10, message="an offer")
    await launch(driver, fw, "hello-1", "echo hello")
    await async_wait_for(lambda: "TASK_FINISHED" in fw.states("hello-1"), timeout=15,
                         message="TASK_FINISHED for hello-1")
    states = fw.states("hello-1")
    assert states.index("TASK_RUNNING") < states.index("TASK_FINISHED")
    assert fw.last("hello-1").agent_id.value == fw.agents["hello-1"]
    state = await master_state(local_cluster.master_url)
    ours = [f for f in state["frameworks"] if f["id"] == fid][0]
    done = {t["id"]: t["state"] for t in ours.get("completed_tasks", []) + ours.get("tasks", [])}
    assert done["hello-1"] == "TASK_FINISHED"
    await driver.stop()
    state = await master_state(local_cluster.master_url)
    assert fid not in [f["id"] for f in state["frameworks"]]


async def test_reconcile_known_and_unknown_then_kill(local_cluster):
    fw = Framework()
    driver = SchedulerDriver(fw, info("sdk-reconcile"), local_cluster.master_address)
    await driver.start()
    await launch(driver, fw, "sleeper", "sleep 60")
    await async_wait_for(lambda: "TASK_RUNNING" in fw.states("sleeper"), timeout=15)
    agent = fw.agents["sleeper"]
    before = len(fw.updates)
    await driver.reconcile([("sleeper", agent), "no-such-task"])

    def answers() -> dict[str, TaskStatus]:
        return {u.task_id.value: u for u in fw.updates[before:] if u.reason == "REASON_RECONCILIATION"}

    got = await async_wait_for(lambda: len(answers()) == 2 and answers(), timeout=10)
    assert got["sleeper"].state == "TASK_RUNNING" and got["sleeper"].uuid is None
    assert got["no-such-task"].state in ("TASK_LOST", "TASK_UNKNOWN")

    before = len(fw.updates)
    await driver.reconcile()  # implicit: every non-terminal task of ours
    await async_wait_for(
        lambda: any(u.task_id.value == "sleeper" and u.reason == "REASON_RECONCILIATION"
                    for u in fw.updates[before:]), timeout=10)

    await driver.kill("sleeper", agent)
    await async_wait_for(lambda: "TASK_KILLED" in fw.states("sleeper"), timeout=15)
    await driver.stop()


async def test_failover_resubscribe_keeps_framework_id_and_tasks(local_cluster):
    fw1 = Framework()
    d1 = SchedulerDriver(fw1, info("sdk-failover", failover_timeout=120.0), local_cluster.master_address)
    fid = await d1.start()
    await launch(d1, fw1, "survivor", "sleep 60")
    await async_wait_for(lambda: "TASK_RUNNING" in fw1.states("survivor"), timeout=15)
    await d1.stop(failover=True)  # the scheduler "crashes": no TEARDOWN

    state = await master_state(local_cluster.master_url)
    f = [x for x in state["frameworks"] if x["id"] == fid][0]
    assert not f.get("connected", False)
    assert [t["state"] for t in f["tasks"] if t["id"] == "survivor"] == ["TASK_RUNNING"]

    fw2 = Framework()
    d2 = SchedulerDriver(fw2, info("sdk-failover", failover_timeout=120.0, id=ID(value=fid)),
                         local_cluster.master_address)
    assert await d2.start() == fid
    assert fw2.subscribed_ids == [fid]
    await d2.reconcile(["survivor"])
    await async_wait_for(lambda: "TASK_RUNNING" in fw2.states("survivor"), timeout=10)
    state = await master_state(local_cluster.master_url)
    f = [x for x in state["frameworks"] if x["id"] == fid][0]
    assert f.get("connected", True) and f.get("active", True)
    assert [t["id"] for t in f["tasks"]] == ["survivor"]
    await d2.stop()  # TEARDOWN: the master kills the task
    await async_wait_for(
        lambda: asyncio.to_thread(_task_state, local_cluster.master_url, "survivor"), timeout=15)


def _task_state(url: str, task_id: str) -> bool:
    with urllib.request.urlopen(url + "/master/state", timeout=5) as r:
        state = json.load(r)
    for f in state.get("frameworks", []) + state.get("completed_frameworks", []):
        for t in f.get("tasks", []) + f.get("completed_tasks", []):
            if t["id"] == task_id:
                return t["state"] == "TASK_KILLED"
    return False


def test_blocking_driver_against_a_real_cluster(cluster_process):
    from conftest import wait_for

    from mesos_nb.scheduler import BlockingSchedulerDriver

    class Sync(Scheduler):
        def __init__(self) -> None:
            self.launched = False
            self.states: list[str] = []

        def offers(self, driver, offers):
            for o in offers:
                if not self.launched and fits(o, {"cpus": 0.1, "mem": 32}):
                    self.launched = True
                    driver.launch([o.id], [command_task(o, "echo sync", cpus=0.1, mem=32, task_id="sync-1")])
                else:
                    driver.decline([o.id], refuse_seconds=60)

        def update(self, driver, status):
            self.states.append(status.state)

    s = Sync()
    with BlockingSchedulerDriver(s, info("sdk-blocking"), cluster_process.master) as d:
        assert d.framework_id and d.connected
        wait_for(lambda: "TASK_FINISHED" in s.states, timeout=15, message="TASK_FINISHED")
        d.reconcile(["sync-1"])
    assert not d.connected

"""UPDATE_FRAMEWORK over HTTP on a real cluster: a running MULTI_ROLE framework adds a role
and drops another (the one its task runs in) without losing the task."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.protocol.messages import Capability, FrameworkInfo
from mesos_nb.scheduler import Scheduler, SchedulerDriver, command_task

pytest.importorskip("mesos_nb.agent.process")


class Roles(Scheduler):
    """Launches one long task on the first offer for role ``a``; records offers by role."""

    def __init__(self) -> None:
        self.launched = False
        self.seen: list[tuple[float, str]] = []
        self.updates: list = []

    async def offers(self, driver, offers):
        unused = []
        for offer in offers:
            role = offer.allocation_info.role if offer.allocation_info else "*"
            self.seen.append((time.monotonic(), role))
            if self.launched or role != "a":
                unused.append(offer.id)
                continue
            self.launched = True
            await driver.launch([offer.id], [command_task(offer, "sleep 600", cpus=0.1, mem=16, task_id="long")])
        if unused:
            await driver.decline(unused, refuse_seconds=0.2)

    def update(self, driver, status):
        self.updates.append(status)

    def state(self) -> str | None:
        got = [s.state for s in self.updates if s.task_id.value == "long"]
        return got[-1] if got else None


async def test_update_framework_changes_roles_of_a_running_framework_keeping_its_task(local_cluster):
    url = local_cluster.master_url
    master = local_cluster.master
    sched = Roles()
    info = FrameworkInfo(user="tester", name="roles", roles=["a", "b"], capabilities=[Capability(type="MULTI_ROLE")])
    driver = SchedulerDriver(sched, info, local_cluster.master_address)
    fid = await driver.start()
    try:
        await async_wait_for(lambda: sched.state() == "TASK_RUNNING", timeout=30, message="the task running in role a")
        task = master.core.find_task("long")
        assert task.role == "a"
        await async_wait_for(lambda: any(r == "b" for _, r in sched.seen), timeout=20, message="an offer for b")
        body = {"type": "UPDATE_FRAMEWORK", "framework_id": {"value": fid}, "update_framework": {"framework_info": {
            "id": {"value": fid}, "user": "tester", "name": "roles", "roles": ["b", "c"],
            "capabilities": [{"type": "MULTI_ROLE"}]}}}
        headers = {"Mesos-Stream-Id": driver.stream_id, "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/api/v1/scheduler", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            since = time.monotonic()
            # offers now come for c (added) and never again for a (dropped)
            await async_wait_for(lambda: any(r == "c" for t, r in sched.seen if t > since), timeout=20,
                                 message="an offer for the added role c")
            await async_wait_for(lambda: sum(1 for t, _ in sched.seen if t > since) >= 6, timeout=20)
            assert not [r for t, r in sched.seen if t > since and r == "a"]
            # the task is untouched: still running on its agent, still the framework's
            assert sched.state() == "TASK_RUNNING"
            async with s.post(url + "/api/v1", json={"type": "GET_TASKS"},
                              headers={"Content-Type": "application/json"}) as r:
                tasks = json.loads(await r.text())["get_tasks"]["tasks"]
            assert [(t["task_id"]["value"], t["state"]) for t in tasks] == [("long", "TASK_RUNNING")]
            async with s.post(url + "/api/v1", json={"type": "GET_FRAMEWORKS"},
                              headers={"Content-Type": "application/json"}) as r:
                fws = json.loads(await r.text())["get_frameworks"]["frameworks"]
            assert fws[0]["framework_info"]["roles"] == ["b", "c"]
        assert master.core.frameworks[fid].tasks["long"].state == "TASK_RUNNING"
        # and it is still managed: a kill reaches it
        await driver.kill("long")
        await async_wait_for(lambda: sched.state() == "TASK_KILLED", timeout=30, message="the task killed")
    finally:
        await driver.stop()

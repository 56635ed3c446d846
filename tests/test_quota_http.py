"""Quota over HTTP on a real cluster (4 agents x 2 cpus): two frameworks in roles with
guarantees, on a cluster a greedy framework would fill, each get their guarantee within an
allocation interval of subscribing; a role at its limit gets nothing more; removing a quota
releases the headroom it held back."""

from __future__ import annotations

import time

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.local import LocalCluster
from mesos_nb.protocol.messages import Capability, FrameworkInfo
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver, command_task

pytest.importorskip("mesos_nb.agent.process")
INTERVAL = 1.0


class Greedy(Scheduler):
    """Runs a long task on every offer it gets, with all of the offer's cpus and mem."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []  # (when, cpus offered)
        self.n = 0

    async def offers(self, driver, offers):
        for offer in offers:
            s = Resources.from_proto(offer.resources).scalars()
            self.seen.append((time.monotonic(), s.get("cpus", 0.0)))
            self.n += 1
            task = command_task(offer, "sleep 600", cpus=s.get("cpus", 0.0), mem=s.get("mem", 0.0),
                                task_id=f"t{self.n}")
            await driver.launch([offer.id], [task])

    def cpus(self, since: float = 0.0) -> float:
        return sum(c for t, c in self.seen if t >= since)


def quota(role: str, g: dict | None = None, lim: dict | None = None) -> dict:
    return {"role": role, "guarantees": {k: {"value": v} for k, v in (g or {}).items()},
            "limits": {k: {"value": v} for k, v in (lim or {}).items()}}


async def update_quota(url: str, configs: list[dict]) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/api/v1", json={"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": configs}},
                          headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200, await r.text()


def allocated_cpus(cluster: LocalCluster, fid: str) -> float:
    fw = cluster.master.core.frameworks.get(fid)
    return sum(t.resources.scalars().get("cpus", 0.0) for t in fw.tasks.values()) if fw else 0.0


async def start(cluster: LocalCluster, name: str, role: str) -> tuple[Greedy, SchedulerDriver, str, float]:
    sched = Greedy()
    info = FrameworkInfo(user="tester", name=name, roles=[role], capabilities=[Capability(type="MULTI_ROLE")])
    driver = SchedulerDriver(sched, info, cluster.master_address)
    asked = time.monotonic()
    fid = await driver.start()
    return sched, driver, fid, asked


async def started(tmp_path) -> LocalCluster:
    """4 agents x 2 cpus, allocating every INTERVAL."""
    cluster = LocalCluster(agents=4, port=0, work_dir=str(tmp_path), agent_resources="cpus:2;mem:1024",
                           master_options={"allocation_interval": INTERVAL})
    await cluster.start()
    return cluster


async def test_guarantees_limits_and_removal_over_http(tmp_path):
    cluster = await started(tmp_path)
    drivers: list[SchedulerDriver] = []
    try:
        url = cluster.master_url
        await update_quota(url, [quota("dev", {"cpus": 2, "mem": 256}, {"cpus": 2, "mem": 512}),
                                 quota("ops", {"cpus": 2, "mem": 256})])
        hog, d, hog_id, _ = await start(cluster, "hog", "hog")
        drivers.append(d)
        # the hog takes what it is offered, but never the 4 cpus held back for dev and ops
        await async_wait_for(lambda: allocated_cpus(cluster, hog_id) >= 4 - 1e-9, timeout=20, message="hog at 4 cpus")
        t0 = time.monotonic()
        await async_wait_for(lambda: time.monotonic() - t0 > 3 * INTERVAL, timeout=10)  # three more cycles
        assert allocated_cpus(cluster, hog_id) <= 4 + 1e-9
        # dev and ops ask: each gets its guarantee within one allocation interval
        dev, d, dev_id, dev_asked = await start(cluster, "dev", "dev")
        drivers.append(d)
        ops, d, ops_id, ops_asked = await start(cluster, "ops", "ops")
        drivers.append(d)
        await async_wait_for(lambda: dev.cpus() >= 2 - 1e-9 and ops.cpus() >= 2 - 1e-9, timeout=20,
                             message="both guarantees offered")
        for sched, asked in ((dev, dev_asked), (ops, ops_asked)):
            got_at = next(t for t, _ in sched.seen if sum(c for u, c in sched.seen if u <= t) >= 2 - 1e-9)
            assert got_at - asked <= INTERVAL + 1.0, got_at - asked  # one interval (+1 s of event-loop slack)
        # dev is at its limit (2 cpus): nothing more is offered to it, whatever it asks
        await async_wait_for(lambda: allocated_cpus(cluster, dev_id) >= 2 - 1e-9, timeout=20)
        at_limit = time.monotonic()
        await drivers[1].revive()
        await async_wait_for(lambda: time.monotonic() - at_limit > 3 * INTERVAL, timeout=10)
        assert dev.cpus(since=at_limit) == 0
        assert allocated_cpus(cluster, dev_id) <= 2 + 1e-9
        # ops leaves: its 2 cpus are free but still held back for its unmet guarantee...
        await drivers[2].stop()  # failover_timeout 0: torn down, its tasks killed
        await async_wait_for(lambda: ops_id not in cluster.master.core.frameworks, timeout=20)
        await async_wait_for(lambda: not any(o.role == "ops" for o in cluster.master.core.offers.values()), timeout=10)
        left = time.monotonic()
        await async_wait_for(lambda: time.monotonic() - left > 3 * INTERVAL, timeout=10)
        assert hog.cpus(since=left) == 0 and allocated_cpus(cluster, hog_id) <= 4 + 1e-9
        # ...until its quota is removed: then the hog is offered them
        await update_quota(url, [{"role": "ops"}])
        await async_wait_for(lambda: allocated_cpus(cluster, hog_id) >= 6 - 1e-9, timeout=3 * INTERVAL + 5,
                             message="the freed 2 cpus offered to the hog")
    finally:
        for d in drivers:
            await d.stop()
        await cluster.stop()


async def post(url: str, body: dict) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/api/v1", json=body, headers={"Content-Type": "application/json"}) as r:
            return r.status, await r.text()


async def test_nested_quota_over_http_and_a_nested_framework_held_to_its_parents_limit(tmp_path):
    cluster = await started(tmp_path)
    drivers: list[SchedulerDriver] = []
    try:
        url = cluster.master_url
        await update_quota(url, [quota("eng", {"cpus": 1}, {"cpus": 3})])
        # SET_QUOTA (deprecated) of a child guaranteeing more than its parent: 400 naming both
        status, text = await post(url, {"type": "SET_QUOTA", "set_quota": {"quota_request": {
            "role": "eng/ml", "guarantee": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}}]}}})
        assert status == 400 and "'eng'" in text and "'eng/ml'" in text, text
        status, text = await post(url, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            quota("eng/ml", lim={"cpus": 4})]}})
        assert status == 400 and "'eng'" in text and "'eng/ml'" in text and "limit" in text, text
        # a child inside its parent: accepted, and GET_QUOTA lists both
        status, text = await post(url, {"type": "SET_QUOTA", "set_quota": {"quota_request": {
            "role": "eng/web", "guarantee": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}]}}})
        assert status == 200, text
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/api/v1", json={"type": "GET_QUOTA"},
                              headers={"Content-Type": "application/json", "Accept": "application/json"}) as r:
                got = (await r.json())["get_quota"]["status"]
        assert [c["role"] for c in got["configs"]] == ["eng", "eng/web"]
        assert got["configs"][1] == quota("eng/web", {"cpus": 1.0}, {"cpus": 1.0})
        # a greedy framework in eng/ml (no quota of its own) gets no more than eng's limit of 3,
        # less the 1 cpu that limit keeps for eng/web's guarantee
        ml, d, ml_id, _ = await start(cluster, "ml", "eng/ml")
        drivers.append(d)
        await async_wait_for(lambda: allocated_cpus(cluster, ml_id) >= 2 - 1e-9, timeout=20, message="ml at 2 cpus")
        at_limit = time.monotonic()
        await d.revive()
        await async_wait_for(lambda: time.monotonic() - at_limit > 3 * INTERVAL, timeout=10)
        assert allocated_cpus(cluster, ml_id) <= 2 + 1e-9 and ml.cpus() <= 2 + 1e-9
        # eng/web comes: its guarantee was kept, and eng as a whole stays at its limit
        web, d, web_id, _ = await start(cluster, "web", "eng/web")
        drivers.append(d)
        await async_wait_for(lambda: allocated_cpus(cluster, web_id) >= 1 - 1e-9, timeout=20, message="web at 1")
        assert allocated_cpus(cluster, ml_id) + allocated_cpus(cluster, web_id) <= 3 + 1e-9
        # a framework outside eng takes the rest of the cluster
        other, d, other_id, _ = await start(cluster, "other", "other")
        drivers.append(d)
        await async_wait_for(lambda: allocated_cpus(cluster, other_id) >= 5 - 1e-9, timeout=20, message="other at 5")
    finally:
        for d in drivers:
            await d.stop()
        await cluster.stop()


async def test_overcommitting_guarantees_is_409_from_set_quota_and_400_from_update_quota(tmp_path):
    """Mesos answers the same overcommit differently: the deprecated SET_QUOTA says 409 Conflict,
    UPDATE_QUOTA 400; with ``force`` both are stored."""
    cluster = await started(tmp_path)
    try:
        url = cluster.master_url
        huge = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 10_000}}]
        status, text = await post(url, {"type": "SET_QUOTA", "set_quota": {"quota_request": {
            "role": "dev", "guarantee": huge}}})
        assert status == 409 and "more than the cluster's" in text, (status, text)
        status, text = await post(url, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            quota("dev", {"cpus": 10_000})]}})
        assert status == 400 and "more than the cluster's" in text, (status, text)
        assert "dev" not in cluster.master.core.quota_configs  # nothing stored by either
        status, text = await post(url, {"type": "SET_QUOTA", "set_quota": {"quota_request": {
            "role": "dev", "guarantee": huge, "force": True}}})
        assert status == 200, text
        assert "dev" in cluster.master.core.quota_configs
    finally:
        await cluster.stop()

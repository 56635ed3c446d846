"""The master remembers a bounded number of removed frameworks (refused if they re-subscribe),
forgetting the oldest first, in memory and in every registry backend, across restarts.

Unbounded, churn (notebooks connecting and leaving) grew the list without end; in ZooKeeper
its one getChildren at recovery outgrew jute.maxbuffer and a new leader could not recover.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.master.core import MasterCore
from mesos_nb.master.effects import (
    ForgetRemovedFrameworks,
    RegistryEffect,
    RegistryState,
    RemoveFramework,
    SaveFramework,
)
from mesos_nb.master.model import MAX_REMOVED_FRAMEWORKS
from mesos_nb.master.registry import MemoryRegistry
from mesos_nb.master.registry_sqlite import SqliteRegistry
from mesos_nb.master.registry_zk import ZkRegistry
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.master.state import CallError
from mesos_nb.protocol import messages as m
from mesos_nb.protocol import recordio

pytest_plugins = ["zk_fixture"]

# removal order; neither sorted nor what a hash would give, so only a kept age survives a recovery
ORDER = ["F-7", "F-2", "F-9", "F-1", "F-5"]


def sub(name: str, fid: str | None = None, failover_timeout: float = 0.0) -> m.Subscribe:
    return m.Subscribe(framework_info=m.FrameworkInfo(
        user="u", name=name, id=m.ID(value=fid) if fid else None, failover_timeout=failover_timeout))


def registry_writes(core: MasterCore) -> list[RegistryEffect]:
    return [e for e in core.out if isinstance(e, RegistryEffect)]


# --------------------------------------------------------------------------- the pure core
def test_core_keeps_only_the_newest_removed_frameworks_and_forgets_the_oldest_first():
    assert 1_000 <= MAX_REMOVED_FRAMEWORKS <= 20_000  # bounded, and well under ZooKeeper's reply limit
    core = MasterCore("M")
    core.max_removed_frameworks = 3
    ids = []
    for i in range(5):
        fw = core.subscribe(sub(f"nb{i}"), f"s{i}", 10.0 + i)
        core.teardown(fw.id, 10.5 + i)
        ids.append(fw.id)
    assert list(core.removed_framework_ids) == ids[2:]  # oldest first
    # the registry is told: each forget right after the removal that pushed it out
    churn = [e for e in registry_writes(core) if isinstance(e, (RemoveFramework, ForgetRemovedFrameworks))]
    assert churn == [RemoveFramework(ids[0]), RemoveFramework(ids[1]), RemoveFramework(ids[2]),
                     RemoveFramework(ids[3]), ForgetRemovedFrameworks([ids[0]]),
                     RemoveFramework(ids[4]), ForgetRemovedFrameworks([ids[1]])]
    for fid in ids[2:]:  # the 3 newest are still refused
        with pytest.raises(CallError) as refused:
            core.subscribe(sub("again", fid), "again", 20.0)
        assert refused.value.status == 403 and refused.value.message == "Framework has been removed"
    # a forgotten id is an unknown id again: admitted under it, as a never-seen id is
    # (Mesos: a framework re-subscribing to a master that does not know it, after a failover)
    for fid in (ids[0], "M-never-seen"):
        fw = core.subscribe(sub("back", fid, 60.0), f"back-{fid}", 21.0)
        assert fw.id == fid and core.frameworks[fid].connected
    assert list(core.removed_framework_ids) == ids[2:]


def test_core_trims_an_oversized_recovered_list_and_writes_the_trim():
    core = MasterCore("M2")
    core.max_removed_frameworks = 3
    core.recover(RegistryState(removed_framework_ids=list(ORDER)), 0.0)
    assert list(core.removed_framework_ids) == ["F-9", "F-1", "F-5"]
    assert registry_writes(core) == [ForgetRemovedFrameworks(["F-7", "F-2"])]
    with pytest.raises(CallError):
        core.subscribe(sub("x", "F-9"), "s", 1.0)
    assert core.subscribe(sub("x", "F-7", 60.0), "t", 1.0).id == "F-7"


# --------------------------------------------------------------------------- every backend
@pytest.fixture(params=["memory", "sqlite", "zk"])
def reopen(request, tmp_path) -> Iterator[Callable[[], tuple[object, RegistryState]]]:
    """A callable that opens the backend's store afresh (a restarted or newly elected master)
    and returns it with what it recovered."""
    made: list = []
    mem = MemoryRegistry()
    url = request.getfixturevalue("zk_server").unique_url() if request.param == "zk" else ""

    def open_() -> tuple[object, RegistryState]:
        if request.param == "memory":
            return mem, mem.recover()
        if request.param == "sqlite":
            reg = SqliteRegistry(str(tmp_path / "registry.sqlite"))
            made.append(reg)
            return reg, reg.recover()
        zk = ZkRegistry(url, session_timeout=2.0).start()
        made.append(zk)
        return zk, zk.recover(f"master-{len(made)}")

    yield open_
    for reg in made:
        reg.close()


def info(fid: str) -> m.FrameworkInfo:
    return m.FrameworkInfo(user="u", name=fid, id=m.ID(value=fid))


def test_backend_forgets_and_recovers_the_rest_oldest_first(reopen):
    reg, _ = reopen()
    reg.apply([SaveFramework(f, info(f), 1.0, None) for f in ORDER])
    reg.apply([RemoveFramework("F-7")])  # alone, then the rest in one batch (one ZooKeeper zxid)
    reg.apply([RemoveFramework(f) for f in ORDER[1:]])
    _, back = reopen()
    assert back.removed_framework_ids == ORDER and back.frameworks == []
    reg, _ = reopen()
    reg.apply([ForgetRemovedFrameworks(["F-7", "F-9"])])
    _, back = reopen()
    assert back.removed_framework_ids == ["F-2", "F-1", "F-5"]


def test_backend_oversized_list_is_trimmed_at_recovery(reopen):
    reg, _ = reopen()
    for f in ORDER:  # written before the bound existed (or under a larger one)
        reg.apply([RemoveFramework(f)])
    reg, state = reopen()
    core = MasterCore("M2")
    core.max_removed_frameworks = 2
    core.recover(state, 0.0)
    reg.apply(registry_writes(core))
    _, back = reopen()
    assert back.removed_framework_ids == ["F-1", "F-5"]


def test_zk_forgets_more_than_one_transaction_holds(zk_server):
    """1,200 removals and 1,100 forgets: the writes split into several fenced transactions
    (500 ops each), and the order holds across them."""
    url = zk_server.unique_url()
    ids = [f"M-{(i * 7919) % 1200:04d}" for i in range(1200)]  # removal order != name order
    reg = ZkRegistry(url, session_timeout=2.0).start()
    try:
        reg.recover("master-1")
        reg.apply([RemoveFramework(f) for f in ids])
        reg.apply([ForgetRemovedFrameworks(ids[:1100])])
    finally:
        reg.close()
    again = ZkRegistry(url, session_timeout=2.0).start()
    try:
        assert again.recover("master-2").removed_framework_ids == ids[1100:]
        with zk_server.client() as kz:
            assert len(kz.get_children(f"{again.base}/removed_frameworks")) == 100
    finally:
        again.close()


# --------------------------------------------------------------------------- a restarted master
async def first_event(session: aiohttp.ClientSession, url: str, fid: str | None = None,
                      failover_timeout: float = 0.0) -> tuple[aiohttp.ClientResponse, dict]:
    """SUBSCRIBE over the scheduler HTTP API; the stream's first event (SUBSCRIBED or ERROR)."""
    fi: dict = {"user": "u", "name": "nb", "failover_timeout": failover_timeout}
    body: dict = {"type": "SUBSCRIBE", "subscribe": {"framework_info": fi}}
    if fid is not None:
        fi["id"] = body["framework_id"] = {"value": fid}
    resp = await session.post(url + "/api/v1/scheduler", json=body)
    assert resp.status == 200, await resp.text()
    dec = recordio.Decoder()
    recs: list[bytes] = []
    while not recs:
        chunk = await asyncio.wait_for(resp.content.readany(), 10)
        assert chunk, "the stream closed before its first event"
        recs = dec.feed(chunk)
    return resp, json.loads(recs[0])


async def test_restarted_master_refuses_recent_removed_frameworks_and_forgets_old_ones(tmp_path):
    work_dir = str(tmp_path / "master")
    master = MasterServer(MasterConfig(port=0, work_dir=work_dir))
    master.core.max_removed_frameworks = 3
    await master.start()
    ids: list[str] = []
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(4):  # notebooks come and go (failover_timeout 0: removed when they leave)
                resp, ev = await first_event(s, master.url)
                fid = ev["subscribed"]["framework_id"]["value"]
                resp.close()
                await async_wait_for(lambda f=fid: f in master.registry.recover().removed_framework_ids, timeout=15)
                ids.append(fid)
        assert master.registry.recover().removed_framework_ids == ids[1:]
    finally:
        await master.stop()

    master2 = MasterServer(MasterConfig(port=0, work_dir=work_dir))
    master2.core.max_removed_frameworks = 2  # a smaller bound: the registry is trimmed at recovery
    await master2.start()
    try:
        await async_wait_for(lambda: master2.registry.recover().removed_framework_ids == ids[2:], timeout=15)
        async with aiohttp.ClientSession() as s:
            for fid in ids[2:]:  # the recent ones are still refused, over HTTP
                resp, ev = await first_event(s, master2.url, fid)
                resp.close()
                assert ev["type"] == "ERROR" and ev["error"]["message"] == "Framework has been removed"
            for fid in ids[:2]:  # forgotten (before the restart, at recovery): admitted again
                resp, ev = await first_event(s, master2.url, fid, failover_timeout=60.0)
                resp.close()
                assert ev["type"] == "SUBSCRIBED" and ev["subscribed"]["framework_id"]["value"] == fid
    finally:
        await master2.stop()

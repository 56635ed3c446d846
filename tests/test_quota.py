"""Quota through the master: UPDATE_QUOTA / GET_QUOTA / v0 /quota, validation, persistence
through the registry, and guarantees/limits on the offers frameworks receive."""

from __future__ import annotations

import aiohttp
import pytest

from mesos_nb.master.harness import Harness
from mesos_nb.master.registry_sqlite import SqliteRegistry
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.master.state import CallError
from mesos_nb.protocol.resources import Resources

JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def cfg(role: str, guarantees: dict | None = None, limits: dict | None = None) -> dict:
    return {"role": role, "guarantees": {n: {"value": v} for n, v in (guarantees or {}).items()},
            "limits": {n: {"value": v} for n, v in (limits or {}).items()}}


def offered(offers: dict, fw) -> dict[str, float]:
    out: dict[str, float] = {}
    for o in offers.get(fw.id, []):
        for n, v in Resources.from_proto(o.resources).scalars().items():
            out[n] = out.get(n, 0) + v
    return out


def test_two_guaranteed_roles_get_their_guarantee_within_one_allocation_on_a_contended_cluster():
    h = Harness.build(agents=4, frameworks=0, resources="cpus:4;mem:4096")
    h.core.update_weights({"hog": 100.0})
    h.core.update_quota([cfg("dev", {"cpus": 4, "mem": 2048}), cfg("ops", {"cpus": 4, "mem": 2048})])
    hog = h.subscribe("hog", roles=["hog"])
    first = h.allocate()
    assert offered(first, hog).get("cpus", 0) <= 8  # the unmet guarantees are held back
    dev = h.subscribe("dev", roles=["dev"])
    ops = h.subscribe("ops", roles=["ops"])
    h.now += 1.0
    got = h.allocate()  # one allocation interval after asking
    assert offered(got, dev)["cpus"] >= 4 and offered(got, dev)["mem"] >= 2048
    assert offered(got, ops)["cpus"] >= 4 and offered(got, ops)["mem"] >= 2048


def test_limit_stops_offers_and_removing_the_quota_frees_the_resources():
    h = Harness.build(agents=4, frameworks=0, resources="cpus:4;mem:4096")
    h.core.update_quota([cfg("dev", limits={"cpus": 6, "mem": 6000})])
    fw = h.subscribe("dev", roles=["dev"])
    first = offered(h.allocate(), fw)
    assert 0 < first["cpus"] <= 6 and first["mem"] <= 6000
    h.now += 1.0
    assert h.allocate() == {}  # at its limit: nothing more
    h.core.update_quota([{"role": "dev"}])  # empty maps reset the role
    h.drain()
    h.now += 1.0
    assert offered(h.allocate(), fw)["cpus"] == 16  # rescinded and offered again, all of it


def test_quota_survives_a_master_restart_through_the_registry():
    h = Harness.build(agents=2, frameworks=0, resources="cpus:4;mem:4096")
    h.core.update_quota([cfg("dev", {"cpus": 1}, {"cpus": 2, "mem": 2048})])
    h.core.update_weights({"dev": 3.0})
    h2 = h.restart()
    assert h2.core.quota_status()["configs"] == [cfg("dev", {"cpus": 1.0}, {"cpus": 2.0, "mem": 2048.0})]
    assert h2.core.allocator.weights() == {"dev": 3.0}
    assert h2.core.allocator.quotas()["dev"].limits == {"cpus": 2000, "mem": 2048000}


def test_sqlite_registry_keeps_quota_and_weights(tmp_path):
    reg = SqliteRegistry(str(tmp_path / "r.sqlite"))
    h = Harness(registry=reg)  # type: ignore[arg-type]
    h.add_agent("cpus:4;mem:4096")
    h.core.update_quota([cfg("dev", {"cpus": 1}, {"cpus": 2})])
    h.core.update_weights({"dev": 2.0})
    h.drain()
    reg.close()
    state = SqliteRegistry(str(tmp_path / "r.sqlite")).recover()
    assert state.quotas == {"dev": cfg("dev", {"cpus": 1.0}, {"cpus": 2.0})}
    assert state.weights == {"dev": 2.0}
    h.core.update_quota([{"role": "dev"}])
    reg2 = SqliteRegistry(str(tmp_path / "r.sqlite"))
    h.registry = reg2  # type: ignore[assignment]
    h.drain()
    assert reg2.recover().quotas == {}


@pytest.mark.parametrize("configs, why", [
    ([cfg("dev", {"cpus": 4}, {"cpus": 2})], "more than limit"),
    ([cfg("eng", {"cpus": 1}), cfg("eng/ml", {"cpus": 2})], "children's guarantees (cpus:2: 'eng/ml')"),
    ([cfg("eng", {"cpus": 2}), cfg("eng/ml", {"cpus": 1}), cfg("eng/web", {"cpus": 1.5})],
     "guarantees of role 'eng' (cpus:2) do not contain the sum of its children's guarantees (cpus:2.5: 'eng/ml', 'eng/web')"),
    ([cfg("eng", {"cpus": 1}), cfg("eng/ml/x", {"mem": 1})], "'eng/ml/x'"),  # a name the parent does not guarantee
    ([cfg("eng", limits={"cpus": 2}), cfg("eng/ml", limits={"cpus": 3})],
     "limit 'cpus:3' of role 'eng/ml' is more than the limit 'cpus:2' of its parent role 'eng'"),
    ([cfg("eng", limits={"cpus": 2}), cfg("eng/ml", {"cpus": 3})], "guarantee 'cpus:3' of role 'eng/ml'"),
    ([cfg("eng", limits={"cpus": 5}), cfg("eng/ml", {"cpus": 3}), cfg("eng/web/x", {"cpus": 3})],
     "the guarantees below role 'eng' (cpus:6: 'eng/ml', 'eng/web/x') are more than its limit (cpus:5)"),
    ([cfg("*", {"cpus": 1})], "default role"),
    ([cfg("dev", {"cpus": -1})], "negative"),
    ([cfg("dev", {"cpus": 100})], "cluster"),
    ([cfg("dev", {"mem": 2 * 1024 ** 4})], "larger than"),
    ([cfg("ok", {"cpus": 1}), cfg("dev", {"cpus": 4}, {"cpus": 2})], "more than limit"),
])
def test_invalid_quota_is_refused_whole(configs, why):
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:4096")
    with pytest.raises(CallError) as e:
        h.core.update_quota(configs)
    assert e.value.status == 400 and "Invalid QuotaConfig" in e.value.message and why in e.value.message
    assert h.core.quota_status() == {"infos": [], "configs": []}  # all or nothing


def test_nested_quota_is_checked_against_the_tree_already_stored():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:4096")
    h.core.update_quota([cfg("eng", {"cpus": 2}, {"cpus": 3})])
    with pytest.raises(CallError) as e:  # the parent is stored already; 'force' does not skip the tree
        h.core.update_quota([cfg("eng/ml", {"cpus": 2.5})], force=True)
    assert e.value.status == 400 and "'eng'" in e.value.message and "'eng/ml'" in e.value.message
    h.core.update_quota([cfg("eng/ml", {"cpus": 2})])
    with pytest.raises(CallError):  # lowering the parent under its child's guarantee
        h.core.update_quota([cfg("eng", {"cpus": 1})])
    h.core.update_quota([{"role": "eng"}])  # removing the parent: the child is top-most now
    assert [c["role"] for c in h.core.quota_status()["configs"]] == ["eng/ml"]


def test_a_childs_guarantee_is_not_counted_twice_against_the_cluster():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:4096")
    h.core.update_quota([cfg("eng", {"cpus": 4}), cfg("eng/ml", {"cpus": 3}), cfg("eng/ml/a", {"cpus": 2})])
    with pytest.raises(CallError) as e:
        h.core.update_quota([cfg("ops", {"cpus": 1})])
    assert "total guarantees of 5.0 cpus" in e.value.message


def test_limit_below_consumption_needs_force():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:4096")
    h.subscribe("dev", roles=["dev"])
    h.allocate()
    with pytest.raises(CallError):
        h.core.update_quota([cfg("dev", limits={"cpus": 1})])
    h.core.update_quota([cfg("dev", limits={"cpus": 1})], force=True)
    assert h.core.quota_status()["configs"][0]["limits"] == {"cpus": {"value": 1.0}}


async def test_update_quota_and_get_quota_over_http():
    srv = MasterServer(MasterConfig(port=0, allocation_interval=0.2))
    await srv.start()
    try:
        async with aiohttp.ClientSession() as s:
            body = {"type": "UPDATE_QUOTA", "update_quota": {"force": True, "quota_configs": [
                cfg("dev", {"cpus": 2}, {"cpus": 10, "mem": 4096})]}}
            async with s.post(srv.url + "/api/v1", json=body, headers=JSON) as r:
                assert r.status == 200, await r.text()
            async with s.post(srv.url + "/api/v1", json={"type": "GET_QUOTA"}, headers=JSON) as r:
                got = await r.json()
            status = got["get_quota"]["status"]
            assert status["infos"] == [{"role": "dev", "guarantee": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.0}}]}]
            assert status["configs"] == [cfg("dev", {"cpus": 2.0}, {"cpus": 10.0, "mem": 4096.0})]
            async with s.get(srv.url + "/quota") as r:
                assert (await r.json()) == status
            bad = {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [cfg("dev", {"cpus": 3}, {"cpus": 1})]}}
            async with s.post(srv.url + "/api/v1", json=bad, headers=JSON) as r:
                assert r.status == 400 and "Invalid QuotaConfig" in await r.text()
            rm = {"type": "REMOVE_QUOTA", "remove_quota": {"role": "dev"}}
            async with s.post(srv.url + "/api/v1", json=rm, headers=JSON) as r:
                assert r.status == 200
            async with s.get(srv.url + "/master/quota") as r:
                assert (await r.json()) == {"infos": [], "configs": []}
    finally:
        await srv.stop()

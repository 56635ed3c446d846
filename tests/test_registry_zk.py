"""The ZooKeeper registry against a real server: round trip, fencing of a stale leader,
survival of a ZooKeeper restart."""

from __future__ import annotations

import pytest
from conftest import wait_for

from mesos_nb.master.registry import AgentRecord
from mesos_nb.master.registry_zk import (
    RegistryError,
    RegistryFencedError,
    RegistryUnavailableError,
    ZkRegistry,
)
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources

pytest_plugins = ["zk_fixture"]


def fw_info(name: str = "fw", fid: str | None = None) -> m.FrameworkInfo:
    return m.FrameworkInfo(user="alice", name=name, id=m.ID(value=fid) if fid else None,
                           failover_timeout=3600.0, capabilities=[m.Capability(type="PARTITION_AWARE")])


def agent(aid: str = "M-S0") -> AgentRecord:
    return AgentRecord(aid, "host-1", 5051, Resources.parse("cpus:2;mem:1024;ports:[31000-32000]").to_proto(),
                       [m.Attribute(name="rack", type="TEXT", text=m.Text(value="r1"))], 100.0)


@pytest.fixture
def registries():
    made: list[ZkRegistry] = []

    def make(url: str, **kw) -> ZkRegistry:
        r = ZkRegistry(url, session_timeout=2.0, **kw).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_round_trip_of_every_record(zk_server, registries):
    url = zk_server.unique_url()
    r = registries(url)
    first = r.recover("master-1", now=1.0)
    assert first.previous_master_id is None and first.frameworks == [] and first.agents == []
    r.put_framework("M-0000", fw_info("spark", "M-0000"), 10.0, 3610.0)
    r.put_framework("M-0001", fw_info("dask", "M-0001"), 11.0, None)
    r.put_framework("M-0001", fw_info("dask2", "M-0001"), 11.0, 99.0)  # overwrite
    r.remove_framework("M-0000")
    r.put_agent(agent("M-S0"))
    r.put_agent(agent("M-S1"))
    r.put_agent(agent("M-S2"))
    r.mark_agent_unreachable("M-S1", 500.0)
    r.mark_agent_gone("M-S2", 600.0)
    r.put_weights({"eng": 2.0, "eng/ml": 3.0})
    r.put_quota("eng/ml", {"role": "eng/ml", "guarantees": {"cpus": 4}})
    r.put_quota("ops", {"role": "ops"})
    r.remove_quota("ops")
    r.put_maintenance_schedule({"windows": [{"machine_ids": [{"hostname": "host-9"}]}]})

    s = registries(url).recover("master-2", now=2.0)  # a new leader reads what the old one wrote
    assert s.previous_master_id == "master-1"
    assert [(f.id, f.info.name, f.registered_time, f.failover_deadline) for f in s.frameworks] == [
        ("M-0001", "dask2", 11.0, 99.0)]
    assert s.frameworks[0].info.capabilities[0].type == "PARTITION_AWARE"
    assert s.removed_framework_ids == ["M-0000"]
    assert [a.id for a in s.agents] == ["M-S0"]
    assert s.agents[0] == agent("M-S0")  # resources (ranges) and attributes intact
    assert s.unreachable == {"M-S1": 500.0} and s.gone == {"M-S2": 600.0}
    assert s.weights == {"eng": 2.0, "eng/ml": 3.0}
    assert s.quotas == {"eng/ml": {"role": "eng/ml", "guarantees": {"cpus": 4}}}
    assert s.maintenance == {"windows": [{"machine_ids": [{"hostname": "host-9"}]}]}


def test_reachable_again_and_registry_gc(zk_server, registries):
    r = registries(zk_server.unique_url())
    r.recover("m")
    for i in range(4):
        r.put_agent(agent(f"S{i}"))
        r.mark_agent_unreachable(f"S{i}", 1000.0 + i)
    r.put_agent(agent("S3"))  # S3 came back: admitted again, no longer unreachable
    assert "S3" not in r.unreachable_agents() and {a.id for a in r.agents()} == {"S3"}
    r.mark_agent_gone("S3", 2000.0)
    dropped = r.prune_agent_lists(now=1000.0 + 14 * 86400 + 0.5, max_age=14 * 86400, max_count=1)
    assert dropped == (["S0", "S1"], [])  # S0 too old, S1 beyond the count
    assert r.unreachable_agents() == {"S2": 1002.0} and r.gone_agents() == {"S3": 2000.0}


def test_writes_need_recover_first(zk_server, registries):
    r = registries(zk_server.unique_url())
    with pytest.raises(RegistryError, match="recovered"):
        r.put_agent(agent())


def test_stale_leader_is_fenced_and_its_write_leaves_nothing(zk_server, registries):
    url = zk_server.unique_url()
    old = registries(url)
    old.recover("master-old")
    old.put_framework("F-1", fw_info("a"), 1.0, None)
    new = registries(url)
    new.recover("master-new")  # the new leader claims the epoch
    with pytest.raises(RegistryFencedError, match="another master"):
        old.put_framework("F-2", fw_info("b"), 2.0, None)
    with pytest.raises(RegistryError):  # and stays fenced: no later write gets through
        old.remove_framework("F-1")
    assert [f.id for f in new.frameworks()] == ["F-1"]  # the stale write left nothing behind
    assert new.removed_framework_ids() == []
    new.put_agent(agent("S9"))  # the new leader writes fine
    assert [a.id for a in new.agents()] == ["S9"]


def test_multi_record_writes_are_atomic_under_fencing(zk_server, registries):
    url = zk_server.unique_url()
    old = registries(url)
    old.recover("a")
    old.put_agent(agent("S1"))
    registries(url).recover("b")
    with pytest.raises(RegistryFencedError):
        old.mark_agent_unreachable("S1", 5.0)  # delete + create in one transaction: neither happens
    check = registries(url)
    s = check.recover("c")
    assert [a.id for a in s.agents] == ["S1"] and s.unreachable == {}


def test_registry_survives_a_zookeeper_restart(zk, registries):
    url = zk.url("/mesos")
    r = registries(url)
    r.recover("m1")
    r.put_framework("F-1", fw_info(), 1.0, 50.0)
    r.put_agent(agent("S1"))
    zk.stop()
    with pytest.raises(RegistryUnavailableError):
        ZkRegistry(url, session_timeout=2.0).start(connect_timeout=0.5)
    zk.start()
    # the same handle writes again once kazoo has reconnected (session kept or not)
    wait_for(lambda: r._zk.connected, 15, message="registry client reconnects")

    def write() -> bool:
        try:
            r.put_agent(agent("S2"))
            return True
        except RegistryUnavailableError:
            return False

    wait_for(write, 15, message="write after the restart")
    s = registries(url).recover("m2")
    assert [f.id for f in s.frameworks] == ["F-1"] and s.frameworks[0].failover_deadline == 50.0
    assert sorted(a.id for a in s.agents) == ["S1", "S2"]


def test_zookeeper_down_during_a_write_is_unavailable_not_a_hang(zk, registries):
    r = ZkRegistry(zk.url("/mesos"), session_timeout=2.0, store_timeout=1.0).start()
    try:
        r.recover("m1")
        zk.stop(kill=True)
        with pytest.raises(RegistryUnavailableError):
            r.put_agent(agent("S1"))
    finally:
        r.close()


def test_quota_and_weight_effects_round_trip(zk_server, registries):
    from mesos_nb.master.effects import SaveQuota, SaveWeights

    url = zk_server.unique_url()
    r = registries(url)
    r.recover("master-1", now=1.0)
    dev = {"role": "dev", "guarantees": {"cpus": {"value": 1.0}}, "limits": {"cpus": {"value": 2.0}}}
    r.apply([SaveQuota("dev", dev), SaveQuota("ops", {"role": "ops", "guarantees": {}, "limits": {}}),
             SaveWeights({"dev": 2.0})])
    r.apply([SaveQuota("ops", None), SaveWeights({"ops": 3.0})])
    s = registries(url).recover("master-2", now=2.0)
    assert s.quotas == {"dev": dev}
    assert s.weights == {"dev": 2.0, "ops": 3.0}

"""HierarchicalDRFAllocator: DRF fairness, weights, filters, suppress/revive, lifecycle."""

from __future__ import annotations

import pytest

from mesos_nb.master.allocator import (
    Allocation,
    DRFSorter,
    HierarchicalDRFAllocator,
    refuse_timeout,
)
from mesos_nb.master.allocator.sorter import Totals
from mesos_nb.protocol.resources import Resources

AGENT = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"


def R(text: str) -> Resources:
    return Resources.parse(text)


def cluster(n_agents: int, spec: str = AGENT, **kw) -> HierarchicalDRFAllocator:
    a = HierarchicalDRFAllocator(seed=7, **kw)
    for i in range(n_agents):
        a.add_agent(f"a{i}", R(spec))
    return a


def by_fw(allocs: list[Allocation]) -> dict[str, list[Allocation]]:
    out: dict[str, list[Allocation]] = {}
    for x in allocs:
        out.setdefault(x.framework_id, []).append(x)
    return out


def decline_all(a, allocs, refuse=None, now=0.0):
    for x in allocs:
        a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=refuse, now=now)


# ----------------------------------------------------------------------------- DRF
def test_first_cycle_offers_whole_agents():
    a = cluster(3)
    a.add_framework("f1", ["*"])
    allocs = a.allocate(0.0)
    assert len(allocs) == 3
    assert {x.agent_id for x in allocs} == {"a0", "a1", "a2"}
    assert all(x.resources == R(AGENT) and x.role == "*" for x in allocs)
    assert all(not a.available(f"a{i}") for i in range(3))
    assert a.allocate(1.0) == []  # nothing left
    assert a.shares()["frameworks"]["f1"] == pytest.approx(1.0)


def test_two_equal_frameworks_converge_to_equal_shares():
    # agents of different sizes arrive over time; each framework keeps all it gets
    a = HierarchicalDRFAllocator(seed=3)
    a.add_framework("f1", ["r1"])
    a.add_framework("f2", ["r2"])
    sizes = ["cpus:4;mem:1024", "cpus:8;mem:2048", "cpus:2;mem:512", "cpus:4;mem:4096"]
    n = 0
    for cycle in range(25):
        for _ in range(4):
            a.add_agent(f"a{n}", R(sizes[n % 4]))
            n += 1
        a.allocate(float(cycle))
    sh = a.shares()["frameworks"]
    # within one agent's worth of the cluster (largest agent / cluster total)
    one_agent = max(8 / (18 * 25), 4096 / (7680 * 25))
    assert abs(sh["f1"] - sh["f2"]) <= one_agent + 1e-9
    assert sh["f1"] + sh["f2"] > 0.9


def test_two_frameworks_same_role_split_evenly():
    a = cluster(10)
    a.add_framework("f1", ["web"])
    a.add_framework("f2", ["web"])
    got = by_fw(a.allocate(0.0))
    assert len(got["f1"]) == len(got["f2"]) == 5


def test_weighted_roles_get_proportional_shares():
    a = cluster(30)
    a.update_weights({"gold": 2.0})
    a.add_framework("g", ["gold"])
    a.add_framework("s", ["silver"])
    got = by_fw(a.allocate(0.0))
    assert len(got["g"]) == 20
    assert len(got["s"]) == 10
    roles = a.shares()["roles"]
    assert roles["gold"] == pytest.approx(2 * roles["silver"])


def test_weight_update_changes_order_later():
    a = cluster(9)
    a.add_framework("g", ["gold"])
    a.add_framework("s", ["silver"])
    got = by_fw(a.allocate(0.0))
    for x in got["g"] + got["s"]:
        a.recover(x.framework_id, x.agent_id, x.resources)
    a.update_weights({"silver": 2.0})
    got = by_fw(a.allocate(1.0))
    assert len(got["s"]) == 6 and len(got["g"]) == 3
    with pytest.raises(ValueError):
        a.update_weights({"x": 0})


def test_lowest_share_role_served_first():
    a = cluster(4)
    a.add_framework("big", ["big"])
    a.add_framework("small", ["small"])
    a.add_allocation("big", "big", "a0", R("cpus:24;mem:4096"))
    assert a.role_order()[0] == "small"
    got = by_fw(a.allocate(0.0))
    # a0 has only disk+ports left (below min_allocatable); 3 agents: small, big, small
    assert len(got["small"]) == 2 and len(got["big"]) == 1


def test_multi_role_framework_is_a_client_in_each_role():
    a = cluster(4)
    a.add_framework("m", ["x", "y"])
    allocs = a.allocate(0.0)
    assert {x.role for x in allocs} == {"x", "y"}
    assert len(allocs) == 4
    by_role = a.allocated_by_role("m")
    assert sum(len(v) for v in by_role.values()) == 4
    # recover without role: taken from whichever role holds it
    x = allocs[0]
    a.recover("m", x.agent_id, x.resources)
    assert a.available(x.agent_id) == R(AGENT)


# ----------------------------------------------------------------------------- filters
def test_refuse_seconds_keeps_resources_away_until_expiry():
    a = cluster(1)
    a.add_framework("f1", ["*"])
    (x,) = a.allocate(0.0)
    a.recover("f1", "a0", x.resources, refuse_seconds=10.0, now=0.0)
    assert a.available("a0") == R(AGENT)
    assert a.has_filters("f1", now=1.0)
    assert a.allocate(1.0) == []
    assert a.allocate(9.99) == []
    (y,) = a.allocate(10.0)
    assert y.framework_id == "f1" and y.resources == R(AGENT)
    assert not a.has_filters("f1", now=10.0)


def test_filter_goes_to_other_framework_meanwhile():
    a = cluster(1)
    a.add_framework("f1", ["*"])
    a.add_framework("f2", ["*"])
    (x,) = a.allocate(0.0)
    a.recover(x.framework_id, "a0", x.resources, refuse_seconds=60, now=0.0)
    (y,) = a.allocate(1.0)
    assert y.framework_id != x.framework_id


def test_filter_only_covers_refused_subset():
    a = cluster(1)
    a.add_framework("f1", ["*"])
    (x,) = a.allocate(0.0)
    part = R("cpus:4;mem:512")
    # framework used the rest; the refused part is filtered
    a.recover("f1", "a0", part, refuse_seconds=60, now=0.0)
    assert a.allocate(1.0) == []
    # a finished task returns more: the offer is now bigger than what was refused
    a.recover("f1", "a0", R("cpus:4;mem:512"), now=2.0)
    (y,) = a.allocate(2.0)
    assert y.resources == R("cpus:8;mem:1024")


def test_zero_and_none_refuse_seconds_install_no_filter():
    a = cluster(1)
    a.add_framework("f1", ["*"])
    (x,) = a.allocate(0.0)
    a.recover("f1", "a0", x.resources, refuse_seconds=0, now=0.0)
    assert not a.has_filters("f1")
    (x,) = a.allocate(0.0)
    a.recover("f1", "a0", x.resources, now=0.0)
    assert len(a.allocate(0.0)) == 1


def test_refuse_timeout_rules():
    assert refuse_timeout(None) == 0
    assert refuse_timeout(0) == 0
    assert refuse_timeout(-1) == 5.0
    assert refuse_timeout(10**12) == 365 * 24 * 3600
    assert refuse_timeout(2.5) == 2.5


def test_negative_refuse_seconds_means_default_five_seconds():
    a = cluster(1)
    a.add_framework("f1", ["*"])
    (x,) = a.allocate(0.0)
    a.recover("f1", "a0", x.resources, refuse_seconds=-1, now=100.0)
    assert a.allocate(104.9) == []
    assert len(a.allocate(105.0)) == 1


def test_revive_clears_filters():
    a = cluster(2)
    a.add_framework("f1", ["*"])
    allocs = a.allocate(0.0)
    decline_all(a, allocs, refuse=3600, now=0.0)
    assert a.allocate(1.0) == []
    a.revive("f1")
    assert len(a.allocate(1.0)) == 2


def test_revive_roles_only_clears_those_roles():
    a = cluster(2)
    a.add_framework("f1", ["x", "y"])
    allocs = a.allocate(0.0)
    decline_all(a, allocs, refuse=3600, now=0.0)
    # each agent was refused in one role only, so the other role still gets it
    again = a.allocate(1.0)
    decline_all(a, again, refuse=3600, now=1.0)
    assert a.allocate(2.0) == []
    a.revive("f1", ["x"])
    got = a.allocate(2.0)
    assert {x.role for x in got} == {"x"} and len(got) == 2


def test_suppress_stops_offers_and_revive_restores():
    a = cluster(2)
    a.add_framework("f1", ["*"])
    a.suppress("f1")
    assert a.allocate(0.0) == []
    assert a.suppressed_roles("f1") == {"*"}
    a.revive("f1")
    assert len(a.allocate(0.0)) == 2


def test_suppress_one_role():
    a = cluster(2)
    a.add_framework("f1", ["x", "y"])
    a.suppress("f1", ["x"])
    got = a.allocate(0.0)
    assert {x.role for x in got} == {"y"}


def test_add_framework_with_suppressed_roles():
    a = cluster(1)
    a.add_framework("f1", ["x"], suppressed_roles=["x"])
    assert a.allocate(0.0) == []


# ----------------------------------------------------------------------------- lifecycle
def test_inactive_framework_gets_nothing_but_keeps_allocations():
    a = cluster(2)
    a.add_framework("f1", ["*"])
    a.add_framework("f2", ["*"], active=False)
    got = by_fw(a.allocate(0.0))
    assert "f2" not in got and len(got["f1"]) == 2
    a.deactivate_framework("f1")
    assert set(a.allocated("f1")) == {"a0", "a1"}
    decline_all(a, got["f1"])
    assert a.allocate(1.0) == []
    a.activate_framework("f2")
    assert len(a.allocate(1.0)) == 2


def test_remove_framework_returns_resources():
    a = cluster(2)
    a.add_framework("f1", ["*"])
    a.allocate(0.0)
    a.remove_framework("f1")
    assert a.allocated("f1") == {}
    assert a.available("a0") == R(AGENT)
    assert "f1" not in a.shares()["frameworks"]
    assert a.shares()["roles"] == {}
    a.add_framework("f2", ["*"])
    assert len(a.allocate(1.0)) == 2


def test_remove_agent_drops_its_allocations():
    a = cluster(2)
    a.add_framework("f1", ["*"])
    a.allocate(0.0)
    a.remove_agent("a0")
    assert set(a.allocated("f1")) == {"a1"}
    assert a.shares()["frameworks"]["f1"] == pytest.approx(1.0)  # a1 is the whole cluster now
    with pytest.raises(KeyError):
        a.available("a0")
    a.recover("f1", "a0", R(AGENT))  # late recover for a gone agent is ignored


def test_deactivated_agent_not_offered():
    a = cluster(2)
    a.add_framework("f1", ["*"])
    a.deactivate_agent("a0")
    assert [x.agent_id for x in a.allocate(0.0)] == ["a1"]
    a.activate_agent("a0")
    assert [x.agent_id for x in a.allocate(0.0)] == ["a0"]


def test_update_agent_total_keeps_allocation():
    a = cluster(1)
    a.add_framework("f1", ["*"])
    a.recover("f1", "a0", R("cpus:1"))  # not held: ignored
    a.add_allocation("f1", "*", "a0", R("cpus:4;mem:1024"))
    a.update_agent("a0", R("cpus:8;mem:2048"))
    assert a.available("a0") == R("cpus:4;mem:1024")


def test_allocate_subset_of_agents():
    a = cluster(3)
    a.add_framework("f1", ["*"])
    got = a.allocate(0.0, ["a1", "nope"])
    assert [x.agent_id for x in got] == ["a1"]


def test_add_allocation_for_unknown_framework_makes_inactive_placeholder():
    a = cluster(1)
    a.add_allocation("old", "web", "a0", R("cpus:20;mem:4000"))
    assert a.allocate(0.0) == []  # cpus:4;mem:96 left, but the placeholder is inactive
    a.add_framework("old", ["web"])
    (x,) = a.allocate(0.0)
    assert x.framework_id == "old" and x.resources == R("cpus:4;mem:96;disk:4096;ports:[31000-32000]")


def test_update_framework_roles():
    a = cluster(2)
    a.add_framework("f1", ["x"])
    a.update_framework("f1", ["y"])
    got = a.allocate(0.0)
    assert {x.role for x in got} == {"y"}
    assert "x" not in a.shares()["roles"]


# ----------------------------------------------------------------------------- resources
def test_min_allocatable():
    a = HierarchicalDRFAllocator(seed=1)
    a.add_agent("tiny", R("cpus:0.005;mem:16;disk:100"))
    a.add_agent("memonly", R("mem:64"))
    a.add_framework("f1", ["*"])
    assert [x.agent_id for x in a.allocate(0.0)] == ["memonly"]

    b = HierarchicalDRFAllocator(seed=1, min_allocatable=[R("cpus:1;mem:100")])
    b.add_agent("a", R("cpus:2;mem:50"))
    b.add_agent("c", R("cpus:2;mem:500"))
    b.add_framework("f1", ["*"])
    assert [x.agent_id for x in b.allocate(0.0)] == ["c"]

    c = HierarchicalDRFAllocator(seed=1, min_allocatable=[])
    c.add_agent("tiny", R("cpus:0.001"))
    c.add_framework("f1", ["*"])
    assert len(c.allocate(0.0)) == 1


def test_gpu_agents_only_for_gpu_aware_frameworks():
    a = HierarchicalDRFAllocator(seed=1)
    a.add_agent("gpu", R("cpus:8;mem:1024;gpus:2"))
    a.add_agent("cpu", R("cpus:8;mem:1024"))
    a.add_framework("plain", ["*"])
    assert [x.agent_id for x in a.allocate(0.0)] == ["cpu"]
    a.add_framework("ml", ["*"], gpu_aware=True)
    (x,) = a.allocate(0.0)
    assert x.framework_id == "ml" and x.agent_id == "gpu"

    b = HierarchicalDRFAllocator(seed=1, filter_gpu_resources=False)
    b.add_agent("gpu", R("cpus:8;mem:1024;gpus:2"))
    b.add_framework("plain", ["*"])
    assert len(b.allocate(0.0)) == 1


def test_gpus_excluded_from_fairness():
    a = HierarchicalDRFAllocator(seed=1)
    a.add_agent("gpu", R("cpus:100;mem:100000;gpus:1"))
    a.add_framework("ml", ["*"], gpu_aware=True)
    a.add_allocation("ml", "*", "gpu", R("cpus:1;gpus:1"))
    assert a.shares()["frameworks"]["ml"] == pytest.approx(0.01)


def test_reserved_resources_only_go_to_their_role():
    a = HierarchicalDRFAllocator(seed=1)
    a.add_agent("a0", R("cpus(ads):4;mem(ads):1024;cpus:2;mem:512"))
    a.add_framework("other", ["web"])
    got = a.allocate(0.0)
    assert len(got) == 1
    assert got[0].framework_id == "other" and got[0].resources == R("cpus:2;mem:512")
    a.add_framework("adsfw", ["ads"])
    (x,) = a.allocate(1.0)
    assert x.framework_id == "adsfw" and x.resources == R("cpus(ads):4;mem(ads):1024")


def test_reserved_and_unreserved_split_in_one_cycle():
    a = HierarchicalDRFAllocator(seed=1)
    a.add_agent("a0", R("cpus(ads):4;mem(ads):1024;cpus:2;mem:512"))
    a.add_framework("web", ["web"])
    a.add_framework("adsfw", ["ads"])
    got = {x.framework_id: x.resources for x in a.allocate(0.0)}
    assert sum(r.scalar("cpus") for r in got.values()) == 6
    assert got["adsfw"].contains(R("cpus(ads):4;mem(ads):1024"))
    assert not got.get("web", Resources()).reserved()


def test_parent_role_reservation_offered_to_child_role():
    a = HierarchicalDRFAllocator(seed=1)
    a.add_agent("a0", R("cpus(eng):4;mem(eng):1024"))
    a.add_framework("other", ["web"])
    assert a.allocate(0.0) == []
    a.add_framework("be", ["eng/backend"])
    (x,) = a.allocate(0.0)
    assert x.framework_id == "be" and x.role == "eng/backend"


def test_metrics_and_seed_determinism():
    def run(seed):
        a = HierarchicalDRFAllocator(seed=seed)
        for i in range(20):
            a.add_agent(f"a{i}", R(AGENT))
        for i in range(3):
            a.add_framework(f"f{i}", ["*"])
        return [(x.framework_id, x.agent_id) for x in a.allocate(0.0)], a

    one, a = run(5)
    two, _ = run(5)
    assert one == two
    m = a.metrics()
    assert m["allocator/agents"] == 20 and m["allocator/allocations_made"] == 20


def test_steady_state_decline_rounds_rotate_frameworks():
    # DeclineOffers: each round offers every agent to a framework that has not refused it
    a = cluster(20)
    for i in range(4):
        a.add_framework(f"f{i}", ["*"])
    seen: dict[str, set[str]] = {f"a{i}": set() for i in range(20)}
    for rnd in range(4):
        got = a.allocate(float(rnd))
        assert len(got) == 20
        for x in got:
            assert x.framework_id not in seen[x.agent_id]
            seen[x.agent_id].add(x.framework_id)
        decline_all(a, got, refuse=1e9, now=float(rnd))
    assert a.allocate(10.0) == []  # everyone refused everything
    assert a.metrics()["allocator/offer_filters"] == 80


# ----------------------------------------------------------------------------- sorter
def test_sorter_incremental_order_and_totals_change():
    t = Totals()
    t.add({"cpus": 10_000, "mem": 10_000})
    s = DRFSorter(t)
    for n in ("b", "a", "c"):
        s.add(n)
    assert s.sorted() == ["a", "b", "c"]
    s.add_allocation("a", {"cpus": 5_000})
    s.add_allocation("b", {"mem": 2_000})
    assert s.sorted() == ["c", "b", "a"]
    assert s.share("a") == pytest.approx(0.5)
    s.set_weight("a", 10)
    assert s.sorted() == ["c", "a", "b"]
    t.add({"mem": 90_000})  # mem total now 100: b's share drops to 0.02
    assert s.sorted() == ["c", "b", "a"]
    s.remove_allocation("a", {"cpus": 5_000})
    s.remove("c")
    assert s.sorted() == ["a", "b"]


def test_sorter_inactive_clients_keep_allocation_but_leave_order():
    t = Totals()
    t.add({"cpus": 10_000})
    s = DRFSorter(t)
    s.add("a")
    s.add("b", active=False)
    s.add_allocation("b", {"cpus": 1_000})
    assert s.sorted() == ["a"] and s.active_count() == 1
    assert s.share("b") == pytest.approx(0.1)
    s.activate("b")
    s.add_allocation("a", {"cpus": 5_000})
    assert s.sorted() == ["b", "a"]
    s.deactivate("a")
    s.remove("b")
    assert s.sorted() == [] and len(s) == 1


def test_suppressed_and_inactive_frameworks_leave_the_sorters():
    a = cluster(3)
    for i in range(5):
        a.add_framework(f"s{i}", ["web"], suppressed_roles=["web"])
    a.add_framework("idle", ["batch"], active=False)
    assert a.role_order() == []  # no role has an eligible framework
    assert a.allocate(0.0) == []
    a.add_framework("live", ["web"])
    assert a.role_order() == ["web"]
    got = a.allocate(0.0)
    assert {x.framework_id for x in got} == {"live"} and len(got) == 3
    decline_all(a, got)
    a.revive("s3")
    a.activate_framework("idle")
    assert set(a.role_order()) == {"web", "batch"}
    got = by_fw(a.allocate(1.0))
    assert set(got) <= {"live", "s3", "idle"} and len(sum(got.values(), [])) == 3
    a.deactivate_framework("idle")
    a.suppress("live")
    a.suppress("s3")
    assert a.role_order() == []
    assert "web" in a.shares()["roles"]  # allocations still count


def test_framework_filters_prune_expired_and_keep_live():
    from mesos_nb.master.allocator.entries import AgentEntry
    from mesos_nb.master.allocator.filters import FrameworkFilters

    ff = FrameworkFilters("f")
    a0, a1 = (AgentEntry(f"a{i}", R("cpus:8;mem:64"), "h", None) for i in range(2))
    small, big = R("cpus:1"), R("cpus:4;mem:64")
    ff.add("r", a0, small, expires=5.0)
    ff.add("r", a0, big, expires=50.0)
    assert ff.is_filtered("r", a0, R("cpus:2"), now=1.0)  # covered by big
    assert not ff.is_filtered("r", a0, R("cpus:8"), now=1.0)
    assert not ff.is_filtered("r", a1, small, now=1.0)
    assert ff.is_filtered("r", a0, small, now=10.0)  # small expired, big still covers
    assert ff.count() == 1
    assert not ff.is_filtered("r", a0, small, now=50.0)
    assert ff.count() == 0 and not ff and a0.refused is None  # (kept on the agent: gone there too)

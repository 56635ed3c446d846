"""Quota in the allocator: guarantees are offered first and held back as headroom, limits
cap what a role is offered, removing quota frees the resources."""

from __future__ import annotations

from mesos_nb.master.allocator import HierarchicalDRFAllocator, RoleQuota
from mesos_nb.protocol.resources import Resources

AGENT = "cpus:4;mem:4096"


def q(guarantees: dict | None = None, limits: dict | None = None) -> RoleQuota:
    def millis(d):
        return {n: int(v * 1000) for n, v in (d or {}).items()}
    return RoleQuota(millis(guarantees), millis(limits))


def cluster(n: int) -> HierarchicalDRFAllocator:
    a = HierarchicalDRFAllocator(seed=3)
    for i in range(n):
        a.add_agent(f"a{i}", Resources.parse(AGENT))
    return a


def held(a: HierarchicalDRFAllocator, fid: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for res in a.allocated(fid).values():
        for n, v in res.scalars().items():
            out[n] = out.get(n, 0) + v
    return out


def test_guarantees_are_held_back_and_offered_first_on_a_contended_cluster():
    a = cluster(4)
    a.update_weights({"hog": 100.0})
    a.update_quota("dev", q({"cpus": 4, "mem": 2048}))
    a.update_quota("ops", q({"cpus": 4, "mem": 2048}))
    a.add_framework("hog", ["hog"])
    a.allocate(1.0)
    # hog (weight 100, alone) may take only what the unmet guarantees do not need
    assert held(a, "hog").get("cpus", 0) <= 8
    a.add_framework("dev", ["dev"])
    a.add_framework("ops", ["ops"])
    a.allocate(2.0)  # one allocation interval after asking
    assert held(a, "dev")["cpus"] >= 4 and held(a, "dev")["mem"] >= 2048
    assert held(a, "ops")["cpus"] >= 4 and held(a, "ops")["mem"] >= 2048


def test_without_quota_the_heavy_role_takes_everything():
    a = cluster(4)
    a.update_weights({"hog": 100.0})
    a.add_framework("hog", ["hog"])
    a.allocate(1.0)
    assert held(a, "hog")["cpus"] == 16


def test_a_role_at_its_limit_is_offered_nothing_more_until_the_quota_is_removed():
    a = cluster(4)
    a.update_quota("dev", q(limits={"cpus": 6, "mem": 6000}))
    a.add_framework("f", ["dev"])
    made = a.allocate(1.0)
    assert made and held(a, "f")["cpus"] <= 6 and held(a, "f")["mem"] <= 6000
    assert a.allocate(2.0) == []
    a.update_quota("dev", None)
    a.allocate(3.0)
    assert held(a, "f")["cpus"] == 16


def test_limit_counts_children_and_guarantee_never_exceeds_limit_offer():
    a = cluster(2)
    a.update_quota("eng", q({"cpus": 1}, {"cpus": 3, "mem": 3000}))
    a.add_framework("f", ["eng/ml"])
    a.allocate(1.0)
    assert held(a, "f")["cpus"] <= 3
    assert a.consumed()["eng"]["cpus"] == int(held(a, "f")["cpus"] * 1000)


def test_a_nested_framework_gets_no_more_than_its_parents_limit():
    a = cluster(4)
    a.update_quota("eng", q(limits={"cpus": 3}))
    a.add_framework("ml", ["eng/ml"])  # eng/ml itself has no quota
    a.add_framework("web", ["eng/web"])
    a.allocate(1.0)
    a.allocate(2.0)
    assert held(a, "ml").get("cpus", 0) + held(a, "web").get("cpus", 0) <= 3
    assert a.consumed()["eng"]["cpus"] == 3000


def eng_with_ml(ml_guarantee: float) -> HierarchicalDRFAllocator:
    """16 cpus; eng guarantees 8, eng/ml (inside them) ``ml_guarantee``; a heavy hog outside."""
    a = cluster(4)
    a.update_weights({"hog": 100.0})
    a.update_quota("eng", q({"cpus": 8}))
    a.update_quota("eng/ml", q({"cpus": ml_guarantee}))
    a.add_framework("hog", ["hog"])
    return a


def test_a_childs_guarantee_is_held_inside_its_parents_bottom_up():
    a = eng_with_ml(6)
    a.add_framework("web", ["eng/web"])  # a sibling without quota of its own
    a.allocate(1.0)
    # eng/web may take eng's guarantee beyond eng/ml's (2) plus what no guarantee holds (8);
    # eng/ml's 6 stay held though eng's own consumption grows
    assert held(a, "web").get("cpus", 0) + held(a, "hog").get("cpus", 0) <= 10
    a.add_framework("ml", ["eng/ml"])
    a.allocate(2.0)
    assert held(a, "ml")["cpus"] >= 6


def test_a_childs_guarantee_counts_in_its_parents_and_the_parent_rest_is_for_any_child():
    a = eng_with_ml(2)
    a.allocate(1.0)
    assert held(a, "hog")["cpus"] <= 8  # all of eng's 8 are held: eng/ml's 2 inside them
    a.add_framework("web", ["eng/web"])
    a.allocate(2.0)
    assert held(a, "web")["cpus"] >= 6  # eng's 8 less eng/ml's 2

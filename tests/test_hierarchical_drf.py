"""Hierarchical DRF: nested roles are sorted as a tree, as Mesos's role sorter does.

A team cannot beat its sibling by spreading its work over many sub-roles; weights apply per
node; a parent's quota limit bounds its whole subtree."""

from __future__ import annotations

from mesos_nb.master.allocator import HierarchicalDRFAllocator, RoleQuota
from mesos_nb.master.allocator.roletree import RoleTree, ancestors
from mesos_nb.master.allocator.sorter import Totals
from mesos_nb.protocol.resources import Resources

AGENT = "cpus:1;mem:1024"


def cluster(n: int) -> HierarchicalDRFAllocator:
    a = HierarchicalDRFAllocator(seed=5)
    for i in range(n):
        a.add_agent(f"a{i:03d}", Resources.parse(AGENT))
    return a


def cpus_by_role(a: HierarchicalDRFAllocator, *fids: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for fid in fids:
        for per in a.allocated_by_role(fid).values():
            for role, res in per.items():
                out[role] = out.get(role, 0) + res.scalar("cpus")
    return out


def subtree(by_role: dict[str, float], node: str) -> float:
    return sum(v for r, v in by_role.items() if r == node or r.startswith(node + "/"))


def test_a_subtree_with_many_leaf_frameworks_does_not_beat_a_sibling_with_one():
    a = cluster(40)
    fids = []
    for i in range(10):  # ten sub-roles of eng, one framework each
        a.add_framework(f"eng{i}", [f"eng/team{i}"])
        fids.append(f"eng{i}")
    a.add_framework("sales", ["sales"])
    a.allocate(1.0)
    got = cpus_by_role(a, *fids, "sales")
    # the tree: eng (all ten together) and sales split the cluster; flat roles would give sales 40/11
    assert got["sales"] == 20
    assert subtree(got, "eng") == 20
    # inside eng the ten siblings share evenly
    assert sorted(got[f"eng/team{i}"] for i in range(10)) == [2] * 10


def test_weights_apply_per_node():
    a = cluster(48)
    a.update_weights({"eng": 3.0, "eng/ml": 1.0, "eng/web": 3.0})
    for r in ("eng/ml", "eng/web", "sales"):
        a.add_framework(r, [r])
    a.allocate(1.0)
    got = cpus_by_role(a, "eng/ml", "eng/web", "sales")
    assert subtree(got, "eng") == 36 and got["sales"] == 12  # eng's weight scales its subtree
    assert got["eng/web"] == 3 * got["eng/ml"]  # and the children's weights scale within it


def test_a_parent_role_with_its_own_framework_competes_as_a_leaf_inside_its_node():
    a = cluster(40)
    for fid, role in (("own", "eng"), ("ml", "eng/ml"), ("sales", "sales")):
        a.add_framework(fid, [role])
    a.allocate(1.0)
    got = cpus_by_role(a, "own", "ml", "sales")
    assert got == {"eng": 10, "eng/ml": 10, "sales": 20}
    # shares report the subtree of a node
    shares = a.shares()["roles"]
    assert shares["eng"] == 0.5 and shares["eng/ml"] == 0.25


def test_a_parent_quota_limit_bounds_its_whole_subtree():
    a = cluster(40)
    a.update_quota("eng", RoleQuota(limits={"cpus": 8000}))
    for i in range(4):
        a.add_framework(f"eng{i}", [f"eng/team{i}"])
    a.allocate(1.0)
    got = cpus_by_role(a, *(f"eng{i}" for i in range(4)))
    assert subtree(got, "eng") == 8
    assert a.consumed()["eng"]["cpus"] == 8000
    assert a.subtree_allocation("eng")["cpus"] == 8000


def test_a_subtree_under_a_nested_quota_is_bounded_by_its_own_and_its_ancestors_limits():
    a = cluster(40)
    a.update_quota("eng", RoleQuota(limits={"cpus": 12000}))
    a.update_quota("eng/ml", RoleQuota(limits={"cpus": 3000}))
    a.add_framework("ml", ["eng/ml/alice"])
    a.add_framework("web", ["eng/web"])
    a.allocate(1.0)
    got = cpus_by_role(a, "ml", "web")
    assert got["eng/ml/alice"] == 3 and got["eng/web"] == 9


def test_tree_shape_follows_roles_coming_and_going():
    a = cluster(8)
    a.add_framework("p", ["eng"])
    a.allocate(1.0)
    assert cpus_by_role(a, "p") == {"eng": 8}
    # eng becomes an internal node: its own 8 cpus move into its own leaf, the subtree keeps them
    a.add_framework("c", ["eng/ml"])
    assert a.subtree_allocation("eng") == {"cpus": 8000, "mem": 8_192_000}
    assert sorted(a.role_nodes()) == ["eng", "eng/ml"]
    for aid in a.allocated("p"):
        a.recover("p", aid, a.allocated("p")[aid])
    a.allocate(2.0)
    assert cpus_by_role(a, "c")["eng/ml"] >= 4  # the child was looked at inside eng
    a.remove_framework("c")
    a.remove_framework("p")
    assert a.role_nodes() == [] and a.role_order() == []
    a.add_framework("n", ["x/y"])
    a.allocate(3.0)
    assert cpus_by_role(a, "n") == {"x/y": 8}


def test_role_tree_orders_depth_first_by_weighted_subtree_share():
    totals = Totals()
    totals.add({"cpus": 100_000})
    t = RoleTree(totals)
    for r in ("eng/ml", "eng/web", "sales", "eng"):
        t.add(r)
    t.add_allocation("eng/ml", {"cpus": 30_000})
    t.add_allocation("sales", {"cpus": 20_000})
    # sales (0.2) before eng (0.3); inside eng: eng's own leaf and eng/web (0) before eng/ml
    assert t.sorted() == ["sales", "eng", "eng/web", "eng/ml"]
    t.deactivate("sales")
    assert t.sorted() == ["eng", "eng/web", "eng/ml"]
    t.set_weight("eng", 10.0)  # weighted 0.03 < 0.2
    t.activate("sales")
    assert t.sorted()[0] == "eng"
    assert ancestors("a/b/c") == ["a", "a/b", "a/b/c"]


def test_random_role_churn_keeps_every_subtree_equal_to_the_sum_of_its_roles():
    import random

    rng = random.Random(7)
    roles = ["a", "a/b", "a/b/c", "a/d", "e", "e/f", "g/h/i"]
    a = cluster(30)
    now = 0.0
    for step in range(300):
        now += 1.0
        fid = f"f{rng.randrange(8)}"
        op = rng.random()
        if op < 0.3:
            a.add_framework(fid, rng.sample(roles, rng.randint(1, 2)))
        elif op < 0.4:
            a.remove_framework(fid)
        elif op < 0.7:
            a.allocate(now)
        else:
            held = a.allocated_by_role(fid)
            for aid, per in held.items():
                for role, res in per.items():
                    if rng.random() < 0.5:
                        a.recover(fid, aid, res, role=role)
        own: dict[str, float] = {}
        for f in a.framework_ids():
            for per in a.allocated_by_role(f).values():
                for role, res in per.items():
                    own[role] = own.get(role, 0) + res.scalar("cpus")
        for node in a.role_nodes():
            expect = sum(v for r, v in own.items() if r == node or r.startswith(node + "/"))
            assert a.subtree_allocation(node).get("cpus", 0) == round(expect * 1000), (step, node)
        assert set(a.role_order()) <= set(a.role_nodes())

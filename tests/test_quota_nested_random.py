"""Quota on nested roles over random trees: whatever valid configs the master accepts
(``check_hierarchy``, guarantees within the cluster), one allocation cycle with a greedy
framework in every role gives every guaranteed role (its subtree) its guarantee and never
lets a subtree past a limit, whatever the weights."""

from __future__ import annotations

import random

import pytest

from mesos_nb.master.allocator import HierarchicalDRFAllocator, RoleQuota
from mesos_nb.master.quota import check_hierarchy, total_guarantees
from mesos_nb.master.state import CallError
from mesos_nb.protocol.resources import Resources

ROLES = ["a", "a/x", "a/y", "a/x/p", "a/w", "b", "b/z", "c"]
AGENTS, CPUS = 12, 2


def random_quotas(rng: random.Random) -> dict[str, RoleQuota]:
    """Random guarantees and limits (whole cpus) until the master would accept them."""
    while True:
        quotas = {}
        for role in ROLES:
            if rng.random() < 0.5:
                continue
            g = {"cpus": rng.randint(0, 8) * 1000} if rng.random() < 0.6 else {}
            lim = {"cpus": rng.randint(1, 14) * 1000} if rng.random() < 0.5 else {}
            if g.get("cpus", 0) and lim and lim["cpus"] < g["cpus"]:
                continue
            if g.get("cpus") == 0:
                g = {}
            if g or lim:
                quotas[role] = RoleQuota(g, lim)
        try:
            check_hierarchy(quotas)
        except CallError:
            continue
        if total_guarantees(quotas).get("cpus", 0) <= AGENTS * CPUS * 1000 and quotas:
            return quotas


def subtree_cpus(a: HierarchicalDRFAllocator, role: str) -> int:
    return a.subtree_allocation(role).get("cpus", 0)


@pytest.mark.parametrize("seed", range(150))
def test_random_nested_quota_meets_guarantees_and_keeps_limits(seed):
    rng = random.Random(seed)
    quotas = random_quotas(rng)
    a = HierarchicalDRFAllocator(seed=seed)
    for i in range(AGENTS):
        a.add_agent(f"a{i}", Resources.parse(f"cpus:{CPUS};mem:4096"))
    a.update_weights({r: rng.choice([0.5, 1.0, 4.0]) for r in ROLES})
    for role, q in quotas.items():
        a.update_quota(role, q)
    for role in [*ROLES, "hog"]:
        a.add_framework(f"f-{role}", [role])
    a.allocate(1.0)
    for role, q in quotas.items():
        got = subtree_cpus(a, role)
        assert got <= q.limits.get("cpus", got), (role, got, quotas)
        assert got >= q.guarantees.get("cpus", 0), (role, got, quotas)

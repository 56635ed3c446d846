"""Quota decisions are pinned too: random scenarios with one to three roles under guarantees
and limits (reservations, refusals, partial recoveries, suppress/revive, agents removed) must
give the offers, shares and quota consumption that the allocator of b55d2c5 gave (before the
one-role cycle took quota and stepped cycles kept their QuotaCycle)."""

from __future__ import annotations

import hashlib
import random

from test_allocator_pinned import random_agent

from mesos_nb.master.allocator import HierarchicalDRFAllocator, RoleQuota
from mesos_nb.protocol.resources import Resources

PINNED = "f94b833d86237e9978c208bac72303741fb397ec7f81009e62caaf2d85f7d7c5"


def scenario_hash(seeds: int) -> str:
    h = hashlib.sha256()
    for seed in range(seeds):
        rng = random.Random(seed)
        a = HierarchicalDRFAllocator(seed=seed)
        roles = [f"r{i}" for i in range(rng.choice([1, 1, 2, 3]))]
        for i in range(rng.randint(3, 25)):
            a.add_agent(f"a{i}", Resources.parse(random_agent(rng, roles, i, disks_ports_gpus=False)))
        for r in roles:
            if rng.random() < 0.8:
                g = {"cpus": rng.randint(0, 30) * 1000} if rng.random() < 0.6 else {}
                lim = {"cpus": rng.randint(5, 60) * 1000, "mem": rng.randint(1, 40) * 128_000} if rng.random() < 0.7 else {}
                a.update_quota(r, RoleQuota(guarantees=g, limits=lim))
        fws = [f"f{i}" for i in range(rng.randint(1, 8))]
        for f in fws:
            a.add_framework(f, rng.sample(roles, rng.randint(1, len(roles))))
        now = 0.0
        for step in range(25):
            now += rng.choice([0.5, 1, 6])
            for x in a.allocate(now):
                h.update(f"{step}|{x.framework_id}|{x.role}|{x.agent_id}|{x.resources}\n".encode())
                p = rng.random()
                if p < 0.5:
                    a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=rng.choice([None, 0, 2, 10]),
                              now=now, role=x.role)
                elif p < 0.6:
                    a.recover(x.framework_id, x.agent_id, Resources.parse("cpus:1;mem:128"), refuse_seconds=5, now=now)
            e, f = rng.random(), rng.choice(fws)
            events = ((0.1, a.suppress), (0.2, a.revive), (0.25, lambda _, a=a, rng=rng: a.remove_agent(f"a{rng.randint(0, 25)}")))
            for bound, event in events:  # (the first whose bound e is under)
                if e < bound:
                    event(f)
                    break
            h.update(repr(sorted(a.shares()["frameworks"].items())).encode())
            h.update(repr(sorted(a.consumed().items())).encode())
    return h.hexdigest()


def test_random_quota_scenarios_allocate_as_before() -> None:
    assert scenario_hash(60) == PINNED, "the allocator decided differently from b55d2c5 under quota"

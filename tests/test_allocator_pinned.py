"""The allocator's decisions are pinned: random flat-role scenarios (reservations, GPUs,
weights, refusals, partial recoveries, suppress/revive, agents removed) must give the very
offers, shares and role order that the flat allocator of commit f64e051 gave, so a speed-up
of the cycle can never change who gets what."""

from __future__ import annotations

import hashlib
import random

from mesos_nb.master.allocator import HierarchicalDRFAllocator
from mesos_nb.protocol.resources import Resources

# sha256 of the 60 scenarios below, computed with the allocator of f64e051 (before the role tree)
PINNED = "3d645b9b696e2cd005c3fac95c7fb26727acf63ef676da42daef830825efffb6"


def random_agent(rng: random.Random, roles: list[str], i: int, *, disks_ports_gpus: bool = True) -> str:
    """One agent's resources (the random draws in a fixed order: the pinned hashes depend on it)."""
    role = rng.choice(roles + ["*"] * 3)
    text = f"cpus:{rng.randint(1, 16)};mem:{rng.randint(1, 64) * 128}"
    if disks_ports_gpus:
        text += f";disk:{rng.randint(1, 8) * 512};ports:[{31000 + i}-{31100 + i}]"
    if role != "*" and rng.random() < 0.5:
        text += f";cpus({role}):{rng.randint(1, 4)}"
    if disks_ports_gpus and rng.random() < 0.2:
        text += ";gpus:1"
    return text


def scenario_hash(seeds: int) -> str:
    h = hashlib.sha256()
    for seed in range(seeds):
        rng = random.Random(seed)
        a = HierarchicalDRFAllocator(seed=seed)
        roles = [f"r{i}" for i in range(rng.randint(1, 4))]
        a.update_weights({r: rng.choice([1, 2, 3]) for r in roles})
        for i in range(rng.randint(3, 30)):
            a.add_agent(f"a{i}", Resources.parse(random_agent(rng, roles, i)))
        fws = [f"f{i}" for i in range(rng.randint(1, 12))]
        for f in fws:
            a.add_framework(
                f, rng.sample(roles, rng.randint(1, len(roles))), gpu_aware=rng.random() < 0.3
            )
        now = 0.0
        for step in range(40):
            now += rng.choice([0.5, 1, 6])
            made = a.allocate(now)
            for x in made:
                h.update(f"{step}|{x.framework_id}|{x.role}|{x.agent_id}|{x.resources}\n".encode())
                p = rng.random()
                if p < 0.5:
                    a.recover(
                        x.framework_id,
                        x.agent_id,
                        x.resources,
                        refuse_seconds=rng.choice([None, -1, 0, 2, 10]),
                        now=now,
                        role=rng.choice([x.role, None]),
                    )
                elif p < 0.6:
                    part = Resources.parse("cpus:1;mem:128")
                    a.recover(x.framework_id, x.agent_id, part, refuse_seconds=5, now=now)
            e = rng.random()
            f = rng.choice(fws)
            if e < 0.1:
                a.suppress(f)
            elif e < 0.2:
                a.revive(f)
            elif e < 0.25:
                a.deactivate_framework(f)
            elif e < 0.3:
                a.activate_framework(f)
            elif e < 0.33:
                a.update_weights({rng.choice(roles): rng.choice([1, 2, 5])})
            elif e < 0.36:
                a.remove_agent(f"a{rng.randint(0, 30)}")
            h.update(repr(sorted(a.shares()["frameworks"].items())).encode())
            h.update(repr(a.role_order()).encode())
    return h.hexdigest()


def test_random_flat_role_scenarios_allocate_as_before() -> None:
    assert scenario_hash(60) == PINNED, "the allocator decided differently from f64e051"

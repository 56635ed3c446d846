"""Refusal filters at scale: the cycle's look-up of who refused an agent decides as before.

Pinned: random clusters where many frameworks refuse most agents (the NSDI run's shape: each
agent's leftover declined by framework after framework, filters of 0-30 s, partial launches,
tasks ending, revive / suppress / deactivate / role changes, agents removed and added, cycles
run in steps) must give the very offers, shares and live filters that the allocator of dafe117
(the per-framework filter walk) gave."""

from __future__ import annotations

import hashlib
import random

from mesos_nb.master.allocator import HierarchicalDRFAllocator, RoleQuota
from mesos_nb.protocol.resources import Resources

# sha256 of the scenarios below, computed with the allocator of dafe117 (filters kept per framework)
PINNED = "b8c295421b423036d7a1ad371e0f4cee9e6451351a616551d57b79db50fa868c"

TASK = Resources.parse("cpus:1;mem:128")


def _agent(rng: random.Random, roles: list[str], i: int) -> Resources:
    text = f"cpus:{rng.choice([1, 1, 2, 4])};mem:{rng.choice([192, 192, 512, 1024])};disk:1024"
    if rng.random() < 0.1:
        text += ";gpus:1"
    if rng.random() < 0.15:
        text += f";cpus({rng.choice(roles)}):1"
    if rng.random() < 0.3:
        text += f";ports:[{31000 + i}-{31010 + i}]"
    return Resources.parse(text)


def scenario(seed: int, h: hashlib._Hash) -> None:
    rng = random.Random(seed)
    a = HierarchicalDRFAllocator(seed=seed)
    roles = rng.choice([["busy"], ["busy"], ["busy", "probe"], ["eng", "eng/ml", "web"]])
    if rng.random() < 0.3:
        a.update_weights({r: rng.choice([1, 2, 3]) for r in roles})
    if rng.random() < 0.15:
        a.update_quota(roles[0], RoleQuota(limits={"cpus": rng.randint(5, 40) * 1000}))
    n_agents = rng.randint(5, 60)
    for i in range(n_agents):
        a.add_agent(f"a{i}", _agent(rng, roles, i))
    fws = [f"f{i:02d}" for i in range(rng.randint(2, 40))]
    for f in fws:
        a.add_framework(f, rng.sample(roles, rng.randint(1, len(roles))), gpu_aware=rng.random() < 0.3)
    tasks: list[tuple[str, str, str]] = []
    now = 0.0
    for step in range(30):
        now += rng.choice([0.2, 0.5, 1, 3])
        if rng.random() < 0.5:
            made = a.allocate(now, None if rng.random() < 0.6 else [f"a{rng.randrange(n_agents + 5)}" for _ in range(8)])
        else:
            run, made, chunk = a.begin(now), [], rng.randint(1, 9)
            while not run.done:
                made += a.step(run, chunk)
                if rng.random() < 0.05 and tasks:  # something happens between steps
                    f, aid, role = tasks.pop(rng.randrange(len(tasks)))
                    a.recover(f, aid, TASK, now=now, role=role)
        for x in made:
            h.update(f"{step}|{x.framework_id}|{x.role}|{x.agent_id}|{x.resources}\n".encode())
            p = rng.random()
            if p < 0.3 and x.resources.contains(TASK):  # a task launched, the rest refused
                tasks.append((x.framework_id, x.agent_id, x.role))
                a.recover(x.framework_id, x.agent_id, x.resources - TASK, refuse_seconds=rng.choice([None, 5]),
                          now=now, role=x.role)
            elif p < 0.9:  # declined
                a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=rng.choice([None, 0, 1, 5, 5, 30, -1]),
                          now=now, role=rng.choice([x.role, None]))
        for _ in range(rng.randint(0, 4)):  # tasks end
            if tasks:
                f, aid, role = tasks.pop(rng.randrange(len(tasks)))
                a.recover(f, aid, TASK, now=now, role=role)
        e, f = rng.random(), rng.choice(fws)
        if e < 0.08:
            a.suppress(f, rng.choice([None, roles[:1]]))
        elif e < 0.16:
            a.revive(f, rng.choice([None, roles[-1:]]))
        elif e < 0.2:
            a.deactivate_framework(f)
        elif e < 0.26:
            a.activate_framework(f)
        elif e < 0.3:
            a.update_framework(f, rng.sample(roles, rng.randint(1, len(roles))), gpu_aware=rng.random() < 0.5)
        elif e < 0.34:
            a.remove_agent(f"a{rng.randrange(n_agents)}")
        elif e < 0.37:
            a.add_agent(f"a{n_agents}", _agent(rng, roles, n_agents))
            n_agents += 1
        elif e < 0.39 and len(fws) > 1:
            fws.remove(f)
            a.remove_framework(f)
            tasks = [t for t in tasks if t[0] != f]
        h.update(repr(sorted(a.shares()["frameworks"].items())).encode())
        h.update(repr(a.role_order()).encode())
        live = [(g, r) for g in fws for r in roles if a.has_filters(g, r, now=now)]
        h.update(repr(live).encode())


def scenario_hash(seeds: int) -> str:
    h = hashlib.sha256()
    for seed in range(seeds):
        scenario(seed, h)
    return h.hexdigest()


def test_random_clusters_full_of_refusals_allocate_as_before() -> None:
    assert scenario_hash(80) == PINNED, "the allocator decided differently from dafe117"

"""Refusal filters at scale: the cycle's look-up of who refused an agent decides as before.

Pinned: random clusters where many frameworks refuse most agents (the NSDI run's shape: each
agent's leftover declined by framework after framework, filters of 0-30 s, partial launches,
tasks ending, revive / suppress / deactivate / role changes, agents removed and added, cycles
run in steps) must give the very offers, shares and live filters that the allocator of dafe117
(the per-framework filter walk) gave."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_nb.master.allocator import HierarchicalDRFAllocator, RoleQuota, cycle
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


# ---------------------------------------------------------------- the look-up against the plain walk

def per_framework_walk(fs, fws, role, agent, offer, now, gpu_only):
    """The walk before the agents kept their refusals: every framework asked in turn."""
    for _, fid in fs.order():
        fw = fws[fid]
        if gpu_only and not fw.gpu_aware:
            continue
        if fw.filters.is_filtered(role, agent, offer, now):
            continue
        return fw
    return None


_OPS = st.lists(st.tuples(st.sampled_from(
    ["cycle", "cycle", "stepped", "changed", "decline", "decline", "decline_all", "decline_all", "launch", "end",
     "suppress", "revive",
     "deactivate", "activate", "roles", "remove_agent", "add_agent", "later"]), st.integers(0, 2**20)),
    min_size=4, max_size=50)


def _transcript(setup: tuple[int, int, int, int], ops: list[tuple[str, int]]) -> list:
    """Run ``ops`` on a fresh cluster; every offer made, the shares and the live filters, in order."""
    n_agents, n_fws, roleset, seed = setup
    roles = [["busy"], ["busy", "probe"], ["eng", "eng/ml", "web"]][roleset]
    rng = random.Random(seed)
    a = HierarchicalDRFAllocator(seed=seed)
    for i in range(n_agents):
        a.add_agent(f"a{i}", _agent(rng, roles, i))
    fws = [f"f{i:02d}" for i in range(n_fws)]
    for f in fws:
        a.add_framework(f, rng.sample(roles, rng.randint(1, len(roles))), gpu_aware=rng.random() < 0.3)
    out: list = []
    offered: list = []
    tasks: list = []
    now = 1.0
    for op, k in ops:
        f = fws[k % len(fws)]
        made: list = []
        if op == "cycle":
            made = a.allocate(now)
        elif op == "changed":
            made = a.allocate_changed(now)
        elif op == "stepped":
            run = a.begin(now)
            while not run.done:
                made += a.step(run, 1 + k % 5)
        elif op in ("decline", "launch") and offered:
            x = offered.pop(k % len(offered))
            if op == "launch" and x.resources.contains(TASK):
                tasks.append((x.framework_id, x.agent_id, x.role))
                a.recover(x.framework_id, x.agent_id, x.resources - TASK, refuse_seconds=5, now=now, role=x.role)
            else:
                a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=[None, 0, 1, 5, 30, -1][k % 6],
                          now=now, role=x.role)
        elif op == "decline_all":  # every outstanding offer refused alike: agents refused by all
            for x in offered:
                a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=[5, 30, 0.5][k % 3], now=now,
                          role=x.role)
            offered = []
        elif op == "end" and tasks:
            g, aid, role = tasks.pop(k % len(tasks))
            a.recover(g, aid, TASK, now=now, role=role)
        elif op == "suppress":
            a.suppress(f, None if k % 2 else roles[:1])
        elif op == "revive":
            a.revive(f, None if k % 2 else roles[-1:])
        elif op == "deactivate":
            a.deactivate_framework(f)
        elif op == "activate":
            a.activate_framework(f)
        elif op == "roles":
            a.update_framework(f, [r for i, r in enumerate(roles) if (k >> i) & 1] or roles[:1], gpu_aware=bool(k & 8))
        elif op == "remove_agent":
            a.remove_agent(f"a{k % (n_agents + 1)}")
        elif op == "add_agent":
            a.add_agent(f"a{n_agents}", _agent(rng, roles, n_agents))
            n_agents += 1
        elif op == "later":
            now += [0.5, 1, 3, 6][k % 4]
        offered += made
        out.append((op, [(x.framework_id, x.role, x.agent_id, str(x.resources)) for x in made]))
        out.append(sorted(a.shares()["frameworks"].items()))
        out.append([(g, r) for g in fws for r in roles if a.has_filters(g, r, now=now)])
    return out


@settings(max_examples=300, deadline=None)
@given(setup=st.tuples(st.integers(1, 30), st.integers(1, 6), st.integers(0, 2), st.integers(0, 2**16)), ops=_OPS)
def test_the_agents_own_refusal_table_decides_as_asking_every_framework(setup, ops) -> None:
    """``cycle.first_fit`` (the agent's table, one live filter decided inline, a cluster never
    refused skipped) picks the very framework that asking each framework's ``is_filtered`` in
    DRF order picks, on random clusters and histories; the filters left live are the same."""
    fast = _transcript(setup, ops)
    real = cycle.first_fit
    cycle.first_fit = per_framework_walk
    try:
        plain = _transcript(setup, ops)
    finally:
        cycle.first_fit = real
    assert fast == plain


# ---------------------------------------------------------------- what one agent's walk costs

def _refused_by_all(n: int, churn: bool) -> tuple[HierarchicalDRFAllocator, str]:
    """One agent (a task's room taken by a framework outside the role) whose leftover ``n``
    frameworks refused in turn; with ``churn`` the task ends and starts between refusals, so
    each refusal holds a leftover bag of its own (equal, not the same object)."""
    a = HierarchicalDRFAllocator(seed=1)
    a.add_agent("a0", Resources.parse("cpus:1;mem:192;disk:1024"))
    a.add_framework("holder", ["other"], active=False)
    a.add_allocation("holder", "other", "a0", TASK)
    for i in range(n):
        a.add_framework(f"f{i:03d}", ["busy"])
    for i in range(n):
        (x,) = a.allocate(float(i))
        a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=3600, now=float(i), role=x.role)
        if churn:
            a.recover("holder", "a0", TASK, role="other")
            a.add_allocation("holder", "other", "a0", TASK)
    return a, "a0"


def test_an_agent_every_framework_refused_is_decided_without_a_containment_test_per_framework(monkeypatch) -> None:
    """200 frameworks refused an agent's leftover, each a bag of its own (a task ended and
    started between the refusals): the cycle decides that nobody gets it with at most a couple
    of ``Resources.contains`` (equal refused bags are one object, decided by identity), where
    asking each framework tested each of the 200 bags."""
    calls: list[int] = []
    real = Resources.contains

    def counted(self: Resources, other: Resources) -> bool:
        calls.append(1)
        return real(self, other)

    for churn in (False, True):
        a, aid = _refused_by_all(200, churn)
        calls.clear()
        monkeypatch.setattr(Resources, "contains", counted)
        assert a.allocate(500.0) == []
        monkeypatch.setattr(Resources, "contains", real)
        assert len(calls) <= 2, (churn, len(calls))
        assert a.metrics()["allocator/offer_filters"] == 200


def test_filters_leave_with_their_agent_or_framework() -> None:
    """Filters live on the agents they refuse: an agent removed takes every framework's filters
    for it along (each framework's count drops); a framework removed, even one that refused
    while inactive (its filters were cleared when it was deactivated), leaves nothing behind."""
    a, aid = _refused_by_all(5, churn=False)
    a.add_agent("a1", Resources.parse("cpus:1;mem:192"))
    (x,) = a.allocate(10.0)
    assert x.agent_id == "a1"
    a.deactivate_framework(x.framework_id)
    a.recover(x.framework_id, "a1", x.resources, refuse_seconds=3600, now=10.0, role=x.role)
    assert a.metrics()["allocator/offer_filters"] == 5  # (deactivated: its filter on a0 went)
    a.remove_agent(aid)
    assert a.metrics()["allocator/offer_filters"] == 1
    assert not any(a.has_filters(f"f{i:03d}", agent_id=aid) for i in range(5))
    a.remove_framework(x.framework_id)
    assert a.metrics()["allocator/offer_filters"] == 0
    assert a._agents["a1"].refused is None  # (no table left behind on the agent)
    assert [y.agent_id for y in a.allocate(11.0)] == ["a1"]


def test_an_agent_refused_by_all_is_looked_at_again_once_a_framework_may_take_it() -> None:
    """The cycle remembers that every framework refused an agent's bag (a full cycle then costs
    a look-up per such agent) only while that holds: a framework revived, added, re-activated
    or given GPUs, a filter expired, or the bag changed, and the agent is offered again: to
    the very framework that asking every framework picks."""
    def refused(gpu: bool = False) -> HierarchicalDRFAllocator:
        a = HierarchicalDRFAllocator(seed=1)
        a.add_agent("a0", Resources.parse("cpus:1;mem:192" + (";gpus:1" if gpu else "")))
        for i in range(3):
            a.add_framework(f"f{i}", ["busy"], gpu_aware=not gpu or i < 2)
        for i in range(3 if not gpu else 2):
            (x,) = a.allocate(float(i))
            a.recover(x.framework_id, "a0", x.resources, refuse_seconds=100 + i, now=float(i))
        assert a.allocate(10.0) == [] and a.allocate(11.0) == []  # (the second: remembered)
        return a

    changes = {
        "revive": lambda a: a.revive("f1"),
        "revive_role": lambda a: a.revive("f2", ["busy"]),
        "new_framework": lambda a: a.add_framework("g", ["busy"]),
        "reactivated": lambda a: (a.deactivate_framework("f0"), a.activate_framework("f0")),
        "expired": lambda a: None,
        "bag_grew": lambda a: a.update_agent("a0", Resources.parse("cpus:2;mem:256")),
    }
    for name, change in changes.items():
        got = []
        for walk in (cycle.first_fit, per_framework_walk):
            real = cycle.first_fit
            cycle.first_fit = walk
            try:
                a = refused()
                change(a)
                got.append([x.framework_id for x in a.allocate(100.5 if name == "expired" else 12.0)])
            finally:
                cycle.first_fit = real
        assert got[0] == got[1] and len(got[0]) == 1, (name, got)
    a = refused(gpu=True)  # f2 cannot take GPU agents; f0, f1 refused
    a.update_framework("f2", ["busy"], gpu_aware=True)
    assert [x.framework_id for x in a.allocate(12.0)] == ["f2"]

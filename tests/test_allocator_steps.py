"""A cycle run in steps (the master's event loop runs a big cluster's cycle a few hundred
agents per step) decides as the one-step cycle does, and sees what changed between steps."""

from __future__ import annotations

import gc

from mesos_nb.master.allocator import HierarchicalDRFAllocator
from mesos_nb.protocol.resources import Resources


def _cluster(agents: int = 300, roles: tuple[str, ...] = ("*",), seed: int = 7) -> HierarchicalDRFAllocator:
    a = HierarchicalDRFAllocator(seed=seed)
    for i in range(agents):
        extra = f";cpus({roles[-1]}):1" if roles != ("*",) and i % 5 == 0 else ""
        a.add_agent(f"a{i:03d}", Resources.parse(f"cpus:{1 + i % 4};mem:{256 * (1 + i % 3)}{extra}"))
    for j in range(12):
        a.add_framework(f"f{j:02d}", [roles[j % len(roles)]], gpu_aware=j % 2 == 0)
    return a


def _decisions(allocs) -> list[tuple[str, str, str, str]]:
    return [(x.framework_id, x.role, x.agent_id, str(x.resources)) for x in allocs]


def _declined_round(a: HierarchicalDRFAllocator, allocs, now: float) -> None:
    for x in allocs[::3]:
        a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=10, now=now, role=x.role)
    for x in allocs[1::3]:
        a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=0, now=now, role=x.role)


def test_a_cycle_in_steps_makes_the_offers_of_the_one_step_cycle() -> None:
    for roles in (("*",), ("eng", "eng/ml", "sales")):  # the one-role path and the role walk
        whole, stepped = _cluster(roles=roles), _cluster(roles=roles)
        for rnd in range(4):
            now = float(rnd)
            one = whole.allocate(now)
            run = stepped.begin(now)
            steps = []
            while not run.done:
                steps.append(stepped.step(run, 7))  # 7 agents a step (the first steps only shuffle)
            assert steps[0] == [] and len(steps) > len(run.cands) // 7  # (300 swaps: 56 a step)
            assert _decisions(one) == _decisions([x for s in steps for x in s])
            assert whole.shares() == stepped.shares() and whole.role_order() == stepped.role_order()
            _declined_round(whole, one, now)
            _declined_round(stepped, one, now)


def test_an_agent_removed_or_deactivated_between_steps_gets_no_offer() -> None:
    a = _cluster()
    run = a.begin(0.0)
    first: list = []
    while not first:  # (the first steps only shuffle)
        first = a.step(run, 100)
    gone, idle = sorted(set(a.agent_ids()) - {x.agent_id for x in first})[:2]  # not looked at yet
    a.remove_agent(gone)
    a.deactivate_agent(idle)
    rest: list = []
    while not run.done:
        rest += a.step(run, 100)
    offered = [x.agent_id for x in first + rest]
    assert gone not in offered and idle not in offered
    assert len(offered) == len(set(offered)) == 298  # everyone else once (all free, 12 frameworks)


def test_a_cycle_keeps_no_collector_tracked_object_per_offer_but_its_record() -> None:
    """The collector's share of a 50,000-offer cycle was its walking what each offer left
    behind (a record, a dict per holding, a list per refusal); now only the records stay."""
    a = _cluster(agents=2000)
    first = a.allocate(0.0)
    for x in first:  # declined: one refusal filter per offer
        a.recover(x.framework_id, x.agent_id, x.resources, refuse_seconds=60, now=0.0, role=x.role)
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        made = a.allocate(1.0)
        after = len(gc.get_objects())
    finally:
        gc.enable()
    assert len(made) == 2000
    assert after - before <= len(made) + 100  # the records, and a few dozen per cycle (was 2 per offer)


def test_agents_removed_in_bulk_leave_the_cycle_as_if_never_added() -> None:
    """Removed agents' places are compacted away, keeping the order agents came in (so the
    cycle decides as if they never came), but never under a cycle begun in steps: its
    remaining candidates must still find their agents."""
    res = Resources.parse("cpus:2;mem:512")
    big, small, busy = (HierarchicalDRFAllocator(seed=3) for _ in range(3))
    for i in range(3000):
        for a in (big, busy) if i % 3 else (big, small, busy):
            a.add_agent(f"a{i:04d}", res)
    for a in (big, small, busy):
        for j in range(5):
            a.add_framework(f"f{j}", ["*"])
    for i in range(3000):
        if i % 3:
            big.remove_agent(f"a{i:04d}")  # compacted on the way (no cycle under way)
    assert _decisions(big.allocate(1.0)) == _decisions(small.allocate(1.0))

    run = busy.begin(0.0)
    made: list = []
    while not made:
        made = busy.step(run, 500)
    for i in range(3000):
        if i % 3:
            busy.remove_agent(f"a{i:04d}")  # while the run is under way: holes only
    while not run.done:
        made += busy.step(run, 500)
    later = {x.agent_id for x in made[500:]}
    assert later and all(int(a[1:]) % 3 == 0 for a in later)
    assert {x.agent_id for x in made} >= {f"a{i:04d}" for i in range(0, 3000, 3)}


def test_a_stepped_cycle_with_quota_decides_as_one_step_and_reads_quota_once_while_nothing_moves(monkeypatch) -> None:
    from mesos_nb.master.allocator import RoleQuota
    from mesos_nb.master.allocator import allocator as allocator_mod

    built = []

    class Counting(allocator_mod.QuotaCycle):
        def __init__(self, *a, **kw) -> None:
            built.append(1)
            super().__init__(*a, **kw)

    monkeypatch.setattr(allocator_mod, "QuotaCycle", Counting)
    roles = ("eng", "sales")
    whole, stepped = _cluster(roles=roles), _cluster(roles=roles)
    for a in (whole, stepped):  # binding: eng may take 150 cpus at most, sales is guaranteed 100
        a.update_quota("eng", RoleQuota(limits={"cpus": 150_000}))
        a.update_quota("sales", RoleQuota(guarantees={"cpus": 100_000}))
    one = whole.allocate(0.0)
    built.clear()
    run = stepped.begin(0.0)
    steps = []
    while not run.done:
        steps.append(stepped.step(run, 10))
    assert _decisions(one) == _decisions([x for s in steps for x in s])
    assert len(built) == 1  # one QuotaCycle for the whole run: nothing moved between its steps
    assert sum(x.resources.scalar("cpus") for x in one if x.role == "eng") <= 150

    for x in [x for st in steps for x in st][:60]:  # something free again for a second cycle
        stepped.recover(x.framework_id, x.agent_id, x.resources, role=x.role)
    built.clear()
    run = stepped.begin(1.0)
    stepped.step(run, 10)
    got = stepped.step(run, 10)
    while not got and not run.done:
        got = stepped.step(run, 10)
    before = len(built)
    x = got[0]
    stepped.recover(x.framework_id, x.agent_id, x.resources, role=x.role)  # something moved
    stepped.step(run, 10)
    assert len(built) == before + 1

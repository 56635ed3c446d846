"""The master at scale: what keeps its event loop short and its work proportional.

Each test drives the real core (the harness) or the real read side; none depends on the
machine's speed: they assert what is done (slices, frames, polls, renders), not how fast.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import aiohttp
import msgspec

from mesos_nb.master import offers as offers_mod
from mesos_nb.master.feed import UtilizationFeed
from mesos_nb.master.harness import Harness
from mesos_nb.master.readonly import ReadOnlyViews
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol import state as sv
from mesos_nb.protocol.resources import Resources


def _accept(offer: m.Offer, n: int, prefix: str = "t") -> m.Accept:
    res = Resources.parse("cpus:0.01;mem:1").to_proto()
    infos = [m.TaskInfo(name="t", task_id=m.ID(value=f"{prefix}{i}"), agent_id=offer.agent_id, resources=res,
                        command=m.CommandInfo(value="true")) for i in range(n)]
    return m.Accept(offer_ids=[offer.id], operations=[m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos))],
                    filters=m.Filters(refuse_seconds=0))


def _run_tasks(out: list) -> list[str]:
    return [e.msg.task.task_id.value for e in out if type(e.msg) is ch.RunTask] if out else []


def test_a_big_accept_runs_in_slices_and_ends_as_the_one_step_accept_does():
    h = Harness.build(agents=1, frameworks=1, resources="cpus:100;mem:10000")
    fw = h.frameworks[0]
    offer = h.allocate()[fw.id][0]
    steps = h.core.accept_steps(fw.id, _accept(offer, 1200), h.now)
    sent: list[list[str]] = []
    for _ in steps:  # the shell flushes and lets its loop run at each step
        sent.append(_run_tasks([e for e in h.drain() if hasattr(e, "msg")]))
    sent.append(_run_tasks([e for e in h.drain() if hasattr(e, "msg")]))
    k = offers_mod.ACCEPT_SLICE
    assert [len(s) for s in sent] == [k] * (1200 // k) + ([1200 % k] if 1200 % k else [])
    assert [t for s in sent for t in s] == [f"t{i}" for i in range(1200)]  # in order
    assert len(fw.tasks) == 1200
    # what was not used went back to the allocator: the rest of the agent is offered again
    left = h.allocate()[fw.id][0]
    assert Resources.from_proto(left.resources).scalar("cpus") == 88.0


def test_an_agent_lost_between_slices_gets_the_rest_dropped_not_launched():
    h = Harness.build(agents=1, frameworks=1, resources="cpus:100;mem:10000")
    fw = h.frameworks[0]
    offer = h.allocate()[fw.id][0]
    steps = h.core.accept_steps(fw.id, _accept(offer, 1200), h.now)
    next(steps)
    h.drain()
    h.core.channel_lost(h.channel, h.now)  # the agent's channel breaks mid-ACCEPT
    h.drain()
    for _ in steps:
        pass
    out = h.drain()
    assert _run_tasks([e for e in out if hasattr(e, "msg")]) == []
    dropped = [e.event.update.status for e in out
               if getattr(e, "event", None) is not None and e.event.type == "UPDATE"]
    k = offers_mod.ACCEPT_SLICE
    assert len(dropped) == 1200 - k and {s.reason for s in dropped} == {"REASON_AGENT_DISCONNECTED"}
    assert len(fw.tasks) == k


def test_a_framework_removed_between_slices_stops_the_accept():
    h = Harness.build(agents=1, frameworks=1, resources="cpus:100;mem:10000")
    fw = h.frameworks[0]
    offer = h.allocate()[fw.id][0]
    steps = h.core.accept_steps(fw.id, _accept(offer, 1200), h.now)
    next(steps)
    h.core.teardown(fw.id, h.now)
    h.drain()
    assert list(steps) == []  # nothing more is launched for a framework that is gone
    assert not any(type(getattr(e, "msg", None)) is ch.RunTask for e in h.drain())


def test_offers_are_indexed_by_agent_and_a_lost_channel_rescinds_exactly_its_agents_offers():
    h = Harness.build(agents=4, frameworks=2, resources="cpus:2;mem:1024")
    other = object()
    kept = [h.add_agent(channel=other).id for _ in range(2)]
    offers = h.allocate()
    made = {o.id.value: o.agent_id.value for fo in offers.values() for o in fo}
    assert set(made) == set(h.core.offers) and len(made) == 6
    assert {oid: aid for aid, per in h.core.agent_offers.items() for oid in per} == made
    out = h.lose_channel()
    rescinded = {e.event.rescind.offer_id.value for e in out
                 if getattr(e, "event", None) is not None and e.event.type == "RESCIND"}
    assert rescinded == {oid for oid, aid in made.items() if aid not in kept}
    assert set(h.core.offers) == {oid for oid, aid in made.items() if aid in kept}
    assert set(h.core.agent_offers) == set(kept)


def test_offer_protos_are_shared_between_equal_offers_and_equal_to_to_proto():
    r1 = Resources.parse("cpus:1;mem:128;ports:[31000-31005]")
    r2 = Resources.parse("cpus:1;mem:128;ports:[31000-31005]")
    p1 = offers_mod.offer_proto(r1, "*")
    assert p1 is offers_mod.offer_proto(r2, "*")
    assert msgspec.json.encode(p1) == msgspec.json.encode(r1.to_proto("*"))
    assert offers_mod.offer_proto(r1, "eng") is not p1
    assert msgspec.json.encode(offers_mod.offer_proto(r1, "eng")) == msgspec.json.encode(r1.to_proto("eng"))


def test_channel_frames_are_bounded_by_count_and_bytes_and_keep_order():
    msgs = [ch.Pong(seq=i) for i in range(2500)]
    frames = list(ch.encode_frames(msgs))
    assert [len(ch.decode_to_master(f)) for f in frames] == [1000, 1000, 500]
    assert [x.seq for f in frames for x in ch.decode_to_master(f)] == list(range(2500))
    big = [ch.ExecutorToFramework(agent_id="a", framework_id="f", executor_id="e", data=b"x" * 1000)
           for _ in range(100)]
    frames = list(ch.encode_frames(big, max_bytes=20_000))
    assert all(len(f) <= 20_000 for f in frames) and sum(len(ch.decode_to_master(f)) for f in frames) == 100


class _View:
    def __init__(self, core) -> None:
        self.core = core


async def test_the_feed_does_nothing_while_nobody_looks_and_polls_a_bounded_number_of_agents():
    h = Harness.build(agents=50, frameworks=1, resources="cpus:2;mem:1024")
    fw = h.frameworks[0]
    for i, offer in enumerate(h.allocate()[fw.id]):
        h.launch(fw, offer, f"t{i}")
    feed = UtilizationFeed(_View(h.core), interval=0.05, max_polls=8)  # type: ignore[arg-type]
    asked: list[str] = []

    async def fake_collect(agent_id: str, host: str, port: int) -> None:
        asked.append(agent_id)

    feed._collect_agent = fake_collect  # type: ignore[method-assign]
    built = []
    real_build = feed._build_steps
    feed._build_steps = lambda: built.append(1) or real_build()  # type: ignore[method-assign]
    feed.start()
    try:
        await asyncio.sleep(0.3)
        assert asked == [] and built == [] and feed.samples == 0  # nobody looked: no work
        snap = feed.snapshot()  # a reader: the feed starts sampling
        assert snap["agents_total"] == 50
        await _until(lambda: len(asked) >= 50)
        assert feed.samples >= 2
        # 8 agents a tick, round-robin: the first 50 polls are the 50 agents, once each
        assert len(set(asked[:50])) == 50
    finally:
        await feed.stop()


async def _loop_turns_during(aw):  # type: ignore[no-untyped-def]
    """Await ``aw`` while a coroutine counts the loop's turns: (its result, the turns)."""
    turns = 0
    stop = False

    async def spin() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    spinner = asyncio.get_running_loop().create_task(spin())
    try:
        return await aw, turns
    finally:
        stop = True
        await spinner


async def _until(pred, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


def _state_master() -> tuple[MasterServer, Harness]:
    h = Harness.build(agents=6, frameworks=2, resources="cpus:4;mem:4096;ports:[31000-31010]")
    fa, fb = h.frameworks
    offers = h.allocate()
    n = 0
    for fw in (fa, fb):
        for offer in offers.get(fw.id, []):
            n += 1
            h.launch(fw, offer, f"t{n}", resources="cpus:1;mem:64;ports:[31000-31001]")
    h.update("t1", "TASK_RUNNING")
    h.update("t2", "TASK_FINISHED", message="done")
    h.acknowledge("t2")
    h.allocate()  # what is left is offered again: outstanding offers in the state
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    return srv, h


async def test_state_render_in_slices_equals_the_one_step_render_and_reuses_task_fragments():
    srv, h = _state_master()
    views = ReadOnlyViews(srv)
    sliced = json.loads(await views._state.body())
    whole = json.loads(msgspec.json.encode(views.render_state()))
    assert sliced == whole
    assert any(fw["completed_tasks"] for fw in sliced["frameworks"])
    assert any(a["used_resources"]["ports"] for a in sliced["slaves"])
    assert any(fw["offers"] for fw in sliced["frameworks"]) and any(a["offered_resources"]["cpus"] for a in sliced["slaves"])
    encoded = []
    real = views._task
    views._task = lambda t: encoded.append(t.id) or real(t)  # type: ignore[method-assign]
    h.core.version += 1
    await views._state.body()
    assert encoded == []  # nothing changed in any task: every fragment reused
    h.update("t1", "TASK_FINISHED")
    await views._state.body()
    assert encoded == ["t1"]
    assert json.loads(await views._state.body()) == json.loads(msgspec.json.encode(views.render_state()))


async def test_state_render_yields_to_the_loop_on_a_big_state(monkeypatch):
    from mesos_nb.master import doc_render

    monkeypatch.setattr(doc_render, "STEP_BUDGET", 0.0)  # every record is a step
    monkeypatch.setattr(doc_render, "MAX_DEFER", 0.001)
    srv, h = _state_master()
    views = ReadOnlyViews(srv)
    (a, b), ticks = await _loop_turns_during(
        asyncio.gather(views._state.pieces(), views._state.pieces()))  # two requests: one render
    assert a is b and ticks >= 6  # the loop ran at least once per agent


async def test_a_framework_holding_an_offer_from_every_agent_is_rendered_in_steps(monkeypatch):
    """Its offers (10,000 at scale: tens of ms to encode) are not one step of the loop."""
    from mesos_nb.master import doc_render

    monkeypatch.setattr(doc_render, "STEP_BUDGET", 0.0)
    monkeypatch.setattr(doc_render, "MAX_DEFER", 0.001)
    h = Harness.build(agents=300, frameworks=1, resources="cpus:1;mem:128")
    assert len(h.allocate()[h.frameworks[0].id]) == 300
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    views = ReadOnlyViews(srv)
    ticks = 0
    seen: list[int] = []  # the loop's turn at each offer encoded
    real = views._offer
    monkeypatch.setattr(views, "_offer", lambda o: seen.append(ticks) or real(o))

    async def ticker() -> None:
        nonlocal ticks
        while len(seen) < 300:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.get_running_loop().create_task(ticker())
    doc = json.loads(await views._state.body())
    await t
    assert len(doc["frameworks"][0]["offers"]) == 300
    assert len(set(seen)) >= 4  # the loop ran between every few dozen offers


async def test_state_render_gives_way_to_ready_work_and_is_sent_in_chunks(monkeypatch):
    """A render step waits while other callbacks are ready (the scheduling path goes first);
    the document reaches the client whole although it is written a chunk at a time."""
    from mesos_nb.master import doc_render

    monkeypatch.setattr(doc_render, "STEP_BUDGET", 0.0)
    monkeypatch.setattr(doc_render, "MAX_DEFER", 5.0)
    monkeypatch.setattr(doc_render, "CHUNK", 1000)
    srv, h = _state_master()
    await srv.start()
    try:
        views = srv.views
        order: list[str] = []
        loop = asyncio.get_running_loop()
        render = loop.create_task(views._state.pieces())
        await asyncio.sleep(0)  # the render has started and paused after its first step

        def work(i: int) -> None:  # a chain of 200 steps, each scheduling the next (as a busy master's)
            order.append(f"work{i}")
            if i < 199:
                loop.call_soon(work, i + 1)

        loop.call_soon(work, 0)
        pieces = await render
        order.append("rendered")
        # the render (about ten steps) went on only when no other work was ready: the chain first
        assert order[-1] == "rendered" and len(order) == 201
        async with aiohttp.ClientSession() as s, s.get(srv.url + "/master/state") as r:
            got = await r.read()
        assert r.headers["Content-Length"] == str(len(got))
        assert got == b"".join(pieces)  # the same render (nothing changed), sent in chunks of 1,000 bytes
        assert json.loads(got) == json.loads(msgspec.json.encode(views.render_state()))
    finally:
        await srv.stop()


def test_gc_policy_freezes_survivors_after_a_middle_collection():
    code = textwrap.dedent("""
        import gc
        from mesos_nb.master import gcpolicy
        gcpolicy.install()
        assert gc.get_threshold() == gcpolicy.THRESHOLD
        walked = []

        def young(phase, info):  # the objects a collection is about to walk
            if phase == "start":
                walked.append(sum(len(gc.get_objects(g)) for g in range(info["generation"] + 1)))

        gc.callbacks.insert(0, young)
        keep = [[i] for i in range(300_000)]  # a burst of long-lived records
        gc.collect(1)
        gc.callbacks.remove(young)
        s = gcpolicy.stats()
        assert s["freezes"] >= 1 and s["frozen"] >= 300_000, s
        # no collection during the burst walked more than 10,000 objects (a step of ~10 ms of
        # CPU; (10_000, 5, 100) walked ~60,000 in its middle collections)
        assert max(walked[:-1]) <= 10_000, max(walked[:-1])
        gcpolicy.uninstall()
        assert gc.get_threshold() != gcpolicy.THRESHOLD
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_gc_policy_collects_the_young_generation_on_a_clock_under_churn():
    """Objects freed as fast as others are made (declines: offers die, filters are born) keep
    CPython's net allocation count near zero: no young collection comes, the young generation
    grows, and the one that finally comes walks it all. The policy's clock collects anyway."""
    code = textwrap.dedent("""
        import asyncio, gc, time
        from mesos_nb.master import gcpolicy

        async def main():
            gcpolicy.install(young_period=0.05)
            old = [[i] for i in range(20_000)]
            gc.collect()
            gc.freeze()
            for i in range(20_000):
                old[i] = [i]  # one born, one freed: the count does not move
            piled = len(gc.get_objects(0))
            assert piled >= 19_000, piled  # no automatic collection came
            deadline = time.monotonic() + 30
            while gcpolicy.stats()["clocked_young"] == 0:
                assert time.monotonic() < deadline, "no clocked young collection"
                await asyncio.sleep(0.01)
            assert len(gc.get_objects(0)) < 1_000, len(gc.get_objects(0))
            gcpolicy.uninstall()
            print("ok")

        asyncio.run(main())
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_an_event_cycle_looks_only_at_agents_whose_free_resources_grew():
    from mesos_nb.master.allocator import HierarchicalDRFAllocator

    a = HierarchicalDRFAllocator(seed=1)
    for i in range(5):
        a.add_agent(f"a{i}", Resources.parse("cpus:2;mem:1024"))
    a.add_framework("f1", ["*"])
    first = a.allocate_changed(0.0)  # a new framework: every agent
    assert sorted(x.agent_id for x in first) == [f"a{i}" for i in range(5)]
    assert a.allocate_changed(0.0) == []  # nothing changed: nothing looked at
    a.recover("f1", "a3", next(x.resources for x in first if x.agent_id == "a3"), refuse_seconds=0)
    seen: list[str] = []
    real = a.allocate
    a.allocate = lambda now, ids=None: seen.extend(ids or ["ALL"]) or real(now, ids)  # type: ignore[method-assign]
    again = a.allocate_changed(1.0)
    assert seen == ["a3"] and [x.agent_id for x in again] == ["a3"]
    a.add_framework("f2", ["*"])  # a framework-side change: the next event cycle is full
    seen.clear()
    a.allocate_changed(2.0)
    assert seen == ["ALL"]


def test_the_core_event_cycle_offers_what_a_full_cycle_would_after_a_decline():
    h = Harness.build(agents=3, frameworks=1, resources="cpus:2;mem:1024")
    fw = h.frameworks[0]
    offers = h.allocate()[fw.id]
    h.decline(fw, offers[:1], refuse_seconds=0)
    h.core.allocate(h.now, full=False)
    again = [e.event.offers.offers for e in h.drain()
             if getattr(e, "event", None) is not None and e.event.type == "OFFERS"]
    assert [o.agent_id.value for batch in again for o in batch] == [offers[0].agent_id.value]


async def test_a_big_accept_body_decodes_in_slices_to_the_same_call_and_a_bad_task_refuses_it():
    from mesos_nb.master import big_calls

    offer = m.Offer(id=m.ID(value="o1"), framework_id=m.ID(value="f"), agent_id=m.ID(value="a"), hostname="h")
    acc = _accept(offer, 6000)
    acc.operations.append(m.Operation(type="LAUNCH_GROUP", launch_group=m.LaunchGroup(
        executor=m.ExecutorInfo(executor_id=m.ID(value="e")), task_group=m.TaskGroupInfo(tasks=[]))))
    call = m.Call(type="ACCEPT", framework_id=m.ID(value="f"), accept=acc)
    body = m.encode(call)
    assert len(body) > big_calls.BIG_BODY
    got, ticks = await _loop_turns_during(big_calls.decode_call(body))
    assert ticks >= 6000 // big_calls.SLICE  # the loop ran while the tasks were decoded
    assert m.encode(got) == m.encode(m.decode(body, m.Call))
    bad = body.replace(b'"name":"t"', b'"name":7', 1)
    try:
        await big_calls.decode_call(bad)
        raise AssertionError("a task with a numeric name was accepted")
    except m.ProtocolError as e:
        assert "Expected `str`" in str(e)
    small = m.encode(m.Call(type="ACCEPT", framework_id=m.ID(value="f"), accept=_accept(offer, 2)))
    assert m.encode(await big_calls.decode_call(small)) == m.encode(m.decode(small, m.Call))


def test_a_big_reconcile_answers_in_slices_every_task_once():
    h = Harness.build(agents=1, frameworks=1, resources="cpus:100;mem:10000")
    fw = h.frameworks[0]
    offer = h.allocate()[fw.id][0]
    h.core.accept(fw.id, _accept(offer, 300), h.now)
    h.drain()
    for i in range(100):
        h.update(f"t{i}", "TASK_FINISHED")
        h.acknowledge(f"t{i}")  # 100 completed tasks, answered from the completed list
    asked = [m.ReconcileTask(task_id=m.ID(value=f"t{i}")) for i in range(300)]
    asked += [m.ReconcileTask(task_id=m.ID(value=f"ghost{i}")) for i in range(2200)]
    steps = h.core.reconcile_steps(fw.id, m.Reconcile(tasks=asked), h.now)
    per_step = [0]
    for _ in steps:
        per_step.append(0)
        per_step[-2] = len(h.drain())
    per_step[-1] = len(h.drain())
    assert per_step == [1000, 1000, 500]
    h.core.reconcile(fw.id, m.Reconcile(tasks=asked), h.now)
    states = [e.event.update.status.state for e in h.drain()]
    assert states.count("TASK_FINISHED") == 100 and states.count("TASK_STAGING") == 200
    assert states.count("TASK_LOST") == 2200  # not partition aware: unknown is TASK_LOST


async def test_a_big_reconcile_body_decodes_in_slices_to_the_same_call():
    from mesos_nb.master import big_calls

    rec = m.Reconcile(tasks=[m.ReconcileTask(task_id=m.ID(value=f"task-{i:06d}"), agent_id=m.ID(value="agent-1"))
                             for i in range(30000)])
    body = m.encode(m.Call(type="RECONCILE", framework_id=m.ID(value="f"), reconcile=rec))
    assert len(body) > big_calls.BIG_BODY
    assert m.encode(await big_calls.decode_call(body)) == m.encode(m.decode(body, m.Call))


def test_teardown_of_a_big_framework_gives_every_resource_back_at_once():
    h = Harness.build(agents=1, frameworks=2, resources="cpus:100;mem:10000")
    fa, fb = h.frameworks
    offers = h.allocate()
    offer = (offers.get(fa.id) or [None])[0]
    if offer is None:  # DRF gave the agent to the other framework first: swap
        fa, fb = fb, fa
        offer = offers[fa.id][0]
    h.core.accept(fa.id, _accept(offer, 1200), h.now)
    h.drain()
    calls = []
    real = h.core.allocator.recover
    h.core.allocator.recover = lambda *a, **k: calls.append(a) or real(*a, **k)  # type: ignore[method-assign]
    h.core.teardown(fa.id, h.now)
    h.drain()
    assert calls == []  # no recover per task: the allocator drops the framework whole
    assert h.core.allocator.available(offer.agent_id.value) == Resources.parse("cpus:100;mem:10000")
    again = h.allocate()[fb.id]
    assert Resources.from_proto(again[0].resources).scalar("cpus") == 100.0
    assert all(t.state == "TASK_KILLED" for t in list(h.core.completed_frameworks)[-1].completed_tasks)


def _offered(h: Harness) -> list[tuple[str, str, str]]:
    return sorted((o.agent_id, o.framework_id, str(o.resources)) for o in h.core.offers.values())


async def test_the_periodic_full_cycle_of_a_big_cluster_runs_in_slices_and_offers_every_agent():
    from mesos_nb.master import big_calls

    def build() -> tuple[Harness, MasterServer]:
        h = Harness.build(agents=2 * big_calls.ALLOC_SLICE + 10, frameworks=3, resources="cpus:1;mem:128")
        srv = MasterServer(MasterConfig(port=0))
        srv.core = h.core
        return h, srv

    one, _ = build()
    one.core.allocate(one.now)  # the same cycle in one step
    h, srv = build()
    runs = h.core.metrics["allocator/mesos/allocation_runs"]
    clock = iter(range(10**6))  # an injected clock: every loop step "takes" one second
    _, ticks = await _loop_turns_during(
        big_calls.allocate_in_slices(srv, clock=lambda: float(next(clock)), budget=0.5))
    assert h.core.metrics["allocator/mesos/allocation_runs"] - runs == 1  # one cycle ...
    chunks = len(h.core.agents) // big_calls.ALLOC_CHUNK
    assert ticks >= chunks  # ... in a loop step per allocator step: the loop ran between them
    assert {o.agent_id for o in h.core.offers.values()} == set(h.core.agents)  # every agent offered once
    assert len(h.core.offers) == len(h.core.agents)
    assert _offered(h) == _offered(one)  # who got what: as in the one-step cycle


async def test_a_sliced_cycle_runs_many_allocator_steps_per_loop_step_within_its_budget():
    from mesos_nb.master import big_calls

    h = Harness.build(agents=2 * big_calls.ALLOC_SLICE + 10, frameworks=3, resources="cpus:1;mem:128")
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    flushes = 0
    events: list[int] = []  # OFFERS events per loop step
    real = srv.flush

    def flush() -> None:
        nonlocal flushes
        flushes += 1
        events.append(sum(1 for e in h.core.out if getattr(getattr(e, "event", None), "type", "") == "OFFERS"))
        real()

    srv.flush = flush  # type: ignore[method-assign]
    now = [0.0]

    def clock() -> float:  # each allocator step "takes" 4 ms
        now[0] += 0.004
        return now[0]

    await big_calls.allocate_in_slices(srv, clock=clock, budget=0.02)
    steps = -(-len(h.core.agents) // big_calls.ALLOC_CHUNK) + 3  # (+ the steps that shuffle)
    assert steps // 5 <= flushes <= steps // 4 + 2  # ~five 4-ms steps per 20-ms loop step
    assert max(events) <= 3  # their offers in one OFFERS event per framework per loop step
    assert len(h.core.offers) == len(h.core.agents)


async def test_a_sliced_cycles_budget_covers_the_offers_events_it_makes():
    """A loop step of a sliced cycle is its allocator steps *and* the OFFERS events of their
    offers: once a loop step has measured what an event costs, the steps stop early enough that
    both fit the budget (before: 20 ms of steps, then 512 offers' events on top)."""
    from mesos_nb.master import big_calls, offers

    h = Harness.build(agents=1000, frameworks=3, resources="cpus:1;mem:128")
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    now = [0.0]
    step, make = h.core.allocator.step, offers.make_offers

    def timed_step(run, limit=None):  # an allocator step "takes" 1 ms ...
        now[0] += 0.001
        return step(run, limit)

    def timed_make(st, allocations) -> None:  # ... and each offer's event 0.2 ms
        now[0] += 0.0002 * len(allocations)
        make(st, allocations)

    spans: list[float] = []
    mark = [0.0]
    real = srv.flush

    def flush() -> None:  # one per loop step: what it took
        spans.append(now[0] - mark[0])
        mark[0] = now[0]
        real()

    h.core.allocator.step = timed_step  # type: ignore[method-assign]
    srv.flush = flush  # type: ignore[method-assign]
    try:
        offers.make_offers = timed_make  # type: ignore[assignment]
        await big_calls.allocate_in_slices(srv, clock=lambda: now[0], budget=0.02)
    finally:
        offers.make_offers = make  # type: ignore[assignment]
    assert len(h.core.offers) == len(h.core.agents)  # every agent offered
    one_step = 0.001 + 0.0002 * big_calls.ALLOC_CHUNK  # a step and its offers: the most it overruns
    assert max(spans[1:]) <= 0.02 + one_step, spans  # (was 16 steps, then 512 events: 0.118 s)


def test_an_agent_removed_while_its_cycle_runs_in_slices_gets_no_offer():
    from mesos_nb.master import big_calls

    h = Harness.build(agents=big_calls.ALLOC_SLICE + 10, frameworks=2, resources="cpus:1;mem:128")
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    gone: list[str] = []
    real = srv.flush

    def flush() -> None:  # after the first offers, an agent not offered yet goes away
        real()
        if not gone and h.core.offers:
            offered = {o.agent_id for o in h.core.offers.values()}
            gone.append(next(a for a in sorted(h.core.agents) if a not in offered))
            h.core.allocator.remove_agent(gone[0])
            del h.core.agents[gone[0]]

    srv.flush = flush  # type: ignore[method-assign]
    clock = iter(range(10**6))
    asyncio.run(big_calls.allocate_in_slices(srv, clock=lambda: float(next(clock)), budget=0.5))
    offered = [o.agent_id for o in h.core.offers.values()]
    assert gone and gone[0] not in offered
    assert sorted(offered) == sorted(h.core.agents)  # every other agent, once


async def test_an_event_cycle_over_many_agents_runs_in_slices_too():
    from mesos_nb.master import big_calls

    h = Harness.build(agents=big_calls.ALLOC_SLICE + 500, frameworks=0, resources="cpus:1;mem:128")
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    h.subscribe("late")  # a new framework: every agent is to be looked at again
    h.drain()
    runs = h.core.metrics["allocator/mesos/allocation_runs"]
    srv._allocate_now(full=False)  # what the shell runs 2 ms after the SUBSCRIBE
    assert h.core.metrics["allocator/mesos/allocation_runs"] == runs  # not in this step
    await srv._alloc_slices
    assert h.core.metrics["allocator/mesos/allocation_runs"] - runs == 1  # one cycle, in steps
    assert len(h.core.offers) == len(h.core.agents)
    if srv._alloc_handle is not None:
        srv._alloc_handle.cancel()


def test_task_resources_are_parsed_once_per_shape_and_bad_ones_still_refused():
    import pytest

    from mesos_nb.master.validation import task_resources
    from mesos_nb.protocol.resources import ResourceParseError

    protos = Resources.parse("cpus:0.5;mem:64;ports:[31000-31001]").to_proto("*")
    first = task_resources(protos)
    assert first == Resources.from_proto(protos)
    assert task_resources(Resources.parse("cpus:0.5;mem:64;ports:[31000-31001]").to_proto("*")) is first
    assert task_resources(Resources.parse("cpus:0.25").to_proto("*")) == Resources.parse("cpus:0.25")
    bad = [m.Resource(name="cpus", type="SCALAR", scalar=m.Scalar(value=-1.0))]
    with pytest.raises((ResourceParseError, ValueError)):
        task_resources(bad)
    with pytest.raises((ResourceParseError, ValueError)):
        task_resources(bad)  # a failure is not remembered as a success


# Fields the master renders only when set (as Mesos omits unset ones): absent, the view keeps None.
OMITTED_WHEN_UNSET = {f.name for doc in (sv.AgentDoc, sv.FrameworkDoc, sv.TaskDoc)
                      for f in msgspec.structs.fields(doc) if f.default is msgspec.UNSET}


def _same(view: msgspec.Struct, rendered: dict, where: str = "") -> None:
    """Every field of ``view`` is a key of ``rendered`` with the value it decoded from."""
    for f in view.__struct_fields__:
        if f in OMITTED_WHEN_UNSET and f not in rendered:
            assert getattr(view, f) is None, f"{where}{f}"
            continue
        assert f in rendered, f"{where}{f} is read by the client views but not rendered by the master"
        v = getattr(view, f)
        if isinstance(v, msgspec.Struct):
            _same(v, rendered[f], f"{where}{f}.")
        elif isinstance(v, list) and v and isinstance(v[0], msgspec.Struct):
            for i, (a, b) in enumerate(zip(v, rendered[f], strict=True)):
                _same(a, b, f"{where}{f}[{i}].")
        else:
            assert v == rendered[f], f"{where}{f}"


async def test_the_client_views_read_every_field_from_what_the_master_renders():
    """protocol/state.py's views (the client library's typed reads) and the master's renderers
    agree on one shape: a field renamed or dropped on either side fails here."""
    from aiohttp.test_utils import make_mocked_request

    srv, h = _state_master()
    views = ReadOnlyViews(srv)
    body = await views._state.body()
    _same(sv.decode(body, sv.MasterState), json.loads(body))
    for handler, view in ((views.frameworks, sv.FrameworksView), (views.slaves, sv.AgentsView),
                          (views.tasks, sv.TasksView)):
        resp = await handler(make_mocked_request("GET", "/master/x"))
        decoded = sv.decode(resp.body, view)
        _same(decoded, json.loads(resp.body))
        assert any(getattr(decoded, f) for f in view.__struct_fields__)  # not an empty document


async def test_a_snapshot_is_built_a_slice_per_loop_step_once_for_concurrent_readers(monkeypatch):
    """GET /master/utilization at 100,000 tasks built its snapshot in one 0.3 s step; it is now
    built a slice per loop step, the loop turning between, and readers arriving meanwhile share it."""
    from mesos_nb.master import feed as feed_mod

    monkeypatch.setattr(feed_mod, "STEP_ITEMS", 10)
    monkeypatch.setattr(feed_mod, "STEP_AGENTS", 5)
    h = Harness.build(agents=30, frameworks=1, resources="cpus:4;mem:4096")
    fw = h.frameworks[0]
    for i, offer in enumerate(h.allocate()[fw.id]):
        h.launch(fw, offer, f"t{i}")
    feed = UtilizationFeed(_View(h.core), collect=False)  # type: ignore[arg-type]
    built: list[int] = []
    real = feed._build_steps
    feed._build_steps = lambda: built.append(1) or real()  # type: ignore[method-assign]
    (a, b), turns = await _loop_turns_during(asyncio.gather(feed.fresh(None), feed.fresh(3)))
    assert built == [1]  # one build for both readers
    assert turns >= 30 // 5 + 30 // 10  # the loop ran between the slices
    assert a["agents_total"] == 30 and len(a["agents"]) == 30 and len(b["agents"]) == 3
    assert a["tasks"]["active"] == 30
    one_go = UtilizationFeed(_View(h.core), collect=False)._snapshot(None)  # type: ignore[arg-type]
    assert {k: v for k, v in a.items() if k != "time"} == {k: v for k, v in one_go.items() if k != "time"}

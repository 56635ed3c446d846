"""No step of the master's event loop does O(cluster) work for one client input: a DECLINE of
thousands of offers, an agent channel carrying thousands of agents going silent or breaking.
Each is checked by counting the work done per loop step, not by timing it."""

from __future__ import annotations

import asyncio
from itertools import pairwise

from aiohttp.test_utils import TestClient, TestServer

from mesos_nb.master import big_calls, frameworks, slices
from mesos_nb.master.effects import ToFramework
from mesos_nb.master.harness import Harness
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources


class _Watch:
    """A coroutine that takes a turn of the loop as often as the loop lets it and records
    ``probe()`` each time: what it sees between the steps of sliced work."""

    def __init__(self, probe) -> None:  # type: ignore[no-untyped-def]
        self.probe = probe
        self.seen: list[int] = []
        self.stop = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.stop:
            self.seen.append(self.probe())
            await asyncio.sleep(0)

    async def done(self) -> list[int]:
        self.stop = True
        await self.task
        return self.seen


def _server(h: Harness) -> MasterServer:
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    srv._alloc_handle = object()  # type: ignore[assignment]  # no allocation cycle meanwhile
    return srv


def _decline(offer_ids: list[str], refuse: float = 3600.0) -> m.Decline:
    return m.Decline(offer_ids=[m.ID(value=o) for o in offer_ids], filters=m.Filters(refuse_seconds=refuse))


def test_a_big_decline_is_done_in_steps_of_at_most_a_slice_of_offers_and_ends_as_one_decline():
    n = 2 * big_calls.DECLINE_SLICE + 37
    h = Harness.build(agents=n, frameworks=1, resources="cpus:1;mem:128")
    fw = h.frameworks[0]
    ids = [o.id.value for o in h.allocate()[fw.id]]
    assert len(ids) == n
    left = [len(h.core.offers)]
    for _ in big_calls.decline_steps(h.core, fw.id, _decline(ids), h.now):
        left.append(len(h.core.offers))
    steps = [a - b for a, b in pairwise(left)]
    assert len(steps) == 3 and max(steps) <= big_calls.DECLINE_SLICE and sum(steps) == n
    assert h.core.metrics["master/offers_declined"] == n
    assert h.allocate() == {}  # every offer declined with the call's filter: nothing offered again
    h.advance(3601)
    assert len(h.allocate()[fw.id]) == n


def test_a_framework_torn_down_between_decline_steps_ends_the_decline_quietly():
    h = Harness.build(agents=2 * big_calls.DECLINE_SLICE + 1, frameworks=1, resources="cpus:1;mem:128")
    fw = h.frameworks[0]
    ids = [o.id.value for o in h.allocate()[fw.id]]
    steps = big_calls.decline_steps(h.core, fw.id, _decline(ids), h.now)
    next(steps)
    h.core.teardown(fw.id, h.now)
    assert list(steps) == []  # no CallError for the rest: the framework's offers went with it
    assert not h.core.offers


async def test_the_scheduler_api_declines_thousands_of_offers_with_the_loop_running_between_slices():
    n = 3 * big_calls.DECLINE_SLICE
    h = Harness.build(agents=n, frameworks=1, resources="cpus:1;mem:128")
    fw = h.frameworks[0]
    ids = [o.id.value for o in h.allocate()[fw.id]]
    srv = _server(h)
    body = m.encode(m.Call(type="DECLINE", framework_id=m.ID(value=fw.id), decline=_decline(ids)))
    async with TestClient(TestServer(srv.app)) as client:
        watch = _Watch(lambda: len(h.core.offers))
        resp = await client.post("/api/v1/scheduler", data=body, headers={
            "Content-Type": "application/json", "Mesos-Stream-Id": fw.stream_id})
        seen = await watch.done()
    assert resp.status == 202
    assert not h.core.offers
    between = sorted({s for s in seen if 0 < s < n})  # what the loop saw while the call ran
    assert len(between) >= 2 and all(n - s <= big_calls.DECLINE_SLICE * (i + 1) for i, s in
                                      enumerate(sorted(between, reverse=True)))


async def test_a_silent_channel_of_thousands_of_agents_is_marked_unreachable_a_slice_per_loop_step():
    n = 3 * slices.AGENT_SLICE + 5
    h = Harness.build(agents=n, frameworks=1, resources="cpus:1;mem:128")
    other = h.add_agent("cpus:1;mem:128", channel=object())  # on another agent process
    srv = _server(h)
    watch = _Watch(lambda: len(h.core.unreachable))
    await srv._lose_channel(h.channel, "no answer to pings for 75s")  # type: ignore[arg-type]
    seen = await watch.done()
    assert len(h.core.unreachable) == n and set(h.core.agents) == {other.id}
    steps = [b - a for a, b in pairwise(seen) if b != a]
    assert len(steps) >= n // slices.AGENT_SLICE and max(steps) <= slices.AGENT_SLICE
    assert h.core.metrics["master/slaves_unreachable"] == n


async def test_a_broken_channel_disconnects_its_agents_in_slices_and_spares_one_that_came_back():
    n = 2 * slices.AGENT_SLICE + 5
    h = Harness.build(agents=n, frameworks=1, resources="cpus:1;mem:128")
    h.allocate()
    srv = _server(h)
    back = h.agents[-1]
    new_channel = object()

    def probe() -> int:
        down = sum(1 for a in h.core.agents.values() if not a.connected)
        if down and back.channel is h.channel:
            back.channel = new_channel  # re-registered on a new channel between two slices
        return down

    watch = _Watch(probe)
    await srv._lose_channel(h.channel, None)  # type: ignore[arg-type]
    seen = await watch.done()
    assert sorted(a.id for a in h.core.agents.values() if a.connected) == [back.id]
    assert all(a.disconnect_deadline is not None for a in h.core.agents.values() if not a.connected)
    assert {o.agent_id for o in h.core.offers.values()} == {back.id}  # the others' offers rescinded
    steps = [b - a for a, b in pairwise(seen) if b != a]
    assert len(steps) >= 2 and max(steps) <= slices.AGENT_SLICE


async def test_a_big_task_list_is_listed_a_window_per_loop_step_and_cut_as_in_one_pass(monkeypatch):
    from mesos_nb.master import task_blocks
    from mesos_nb.master.model import Task
    from mesos_nb.protocol.resources import Resources

    res = Resources.parse("cpus:1;mem:8")
    tasks = [Task(id=f"t{i}", framework_id="f", agent_id=f"a{i % 7}", name="t", role="*", resources=res,
                  info=m.TaskInfo(name="t", task_id=m.ID(value=f"t{i}"), agent_id=m.ID(value="a"), resources=[]))
             for i in range(3500)]
    encoded = 0

    def encode(t: Task) -> bytes:
        nonlocal encoded
        encoded += 1
        return t.id.encode()

    at_pause: list[int] = []

    async def pause() -> None:
        at_pause.append(encoded)

    monkeypatch.setattr(task_blocks, "WINDOW", 1000)
    tb = task_blocks.TaskBlocks(encode)
    tb.begin()
    blocks = await tb.blocks(tasks, True, pause)
    assert at_pause[:4] == [0, 0, 0, 0]  # 4 windows listed, a loop step each, before any block
    assert [len(b.tasks) for b in blocks] == [b - a for a, b in pairwise([0, *task_blocks.cut(tasks)])]
    assert [t for b in blocks for t in b.tasks] == tasks and encoded == len(tasks)


async def test_thousands_of_agents_coming_due_at_one_tick_expire_a_slice_per_loop_step():
    n = 3 * slices.AGENT_SLICE + 5
    h = Harness.build(agents=n, frameworks=1, resources="cpus:1;mem:128")
    h.lose_channel()  # all disconnected at once: all due at the same tick
    back = h.agents[-1]
    srv = _server(h)
    now = h.now + h.agent_reregister_timeout + 1

    def probe() -> int:
        if h.core.unreachable and not back.connected:
            back.connected = True  # re-registered between two slices
        return len(h.core.unreachable)

    watch = _Watch(probe)
    await big_calls.run_steps(srv, h.core.tick_steps(now))
    seen = await watch.done()
    assert len(h.core.unreachable) == n - 1 and list(h.core.agents) == [back.id]
    steps = [b - a for a, b in pairwise(seen) if b != a]
    assert len(steps) >= n // slices.AGENT_SLICE and max(steps) <= slices.AGENT_SLICE
    h.core.tick(now)  # nothing left for the next tick
    assert len(h.core.unreachable) == n - 1


# ---------------------------------------------------------------- removing a big framework
def _big_framework(agents: int = 30, with_tasks: int = 20, per_agent: int = 3, failover: float = 10.0,
                   resources: str = "cpus:4;mem:1024"):
    """A framework holding tasks on ``with_tasks`` agents (``per_agent`` each) and an offer of
    each other agent; a second framework, subscribed after, holding nothing."""
    h = Harness.build(agents=agents, frameworks=1, resources=resources, failover_timeout=failover)
    fw = h.frameworks[0]
    res = [m.Resource(name="cpus", type="SCALAR", scalar=m.Scalar(value=0.5))]
    for k, offer in enumerate(h.allocate()[fw.id][:with_tasks]):
        infos = [m.TaskInfo(name="t", task_id=m.ID(value=f"t{k}-{i}"), agent_id=offer.agent_id, resources=res,
                            command=m.CommandInfo(value="true")) for i in range(per_agent)]
        h.core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[
            m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos))], filters=m.Filters(refuse_seconds=0)), h.now)
    h.drain()
    other = h.subscribe("other")
    h.drain()
    return h, fw, other


def _small_slices(monkeypatch) -> tuple[int, int, int]:
    from mesos_nb.master import frameworks, offers
    monkeypatch.setattr(offers, "RESCIND_SLICE", 3)
    monkeypatch.setattr(frameworks, "TASK_SLICE", 7)
    monkeypatch.setattr(frameworks, "HOLDING_SLICE", 4)
    return 3, 7, 4


def _work(h: Harness, fw) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(offers, live tasks, agents it holds resources on) of ``fw``: what removing it undoes."""
    held = h.core.allocator._fws.get(fw.id)
    offers = sum(1 for o in h.core.offers.values() if o.framework_id == fw.id)
    return offers, len(fw.tasks), len(held.alloc) if held is not None else 0


def test_a_torn_down_framework_is_gone_at_once_and_undone_a_bounded_slice_per_step(monkeypatch):
    rescind, tasks, holdings = _small_slices(monkeypatch)
    h, fw, other = _big_framework()
    one_go, fw1, _ = _big_framework()
    one_go.core.teardown(fw1.id, one_go.now)
    assert _work(h, fw) == (10, 60, 30)
    steps = h.core.teardown_steps(fw.id, h.now)
    seen = [_work(h, fw)]
    next(steps)
    seen.append(_work(h, fw))
    # after its first step the framework is gone for every call and the registry, and no
    # allocation cycle between the steps offers it anything (the others get what is free)
    assert fw.id not in h.core.frameworks and fw.id in h.core.removed_framework_ids
    h.drain()
    assert fw.id not in [r.id for r in h.registry.recover().frameworks]
    offered = h.allocate()
    assert fw.id not in offered and other.id in offered
    for _ in steps:
        seen.append(_work(h, fw))
        if len(seen) % 3 == 0:
            h.allocate()
    seen.append(_work(h, fw))
    assert seen[-1] == (0, 0, 0) and fw.id not in h.core.allocator.framework_ids()
    done = [tuple(a - b for a, b in zip(x, y, strict=True)) for x, y in pairwise(seen)]
    assert max(d[0] for d in done) <= rescind and max(d[1] for d in done) <= tasks
    assert max(d[2] for d in done) <= max(holdings, rescind)  # a rescinded offer's agent is let go too
    assert len(done) >= 10 // rescind + 60 // tasks + 20 // holdings  # never one step for all of it
    # it ends as the one-step removal: every task killed, each agent told once, all resources back
    assert sorted((t.id, t.state) for t in h.core.completed_frameworks[-1].completed_tasks) == \
        sorted((t.id, t.state) for t in one_go.core.completed_frameworks[-1].completed_tasks)
    assert all(t.state == "TASK_KILLED" for t in h.core.completed_frameworks[-1].completed_tasks)
    h.drain()
    one_go.drain()
    shut = [x.agent_id for x in Harness.agent_msgs(h.log, ch.ShutdownFramework)]
    assert sorted(shut) == sorted(x.agent_id for x in Harness.agent_msgs(one_go.log, ch.ShutdownFramework))
    assert len(shut) == len(set(shut)) == 20
    full = Resources.parse("cpus:4;mem:1024")
    for a in h.agents:  # every agent's resources free, or offered to the other framework
        total = h.core.allocator.available(a.id)
        for o in h.core.offers.values():
            if o.agent_id == a.id:
                assert o.framework_id == other.id
                total = total + o.resources
        assert total == full, a.id


def test_an_agent_removed_while_its_framework_is_removed_in_steps_keeps_the_books_balanced(monkeypatch):
    _small_slices(monkeypatch)
    h, fw, other = _big_framework()
    steps = h.core.teardown_steps(fw.id, h.now)
    for _ in range(6):
        next(steps)  # offers rescinded, some tasks killed
    gone = h.agents[5]
    h.core.remove_agent(gone.id, h.now, "REASON_AGENT_REMOVED", "Agent shut down")
    list(steps)
    assert fw.id not in h.core.allocator.framework_ids()
    offered = h.allocate()[other.id]
    assert len(offered) == 29 and all(
        Resources.from_proto(o.resources) == Resources.parse("cpus:4;mem:1024") for o in offered)


async def test_a_teardown_over_the_scheduler_api_runs_a_slice_per_loop_step(monkeypatch):
    _small_slices(monkeypatch)
    h, fw, _ = _big_framework()
    srv = _server(h)
    body = m.encode(m.Call(type="TEARDOWN", framework_id=m.ID(value=fw.id)))
    async with TestClient(TestServer(srv.app)) as client:
        watch = _Watch(lambda: sum(_work(h, fw)))
        resp = await client.post("/api/v1/scheduler", data=body, headers={
            "Content-Type": "application/json", "Mesos-Stream-Id": fw.stream_id})
        seen = await watch.done()
    assert resp.status == 202
    assert fw.id not in h.core.frameworks and sum(_work(h, fw)) == 0
    between = {s for s in seen if 0 < s < 100}
    assert len(between) >= 10  # the loop ran between the steps, not once before and after


async def test_the_operator_teardown_runs_in_steps_too(monkeypatch):
    _small_slices(monkeypatch)
    h, fw, _ = _big_framework()
    srv = _server(h)
    body = {"type": "TEARDOWN", "teardown": {"framework_id": {"value": fw.id}}}
    async with TestClient(TestServer(srv.app)) as client:
        watch = _Watch(lambda: sum(_work(h, fw)))
        resp = await client.post("/api/v1", json=body)
        seen = await watch.done()
    assert resp.status == 200 and fw.id not in h.core.frameworks
    assert len({s for s in seen if 0 < s < 100}) >= 10


async def test_a_framework_whose_failover_timeout_passes_is_removed_a_slice_per_loop_step(monkeypatch):
    _small_slices(monkeypatch)
    h, fw, _ = _big_framework(failover=10.0)
    h.disconnect(fw)
    assert fw.id in h.core.frameworks and not fw.offers  # (offers go with the stream)
    srv = _server(h)
    watch = _Watch(lambda: sum(_work(h, fw)))
    await big_calls.run_steps(srv, h.core.tick_steps(h.now + 5))
    assert fw.id in h.core.frameworks  # not yet
    await big_calls.run_steps(srv, h.core.tick_steps(h.now + 11))
    seen = await watch.done()
    assert fw.id not in h.core.frameworks and sum(_work(h, fw)) == 0
    assert len({s for s in seen if 0 < s < 80}) >= 10


def test_a_stream_broken_with_failover_timeout_0_rescinds_and_removes_in_steps(monkeypatch):
    rescind, _, _ = _small_slices(monkeypatch)
    h, fw, _ = _big_framework(failover=0.0)
    steps = h.core.disconnect_steps(fw.id, fw.stream_id, h.now)
    seen = [_work(h, fw)]
    for _ in steps:
        seen.append(_work(h, fw))
    seen.append(_work(h, fw))
    assert fw.id not in h.core.frameworks and seen[-1] == (0, 0, 0)
    assert len(seen) >= 10 and all(a[0] - b[0] <= rescind for a, b in pairwise(seen))


def test_a_framework_back_between_the_steps_of_its_disconnect_is_not_removed(monkeypatch):
    _small_slices(monkeypatch)
    h, fw, _ = _big_framework(failover=0.0)
    steps = h.core.disconnect_steps(fw.id, fw.stream_id, h.now)
    next(steps)
    h.subscribe("fw0", framework_id=fw.id, failover_timeout=0.0)  # failed over to a new stream
    list(steps)
    assert h.core.frameworks.get(fw.id) is fw and fw.connected and len(fw.tasks) == 60
    assert fw.id in h.allocate()  # offered again: active in the allocator


def test_the_longest_step_of_removing_a_big_framework_is_a_small_part_of_the_whole():
    """In the CPU time of this thread, with the real slice sizes: 2,000 agents each holding
    an offer or 10 tasks of one framework (10,000 tasks)."""
    import gc
    import time

    def build():  # type: ignore[no-untyped-def]
        h, fw, _ = _big_framework(agents=2000, with_tasks=1000, per_agent=10)
        return h, fw

    h, fw = build()
    gc.disable()
    t0 = time.thread_time()
    h.core.teardown(fw.id, h.now)
    whole = time.thread_time() - t0
    gc.enable()
    h, fw = build()
    longest = 0.0
    steps = h.core.teardown_steps(fw.id, h.now)
    gc.disable()  # the master's own work, not whichever step a collection happens to fall in
    try:
        while True:
            t0 = time.thread_time()
            end = next(steps, StopIteration) is StopIteration
            longest = max(longest, time.thread_time() - t0)
            if end:
                break
    finally:
        gc.enable()
    assert fw.id not in h.core.allocator.framework_ids() and not fw.tasks
    assert longest < whole / 3, (longest, whole)


def test_an_agent_running_many_tasks_is_marked_unreachable_a_slice_of_tasks_per_step(monkeypatch):
    from mesos_nb.master import reachability
    monkeypatch.setattr(reachability, "TASK_SLICE", 7)
    h, fw, _ = _big_framework(agents=2, with_tasks=1, per_agent=50, resources="cpus:40;mem:1024")
    agent = next(a for a in h.agents if a.tasks)
    steps = h.core.mark_unreachable_steps(agent.id, h.now, "health check timed out")
    next(steps)
    assert agent.id not in h.core.agents and agent.id in h.core.unreachable  # at once
    assert agent.id not in h.core.allocator._agents  # offered nothing meanwhile
    seen = [len(fw.unreachable_tasks)]
    for _ in steps:
        seen.append(len(fw.unreachable_tasks))
    seen.append(len(fw.unreachable_tasks))
    assert seen[-1] == 50 and not fw.tasks
    assert len(seen) >= 50 // 7 and max(b - a for a, b in pairwise(seen)) <= 7



def test_an_agent_shutting_down_with_many_tasks_is_removed_at_once_and_its_tasks_end_a_slice_per_step(monkeypatch):
    from mesos_nb.master import reachability
    monkeypatch.setattr(reachability, "TASK_SLICE", 7)
    h, fw, _ = _big_framework(agents=2, with_tasks=1, per_agent=50, resources="cpus:40;mem:1024")
    agent = next(a for a in h.agents if a.tasks)
    steps = h.core.remove_agent_steps(agent.id, h.now, "REASON_AGENT_REMOVED", "Agent shut down")
    next(steps)
    assert agent.id not in h.core.agents and agent.id not in h.core.allocator._agents  # at once
    seen = [len(fw.tasks)]
    for _ in steps:
        seen.append(len(fw.tasks))
    seen.append(len(fw.tasks))
    assert seen[-1] == 0 and h.core.metrics["master/slave_removals"] == 1
    assert len(seen) >= 50 // 7 and max(a - b for a, b in pairwise(seen)) <= 7

def _many_tasks_on_a_silent_channel(monkeypatch):  # type: ignore[no-untyped-def]
    from mesos_nb.master import agents, reachability
    monkeypatch.setattr(reachability, "TASK_SLICE", 7)
    monkeypatch.setattr(agents, "TASK_SLICE", 7)
    h, fw, _ = _big_framework(agents=3, with_tasks=2, per_agent=25, resources="cpus:40;mem:1024")
    big, other_big, idle = h.agents
    srv = _server(h)
    watch = _Watch(lambda: len(fw.unreachable_tasks))
    return watch, srv, h, fw, big, other_big, idle


async def test_a_silent_channel_whose_agents_run_many_tasks_lets_them_go_a_slice_of_tasks_per_step(monkeypatch):
    watch, srv, h, fw, big, other_big, idle = _many_tasks_on_a_silent_channel(monkeypatch)
    await srv._lose_channel(h.channel, "no answer to pings for 75s")  # type: ignore[arg-type]
    seen = await watch.done()
    assert not h.core.agents and len(fw.unreachable_tasks) == 50 and not fw.tasks
    steps = [b - a for a, b in pairwise(seen) if b != a]
    assert len(steps) >= 50 // 7 and max(steps) <= 7
    assert h.core.metrics["master/tasks_unreachable"] == 50
    assert not h.core.allocator._agents and set(h.core.unreachable) == {big.id, other_big.id, idle.id}


def test_new_weights_apply_at_once_and_rescind_every_offer_a_slice_per_step(monkeypatch):
    rescind, _, _ = _small_slices(monkeypatch)
    h = Harness.build(agents=20, frameworks=2, resources="cpus:1;mem:128")
    h.allocate()
    steps = h.core.update_weights_steps({"web": 2.0})
    seen = [len(h.core.offers)]
    next(steps)
    assert h.core.allocator.weights()["web"] == 2.0
    seen.append(len(h.core.offers))
    for _ in steps:
        seen.append(len(h.core.offers))
    assert seen[0] == 20 and seen[-1] == 0
    assert len(seen) >= 20 // rescind and max(a - b for a, b in pairwise(seen)) <= rescind


async def test_marking_an_agent_of_many_tasks_gone_ends_them_a_slice_per_loop_step(monkeypatch):
    from mesos_nb.master import reachability
    monkeypatch.setattr(reachability, "TASK_SLICE", 7)
    h, fw, _ = _big_framework(agents=2, with_tasks=1, per_agent=50, resources="cpus:40;mem:1024")
    agent = next(a for a in h.agents if a.tasks)
    srv = _server(h)
    body = {"type": "MARK_AGENT_GONE", "mark_agent_gone": {"agent_id": {"value": agent.id}}}
    async with TestClient(TestServer(srv.app)) as client:
        watch = _Watch(lambda: len(fw.tasks))
        resp = await client.post("/api/v1", json=body)
        seen = await watch.done()
        unknown = await client.post("/api/v1", json={"type": "MARK_AGENT_GONE",
                                                     "mark_agent_gone": {"agent_id": {"value": "nope"}}})
    assert resp.status == 200 and unknown.status == 404
    assert agent.id in h.core.gone and agent.id not in h.core.agents and not fw.tasks
    assert h.core.metrics["master/tasks_gone_by_operator"] == 50
    assert len({s for s in seen if 0 < s < 50}) >= 50 // 7 - 1  # the loop ran between the slices


# ---------------------------------------------------------------- a failover SUBSCRIBE
def _failed_over(h: Harness, fw) -> m.Subscribe:  # type: ignore[no-untyped-def]
    info = m.FrameworkInfo(user="u", name=fw.info.name, failover_timeout=10.0, id=m.ID(value=fw.id))
    return m.Subscribe(framework_info=info)


def _unacked_everywhere(h: Harness, fw) -> None:  # type: ignore[no-untyped-def]
    for tid in list(fw.tasks):
        h.update(tid, "TASK_RUNNING")  # sent, never acknowledged


def test_a_failover_subscribe_is_told_subscribed_at_once_and_catches_up_a_slice_per_step(monkeypatch):
    rescind, tasks, _ = _small_slices(monkeypatch)
    h, fw, _ = _big_framework()
    _unacked_everywhere(h, fw)
    assert _work(h, fw)[:2] == (10, 60)
    got, rest = h.core.subscribe_steps(_failed_over(h, fw), "stream-new", h.now)
    first = h.drain()
    assert got is fw and fw.stream_id == "stream-new"
    assert [e.event.type for e in first if type(e) is ToFramework] == ["SUBSCRIBED"]
    assert _work(h, fw)[0] == 10  # the old instance's offers: not yet rescinded
    offers_left, resent = [_work(h, fw)[0]], [0]
    for _ in rest:
        out = h.drain()
        offers_left.append(_work(h, fw)[0])
        resent.append(sum(1 for e in out if type(e) is ToFramework and e.event.type == "UPDATE"))
    assert offers_left[-1] == 0 and sum(resent) == 60
    assert max(a - b for a, b in pairwise(offers_left)) <= rescind and max(resent) <= tasks
    assert len(resent) - 1 >= 10 // rescind + 60 // tasks  # never one step for all of it
    assert not any(e.event.type == "RESCIND" for e in h.log if type(e) is ToFramework)  # the new stream never had them


def test_a_framework_failing_over_again_between_the_steps_stops_the_first_catch_up(monkeypatch):
    _small_slices(monkeypatch)
    h, fw, _ = _big_framework()
    _unacked_everywhere(h, fw)
    _, rest = h.core.subscribe_steps(_failed_over(h, fw), "stream-a", h.now)
    h.drain()
    for _ in range(6):
        next(rest)  # offers gone, some updates re-sent on stream-a
    _, again = h.core.subscribe_steps(_failed_over(h, fw), "stream-b", h.now)
    h.drain()
    assert list(rest) == [] or all(
        type(e) is not ToFramework or e.event.type != "UPDATE" for e in h.drain())
    sent = 0
    for _ in again:
        sent += sum(1 for e in h.drain() if type(e) is ToFramework and e.event.type == "UPDATE")
    assert sent == 60  # the newest stream gets every unacknowledged update


async def test_a_failed_over_scheduler_gets_more_unacknowledged_updates_than_its_stream_may_buffer(monkeypatch):
    """Re-sent all at once, 600 updates overflowed a stream bounded to 64 KiB and the scheduler
    was disconnected right after SUBSCRIBED; paced, they arrive in order and it stays subscribed."""
    from mesos_nb.master import connections
    from mesos_nb.protocol import recordio

    monkeypatch.setattr(connections, "STREAM_LIMIT", 64 * 1024)
    monkeypatch.setattr(frameworks, "TASK_SLICE", 20)
    h, fw, _ = _big_framework(agents=40, with_tasks=40, per_agent=15, resources="cpus:8;mem:4096")
    _unacked_everywhere(h, fw)
    h.drain()
    srv = _server(h)
    body = m.encode(m.Call(type="SUBSCRIBE", framework_id=m.ID(value=fw.id), subscribe=_failed_over(h, fw)))
    async with TestClient(TestServer(srv.app)) as client:
        resp = await client.post("/api/v1/scheduler", data=body, headers={
            "Content-Type": "application/json", "Accept": "application/json"})
        assert resp.status == 200
        dec, events = recordio.Decoder(), []
        async with asyncio.timeout(30):
            while sum(1 for e in events if e.type == "UPDATE") < 600:
                chunk = await resp.content.readany()
                assert chunk, f"stream ended after {[e.type for e in events][:3]}… ({len(events)} events)"
                events += [m.decode(r, m.Event) for r in dec.feed(chunk)]
        resp.close()
    assert events[0].type == "SUBSCRIBED"
    updates = [e.update.status.task_id.value for e in events if e.type == "UPDATE"]
    assert sorted(updates) == sorted(fw.tasks) and len(set(updates)) == 600

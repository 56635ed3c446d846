"""No step of the master's event loop does O(cluster) work for one client input: a DECLINE of
thousands of offers, an agent channel carrying thousands of agents going silent or breaking.
Each is checked by counting the work done per loop step, not by timing it."""

from __future__ import annotations

import asyncio
from itertools import pairwise

from aiohttp.test_utils import TestClient, TestServer

from mesos_nb.master import big_calls
from mesos_nb.master.harness import Harness
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import messages as m


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
    n = 3 * big_calls.AGENT_SLICE + 5
    h = Harness.build(agents=n, frameworks=1, resources="cpus:1;mem:128")
    other = h.add_agent("cpus:1;mem:128", channel=object())  # on another agent process
    srv = _server(h)
    watch = _Watch(lambda: len(h.core.unreachable))
    await srv._lose_channel(h.channel, "no answer to pings for 75s")  # type: ignore[arg-type]
    seen = await watch.done()
    assert len(h.core.unreachable) == n and set(h.core.agents) == {other.id}
    steps = [b - a for a, b in pairwise(seen) if b != a]
    assert len(steps) >= n // big_calls.AGENT_SLICE and max(steps) <= big_calls.AGENT_SLICE
    assert h.core.metrics["master/slaves_unreachable"] == n


async def test_a_broken_channel_disconnects_its_agents_in_slices_and_spares_one_that_came_back():
    n = 2 * big_calls.AGENT_SLICE + 5
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
    assert len(steps) >= 2 and max(steps) <= big_calls.AGENT_SLICE


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
    n = 3 * big_calls.AGENT_SLICE + 5
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
    await big_calls.run_steps(srv, big_calls.expire_steps(h.core, now))
    seen = await watch.done()
    assert len(h.core.unreachable) == n - 1 and list(h.core.agents) == [back.id]
    steps = [b - a for a, b in pairwise(seen) if b != a]
    assert len(steps) >= n // big_calls.AGENT_SLICE and max(steps) <= big_calls.AGENT_SLICE
    h.core.tick(now)  # nothing left for the tick
    assert len(h.core.unreachable) == n - 1


def test_a_few_agents_due_are_left_to_the_tick():
    h = Harness.build(agents=3, frameworks=1)
    h.lose_channel()
    now = h.now + h.agent_reregister_timeout + 1
    assert list(big_calls.expire_steps(h.core, now)) == [] and len(h.core.agents) == 3
    h.core.tick(now)
    assert len(h.core.unreachable) == 3

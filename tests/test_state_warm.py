"""The master keeps ``/master/state`` and ``GET_STATE`` warm in the background: the first
request after a start encodes no task, and the background render gives way to other work."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import msgspec
from conftest import async_wait_for

from mesos_nb.master import warmer as warmer_mod
from mesos_nb.master.harness import Harness
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources


def _launch(h: Harness, fw: object, offer: m.Offer, names: list[str]) -> None:
    """One ACCEPT launching ``names`` (cpus:1;mem:32 each) on ``offer``."""
    res = Resources.parse("cpus:1;mem:32").to_proto()
    infos = [m.TaskInfo(name=n, task_id=m.ID(value=n), agent_id=offer.agent_id, resources=res,
                        command=m.CommandInfo(value="true")) for n in names]
    op = m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos))
    h.core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[op]), h.now)  # type: ignore[attr-defined]


def _cluster(agents: int = 20, per_agent: int = 10) -> tuple[MasterServer, Harness]:
    h = Harness.build(agents=agents, frameworks=2, resources=f"cpus:{per_agent};mem:{64 * per_agent}")
    n = 0
    offers = h.allocate()
    for fw in h.frameworks:
        for offer in offers.get(fw.id, []):
            names = [f"t{n + i + 1}" for i in range(per_agent)]
            n += len(names)
            _launch(h, fw, offer, names)
    for i in range(1, n + 1, 3):
        h.update(f"t{i}", "TASK_RUNNING")
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    return srv, h


def _encoded(srv: MasterServer) -> int:
    """Tasks the two renderers have encoded so far (on any path)."""
    op = srv.views.operator_state
    return srv.views._state.tasks.rendered + op.active.rendered + op.completed.rendered


def _warm(srv: MasterServer, warms: int) -> bool:
    """The warmer has finished ``warms`` warms and the last saw every task event so far (the
    allocation timer may move the core's version meanwhile: offers change no task)."""
    w = srv.views.warmer
    events = warmer_mod.task_events(srv.core)
    return w.warms >= warms and all(t.rendered()[1] == events for t in w.targets)


async def _get(srv: MasterServer) -> tuple[dict, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(srv.url + "/master/state") as r:
            assert r.status == 200
            state = json.loads(await r.read())
        async with s.post(srv.url + "/api/v1", json={"type": "GET_STATE"}) as r:
            assert r.status == 200
            get_state = json.loads(await r.read())
    return state, get_state


async def test_the_first_state_requests_after_a_start_encode_no_task(monkeypatch):
    monkeypatch.setattr(warmer_mod, "QUIET", 0.05)
    monkeypatch.setattr(warmer_mod, "POLL", 0.01)
    monkeypatch.setattr(warmer_mod, "MIN_CHANGES", 1)
    srv, h = _cluster()
    tasks = sum(len(fw.tasks) for fw in h.core.frameworks.values())
    assert tasks >= 200
    await srv.start()
    try:
        w = srv.views.warmer
        await async_wait_for(lambda: _warm(srv, 1), timeout=30)
        before = _encoded(srv)
        assert before >= 2 * tasks  # the background render encoded every task, for both documents
        assert w.held() > 0
        state, get_state = await _get(srv)
        assert _encoded(srv) == before  # the requests encoded nothing: every block was warm
        assert state == json.loads(msgspec.json.encode(srv.views.render_state()))
        assert len(get_state["get_state"]["get_tasks"]["tasks"]) == tasks

        # a change: warmed again in the background, its one task re-encoded there, not on request
        warms = w.warms
        h.update("t2", "TASK_FAILED", message="boom")
        await async_wait_for(lambda: _warm(srv, warms + 1), timeout=30)
        after = _encoded(srv)
        assert after == before + 2  # t2 once per document
        state, _ = await _get(srv)
        assert _encoded(srv) == after
        assert any(t["id"] == "t2" and t["state"] == "TASK_FAILED"
                   for fw in state["frameworks"] for t in fw["tasks"] + fw["completed_tasks"])
    finally:
        await srv.stop()


async def test_a_background_render_runs_only_while_no_other_work_is_ready(monkeypatch):
    """The warmer's steps wait, without a deadline, until the ready queue is empty; a request's
    render waits at most MAX_DEFER (the doc_render rule)."""
    from mesos_nb.master import doc_render

    monkeypatch.setattr(doc_render, "STEP_BUDGET", 0.0)  # every record is a step
    monkeypatch.setattr(doc_render, "MAX_DEFER", 0.0)  # a request's render would not wait at all
    srv, _h = _cluster(agents=6, per_agent=4)
    views = srv.views
    order: list[str] = []
    loop = asyncio.get_running_loop()
    warm = loop.create_task(views.warmer.warm_once())
    await asyncio.sleep(0)

    def work(i: int) -> None:  # a chain of 300 steps, each scheduling the next (a busy master's)
        order.append("work")
        if i < 299:
            loop.call_soon(work, i + 1)

    loop.call_soon(work, 0)
    busy = await warm
    order.append("warmed")
    assert order[-1] == "warmed" and len(order) == 301  # the whole chain ran before the warm went on
    assert busy > 0 and views.warmer.warms == 1


async def test_a_request_joining_a_background_render_turns_it_into_a_request_render(monkeypatch):
    """Past MAX_DEFER, a render a request waits for goes on although other work is ready."""
    from mesos_nb.master import doc_render

    monkeypatch.setattr(doc_render, "STEP_BUDGET", 0.0)
    monkeypatch.setattr(doc_render, "MAX_DEFER", 0.0)
    srv, _h = _cluster(agents=6, per_agent=4)
    views = srv.views
    loop = asyncio.get_running_loop()
    stop = False
    spun = 0

    def spin() -> None:  # other work ready at every turn, for ever
        nonlocal spun
        spun += 1
        if not stop:
            loop.call_soon(spin)

    warm = loop.create_task(views._state.warm())
    await asyncio.sleep(0)
    loop.call_soon(spin)
    try:
        pieces = await asyncio.wait_for(views._state.pieces(), 30)  # joins the warm, which then ends
        await asyncio.wait_for(warm, 30)
    finally:
        stop = True
    assert json.loads(b"".join(pieces)) == json.loads(msgspec.json.encode(views.render_state()))
    assert not views._state.pace.background


def test_a_warm_is_worth_it_only_after_enough_task_events():
    """Offers and declines (a REVIVE cycle: hundreds of changes of the counter) change no task:
    no warm for them; enough task events, or any change long after the last warm, are one;
    a new core (a new leader, its counters from zero) is always behind."""
    n = warmer_mod.MIN_CHANGES
    then = (100, 50, 0.0)
    assert not warmer_mod._behind(100, 50 + n, 1.0, then)  # nothing changed at all
    assert not warmer_mod._behind(700, 50 + n - 1, 1.0, then)
    assert warmer_mod._behind(101, 50 + n, 1.0, then)
    assert warmer_mod._behind(101, 50, warmer_mod.REFRESH, then)
    assert warmer_mod._behind(5, 3, 1.0, then)

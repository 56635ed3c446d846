"""The per-turn budget on HTTP handlers and agent-channel slices (``mesos_nb.master.turn_budget``):
counted in loop turns and pieces started on a fake clock, never timed."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import make_mocked_request
from conftest import async_wait_for

from mesos_nb.master.turn_budget import TurnBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Turns:
    """Counts the loop's turns: a callback that queues itself runs once a turn."""

    def __init__(self) -> None:
        self.n = 0
        self.loop = asyncio.get_running_loop()
        self.loop.call_soon(self._tick)
        self.stopped = False

    def _tick(self) -> None:
        self.n += 1
        if not self.stopped:
            self.loop.call_soon(self._tick)


def _handler_log(clock: FakeClock, turns: Turns, started: list[tuple[int, int]], cost: float):
    async def handler(request):
        i = int(request.path.rsplit("/", 1)[1])
        started.append((i, turns.n))
        clock.now += cost  # each handler's step costs `cost` seconds of the turn
        return i
    return handler


def _setup(cost: float):
    """A budget of 5 ms on a fake clock, the loop's turns counted, a handler costing ``cost``."""
    clock = FakeClock()
    turns = Turns()
    started: list[tuple[int, int]] = []
    return TurnBudget(budget=0.005, clock=clock), turns, started, _handler_log(clock, turns, started, cost)


def _request(i: int):
    return make_mocked_request("POST", f"/call/{i}")


async def test_600_requests_in_one_turn_are_spread_over_turns_within_the_budget_in_order():
    tb, turns, started, handler = _setup(0.0001)
    # all 600 become ready in the same turn, as when one select returns 600 requests
    tasks = [asyncio.ensure_future(tb.middleware(_request(i), handler)) for i in range(600)]
    results = await asyncio.gather(*tasks)
    turns.stopped = True
    assert results == list(range(600))
    assert [i for i, _ in started] == list(range(600))  # FIFO: no request passes another
    per_turn: dict[int, int] = {}
    for _, t in started:
        per_turn[t] = per_turn.get(t, 0) + 1
    # 0.005 s of budget at 0.0001 s a handler: 50 start in a window (the 51st finds it spent)
    assert max(per_turn.values()) <= 51
    assert len(per_turn) >= 12
    assert tb.deferred >= 540


async def test_requests_arriving_while_others_wait_queue_behind_them():
    tb, turns, started, handler = _setup(0.001)
    first = [asyncio.ensure_future(tb.middleware(_request(i), handler)) for i in range(30)]
    while len(started) < 8:  # some have run, most wait
        await asyncio.sleep(0)
    late = [asyncio.ensure_future(tb.middleware(_request(100 + i), handler)) for i in range(10)]
    await asyncio.gather(*first, *late)
    turns.stopped = True
    assert [i for i, _ in started] == list(range(30)) + [100 + i for i in range(10)]


async def test_a_cancelled_waiter_does_not_hold_up_the_others():
    tb, turns, started, handler = _setup(0.003)
    tasks = [asyncio.ensure_future(tb.middleware(_request(i), handler)) for i in range(6)]
    await asyncio.sleep(0)  # two start (the second finds 3 ms < 5 ms), four wait
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    turns.stopped = True
    assert isinstance(done[3], asyncio.CancelledError)
    assert [i for i, _ in started] == [0, 1, 2, 4, 5]


async def test_an_idle_master_runs_a_request_at_once():
    tb, turns, started, handler = _setup(0.0001)
    for i in range(3):  # one at a time, each in a later turn: never deferred
        await tb.middleware(_request(i), handler)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    turns.stopped = True
    assert tb.deferred == 0


async def test_a_health_check_is_answered_at_once_while_a_burst_waits():
    tb, turns, started, handler = _setup(0.001)
    burst = [asyncio.ensure_future(tb.middleware(_request(i), handler)) for i in range(40)]
    while len(started) < 5:  # the window is spent, the rest of the burst waits its turns
        await asyncio.sleep(0)
    assert tb._waiting

    async def health(request):
        return "ok"

    for path in ("/health", "/master/health"):
        waited = tb.deferred
        assert await tb.middleware(make_mocked_request("GET", path), health) == "ok"
        assert tb.deferred == waited  # not queued behind the burst
    await asyncio.gather(*burst)
    turns.stopped = True


async def test_a_frame_keeps_its_place_in_line_for_its_later_slices():
    """A frame of 500 messages starts, then 30 calls arrive: the frame's later slices (each
    in a turn of its own: 10 ms spends the budget) go before the calls that came after it,
    as the frame's messages arrived first; the calls then start in their order."""
    tb, turns, started, handler = _setup(0.001)
    clock = tb.clock
    order: list[str] = []

    async def read_frame() -> None:
        place = None
        for i in range(500):
            if not i % 100:
                place = await tb.admit(place)
                order.append(f"slice{i // 100}")
            clock.now += 0.0001

    async def call(request):
        order.append(f"call{await handler(request)}")

    frame = asyncio.ensure_future(read_frame())
    while not order and not frame.done():
        await asyncio.sleep(0)
    calls = [asyncio.ensure_future(tb.middleware(_request(i), call)) for i in range(30)]
    await asyncio.gather(frame, *calls)
    turns.stopped = True
    assert order == [f"slice{k}" for k in range(5)] + [f"call{i}" for i in range(30)]


async def test_a_frame_gets_a_bounded_head_start_over_the_calls_waiting():
    """300 calls wait their turns when a frame comes: with a head start of 128 places the
    frame's slices go before the last 128 calls that came before it, never before the others."""
    tb, turns, started, handler = _setup(0.001)
    clock = tb.clock
    order: list[str] = []

    async def call(request):
        order.append(f"call{await handler(request)}")

    async def read_frame() -> None:
        place = None
        for i in range(300):
            if not i % 100:
                place = await tb.admit(place, ahead=128)
                order.append(f"slice{i // 100}")
            clock.now += 0.0001

    calls = [asyncio.ensure_future(tb.middleware(_request(i), call)) for i in range(300)]
    while not order:
        await asyncio.sleep(0)
    frame = asyncio.ensure_future(read_frame())
    await asyncio.gather(frame, *calls)
    turns.stopped = True
    first = order.index("slice0")
    assert order[first:first + 3] == ["slice0", "slice1", "slice2"]
    assert order[:first] == [f"call{i}" for i in range(first)]  # the calls in their order
    assert first in (300 - 128, 300 - 128 + 1)  # (the frame may share the 172nd call's place)


async def test_cheap_calls_after_a_costly_slice_soon_fill_the_turns_again():
    """A 10 ms channel slice spends a window on its own; the 400 cheap calls (0.1 ms) waiting
    behind it must not then go two a turn: the turns wake more while windows close with budget
    left, and the calls are done in a few dozen turns, not two hundred."""
    tb, turns, started, handler = _setup(0.0001)
    clock = tb.clock

    async def slice_of_a_frame() -> None:
        await tb.admit()
        clock.now += 0.010

    t0 = turns.n
    first = asyncio.ensure_future(slice_of_a_frame())  # ready in the same turn as the calls
    calls = [asyncio.ensure_future(tb.middleware(_request(i), handler)) for i in range(400)]
    await asyncio.gather(first, *calls)
    turns.stopped = True
    assert [i for i, _ in started] == list(range(400))
    assert max(t for _, t in started) - t0 < 40, max(t for _, t in started) - t0


def test_the_master_app_bounds_its_handlers_per_turn():
    from mesos_nb.master.server import MasterConfig, MasterServer

    srv = MasterServer(MasterConfig(port=0))
    assert any(isinstance(getattr(mw, "__self__", None), TurnBudget) for mw in srv.app.middlewares)



async def test_a_real_server_under_a_burst_starts_at_most_a_budget_of_handlers_a_turn():
    """Real sockets, real clock: 100 requests wait in their sockets while the loop is held, so
    one select returns them all. Each handler holds the loop at least 0.5 ms, so no turn may
    start more than 5 ms / 0.5 ms + 1 of them, however fast the machine."""
    import socket
    import threading
    import time

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    tb = TurnBudget(budget=0.005)
    turns = Turns()
    per_turn: dict[int, int] = {}

    async def handler(request):
        per_turn[turns.n] = per_turn.get(turns.n, 0) + 1
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.0005:
            pass
        return web.Response(text="ok")

    app = web.Application(middlewares=[tb.middleware])
    app.router.add_get("/", handler)
    async with TestServer(app) as server:
        socks = [socket.create_connection((server.host, server.port)) for _ in range(100)]
        await async_wait_for(lambda: len(server.runner.server.connections) == 100, timeout=10)
        held, sent = threading.Event(), threading.Event()

        def client() -> None:
            held.wait(10)
            for c in socks:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sent.set()

        def hold_the_loop() -> None:  # the loop is busy while every request arrives
            held.set()
            sent.wait(10)

        th = threading.Thread(target=client)
        th.start()
        asyncio.get_running_loop().call_soon(hold_the_loop)
        answers = []
        for c in socks:
            answers.append(await asyncio.to_thread(c.recv, 4096))
            c.close()
        th.join()
    turns.stopped = True
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    assert sum(per_turn.values()) == 100
    assert max(per_turn.values()) <= 11


async def test_handler_starts_and_channel_slices_share_one_budget_per_turn_in_order():
    """40 HTTP calls and 3 agent channels with a frame of 300 messages each, all ready in one
    turn: every piece (a handler start, or a slice of 100 messages read through ``admit``)
    draws on the same 5 ms of a turn. No turn runs more than one 10 ms slice or 5 ms of
    handlers plus one more piece; each channel's messages are handled in order, none lost."""
    tb, turns, started, handler = _setup(0.001)
    clock = tb.clock
    handled: list[tuple[int, int, int]] = []  # (channel, message, turn)

    async def read_channel(c: int, frame: list[int]) -> None:
        place = None
        for i, x in enumerate(frame):  # as the master's channel reader: a slice at a time
            if not i % 100:
                place = await tb.admit(place)
            handled.append((c, x, turns.n))
            clock.now += 0.0001  # 100 messages: 10 ms, twice the turn's budget

    calls = [asyncio.ensure_future(tb.middleware(_request(i), handler)) for i in range(40)]
    chans = [asyncio.ensure_future(read_channel(c, list(range(300)))) for c in range(3)]
    await asyncio.gather(*calls, *chans)
    turns.stopped = True
    for c in range(3):
        assert [x for cc, x, _ in handled if cc == c] == list(range(300))
    assert [i for i, _ in started] == list(range(40))
    per_turn: dict[int, float] = {}
    for _, t in started:
        per_turn[t] = per_turn.get(t, 0.0) + 0.001
    for _, _, t in handled:
        per_turn[t] = per_turn.get(t, 0.0) + 0.0001
    # one window: up to 5 ms of work, then the piece that found it open (at most one slice)
    assert max(per_turn.values()) <= 0.005 + 0.010 + 1e-9
    slices_per_turn: dict[int, set[tuple[int, int]]] = {}
    for c, x, t in handled:
        slices_per_turn.setdefault(t, set()).add((c, x // 100))
    assert max(len(s) for s in slices_per_turn.values()) == 1  # a 10 ms slice spends the turn


async def test_the_master_reads_agent_channel_frames_a_budgeted_slice_per_turn():
    """A real master and two real agent channels, each sending one frame of 300
    registrations: the master reads them 100 at a time through its turn budget (a fake clock
    charged 0.1 ms per registration), so no turn registers more than one slice, and each
    channel's agents register in the order sent."""
    import aiohttp

    from mesos_nb.master.server import MasterConfig, MasterServer
    from mesos_nb.protocol import channel as ch
    from mesos_nb.protocol.resources import Resources

    srv = MasterServer(MasterConfig(port=0))
    clock = FakeClock()
    tb = next(mw.__self__ for mw in srv.app.middlewares if isinstance(getattr(mw, "__self__", None), TurnBudget))
    tb.clock = clock
    await srv.start()
    turns = Turns()
    seen: list[tuple[str, int]] = []  # (key, turn)
    real = srv.guard.register_agent

    def register_agent(core, reg, chan, now):
        seen.append((reg.key, turns.n))
        clock.now += 0.0001
        real(core, reg, chan, now)

    srv.guard.register_agent = register_agent
    res = Resources.parse("cpus:1;mem:128").to_proto()
    try:
        async with aiohttp.ClientSession() as s:
            url = f"ws://127.0.0.1:{srv.port}/api/v1/agent-channel"
            wss = [await s.ws_connect(url) for _ in range(2)]
            frames = [ch.encode_frame([ch.RegisterAgent(key=f"{c}-{i:03d}", hostname=f"h{c}-{i}", port=5051,
                                                        resources=res) for i in range(300)]).decode()
                      for c in range(2)]
            await asyncio.gather(*(ws.send_str(f) for ws, f in zip(wss, frames, strict=True)))
            await async_wait_for(lambda: len(seen) == 600, timeout=30)
            for ws in wss:
                await ws.close()
    finally:
        turns.stopped = True
        await srv.stop()
    for c in range(2):
        assert [k for k, _ in seen if k.startswith(f"{c}-")] == [f"{c}-{i:03d}" for i in range(300)]
    per_turn: dict[int, int] = {}
    for _, t in seen:
        per_turn[t] = per_turn.get(t, 0) + 1
    assert max(per_turn.values()) <= 100  # one slice a turn: 10 ms of fake work spends it

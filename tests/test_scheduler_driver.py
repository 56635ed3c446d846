"""The driver against a scripted fake master (aiohttp, in-process): the wire behaviour that a
real master cannot easily be made to show (odd chunking, silence, redirects, refusals)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from typing import Any

import pytest
from aiohttp import web
from conftest import async_wait_for, free_port, wait_for

from mesos_nb.protocol import recordio
from mesos_nb.protocol.messages import FrameworkInfo
from mesos_nb.scheduler import BlockingSchedulerDriver, MesosError, Scheduler, SchedulerDriver


def rec(event: dict[str, Any]) -> bytes:
    return recordio.encode(json.dumps(event).encode())


def subscribed(fid: str = "fw-1", hb: float = 15.0) -> dict[str, Any]:
    return {"type": "SUBSCRIBED", "subscribed": {"framework_id": {"value": fid}, "heartbeat_interval_seconds": hb}}


def update(task: str, state: str, uuid: bytes | None) -> dict[str, Any]:
    st: dict[str, Any] = {"task_id": {"value": task}, "state": state, "agent_id": {"value": "a1"}}
    if uuid is not None:
        st["uuid"] = base64.b64encode(uuid).decode()
    return {"type": "UPDATE", "update": {"status": st}}


OFFER = {"type": "OFFERS", "offers": {"offers": [{
    "id": {"value": "o1"}, "framework_id": {"value": "fw-1"}, "agent_id": {"value": "a1"},
    "hostname": "h", "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}]}]}}


class FakeMaster:
    """Answers SUBSCRIBE with ``script(n)`` (a list of events, or bytes to send raw), split into
    ``chunk``-byte pieces, then keeps the stream open (``hold``) or closes it."""

    def __init__(self, script=None, chunk: int = 0, hold: bool = True, subscribe_status: int = 200,
                 call_status: int = 202) -> None:
        self.script = script or (lambda n: [subscribed()])
        self.chunk = chunk
        self.hold = hold
        self.subscribe_status = subscribe_status
        self.call_status = call_status
        self.subscribes: list[dict[str, Any]] = []
        self.calls: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.stream_ids: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("type") == "SUBSCRIBE":
            self.subscribes.append(body)
            if self.subscribe_status != 200:
                return web.Response(status=self.subscribe_status, text="Framework has been removed")
            sid = f"stream-{len(self.subscribes)}"
            self.stream_ids.append(sid)
            resp = web.StreamResponse(headers={"Mesos-Stream-Id": sid, "Content-Type": "application/json"})
            await resp.prepare(request)
            items = self.script(len(self.subscribes))
            data = b"".join(i if isinstance(i, bytes) else rec(i) for i in items)
            step = self.chunk or len(data) or 1
            for i in range(0, len(data), step):
                await resp.write(data[i : i + step])
                if self.chunk:
                    await asyncio.sleep(0)
            if self.hold:
                with_timeout = asyncio.ensure_future(self.closing.wait())
                try:
                    await asyncio.wait_for(with_timeout, 30)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
            return resp
        self.calls.append((body, dict(request.headers)))
        if self.call_status != 202:
            return web.Response(status=self.call_status, text="Bad call: something is wrong\nmore")
        return web.Response(status=202)

    async def start(self) -> FakeMaster:
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.closing.set()
        if self.runner is not None:
            await self.runner.cleanup()


class Recorder(Scheduler):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def subscribed(self, driver, framework_id, master_info):
        self.events.append(("subscribed", framework_id))

    async def offers(self, driver, offers):
        self.events.append(("offers", [o.id.value for o in offers]))

    def update(self, driver, status):
        self.events.append(("update", status.task_id.value, status.state))

    def error(self, driver, message):
        self.events.append(("error", message))

    def disconnected(self, driver):
        self.events.append(("disconnected",))

    def heartbeat(self, driver):
        self.events.append(("heartbeat",))


FW = FrameworkInfo(user="tester", name="fake-test", failover_timeout=60.0)


@pytest.fixture
async def fake():
    masters: list[FakeMaster] = []

    async def make(**kw: Any) -> FakeMaster:
        m = await FakeMaster(**kw).start()
        masters.append(m)
        return m

    yield make
    for m in masters:
        await m.stop()


async def test_subscribe_byte_chunks_calls_carry_stream_id_and_acks_follow_callbacks(fake):
    order: list[str] = []

    class S(Recorder):
        async def update(self, driver, status):
            await asyncio.sleep(0.01)
            order.append(f"callback {status.state}")
            super().update(driver, status)

    m = await fake(
        script=lambda n: [subscribed(), {"type": "HEARTBEAT"}, OFFER,
                          update("t1", "TASK_RUNNING", b"u" * 16), update("t1", "TASK_FINISHED", None)],
        chunk=1,  # one byte per write: record boundaries never line up with chunks
    )
    s = S()
    d = SchedulerDriver(s, FW, f"127.0.0.1:{m.port}")
    assert await d.start() == "fw-1"
    assert d.connected and d.framework_id == "fw-1" and d.stream_id == "stream-1"
    await async_wait_for(lambda: len(s.events) >= 5)
    assert s.events[:5] == [("subscribed", "fw-1"), ("heartbeat",), ("offers", ["o1"]),
                            ("update", "t1", "TASK_RUNNING"), ("update", "t1", "TASK_FINISHED")]
    # implicit acknowledgement: only for the update carrying a uuid
    acks = await async_wait_for(lambda: [c for c, _ in m.calls if c["type"] == "ACKNOWLEDGE"])
    assert len(acks) == 1
    assert acks[0]["acknowledge"] == {"agent_id": {"value": "a1"}, "task_id": {"value": "t1"},
                                      "uuid": base64.b64encode(b"u" * 16).decode()}
    await d.decline(["o1"], refuse_seconds=30)
    await d.kill("t1")
    await d.reconcile(["t1", ("t2", "a1")])
    for body, headers in m.calls:
        assert headers["Mesos-Stream-Id"] == "stream-1"
        assert body["framework_id"] == {"value": "fw-1"}
    by_type = {b["type"]: b for b, _ in m.calls}
    assert by_type["DECLINE"]["decline"] == {"offer_ids": [{"value": "o1"}], "filters": {"refuse_seconds": 30.0}}
    assert by_type["KILL"]["kill"] == {"task_id": {"value": "t1"}}
    assert by_type["RECONCILE"]["reconcile"]["tasks"] == [
        {"task_id": {"value": "t1"}}, {"task_id": {"value": "t2"}, "agent_id": {"value": "a1"}}]
    assert m.subscribes[0]["subscribe"]["framework_info"]["name"] == "fake-test"
    assert "framework_id" not in m.subscribes[0]
    await d.stop()
    assert m.calls[-1][0]["type"] == "TEARDOWN"
    assert not d.connected


async def test_failover_stop_sends_no_teardown(fake):
    m = await fake()
    d = SchedulerDriver(Recorder(), FW, m.url)
    await d.start()
    await d.stop(failover=True)
    assert [c["type"] for c, _ in m.calls] == []


async def test_watchdog_resubscribes_with_the_framework_id_after_missed_heartbeats(fake):
    # heartbeat every 0.05 s, then silence: after 3 misses (0.15 s) the driver drops the stream
    m = await fake(script=lambda n: [subscribed("fw-9", hb=0.05)])
    s = Recorder()
    d = SchedulerDriver(s, FW, m.url, heartbeat_misses=3, backoff_max=0.05)
    await d.start()
    t0 = time.monotonic()
    await async_wait_for(lambda: len(m.subscribes) >= 2, timeout=5)
    assert time.monotonic() - t0 >= 0.1
    again = m.subscribes[1]
    assert again["framework_id"] == {"value": "fw-9"}
    assert again["subscribe"]["framework_info"]["id"] == {"value": "fw-9"}
    assert again["subscribe"]["framework_info"]["failover_timeout"] == 60.0
    await async_wait_for(lambda: d.stream_id == "stream-2" and d.connected)
    assert ("disconnected",) in s.events
    await d.stop()


async def test_stream_end_reconnects_with_backoff(fake):
    m = await fake(script=lambda n: [subscribed()], hold=False)
    s = Recorder()
    d = SchedulerDriver(s, FW, m.url, backoff_max=0.05)
    await d.start()
    await async_wait_for(lambda: len(m.subscribes) >= 3, timeout=5)
    assert s.events.count(("subscribed", "fw-1")) >= 2
    await d.stop()


async def test_redirect_to_the_leader(fake):
    leader = await fake()

    async def standby(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": f"//127.0.0.1:{leader.port}/api/v1/scheduler"})

    app = web.Application()
    app.router.add_post("/api/v1/scheduler", standby)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        d = SchedulerDriver(Recorder(), FW, f"127.0.0.1:{port}")
        await d.start()
        assert d.master == leader.url
        await d.revive()
        assert leader.calls[0][0] == {"type": "REVIVE", "framework_id": {"value": "fw-1"}, "revive": {}}
        await d.stop()
    finally:
        await runner.cleanup()


async def test_non_2xx_call_raises_mesos_error(fake):
    m = await fake(call_status=400)
    d = SchedulerDriver(Recorder(), FW, m.url)
    await d.start()
    with pytest.raises(MesosError) as e:
        await d.suppress()
    assert e.value.status == 400 and e.value.message == "Bad call: something is wrong"
    await d.stop()


async def test_calls_before_subscription_are_refused():
    d = SchedulerDriver(Recorder(), FW, "127.0.0.1:1")
    with pytest.raises(MesosError) as e:
        await d.revive()
    assert e.value.status == 403


async def test_unreachable_master_is_one_sentence_connection_error():
    port = free_port()
    d = SchedulerDriver(Recorder(), FW, f"127.0.0.1:{port}", start_timeout=0.5, backoff_max=0.1)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError) as e:
        await d.start()
    assert time.monotonic() - t0 < 3
    msg = str(e.value)
    assert f"127.0.0.1:{port}" in msg and "\n" not in msg and "within 0.5 s" in msg
    assert not d.running


async def test_refused_subscription_raises_mesos_error(fake):
    m = await fake(subscribe_status=400)
    d = SchedulerDriver(Recorder(), FW, m.url)
    with pytest.raises(MesosError) as e:
        await d.start()
    assert e.value.status == 400 and "removed" in e.value.message
    assert len(m.subscribes) == 1  # a 4xx is final, no retry loop


async def test_error_event_ends_the_driver(fake):
    m = await fake(script=lambda n: [subscribed(), {"type": "ERROR", "error": {"message": "Framework failed over"}}])
    s = Recorder()
    d = SchedulerDriver(s, FW, m.url, backoff_max=0.05)
    await d.start()
    await asyncio.wait_for(d.join(), 5)
    assert ("error", "Framework failed over") in s.events
    assert len(m.subscribes) == 1
    await d.stop()


async def test_callback_exceptions_do_not_kill_the_driver(fake):
    class Bad(Recorder):
        def offers(self, driver, offers):
            raise RuntimeError("boom")

    m = await fake(script=lambda n: [subscribed(), OFFER, update("t", "TASK_RUNNING", None)])
    s = Bad()
    d = SchedulerDriver(s, FW, m.url)
    await d.start()
    await async_wait_for(lambda: ("update", "t", "TASK_RUNNING") in s.events)
    assert d.connected
    await d.stop()


def test_blocking_driver_callbacks_get_the_blocking_driver_and_may_call_it():
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            m = await FakeMaster(script=lambda n: [subscribed(), OFFER]).start()
            holder["m"] = m
            holder["loop"] = asyncio.get_running_loop()
            holder["stop"] = asyncio.Event()
            ready.set()
            await holder["stop"].wait()
            await m.stop()

        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ready.wait(10)
    m: FakeMaster = holder["m"]
    seen: list[Any] = []

    class S(Scheduler):
        def offers(self, driver, offers):
            seen.append(driver)
            driver.decline([o.id for o in offers], refuse_seconds=5)  # from the loop thread: scheduled

    try:
        d = BlockingSchedulerDriver(S(), FW, m.url)
        assert d.start() == "fw-1"
        assert d.connected
        wait_for(lambda: any(c["type"] == "DECLINE" for c, _ in m.calls), timeout=5)
        assert seen == [d]
        d.reconcile()
        wait_for(lambda: any(c["type"] == "RECONCILE" for c, _ in m.calls), timeout=5)
        d.stop()
        assert m.calls[-1][0]["type"] == "TEARDOWN"
        assert d.join(1)
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        t.join(10)

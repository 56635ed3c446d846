"""The SDK's call sender (``mesos_nb.scheduler.sender``): aiohttp on a few kept-alive
connections, each answer to its own call, a timeout failing the call, answers chunked or with
``Connection: close``; and the driver's implicit acknowledgements of a burst of updates riding
on at most ``MAX_CONNECTIONS`` connections."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from conftest import async_wait_for
from test_scheduler_driver import FW, FakeMaster, Recorder, subscribed, update

from mesos_nb.scheduler import SchedulerDriver
from mesos_nb.scheduler.sender import ACK_WORKERS, MAX_CONNECTIONS, CallSender


class Echo:
    """An aiohttp server answering each POST with its body after ``delay(body)`` seconds,
    counting the connections it was sent on."""

    def __init__(self, delay=lambda body: 0.0) -> None:
        self.delay = delay
        self.peers: set = set()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.peers.add(request.transport.get_extra_info("peername"))
        body = await request.read()
        await asyncio.sleep(self.delay(body))
        return web.Response(status=202, body=body + b"/" + request.headers.get("Mesos-Stream-Id", "").encode())

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_calls_in_flight_at_once_share_a_few_connections_and_each_gets_its_own_answer():
    # the first calls are held longest, so later answers are ready first
    server = Echo(delay=lambda body: 0.05 if int(body) < MAX_CONNECTIONS else 0.0)
    async with server as url:
        sender = CallSender()
        try:
            answers = await asyncio.wait_for(asyncio.gather(
                *(sender.post(url, str(i).encode(), f"s{i}") for i in range(40))), 10)
            assert [a.body for a in answers] == [f"{i}/s{i}".encode() for i in range(40)]
            assert {a.status for a in answers} == {202}
            assert len(server.peers) == MAX_CONNECTIONS
            # idle connections are reused: no new connection for the next calls
            await asyncio.wait_for(asyncio.gather(*(sender.post(url, b"7", "s") for _ in range(3))), 10)
            assert len(server.peers) == MAX_CONNECTIONS
        finally:
            await sender.close()


async def test_queued_calls_run_on_a_few_workers_in_order():
    server = Echo()
    done: list[int] = []
    async with server as url:
        sender = CallSender()

        async def call(i: int) -> None:
            await sender.post(url, str(i).encode(), "s")
            done.append(i)

        try:
            for i in range(100):
                sender.submit(call(i))
            await async_wait_for(lambda: len(done) == 100, timeout=10)
            assert len(sender._workers) <= ACK_WORKERS < MAX_CONNECTIONS  # one connection left for awaited calls
            assert len(server.peers) <= ACK_WORKERS
            assert sorted(done) == list(range(100))
        finally:
            await sender.close()


async def _raw_server(answer) -> tuple[asyncio.Server, str]:
    """A bare TCP server: ``answer(reader, writer)`` writes whatever bytes the test needs."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return await reader.readexactly(length)


async def test_a_chunked_answer_with_connection_close_then_a_new_connection():
    peers: list = []

    async def answer(reader, writer):
        peers.append(writer.get_extra_info("peername"))
        first = await _read_request(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"5\r\nhello\r\n" + f"{len(first):x}\r\n".encode() + first + b"\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await _raw_server(answer)
    sender = CallSender()
    try:
        a = await asyncio.wait_for(sender.post(url, b"first", "s"), 10)
        assert (a.status, a.body) == (400, b"hellofirst")
        b = await asyncio.wait_for(sender.post(url, b"second", "s"), 10)
        assert (b.status, b.body) == (400, b"hellosecond")
        assert len(peers) == 2  # the closed connection was not reused
    finally:
        await sender.close()
        server.close()


async def test_an_answer_that_never_comes_fails_the_call_after_the_timeout():
    seen = asyncio.Event()

    async def answer(reader, writer):
        await _read_request(reader)
        seen.set()
        await asyncio.sleep(30)  # silent

    server, url = await _raw_server(answer)
    sender = CallSender(timeout=0.2)
    try:
        with pytest.raises(ConnectionError, match=url.removeprefix("http://")):
            await asyncio.wait_for(sender.post(url, b"{}", "s"), 10)
        assert seen.is_set()
    finally:
        await sender.close()
        server.close()


class CountingMaster(FakeMaster):
    """The fake master, noting the connection each call came on."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.call_peers: set = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        resp = await super().handle(request)
        if self.calls and self.calls[-1][1] is not None and resp.status == 202:
            self.call_peers.add(request.transport.get_extra_info("peername"))
        return resp


async def test_a_burst_of_updates_is_acknowledged_on_a_few_kept_alive_connections():
    """200 updates in one chunk: 200 implicit ACKNOWLEDGE calls, each its own POST as the v1
    API wants, carried by at most MAX_CONNECTIONS connections (aiohttp's pool opened a
    connection for each call in flight at once)."""
    n = 200
    m = await CountingMaster(script=lambda k: [subscribed()] + [
        update(f"t{i}", "TASK_RUNNING", i.to_bytes(16, "big")) for i in range(n)]).start()
    d = SchedulerDriver(Recorder(), FW, m.url)
    try:
        await d.start()

        def acked() -> list[str]:
            return [c["acknowledge"]["task_id"]["value"] for c, _ in m.calls if c["type"] == "ACKNOWLEDGE"]

        await async_wait_for(lambda: len(acked()) >= n, timeout=20)
        assert sorted(acked()) == sorted(f"t{i}" for i in range(n))
        assert all(h["Mesos-Stream-Id"] == "stream-1" and c["framework_id"] == {"value": "fw-1"} for c, h in m.calls)
        assert 1 <= len(m.call_peers) <= MAX_CONNECTIONS
    finally:
        await d.stop()
        await m.stop()


class RedirectsCalls(FakeMaster):
    """Streams events, but answers every other call with a 307 to ``leader`` (it stopped leading)."""

    leader = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if (await request.json()).get("type") == "SUBSCRIBE":
            return await super().handle(request)
        return web.Response(status=307, headers={"Location": f"//{self.leader}/api/v1/scheduler"})


async def test_a_call_answered_307_is_sent_to_the_leader_named():
    leader = await FakeMaster().start()
    old = RedirectsCalls(script=lambda k: [subscribed(), update("t1", "TASK_RUNNING", b"u" * 16)])
    old.leader = f"127.0.0.1:{leader.port}"
    await old.start()
    d = SchedulerDriver(Recorder(), FW, old.url)
    try:
        await d.start()
        await d.revive()  # awaited: followed before it returns
        await async_wait_for(lambda: {c["type"] for c, _ in leader.calls} >= {"REVIVE", "ACKNOWLEDGE"}, timeout=10)
        assert all(h["Mesos-Stream-Id"] == "stream-1" for _, h in leader.calls)
    finally:
        await d.stop(failover=True)
        await old.stop()
        await leader.stop()


async def test_a_call_after_close_fails_as_a_connection_error():
    async with Echo() as url:
        sender = CallSender()
        await sender.post(url, b"1", "s")
        await sender.close()
        with pytest.raises(ConnectionError, match="driver stopped"):
            await sender.post(url, b"2", "s")

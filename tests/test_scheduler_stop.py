"""``SchedulerDriver.stop()`` always returns, and quietly: a cancellation swallowed on the way
(by a user callback, or by ``asyncio.wait_for`` before Python 3.12 when an event arrives in the
same loop step as the cancel) must not leave it waiting for ever on a stream that stays open,
and a callback's call refused because of our own TEARDOWN is one log line, not a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import aiohttp
import pytest
from aiohttp import web
from conftest import async_wait_for
from test_scheduler_driver import FW, OFFER, FakeMaster, fake, subscribed  # noqa: F401 - the fixture

from mesos_nb.scheduler import Scheduler, SchedulerDriver


class EatsOneCancel(Scheduler):
    """Swallows the cancellation that stop() sends while it is in its callback, then returns."""

    def __init__(self) -> None:
        self.inside = asyncio.Event()
        self.cancelled = False

    async def subscribed(self, driver, framework_id, master_info):
        self.inside.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True  # user code that swallows it, as wait_for can before 3.12


class IgnoresCancel(Scheduler):
    """Never ends while the test holds it: every cancellation is ignored."""

    def __init__(self) -> None:
        self.inside = asyncio.Event()
        self.release = asyncio.Event()

    async def subscribed(self, driver, framework_id, master_info):
        self.inside.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue


async def stops_within(d: SchedulerDriver, timeout: float) -> None:
    # not asyncio.wait_for: cancelling a stop() that hangs need not make it raise
    stop = asyncio.ensure_future(d.stop(failover=True))
    done, _ = await asyncio.wait({stop}, timeout=timeout)
    assert done, f"stop() still waits after {timeout:g} s"
    stop.result()


async def test_stop_returns_when_a_callback_swallows_the_cancel(fake):  # noqa: F811
    # the fake master holds the stream open and silent (heartbeats every 15 s): main's read loop
    # went back to reading after the swallowed cancel and stop() waited for the stream's end
    m = await fake(script=lambda n: [subscribed(hb=15.0)])
    s = EatsOneCancel()
    d = SchedulerDriver(s, FW, m.url)
    await d.start()
    await asyncio.wait_for(s.inside.wait(), 10)
    await stops_within(d, 10)
    assert s.cancelled and not d.running and not d.connected


async def test_stop_is_bounded_when_a_callback_ignores_cancellation(fake, caplog):  # noqa: F811
    m = await fake(script=lambda n: [subscribed(hb=15.0)])
    s = IgnoresCancel()
    d = SchedulerDriver(s, FW, m.url)
    d.stop_timeout = 0.5
    await d.start()
    await asyncio.wait_for(s.inside.wait(), 10)
    try:
        with caplog.at_level(logging.ERROR, logger="mesos_nb.scheduler"):
            await stops_within(d, 10)
    finally:
        s.release.set()  # let the abandoned loop end before the test's event loop closes
    assert not d.connected
    assert "did not end within 0.5 s of stop()" in caplog.text
    assert "framework_id=fw-1" in caplog.text
    await async_wait_for(lambda: d._task is not None and d._task.done(), 10, message="loop ended")


class TearsDownSlowly(FakeMaster):
    """Holds its answer to TEARDOWN until ``release``; meanwhile a DECLINE is answered as the
    master answers it once the framework is gone."""

    def __init__(self) -> None:
        super().__init__(script=lambda n: [subscribed(), OFFER])
        self.release = asyncio.Event()
        self.torn_down = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = (await request.json()).get("type")
        if kind == "TEARDOWN":
            self.torn_down = True
            await self.release.wait()
        elif kind == "DECLINE" and self.torn_down:
            return web.Response(status=400, text="Framework cannot be found")
        return await super().handle(request)


class DeclinesLate(Scheduler):
    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.declined = asyncio.Event()

    async def offers(self, driver, offers):
        await self.go.wait()
        try:
            await driver.decline([o.id for o in offers])
        finally:
            self.declined.set()


async def test_a_call_refused_after_our_own_teardown_logs_one_line_and_no_traceback(caplog):
    # bench/launch_throughput.py printed a "Framework cannot be found" traceback this way
    m = await TearsDownSlowly().start()
    try:
        s = DeclinesLate()
        d = SchedulerDriver(s, FW, m.url)
        await d.start()
        with caplog.at_level(logging.INFO, logger="mesos_nb.scheduler"):
            stop = asyncio.ensure_future(d.stop())
            await async_wait_for(lambda: m.torn_down, 10, message="TEARDOWN sent")
            s.go.set()  # the offers callback declines while the teardown is under way
            await asyncio.wait_for(s.declined.wait(), 10)
            m.release.set()
            await asyncio.wait_for(stop, 10)
        refused = [r for r in caplog.records if "Framework cannot be found" in r.getMessage()]
        assert len(refused) == 1 and refused[0].levelno == logging.INFO, caplog.text
        assert "refused after stop()" in refused[0].getMessage()
        assert not [r for r in caplog.records if r.exc_info], caplog.text  # no traceback
    finally:
        await m.stop()


@pytest.mark.parametrize("wait_for_swallows", [sys.version_info < (3, 12)])
async def test_the_stream_read_is_cancelled_even_when_data_comes_with_the_cancel(wait_for_swallows):
    """The race behind the rare hang: data and the cancel in one loop step. ``asyncio.wait_for``
    before 3.12 returns the data and loses the cancel; the driver's read does not."""
    from aiohttp.base_protocol import BaseProtocol

    from mesos_nb.scheduler.driver import _read_chunk

    loop = asyncio.get_running_loop()

    async def race(read) -> str:
        ours, theirs = socket.socketpair()  # a connected transport under the stream, silent
        transport, protocol = await loop.connect_accepted_socket(lambda: BaseProtocol(loop), ours)
        try:
            content = aiohttp.StreamReader(protocol, 2**16, loop=loop)
            reader = asyncio.ensure_future(read(content))
            await async_wait_for(lambda: content._waiter is not None or reader.done(), 10, 0,
                                 message="the read waiting for data")
            content.feed_data(b"event")
            reader.cancel()  # in the same loop step as the data
            try:
                await reader
            except asyncio.CancelledError:
                return "cancelled"
            return "swallowed"
        finally:
            transport.close()
            theirs.close()

    assert await race(_read_chunk) == "cancelled"
    assert await race(lambda c: asyncio.wait_for(c.readany(), 30)) == ("swallowed" if wait_for_swallows else "cancelled")

"""Both ends of the utilization stream wait for their next item with a timeout (the master's SSE
handler: a keep-alive; the notebook widget: a look whether to stop) through QueueReader: a
wake-up that comes after timeouts still gets through, and a stream that ends leaves no get
waiting on its queue (``tests/test_queue_reader.py`` drives the timeout/put coincidence itself)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from conftest import async_wait_for
from test_dashboard import _snap

from mesos_nb.dashboards import widget
from mesos_nb.master import feed
from mesos_nb.master.server import MasterConfig, MasterServer


def _pending_gets() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks()
            if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Queue.get"]


async def test_sse_stream_after_keep_alives_gets_a_wake_up_and_ends_without_a_pending_get(monkeypatch):
    monkeypatch.setattr(feed, "KEEP_ALIVE", 0.02)  # every wait times out at once, many times over
    server = MasterServer(MasterConfig(port=0, allocation_interval=3600))
    await server.start()
    try:
        f = server.webui.feed
        lines: list[bytes] = []
        async with aiohttp.ClientSession() as s, s.get(server.url + "/master/utilization/stream") as r:
            async def read() -> None:
                async for line in r.content:
                    lines.append(line)

            reader = asyncio.get_running_loop().create_task(read())
            await async_wait_for(lambda: lines.count(b": keep-alive\n") >= 3, 10, message="keep-alives")
            events = sum(1 for x in lines if x.startswith(b"data: "))
            f._broadcast({})  # a wake-up for the get that outlived the timeouts
            await async_wait_for(lambda: sum(1 for x in lines if x.startswith(b"data: ")) > events, 10,
                                 message="the event after the wake-up")
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await async_wait_for(lambda: not f._subscribers, 10, message="the handler ends with its client")
        await async_wait_for(lambda: not _pending_gets(), 10, message=lambda: f"pending gets: {_pending_gets()}")
    finally:
        await server.stop()


async def test_widget_after_timeouts_takes_a_snapshot_and_closes_without_a_pending_get():
    widget.take_prebuilt()
    w = widget.DashboardWidget("http://127.0.0.1:9", initial=_snap(), check_every=0.01)
    looks: list[int] = []
    fed = asyncio.Event()

    def should_stop() -> bool:  # asked once per turn of run(): after each timeout
        looks.append(1)
        return w._closed

    async def read(queue: asyncio.Queue) -> None:  # stands for the SSE client
        await fed.wait()
        queue.put_nowait(_snap(time=1001.0))
        await asyncio.Event().wait()

    w.should_stop = should_stop  # type: ignore[method-assign]
    w._read = read  # type: ignore[method-assign]
    w.start()
    try:
        await async_wait_for(lambda: len(looks) >= 3, 10, message="timeouts")
        fed.set()
        await async_wait_for(lambda: w.updates == 1, 10, message="the snapshot after the timeouts")
        assert list(w.dashboard["timeseries"].source.data["time"]) == [1e6, 1.001e6]
    finally:
        task = w.task
        w.close()
        assert task is not None
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not _pending_gets(), _pending_gets()

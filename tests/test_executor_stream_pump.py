"""The executor event stream's pump (``agent/executor_api.py``): a cancellation that lands in
the same loop turn as a wake-up stops it (``asyncio.wait_for`` on Python < 3.12 swallowed
it and kept serving the stream), nothing queued is lost, and an idle stream gets HEARTBEATs.
The races are driven step by step on the event loop, with no timing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from mesos_nb.agent.executor_api import ExecutorStream, pump
from mesos_nb.protocol import recordio


def events(written: list[bytes]) -> list[str]:
    dec = recordio.Decoder()
    return [json.loads(r)["type"] for chunk in written for r in dec.feed(chunk)]


def reader(then: Callable[[list[bytes]], Awaitable[None]] | None = None):
    """The executor's end: what was written, and the ``write`` the pump calls (``then`` runs
    after each write, with everything written so far)."""
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)
        if then is not None:
            await then(written)

    return written, write


async def turns(n: int = 10) -> None:
    """Let the loop run ``n`` turns (nothing here waits on time or I/O)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_cancel_in_the_same_turn_as_a_wakeup_stops_the_pump():
    stream = ExecutorStream()
    written, write = reader()
    task = asyncio.create_task(pump(stream, write))
    await turns()  # blocked, waiting for the stream to wake
    assert not task.done()
    stream.send({"type": "MESSAGE"})  # the wait finishes...
    task.cancel()  # ...in the very turn in which the pump is cancelled
    await turns()
    assert task.cancelled()  # the old wait_for returned the wake-up and went on waiting
    assert stream.queue  # what was not written stays queued, not dropped


async def test_every_record_is_written_once_and_in_order():
    stream = ExecutorStream()
    gate = asyncio.Event()

    async def slowly(_: list[bytes]) -> None:
        await gate.wait()  # the executor reads slowly: records pile up meanwhile

    written, write = reader(slowly)
    task = asyncio.create_task(pump(stream, write))
    stream.send({"type": "SUBSCRIBED"})
    await turns()
    for t in ("LAUNCH", "KILL", "MESSAGE"):
        stream.send({"type": t})
    gate.set()
    await turns()
    stream.send({"type": "SHUTDOWN"})
    stream.close()
    await asyncio.wait_for(task, 10)
    assert events(written) == ["SUBSCRIBED", "LAUNCH", "KILL", "MESSAGE", "SHUTDOWN"]


async def test_an_idle_stream_gets_heartbeats_and_close_ends_it():
    stream = ExecutorStream()
    beat = asyncio.Event()

    async def count(written: list[bytes]) -> None:
        if len(events(written)) >= 2:
            beat.set()

    written, write = reader(count)
    task = asyncio.create_task(pump(stream, write, heartbeat=0.01))
    await asyncio.wait_for(beat.wait(), 10)
    stream.close()
    await asyncio.wait_for(task, 10)
    assert set(events(written)) == {"HEARTBEAT"}

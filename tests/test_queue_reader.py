"""QueueReader: a stream's wait for its next item, with a timeout, loses neither the item nor a
cancellation (what ``asyncio.wait_for(q.get(), t)`` can do), and leaves no task behind.

Driven deterministically: the loop's clock is frozen and moved by the test (the put and the
timeout fall due at the same instant), or a queue's ``get`` holds an item it has taken until
the test lets it go (the timeout fires while it holds it). No sleeps."""

from __future__ import annotations

import asyncio
import sys

import pytest

from mesos_nb.protocol.queue_reader import QueueReader


class HoldsWhatItTakes(asyncio.Queue):
    """A queue whose ``get`` has taken its item and then waits for ``release``: the window in
    which a timeout cancels a get that already took something."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = asyncio.Event()
        self.release = asyncio.Event()

    async def get(self):
        item = await super().get()
        self.taken.set()
        await self.release.wait()
        return item


def _others() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


async def test_an_item_taken_as_the_timeout_fires_is_handed_out_by_the_next_get():
    q = HoldsWhatItTakes()
    reader = QueueReader(q)
    waiting = asyncio.get_running_loop().create_task(reader.get(0.01))
    await asyncio.sleep(0)  # the reader has started its get (it runs next) and its timeout
    q.put_nowait("a")  # the get takes "a" on its first step and holds it: the timeout fires meanwhile
    with pytest.raises(asyncio.TimeoutError):
        await waiting
    assert q.taken.is_set() and q.empty()
    q.release.set()
    assert await reader.get(5.0) == "a"
    await reader.close()
    assert not _others()


async def test_wait_for_loses_that_item():
    """The hazard QueueReader exists for, under the same driving: the get is cancelled holding "a"."""
    q = HoldsWhatItTakes()
    waiting = asyncio.get_running_loop().create_task(asyncio.wait_for(q.get(), 0.01))
    await asyncio.sleep(0)
    q.put_nowait("a")
    with pytest.raises(asyncio.TimeoutError):
        await waiting
    assert q.taken.is_set() and q.empty()  # taken, never handed out: lost
    assert not _others()


@pytest.mark.parametrize("put_first", [True, False], ids=["put-scheduled-first", "timeout-scheduled-first"])
def test_a_put_due_at_the_instant_of_the_timeout_is_not_lost(put_first):
    """The stdlib loop's clock frozen: the put and the reader's timeout fall due at the same
    time, in either order of the timer heap; the item comes out of this get or of the next."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        now = [loop.time()]
        loop.time = lambda: now[0]  # type: ignore[method-assign]
        q: asyncio.Queue[str] = asyncio.Queue()
        reader = QueueReader(q)
        got: list[str] = []
        timeouts = 0
        if put_first:
            loop.call_later(1.0, q.put_nowait, "a")
        first = loop.create_task(reader.get(1.0))
        await asyncio.sleep(0)  # the reader starts waiting: its timeout is now on the heap
        if not put_first:
            loop.call_later(1.0, q.put_nowait, "a")
        now[0] += 1.0  # both fall due in the same loop turn
        try:
            got.append(await first)
        except asyncio.TimeoutError:
            timeouts += 1
            now[0] += 1.0
            got.append(await reader.get(1.0))
        await reader.close()
        assert not _others()
        return got + [f"timeouts={timeouts}"]

    loop = asyncio.SelectorEventLoop()  # the stdlib loop, whose clock a test may replace
    try:
        got = loop.run_until_complete(main())
    finally:
        loop.close()
    assert got[0] == "a", got


async def test_a_cancellation_arriving_with_the_item_is_not_swallowed():
    q: asyncio.Queue[str] = asyncio.Queue()
    reader = QueueReader(q)
    task = asyncio.get_running_loop().create_task(reader.get(30.0))
    await asyncio.sleep(0)  # waiting for the item
    q.put_nowait("a")  # the get is woken ...
    task.cancel()  # ... in the same loop turn as the reader is cancelled
    with pytest.raises(asyncio.CancelledError):
        await task
    await reader.close()
    assert not _others()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for is asyncio.timeout from 3.12 on")
async def test_wait_for_swallows_that_cancellation():
    """The hazard, under the same driving: the cancelled wait_for returns the item instead."""
    q: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.get_running_loop().create_task(asyncio.wait_for(q.get(), 30.0))
    await asyncio.sleep(0)
    q.put_nowait("a")
    task.cancel()
    assert await task == "a"  # the cancellation is gone


async def test_close_after_timeouts_leaves_no_pending_get():
    q: asyncio.Queue[str] = asyncio.Queue()
    reader = QueueReader(q)
    for _ in range(3):
        with pytest.raises(asyncio.TimeoutError):
            await reader.get(0.001)
    assert len(_others()) == 1  # one get, kept across the timeouts
    await reader.close()
    assert not _others()
    q.put_nowait("b")
    assert await reader.get(0.001) == "b"  # an item already there: handed out at once, no task made
    assert not _others()

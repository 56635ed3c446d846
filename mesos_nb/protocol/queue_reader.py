"""Waiting for a queue's next item with a timeout that can neither lose the item nor a cancellation.

A long-lived stream waits for its next item with a timeout (to write a keep-alive, or to look
whether it should stop) and then waits again. ``asyncio.wait_for(q.get(), t)`` does that by
cancelling the get when ``t`` passes, which has two holes: a get that had already taken its
item when the timeout fired loses it (the get is cancelled before it returns, as on Python
3.12+ for any queue, and on 3.11 for a queue whose ``get`` awaits after taking), and on 3.11 a
cancellation of the reader that arrives in the loop turn the item does is swallowed (the item
is returned instead). :class:`QueueReader` never cancels a get on a timeout: one get task
outlives the timeouts and the next :meth:`~QueueReader.get` waits on the same task, so an item
taken is always handed out; a cancellation reaches the reader as it is. :meth:`~QueueReader.close`
ends that task, so a stream that ends leaves none behind.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueReader(Generic[T]):
    """Takes items from one queue, each :meth:`get` at most ``timeout`` long; :meth:`close` at the end."""

    def __init__(self, queue: asyncio.Queue[T]) -> None:
        self.queue = queue
        self._get: asyncio.Task[T] | None = None  # the get under way, kept across timeouts

    async def get(self, timeout: float) -> T:
        """The next item; ``asyncio.TimeoutError`` after ``timeout`` seconds without one (the
        get goes on, and the item it takes is the next call's)."""
        if self._get is None:
            if not self.queue.empty():  # no wait, nothing to lose: no task either
                return self.queue.get_nowait()
            self._get = asyncio.get_running_loop().create_task(self.queue.get())
        done, _ = await asyncio.wait((self._get,), timeout=timeout)
        if not done:
            raise asyncio.TimeoutError
        task, self._get = self._get, None
        return task.result()

    async def close(self) -> None:
        """End the get under way, if any; an item it had already taken is dropped with the reader."""
        task, self._get = self._get, None
        if task is not None:
            task.cancel()
            await asyncio.wait((task,))  # not ``await task``: a cancellation of the caller stays its own
            if not task.cancelled():
                task.exception()  # taken an item after all: retrieved, dropped

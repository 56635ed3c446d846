"""A bounded outgoing event stream: the one queue every long-lived HTTP stream writes through.

A client that stops reading must not grow the server's memory. Each stream keeps at most
``limit`` bytes queued; a push past that marks the stream overflowed, drops its queue and
aborts the connection, so the reader sees a disconnect (as Mesos does for slow readers)
rather than a server that swells until it dies. Writes coalesce whatever is queued into one
``write`` so a burst of events costs one syscall.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from aiohttp import web

DEFAULT_LIMIT = 8 * 1024 * 1024


class BoundedStream:
    __slots__ = ("queue", "queued", "limit", "wake", "closed", "overflowed", "resp", "_request", "_taken")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.limit = limit
        self.wake = asyncio.Event()
        self.closed = False
        self.overflowed = False
        self.resp: web.StreamResponse | None = None
        self._request: web.Request | None = None
        self._taken = asyncio.Event()  # set when the writer has taken the queue (or the stream ended)

    async def taken(self) -> None:
        """Return once what is queued now has been handed to the connection (its previous
        write done) or the stream has ended: a producer of a long burst waits here between
        parts, so the burst follows the reader's pace instead of overflowing the bound."""
        while self.queue and not self.closed:
            self._taken.clear()
            await self._taken.wait()

    def push(self, data: bytes) -> bool:
        """Queue ``data``; False (and the stream closes) when the reader is too far behind."""
        if self.closed:
            return False
        if self.queued + len(data) > self.limit:
            self.overflowed = True
            self.close()
            return False
        self.queue.append(data)
        self.queued += len(data)
        self.wake.set()
        return True

    def finish(self) -> None:
        """End the stream once what is already queued is written (a graceful close)."""
        self.closed = True
        self.wake.set()
        self._taken.set()

    def close(self) -> None:
        """End the stream now, dropping what is queued."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self.queued = 0
        self.wake.set()
        self._taken.set()
        if self.overflowed and self._request is not None:
            transport: Any = self._request.transport
            if transport is not None:
                transport.abort()  # the pump may be stuck in a write the peer never drains

    async def pump(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Write queued data to ``resp`` until the stream closes or the peer goes away."""
        self.resp = resp
        self._request = request
        try:
            while True:
                if not self.queue:
                    if self.closed:
                        break
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                data = b"".join(self.queue)
                self.queue.clear()
                self.queued = 0
                self._taken.set()
                await resp.write(data)
        except (ConnectionResetError, asyncio.CancelledError, RuntimeError):
            pass
        finally:
            self.closed = True
            self.queue.clear()
            self.queued = 0
            self._taken.set()
        if not self.overflowed:
            with contextlib.suppress(Exception):
                await resp.write_eof()

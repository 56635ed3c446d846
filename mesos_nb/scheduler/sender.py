"""The scheduler calls' HTTP client: one aiohttp session tuned for many small POSTs.

Per driver, one session whose connector keeps at most ``MAX_CONNECTIONS`` kept-alive
connections per master (the default pool opened a connection per call in flight), the fixed
headers given once to the session, no ``User-Agent``/``Accept-Encoding`` or decompression,
one timeout for the session, the URL parsed once per master and the ``Mesos-Stream-Id``
header map built once per stream. Measured against an aiohttp server in another process,
these settings do not move the client CPU per call beyond the noise (0.15–0.25 ms a call
either way, most of it aiohttp's request/response cycle); the connection bound is what
matters. Why 32: aiohttp does not pipeline, so the bound is the number of calls in flight, and when
acks wait in a queue the master's offers come back in smaller pieces, each one more OFFERS
event and ACCEPT (ACCEPTs per 1,200 tasks of ``bench.launch_throughput``, two runs each:
4 connections 1,880; 16: 718–774; 32: 430–512; 64: 252–328; the unbounded pool 220–274,
but it opened a connection per call in flight, 99 for a burst of 200 acks).

Calls nobody awaits (the implicit acknowledgements) are not a task each: ``submit`` queues
the call's coroutine and at most ``ACK_WORKERS`` worker tasks, kept while the sender lives,
await them in order. One connection stays free of them for awaited calls (ACCEPT, KILL …),
which are sent at once (``post``).

Data flow: ``post(master, body, stream_id)`` → the session's POST on a kept-alive connection
→ :class:`Answer` (status, ``Location``, body read once); a network failure or no answer
within ``timeout`` seconds → ``ConnectionError`` naming the master.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any, NamedTuple

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .stream import describe_net_error

API_PATH = "/api/v1/scheduler"
MAX_CONNECTIONS = 32  # kept-alive connections per master; more calls at once wait for one
ACK_WORKERS = MAX_CONNECTIONS - 1  # queued (unawaited) calls in flight at once
KEEPALIVE = 30.0  # seconds an idle connection is kept


class Answer(NamedTuple):
    status: int
    location: str | None  # the Location header (a 307 names the leader)
    body: bytes


class CallSender:
    """POSTs to ``<master>/api/v1/scheduler`` on a few kept-alive connections."""

    def __init__(self, headers: Mapping[str, str] | None = None,
                 ssl: ssl_mod.SSLContext | bool | None = True, timeout: float = 30.0) -> None:
        fixed = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl, limit=0, limit_per_host=MAX_CONNECTIONS,
                                           keepalive_timeout=KEEPALIVE),
            headers=fixed,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        )
        self._urls: dict[str, URL] = {}
        self._stream: tuple[str, CIMultiDict[str]] | None = None
        self._queue: deque[Coroutine[Any, Any, None]] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for a queued call
        self._workers: set[asyncio.Task[None]] = set()

    async def post(self, master: str, body: bytes, stream_id: str) -> Answer:
        """POST ``body`` to ``master`` (``http(s)://host:port``) now; its answer, read once."""
        url = self._urls.get(master)
        if url is None:
            url = self._urls[master] = URL(master + API_PATH)
        stream = self._stream
        if stream is None or stream[0] != stream_id:
            stream = self._stream = (stream_id, CIMultiDict({"Mesos-Stream-Id": stream_id}))
        if self._session.closed:  # the driver is stopping: a call made meanwhile fails like a lost one
            raise ConnectionError(f"the connection to the master at {master} was closed (the driver stopped)")
        try:
            async with self._session.post(url, data=body, headers=stream[1], allow_redirects=False) as resp:
                status = resp.status
                if 200 <= status < 300 and resp.content.at_eof():  # a 202: nothing to read
                    return Answer(status, None, b"")
                return Answer(status, resp.headers.get("Location"), await resp.read())
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise ConnectionError(describe_net_error(e, master)) from None

    def submit(self, call: Coroutine[Any, Any, None]) -> None:
        """Run ``call`` (which handles its own errors) on a worker: no task of its own."""
        self._queue.append(call)
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        if len(self._workers) < ACK_WORKERS:
            task = asyncio.get_running_loop().create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            await self._queue.popleft()

    async def close(self) -> None:
        """Stop the workers, drop queued calls and every connection."""
        for task in list(self._workers):
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            self._queue.popleft().close()
        await self._session.close()


__all__ = ["ACK_WORKERS", "API_PATH", "MAX_CONNECTIONS", "Answer", "CallSender"]

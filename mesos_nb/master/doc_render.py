"""How the big read documents (``/master/state``, ``GET_STATE``) are built and sent without
holding the master's event loop.

* :class:`Pacer`: the render is a coroutine that gives the loop back when a step has run
  :data:`STEP_BUDGET`; and it gives way to everything else that is ready (scheduler calls,
  agent messages, allocation), continuing only when nothing else waits or after
  :data:`MAX_DEFER` — so hammering ``/master/state`` delays the scheduling path by at most a
  step, not by the render's length.
* :class:`Template`: a record's JSON encoded once with placeholders
  (:class:`msgspec.Raw` markers) where its changing parts go, then filled by joining bytes.
* :class:`ValueBytes`: JSON of resource sums, kept by value (10,000 agents often use the
  same few amounts).
* :class:`SharedRender`: a document is rendered once per change of the core's counter;
  requests that come meanwhile wait for that render instead of starting their own.
* :func:`chunks`, :func:`respond`: a rendered document is kept as chunks of :data:`CHUNK`
  bytes, written one at a time, each when nothing else is ready, waiting for the socket
  between them: no 50 MB join or copy in one step, and a client fetching it back to back
  takes the master's idle time, not the scheduling path's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec
from aiohttp import web

from ..protocol.resources import Resources

STEP_BUDGET = 0.002  # seconds of rendering before the loop gets a turn
MAX_DEFER = 0.05  # a render waits at most this long for the loop to have nothing else to do
CHUNK = 1 << 18  # bytes written to the socket at a time
_enc = msgspec.json.Encoder()


async def _give_way() -> None:
    """A request's render lets the loop's other ready work run first, for at most
    :data:`MAX_DEFER`."""
    await wait_for_idle(deadline=time.perf_counter() + MAX_DEFER)


def _always() -> bool:
    return True


async def wait_for_idle(deadline: float = float("inf"), waiting: Callable[[], bool] = _always,
                        spin: int = 1 << 30) -> None:
    """Let every other ready callback run first, until a turn of the loop finds nothing else
    ready, ``waiting()`` is false or ``deadline`` (``perf_counter``) has passed; after ``spin``
    busy turns each turn is a 1 ms wait (a background job must not spin the CPU).

    The stdlib loop's ready queue is visible (``_ready``); mesos-nb's uvloop counts what is
    scheduled when asked (:mod:`mesos_nb.protocol.event_loop`): a turn in which nothing but this
    coroutine's own wake-up was scheduled leaves nothing else ready. Any other loop gets a
    plain turn."""
    loop = asyncio.get_running_loop()
    count = getattr(loop, "count_scheduled", None)
    ready = getattr(loop, "_ready", None)
    counter = count() if count is not None else None
    turns = 0
    try:
        while True:
            before = next(counter) if counter is not None else 0
            await asyncio.sleep(0 if turns < spin else 0.001)
            turns += 1
            idle = next(counter) - before <= 2 if counter is not None else not ready  # 2: the wake-up, the read
            if idle or not waiting() or time.perf_counter() >= deadline:
                return
    finally:
        if counter is not None:
            loop.stop_counting()  # type: ignore[attr-defined]


class Pacer:
    """Awaited often by a render: yields when the current step has run its budget."""

    __slots__ = ("t",)

    def __init__(self) -> None:
        self.t = time.perf_counter()

    async def __call__(self) -> None:
        if time.perf_counter() - self.t >= STEP_BUDGET:
            await _give_way()
            self.t = time.perf_counter()


class Template:
    """A JSON object with holes: ``Template(d, "a", "b")`` encodes ``d`` (a dict or a
    :class:`msgspec.Struct`, changed in place) with markers in place of its fields ``a`` and
    ``b``; :meth:`fill` gives the pieces with the holes' bytes."""

    __slots__ = ("pieces",)

    def __init__(self, d: dict[str, Any] | msgspec.Struct, *holes: str) -> None:
        for i, k in enumerate(holes):
            mark = msgspec.Raw(b"\x00%d\x00" % i)  # NUL never appears in encoded JSON
            if isinstance(d, dict):
                d[k] = mark
            else:
                setattr(d, k, mark)  # a Struct encodes whatever its field holds
        data = _enc.encode(d)
        pieces = []
        for i in range(len(holes)):
            head, data = data.split(b"\x00%d\x00" % i)
            pieces.append(head)
        pieces.append(data)
        self.pieces = pieces

    def fill(self, out: list[bytes], *values: bytes | list[bytes]) -> None:
        """Append the pieces to ``out``, a value given as a list of pieces spliced in."""
        p = self.pieces
        out.append(p[0])
        for i, v in enumerate(values):
            if isinstance(v, bytes):
                out.append(v)
            else:
                out.extend(v)
            out.append(p[i + 1])

    def join2(self, a: bytes, b: bytes) -> bytes:
        """The filled object as one bytes, for a template of two holes."""
        p = self.pieces
        return b"".join((p[0], a, p[1], b, p[2]))


def resources_key(r: Resources) -> tuple[Any, ...]:
    """A hashable value of a resource bag (the same amounts give the same key)."""
    return (tuple(r._s.items()), tuple(r._r.items()), tuple(r._t.items()))


def total(bags: Iterable[Resources]) -> Resources:
    """The sum of many bags: scalars added in one dict (``+`` copies its dicts at every step:
    10,000 offers were 10,000 copies); ranges and sets, rare, with ``+``."""
    s: dict[Any, int] = {}
    rest = None
    for r in bags:
        for k, v in r._s.items():
            s[k] = s.get(k, 0) + v
        if r._r or r._t:
            rest = r if rest is None else rest + r
    out = Resources._make(s, {}, {})
    if rest is not None:
        out = out + Resources._make({}, rest._r, rest._t)
    return out


class ValueBytes:
    """``render(r)``'s JSON, kept per distinct value of ``r`` (and found by identity first:
    a bag summed once, or an offer's, is the same object render after render).

    The identity map holds the bags it names, so it keeps only the bags of the last two
    renders (:meth:`turn` at each render's start): one kept for every bag ever shown grew the
    master by ~0.7 MiB a minute under churn (agents and offers coming and going), up to the
    50,000-entry safety limit."""

    __slots__ = ("render", "_cache", "_ids", "_prev")
    LIMIT = 50_000

    def __init__(self, render: Callable[[Resources], Any]) -> None:
        self.render = render
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self._ids: dict[int, tuple[Resources, bytes]] = {}
        self._prev: dict[int, tuple[Resources, bytes]] = {}

    def turn(self) -> None:
        """A render starts: what the one before last named and the last did not is let go."""
        self._prev, self._ids = self._ids, {}

    def held(self) -> int:
        """Bags named by identity (the last two renders')."""
        return len(self._ids) + len(self._prev)

    def __call__(self, r: Resources) -> bytes:
        hit = self._ids.get(id(r))
        if hit is not None and hit[0] is r:
            return hit[1]
        hit = self._prev.get(id(r))
        if hit is not None and hit[0] is r:
            self._ids[id(r)] = hit
            return hit[1]
        key = resources_key(r)
        b = self._cache.get(key)
        if b is None:
            if len(self._cache) >= self.LIMIT:
                self._cache.clear()
            b = self._cache[key] = _enc.encode(self.render(r))
        if len(self._ids) >= self.LIMIT:
            self._ids.clear()  # (one render naming more bags than this: bounded still)
        self._ids[id(r)] = (r, b)
        return b


class SharedRender:
    """One render per change of ``version()``, shared by the requests that wait for it. The
    render runs as its own task: a client that goes away (its handler cancelled) does not
    cancel the render the others wait for."""

    def __init__(self, version: Callable[[], int], render: Callable[[], Awaitable[list[bytes]]]) -> None:
        self.version = version
        self.render = render
        self._cached: tuple[int, list[bytes]] | None = None
        self._running: asyncio.Task[list[bytes]] | None = None
        self._running_version = -1

    async def pieces(self) -> list[bytes]:
        v = self.version()
        if self._cached is not None and self._cached[0] == v:
            return self._cached[1]
        while self._running is not None:
            started = self._running_version
            body = await asyncio.shield(self._running)
            if started == v:
                return body
            if self._cached is not None and self._cached[0] == self.version():
                return self._cached[1]
        task = asyncio.get_running_loop().create_task(self._run(v))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, whoever waits
        self._running, self._running_version = task, v
        return await asyncio.shield(task)

    async def _run(self, v: int) -> list[bytes]:
        try:
            body = await chunks(await self.render())
            self._cached = (v, body)
            return body
        finally:
            self._running = None

    async def body(self) -> bytes:
        return b"".join(await self.pieces())


async def chunks(pieces: list[bytes]) -> list[bytes]:
    """The pieces joined into chunks of about :data:`CHUNK` bytes (once per render, so a cached
    document is sent without copying it again), a chunk per step."""
    pause = Pacer()
    out: list[bytes] = []
    acc: list[bytes] = []
    size = 0
    for p in pieces:
        acc.append(p)
        size += len(p)
        if size >= CHUNK:
            out.append(b"".join(acc))
            acc, size = [], 0
            await pause()
    if acc:
        out.append(b"".join(acc))
    return out


async def respond(request: web.Request, pieces: list[bytes]) -> web.StreamResponse:
    """Send a JSON document given as pieces, a piece at a time, each when nothing else is
    ready to run (the socket's buffer is drained between them): serving a big document to a
    client that fetches it back to back costs the scheduling path almost nothing."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = sum(map(len, pieces))
    await resp.prepare(request)
    for p in pieces:
        await _give_way()
        await resp.write(p)
    await resp.write_eof()
    return resp

"""A per-turn budget for the master's input: no loop turn spends more than ``budget`` on it.

Why: one ``select`` can hand the loop hundreds of scheduler calls at once (200 frameworks
answering the same allocation cycle) and frames of 1,000 status updates from several agent
channels. Each piece is short (a handler step ~0.1 ms, a slice of 100 updates a few ms), but
run back to back in one turn they hold the loop for tens of milliseconds: heartbeats, pings and
the allocator wait behind them (NSDI 50k: turns of 80 ms with 195 handler starts and three
frames' slices). HTTP handlers (the middleware) and agent-channel slices
(:meth:`TurnBudget.admit`, before a frame is decoded and before each slice of it) draw on the
same budget: pieces start until ``budget`` seconds have passed since the first one started in
this turn; the rest wait for a later turn, in arrival order (one channel's slices, read by one
task, stay in order; a frame's later slices keep the frame's place, and a frame starts a bounded
``CHANNEL_AHEAD`` places ahead of the calls waiting).

How a turn is seen without hooking the loop (uvloop has no hook): when the window opens, a
marker is scheduled with ``call_soon``; it runs at the start of the next turn (callbacks queued
during a turn run in the next), closes the window and wakes, in ticket order, as many waiters as
the last spent window admitted (plus one; waking hundreds each turn would itself fill it). A
woken waiter that finds the new window spent again goes back with its old ticket, so no later
request passes it (FIFO), and a request arriving while any wait is queued queues behind it.

Pure bookkeeping plus futures; the clock is injected (tests use a fake one).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

BUDGET_S = 0.005  # the input's share of one turn (the bound on a turn is 50 ms)
# answered at once, never queued behind a burst of scheduler calls: a health check that waits
# its turn behind 500 ACKNOWLEDGEs reads as a sick master (NSDI 50k: /health max 0.14 -> 0.61 s)
UNQUEUED_PATHS = frozenset({"/health", "/master/health"})
# an agent-channel frame's head start over the scheduler calls waiting (about two turns' worth):
# its status updates are on every launch's path (TASK_RUNNING), and its pongs keep agents
# reachable; bounded, so a stream of frames cannot hold the calls back for ever
CHANNEL_AHEAD = 128
MAX_FIT = 1024  # the most waiters one turn wakes


class TurnBudget:
    """``app = web.Application(middlewares=[TurnBudget().middleware])``."""

    def __init__(self, budget: float = BUDGET_S, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget = budget
        self.clock = clock
        self.deferred = 0  # requests that waited for a later turn (for benchmarks and logs)
        self._opened: float | None = None  # when the first handler of this turn started
        self._armed = False  # a marker is queued for the next turn
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by (place, ticket)
        self._woken = 0  # waiters woken by the marker and not yet resumed
        self._admitted = 0  # handlers started in this window
        self._fit = 64  # how many the last spent window admitted: the marker wakes that many
        self._tickets = itertools.count()
        self._ties = itertools.count()  # (a frame given a head start can share a call's place)

    def _spent(self) -> bool:
        if self._opened is None or self.clock() - self._opened < self.budget:
            return False
        self._fit = max(1, self._admitted)
        return True

    def _arm(self) -> None:
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._armed = False
        if self._waiting and self._opened is not None and self.clock() - self._opened < self.budget:
            # the window closed with budget left while others waited: they are cheaper than
            # what spent the last one (calls after a 10 ms channel slice): wake twice as many,
            # else a turn would start two calls for as long as nothing spends a window again
            self._fit = min(MAX_FIT, 2 * max(self._fit, self._admitted))
        self._opened = None
        self._admitted = 0
        # wake, in ticket order, about as many as the last window held (waking all hundreds
        # each turn would itself cost a turn); the rest keep their place in the heap
        n = self._fit + 1
        while n and self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():  # (a cancelled waiter)
                fut.set_result(None)
                self._woken += 1
                n -= 1
        if self._waiting:
            self._arm()

    async def _wait(self, ticket: int) -> None:
        loop = asyncio.get_running_loop()
        self.deferred += 1
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiting, (ticket, next(self._ties), fut))
            self._arm()
            try:
                await fut
            except asyncio.CancelledError:
                if not fut.cancelled():  # woken, then cancelled before it resumed
                    self._woken -= 1
                raise
            self._woken -= 1
            if not self._spent():
                return

    async def admit(self, place: int | None = None, ahead: int = 0) -> int:
        """Return once this turn has budget left for one more piece of work (at once when it
        has and nobody waits; else in a later turn, behind everyone who came before). The
        answer is the piece's place in line: the next piece of the same input passed as
        ``place`` (the next slice of a frame) keeps it, ahead of what arrived after the input.
        ``ahead``: a new input's head start over the last ``ahead`` arrivals still waiting."""
        place = next(self._tickets) - ahead if place is None else place
        if self._waiting or self._woken or self._spent():
            await self._wait(place)
        if self._opened is None:
            self._opened = self.clock()
            self._arm()
        self._admitted += 1
        return place

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        if request.path not in UNQUEUED_PATHS:
            await self.admit()
        return await handler(request)

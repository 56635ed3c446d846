"""The master process's garbage-collector policy.

A master of 50,000 agents holds millions of small long-lived objects (agents, tasks, their
protos). CPython's default collector walks all of them in every full collection: pauses of
seconds, during which no heartbeat, ping or ACCEPT is answered (frameworks then fail over,
channels time out). Three changes, for the ``mesos-nb master`` process only (a library user's
process keeps its own policy):

* a small young generation (``gc.set_threshold(2_000, 2, 100)``): a young collection walks
  about 2,000 objects, so no collection is a long step even when the process gets a fraction
  of a core (with the freeze below no middle or full collection comes due: each freeze resets
  the generations' counts, and there would be nothing in them to walk). Measured
  in-process (CPU time, 50,000 agents, allocation passes of 50,000 offers): the worst pause
  52 ms with (10,000, 5) — at a tenth of a core, the 1.3 s stalls of the 50k NSDI run —,
  30 ms with (5,000, 2), 19 ms with (2,000, 2), and less collector time in all (0.65 s vs
  0.93 s for five passes: the same objects are walked as often, in smaller steps);
* after every collection, :func:`gc.freeze` moves the survivors (the cluster's new records,
  and what was in flight) to the permanent generation, which no later collection walks: every
  collection, young, middle or full, only looks at what arrived since the last one. (Freezing
  only after middle collections, as before, left each young collection's survivors in the
  middle generation, walked again by the next middle collection: at 50,000 agents a middle
  collection walked four times what a young one did, ~8,000 objects for 2,000 in-process,
  and was the 30 ms of CPU with nothing collected in the NSDI run's longest loop gaps.)

* a young collection on a clock (every ``YOUNG_PERIOD`` s, while the master's event loop
  runs): CPython counts *net* allocations towards the young threshold (an object freed takes
  one off), so under churn — offers declined and refusal filters made, tasks ending and
  starting — tens of thousands of new objects pile up in the young generation without a
  collection, and the one that finally comes walks them all (13-17 ms of CPU at 50,000
  agents, in-process, after 50,000 declines). On a clock, a young collection walks at most
  what one period brought.

The price: a reference cycle among frozen objects that later becomes garbage is never
reclaimed by those collections (plain objects are still freed by reference counting, which is
nearly all of the master's records). Under churn such cycles do pile up: a finished request's
aiohttp objects, an exception with its traceback frames, a disconnected framework's stream
(``bench/gc_soak.py`` measures it). So, the fourth change:

* a *full* collection of everything, frozen included (``gc.unfreeze(); gc.collect(2)``), when
  the heap has grown by ``FULL_RATIO`` of what the last full collection left (CPython's own
  rule for its full collections: long-lived pending > 25 % of long-lived total), and at most
  once per ``FULL_MIN_INTERVAL`` s. The heap is counted, never walked: the allocator's blocks in
  use (``sys.getallocatedblocks``, net of what was freed; ~0.6 ms at 1 GiB, so read once per
  ``FULL_CHECK_PERIOD`` s, not at every young collection); :func:`full_collection_due` is the
  decision, a pure function of those counts and the clock. Its pause is a whole-heap
  collection, which CPython 3.11 cannot spread: 0.67 s of CPU at 10,000 agents and 58,000 tasks
  (614,000 tracked objects, 540 MiB), ~1.5 s extrapolated to 50,000 agents: far over the 50 ms
  loop-gap target. Hence the hour: a start-up (the heap growing tenfold) pays one such pause,
  an hour in, instead of one a minute; then a steady master pays it never, and one whose frozen
  garbage grows (~600 objects a minute under 100 tasks/s of churn: BENCHMARKS.md, Stop 14)
  pays one per 25 % of growth: the garbage is bounded to a quarter of the heap.

:func:`stats` says how often it froze and collected, and how much is frozen.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

THRESHOLD = (2_000, 2, 100)
YOUNG_PERIOD = 0.025  # seconds between clocked young collections (each walks what one period left)
FULL_RATIO = 0.25  # a full collection once the heap grew by this share of what the last one left
FULL_MIN_INTERVAL = 3600.0  # seconds: at most one full collection (~1 s at 50k agents) an hour
FULL_FLOOR = 1_000_000  # allocator blocks (~100 MiB): a small heap's growth is measured against this
FULL_CHECK_PERIOD = 1.0  # seconds between reads of the heap's size

_state: dict[str, Any] = {"installed": False, "freezes": 0, "previous": None, "timer": None, "clocked": 0,
                          "full_ratio": None, "base": 0, "last_full": 0.0, "last_check": 0.0,
                          "fulls": 0, "full_freed": 0, "full_max_s": 0.0,
                          "full_max_cpu_s": 0.0}


def full_collection_due(blocks: int, base: int, now: float, last_full: float, *,
                        ratio: float = FULL_RATIO, min_interval: float = FULL_MIN_INTERVAL,
                        floor: int = FULL_FLOOR) -> bool:
    """Whether to unfreeze and collect everything now: the heap (``blocks`` in use) grew past
    what the last full collection left (``base``) by more than ``ratio`` of it (of ``floor`` at
    least: a small heap's garbage is not worth a pass), and ``min_interval`` s have passed."""
    return blocks - base > ratio * max(base, floor) and now - last_full >= min_interval


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        gc.freeze()  # the collection is over: only list splicing, safe here
        _state["freezes"] += 1


def full_collection(now: float | None = None) -> int:
    """Unfreeze and collect everything (the frozen reference cycles that became garbage with
    it); what survives is frozen again. Returns the objects freed. One pause of the whole heap."""
    t0, c0 = time.perf_counter(), time.thread_time()
    gc.unfreeze()
    freed = gc.collect(2)
    gc.freeze()  # (the policy's callback froze already when installed: a no-op then)
    dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
    _state.update(base=sys.getallocatedblocks(), last_full=time.monotonic() if now is None else now,
                  fulls=_state["fulls"] + 1, full_freed=_state["full_freed"] + freed,
                  full_max_s=max(_state["full_max_s"], dt), full_max_cpu_s=max(_state["full_max_cpu_s"], cpu))
    return freed


def _maybe_full(now: float) -> None:
    _state["last_check"] = now
    # the module's settings as they are now (a tool or test may change them after import)
    if full_collection_due(sys.getallocatedblocks(), _state["base"], now, _state["last_full"],
                           ratio=_state["full_ratio"], min_interval=FULL_MIN_INTERVAL, floor=FULL_FLOOR):
        full_collection(now)


def _young(loop: asyncio.AbstractEventLoop, period: float) -> None:
    gc.collect(0)
    _state["clocked"] += 1
    if _state["full_ratio"] is not None:
        now = time.monotonic()
        if now - _state["last_check"] >= FULL_CHECK_PERIOD:
            _maybe_full(now)
    _state["timer"] = loop.call_later(period, _young, loop, period)


def install(young_period: float | None = YOUNG_PERIOD, full_ratio: float | None = FULL_RATIO) -> None:
    """Apply the policy to this process (idempotent); the clocked young collections (and the
    full ones ``full_ratio`` asks for, none with ``None``) run on the running event loop (none
    when called outside one, or with ``young_period=None``)."""
    if _state["installed"]:
        return
    _state["previous"] = gc.get_threshold()
    gc.set_threshold(*THRESHOLD)
    gc.callbacks.append(_on_gc)
    now = time.monotonic()
    _state.update(installed=True, full_ratio=full_ratio, last_full=now, last_check=now,
                  base=sys.getallocatedblocks())
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None and young_period:
        _state["timer"] = loop.call_later(young_period, _young, loop, young_period)


def uninstall() -> None:
    """Back to the collector's previous thresholds; what is frozen stays frozen."""
    if not _state["installed"]:
        return
    gc.callbacks.remove(_on_gc)
    gc.set_threshold(*_state["previous"])
    _state["installed"] = False
    if _state["timer"] is not None:
        _state["timer"].cancel()
        _state["timer"] = None


def counters() -> dict[str, float]:
    """Figures for ``/metrics/snapshot``: the full collections. Not the frozen objects:
    ``gc.get_freeze_count()`` walks the frozen generation (~70 ms at 1 GiB, a loop stall per
    scrape); :func:`stats` has it for tools that ask."""
    return {"master/gc_full_collections": _state["fulls"],
            "master/gc_full_collection_freed": _state["full_freed"],
            "master/gc_full_collection_max_ms": round(_state["full_max_s"] * 1000, 3),  # wall clock
            "master/gc_full_collection_max_cpu_ms": round(_state["full_max_cpu_s"] * 1000, 3)}


def stats() -> dict[str, Any]:
    return {"installed": _state["installed"], "freezes": _state["freezes"], "frozen": gc.get_freeze_count(),
            "threshold": list(gc.get_threshold()), "clocked_young": _state["clocked"],
            "full_ratio": _state["full_ratio"], "blocks": sys.getallocatedblocks(), "base": _state["base"],
            "full_collections": _state["fulls"], "full_freed": _state["full_freed"],
            "full_max_s": _state["full_max_s"]}

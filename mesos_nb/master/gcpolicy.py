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
reclaimed (plain objects are still freed by reference counting, which is nearly all of the
master's records and of what a request or a frame leaves in flight; the NSDI 50k run's RSS
shows whether that stays so). :func:`stats` says how often it froze and how much is frozen.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

THRESHOLD = (2_000, 2, 100)
YOUNG_PERIOD = 0.025  # seconds between clocked young collections (each walks what one period left)

_state: dict[str, Any] = {"installed": False, "freezes": 0, "previous": None, "timer": None, "clocked": 0}


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        gc.freeze()  # the collection is over: only list splicing, safe here
        _state["freezes"] += 1


def _young(loop: asyncio.AbstractEventLoop, period: float) -> None:
    gc.collect(0)
    _state["clocked"] += 1
    _state["timer"] = loop.call_later(period, _young, loop, period)


def install(young_period: float | None = YOUNG_PERIOD) -> None:
    """Apply the policy to this process (idempotent); the clocked young collections run on the
    running event loop (none when called outside one, or with ``young_period=None``)."""
    if _state["installed"]:
        return
    _state["previous"] = gc.get_threshold()
    gc.set_threshold(*THRESHOLD)
    gc.callbacks.append(_on_gc)
    _state["installed"] = True
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


def stats() -> dict[str, Any]:
    return {"installed": _state["installed"], "freezes": _state["freezes"], "frozen": gc.get_freeze_count(),
            "threshold": list(gc.get_threshold()), "clocked_young": _state["clocked"]}

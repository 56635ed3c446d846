"""How much of a big piece of the master's work one step of its event loop may do.

A client input or a timer can touch the whole cluster: a framework with 100,000 tasks torn
down, 50,000 offers rescinded, 10,000 agents whose deadline passes at one tick. Done in one
go each is 0.1-1 s of the loop (no ``/health``, ping or offer meanwhile). The core does such
work as a generator that yields between slices (a *step*: the shell flushes the effects and
lets the loop run, see :func:`.big_calls.run_steps`; tests and the harness run them all at
once). The sizes keep a step near 10 ms of CPU on the development box (2 cores, CPython 3.11)
at 50,000 agents and 100,000 tasks; they are counts, not times, so what each step does can be
asserted exactly.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

AGENT_SLICE = 200  # agents marked unreachable / disconnected per step (~3 ms)
DECLINE_SLICE = 500  # offers declined per step (~4 ms)
RESCIND_SLICE = 500  # offers rescinded per step (17 µs each at 50k agents: ~9 ms)
TASK_SLICE = 2000  # tasks of a removed framework ended per step (~3 µs each)
HOLDING_SLICE = 500  # agents a removed framework's allocation is taken back from per step (~20 µs each)


def run_all(steps: Generator[None, None, T]) -> T:
    """Every step of ``steps`` at once (tests, tools, a caller off the loop's hot paths); its
    result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def slices(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` ``size`` at a time (nothing for no items)."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def taking_slices(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` ``size`` at a time, in order, each slice taken out of the list: what the
    caller lets go of is freed a slice per step, not all at once when the list goes (the
    100,000 tasks of a removed framework: 40 ms to free in one step)."""
    items.reverse()
    while items:
        part = items[-size:]
        del items[-size:]
        part.reverse()
        yield part

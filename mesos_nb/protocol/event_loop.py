"""Which asyncio event loop the processes mesos-nb owns run on: uvloop when it is installed
(``auto``), else the standard library's.

The launch path (master, agent, SDK framework) is CPU-bound on aiohttp's per-request and
per-callback work; uvloop (libuv, written in Cython) does the loop's own share of it in C:
about 130 us of CPU per HTTP request against 155-210 us with the stdlib loop. ``asyncio``
stays a choice (``--event-loop asyncio``, ``$MESOS_NB_EVENT_LOOP``) for a platform uvloop
does not build on, or to rule the loop out when chasing a bug.

Only loops mesos-nb creates are chosen here (its daemons, the SDK's background thread, the
framework apps); a loop that is already running, e.g. a Jupyter kernel's, is never replaced.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import itertools
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHOICES = ("auto", "uvloop", "asyncio")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: str = "auto") -> str:
    """The loop ``choice`` means on this machine: ``"uvloop"`` or ``"asyncio"``; a choice that
    is not one of :data:`CHOICES`, or ``uvloop`` where it is not installed, is a ValueError."""
    if choice not in CHOICES:
        raise ValueError(f"unknown event loop {choice!r} (choose one of {', '.join(CHOICES)})")
    if choice == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    if choice == "uvloop" and not uvloop_available():
        raise ValueError("uvloop is not installed (pip install uvloop, or choose --event-loop asyncio)")
    return choice


def parse(text: str) -> str:
    """An ``--event-loop`` value, checked (argparse ``type=``)."""
    resolve(text)
    return text


def factory(choice: str = "auto", counted: bool = False) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of ``choice``'s kind (for ``asyncio.Runner``). ``counted``:
    a uvloop that counts what it schedules (:class:`CountedLoop`: the master's, whose renders
    give way to ready work and need to see it)."""
    if resolve(choice) == "uvloop":
        if counted:
            return _counted_loop_class()
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


@functools.cache
def _counted_loop_class() -> type[asyncio.AbstractEventLoop]:
    import uvloop

    base_call_soon = uvloop.Loop.call_soon

    class CountedLoop(uvloop.Loop):  # type: ignore[misc,valid-type]
        """uvloop keeps its ready queue in C, out of sight; this one counts every
        ``call_soon`` (a task's step, a future's callbacks: all that asyncio puts in the ready
        queue), so that a coroutine can tell whether anything else was scheduled while it
        waited one turn (:func:`mesos_nb.master.doc_render._give_way`). About 0.5 us a call."""

        def __init__(self) -> None:
            super().__init__()
            self.callbacks_scheduled = itertools.count()  # next() reads it (and counts itself)

        def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> Any:
            next(self.callbacks_scheduled)
            return base_call_soon(self, callback, *args, context=context)

    return CountedLoop


def new_loop(choice: str = "auto", counted: bool = False) -> asyncio.AbstractEventLoop:
    """A new loop for a thread mesos-nb starts itself (the SDK's background loop)."""
    return factory(choice, counted)()


def run(main: Coroutine[Any, Any, T], choice: str = "auto", counted: bool = False) -> T:
    """``asyncio.run(main)`` on a loop of ``choice``'s kind."""
    make = factory(choice, counted)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=make) as runner:
            return runner.run(main)
    policy = asyncio.DefaultEventLoopPolicy()  # Python 3.10: no Runner; this process's policy
    policy.new_event_loop = make  # type: ignore[method-assign]
    asyncio.set_event_loop_policy(policy)
    return asyncio.run(main)


def policy(choice: str = "auto", counted: bool = False) -> asyncio.AbstractEventLoopPolicy:
    """An event loop policy making ``choice``'s loops (for a test runner's loops)."""
    p = asyncio.DefaultEventLoopPolicy()
    p.new_event_loop = factory(choice, counted)  # type: ignore[method-assign]
    return p


def name_of(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: what ``loop`` is (for ``/flags`` and the start log line)."""
    uvloop = sys.modules.get("uvloop")  # a uvloop loop exists only once uvloop is imported
    return "uvloop" if uvloop is not None and isinstance(loop, uvloop.Loop) else "asyncio"


def running() -> str:
    """:func:`name_of` the running loop; ``"none"`` outside one."""
    try:
        return name_of(asyncio.get_running_loop())
    except RuntimeError:
        return "none"

"""Which asyncio event loop the processes mesos-nb owns run on: uvloop when it is installed
(``auto``), else the standard library's.

The launch path (master, agent, SDK framework) is CPU-bound on aiohttp's per-request and
per-callback work; uvloop (libuv, written in Cython) does the loop's own share of it in C:
an SDK-shaped call costs the server about 73 us of CPU instead of 118 us, the SDK's sender
100 us instead of 135 us (``python -m bench.event_loop_cpu``). ``asyncio``
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
import os
import subprocess
import sys
import threading
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


def factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new loop of ``choice``'s kind (for ``asyncio.Runner``)."""
    if resolve(choice) == "uvloop":
        return _loop_class()
    return asyncio.new_event_loop


@functools.cache
def _loop_class() -> type[asyncio.AbstractEventLoop]:
    import uvloop

    base_call_soon = uvloop.Loop.call_soon

    class Loop(uvloop.Loop):  # type: ignore[misc,valid-type]
        """uvloop, with two additions.

        * The standard library's subprocesses: uvloop's own spawn forks (libuv) where
          ``subprocess.Popen`` vforks (4x the CPU per process), runs ``preexec_fn`` before
          the child's stdio is in place (a pty's ``TIOCSCTTY`` fails) and refuses
          ``user``/``group``/``extra_groups``.
        * :meth:`count_scheduled`: uvloop keeps its ready queue in C, out of sight; while
          counting, every ``call_soon`` (a task's step, a future's callbacks: all that
          asyncio puts in the ready queue) is counted, so that a coroutine can tell whether
          anything else was scheduled while it waited one turn
          (:func:`mesos_nb.master.doc_render._give_way`). Only then: a counted call costs
          about 0.5 us more.
        """

        _counting = 0

        async def subprocess_exec(self, protocol_factory: Callable[[], Any], program: Any, *args: Any,
                                  **kwargs: Any) -> tuple[Any, Any]:
            return await _popen_transport(self, protocol_factory, (program, *args), False, **kwargs)

        async def subprocess_shell(self, protocol_factory: Callable[[], Any], cmd: Any,
                                   **kwargs: Any) -> tuple[Any, Any]:
            return await _popen_transport(self, protocol_factory, cmd, True, **kwargs)

        def count_scheduled(self) -> itertools.count:
            """Start counting ``call_soon`` (until as many :meth:`stop_counting`); ``next()``
            of the counter returned reads it (and counts itself)."""
            if self._counting == 0:
                self._scheduled = itertools.count()
                counter = self._scheduled

                def counted_call_soon(callback: Callable[..., Any], *args: Any, context: Any = None) -> Any:
                    next(counter)
                    return base_call_soon(self, callback, *args, context=context)

                self.call_soon = counted_call_soon  # the instance's, found before the class's method
            self._counting += 1
            return self._scheduled

        def stop_counting(self) -> None:
            self._counting -= 1
            if self._counting == 0:
                del self.call_soon

    return Loop


async def _popen_transport(loop: asyncio.AbstractEventLoop, protocol_factory: Callable[[], Any], args: Any,
                           shell: bool, *, stdin: Any = subprocess.PIPE, stdout: Any = subprocess.PIPE,
                           stderr: Any = subprocess.PIPE, bufsize: int = 0, **kwargs: Any) -> tuple[Any, Any]:
    """The standard library's subprocess transport (``subprocess.Popen``, pipes through the
    loop's public pipe API) on any loop; the child is reaped through a pidfd the loop
    watches (a thread waiting for it where pidfds are missing)."""
    # the standard library's own transport, as its loop uses it
    from asyncio.unix_events import _UnixSubprocessTransport

    for k in ("universal_newlines", "text", "encoding", "errors"):
        if kwargs.pop(k, None):
            raise ValueError(f"{k} is not supported by asyncio subprocesses")
    protocol = protocol_factory()
    waiter = loop.create_future()
    transport = _UnixSubprocessTransport(loop, protocol, args, shell, stdin, stdout, stderr, bufsize,
                                         waiter=waiter, **kwargs)
    _reap(loop, transport.get_pid(), transport._process_exited)
    try:
        await waiter
    except BaseException:
        transport.close()
        await transport._wait()
        raise
    return transport, protocol


def _reap(loop: asyncio.AbstractEventLoop, pid: int, exited: Callable[[int], None]) -> None:
    def status() -> int:
        try:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        except ChildProcessError:  # reaped by someone else: its status is lost
            return 255

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        threading.Thread(target=lambda: loop.call_soon_threadsafe(exited, status()), daemon=True,
                         name=f"reap-{pid}").start()
        return

    def readable() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        exited(status())

    loop.add_reader(fd, readable)


def new_loop(choice: str = "auto") -> asyncio.AbstractEventLoop:
    """A new loop for a thread mesos-nb starts itself (the SDK's background loop)."""
    return factory(choice)()


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on a loop of ``choice``'s kind."""
    make = factory(choice)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=make) as runner:
            return runner.run(main)
    asyncio.set_event_loop_policy(policy(choice))  # Python 3.10: no Runner; this process's policy
    return asyncio.run(main)


def policy(choice: str = "auto") -> asyncio.AbstractEventLoopPolicy:
    """An event loop policy making ``choice``'s loops."""
    p = asyncio.DefaultEventLoopPolicy()
    p.new_event_loop = factory(choice)  # type: ignore[method-assign]
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

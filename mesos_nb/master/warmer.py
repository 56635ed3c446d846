"""The big read documents' task blocks kept warm by the master itself, so no reader pays a
cold render.

``/master/state`` and ``GET_STATE`` are rendered incrementally (:mod:`.task_blocks` keeps each
block of task JSON while its tasks are unchanged), but the first render after a start found
no block and encoded every task: 0.8 s and 1.2 s at 10,000 agents / 100,000 tasks, against
0.2 s warm. :class:`Warmer` brings both renderers' task blocks up to date in the background
after the core changed, so the first request finds them ready and renders as a warm one does.
It makes no document (a render's agents and frameworks part is cheap; the tasks are not).

It never competes with the scheduling path:

* a warm starts only when :data:`MIN_CHANGES` task events (launches, status updates, tasks
  killed or lost: the core's metrics) piled up since the blocks were last brought up to date
  (by a render or a warm) -- offers and declines change no task -- and only once no task
  event came for :data:`QUIET` seconds; tasks that change without pause are warmed at most
  every :data:`STALE_MAX` seconds;
* it runs in steps of ``doc_render.STEP_BUDGET`` (2 ms; a window of 8,192 tasks listed is the
  longest, ~5 ms), and a step runs only when no other callback is ready
  (:class:`BackgroundPacer`: no deadline, unlike a request's render, which waits at most
  ``doc_render.MAX_DEFER``);
* after a warm whose steps took ``c`` seconds the next starts no sooner than ``c / SHARE``
  seconds after it began while the cluster changes (``c / QUIET_SHARE`` once it is quiet):
  the warmer's share of the loop is bounded;
* a render and a warm take turns on the blocks; a request that arrives during a warm turns
  it into a request's pace (:class:`PaceControl`), so the background pacing never slows it.

Memory: the task blocks (each task's JSON fragment and the blocks' joined parts) -- what a
render keeps after any request anyway; :meth:`Warmer.held` gives the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from . import doc_render

log = logging.getLogger("mesos_nb.master.warmer")

QUIET = 0.2  # seconds without a task event before a warm starts
STALE_MAX = 1.0  # a cluster that never stops changing is warmed at most this often
SHARE = 0.1  # while the cluster changes, the warmer's steps take at most this share of the time
QUIET_SHARE = 0.5  # once it is quiet (nothing else to do but answer reads), this share
MIN_CHANGES = 64  # task events since the blocks were last brought up to date worth a warm
REFRESH = 60.0  # any change at all is warmed after this long
POLL = 0.05  # how often the change counter is looked at
_SPIN = 4  # turns with other work ready before the warmer backs off to 1 ms waits


class PaceControl:
    """Whether a render runs in the background (the warmer's) and how long its steps ran."""

    __slots__ = ("background", "busy")

    def __init__(self) -> None:
        self.background = False
        self.busy = 0.0


class BackgroundPacer:
    """A render's pause: a step yields after ``doc_render.STEP_BUDGET``; in the background it
    waits until no other callback is ready, however long; else as a request's render does."""

    __slots__ = ("t", "control")

    def __init__(self, control: PaceControl) -> None:
        self.control = control
        self.t = time.perf_counter()

    async def __call__(self) -> None:
        now = time.perf_counter()
        if now - self.t < doc_render.STEP_BUDGET:
            return
        self.control.busy += now - self.t
        if self.control.background:
            await _idle(self.control)
        else:
            await doc_render._give_way()
        self.t = time.perf_counter()

    def close(self) -> None:
        """The render ended: count its last step."""
        self.control.busy += time.perf_counter() - self.t


async def _idle(control: PaceControl) -> None:
    """Wait until the loop has nothing else ready (or the render became a request's)."""
    await doc_render.wait_for_idle(waiting=lambda: control.background, spin=_SPIN)


class WarmRender:
    """A renderer's :class:`~.doc_render.SharedRender` and its task blocks as the warmer drives
    them: a render and a warm take turns on the blocks (a lock); a request's :meth:`pieces`
    turns a warm it waits for into a request's pace."""

    def __init__(self, version: Callable[[], int], render: Callable[[], Awaitable[list[bytes]]],
                 warm_blocks: Callable[[], Awaitable[None]]) -> None:
        self.pace = PaceControl()
        self.version = version
        self.changes: Callable[[], int] = lambda: 0  # the warmer's count of task events
        # when the task blocks were last brought up to date (render or warm): version, task
        # events, time.monotonic()
        self.rendered: tuple[int, int, float] = (-1, 0, -1e18)
        self._render = render
        self._warm_blocks = warm_blocks
        self._lock = asyncio.Lock()
        self.shared = doc_render.SharedRender(version, self._locked_render)

    async def _locked_render(self) -> list[bytes]:
        async with self._lock:
            self._mark()
            return await self._render()

    def _mark(self) -> None:
        self.rendered = (self.version(), self.changes(), time.monotonic())

    async def pieces(self) -> list[bytes]:
        self.pace.background = False
        return await self.shared.pieces()

    async def body(self) -> bytes:
        return b"".join(await self.pieces())

    async def warm(self) -> None:
        """Bring the task blocks up to date in the background (no document is made or kept)."""
        if self.shared._running is not None:
            return  # a request's render is doing it
        self.pace.background = True
        try:
            async with self._lock:
                self._mark()
                await self._warm_blocks()
        finally:
            self.pace.background = False

class Warmed:
    """What a renderer built on a :class:`WarmRender` (``self._shared``) gives the warmer."""

    _shared: WarmRender

    @property
    def pace(self) -> PaceControl:
        return self._shared.pace

    def rendered(self) -> tuple[int, int, float]:
        return self._shared.rendered

    def count_changes(self, changes: Callable[[], int]) -> None:
        self._shared.changes = changes

    async def warm(self) -> None:
        """Bring the task blocks up to date in the background (the :class:`Warmer`'s call)."""
        await self._shared.warm()


def templates_held(cache: dict[int, tuple[object, object, doc_render.Template]]) -> int:
    """Bytes of the agents' JSON templates a renderer keeps."""
    return sum(sum(map(len, hit[2].pieces)) for hit in cache.values())


class Warmable(Protocol):
    """A renderer the warmer keeps warm (``state_render``, ``state_render_v1``)."""

    @property
    def pace(self) -> PaceControl: ...
    def rendered(self) -> tuple[int, int, float]: ...
    def count_changes(self, changes: Callable[[], int]) -> None: ...
    async def warm(self) -> None: ...
    def held(self) -> int: ...


class Warmer:
    """Renders ``targets`` in the background after each change of ``version()`` (see the module)."""

    def __init__(self, version: Callable[[], int], changes: Callable[[], int], targets: Sequence[Warmable]) -> None:
        self.version = version
        self.changes = changes  # events that change tasks (launches, status updates, …) so far
        self.targets = targets
        for t in targets:
            t.count_changes(changes)
        self.warmed = -1  # the version the last warm rendered
        self.warms = 0
        self.busy = 0.0  # seconds of warm steps in all
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        t, self._task = self._task, None
        if t is not None:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def held(self) -> int:
        """Bytes of rendered JSON the renderers keep between renders (task blocks, agent
        templates; not the last documents requests had rendered, kept until the next change)."""
        return sum(t.held() for t in self.targets)

    async def _run(self) -> None:
        seen = self.changes()
        changed_at = stale_since = time.monotonic()
        not_before = not_before_quiet = 0.0
        while True:
            await asyncio.sleep(POLL)
            v, c, now = self.version(), self.changes(), time.monotonic()
            if c != seen:
                seen, changed_at = c, now
            due = [t for t in self.targets if _behind(v, c, now, t.rendered())]
            if not due:
                stale_since = now  # nothing to warm: staleness counts from the next change
                continue
            quiet = now - changed_at >= QUIET
            if not quiet and now - stale_since < STALE_MAX:
                continue
            if now < (not_before_quiet if quiet else not_before):
                continue
            try:
                busy = await self.warm_once(due)
            except Exception:  # pragma: no cover - a bad render must not end the warmer
                log.exception("background render failed")
                busy = 1.0
            not_before = now + busy / SHARE
            not_before_quiet = now + busy / QUIET_SHARE
            stale_since = time.monotonic()

    async def warm_once(self, targets: Sequence[Warmable] | None = None) -> float:
        """Bring the targets' task blocks up to date in the background; the seconds its steps took."""
        v = self.version()
        busy = 0.0
        for t in self.targets if targets is None else targets:
            t.pace.busy = 0.0
            await t.warm()
            busy += t.pace.busy
        self.warmed = v
        self.warms += 1
        self.busy += busy
        return busy


# the core's counters of events that change a task's record
TASK_EVENTS = ("master/messages_launch_tasks", "master/messages_status_update", "master/tasks_killed",
               "master/tasks_lost", "master/tasks_dropped", "master/tasks_unreachable",
               "master/tasks_gone_by_operator")


def task_events(core: Any) -> int:
    """How many task-changing events the core has counted."""
    metrics = core.metrics
    return sum(metrics.get(k, 0) for k in TASK_EVENTS)


def _behind(version: int, changes: int, now: float, rendered: tuple[int, int, float]) -> bool:
    """Worth a warm: enough task events since the blocks were last brought up to date (a new
    core counts from zero again), or any change at all :data:`REFRESH` seconds after it (what
    changes tasks without a counted event: a teardown, an agent marked unreachable)."""
    version_then, changes_then, at = rendered
    if version == version_then:
        return False
    return changes < changes_then or changes - changes_then >= MIN_CHANGES or now - at >= REFRESH

"""A real master in its own process, instrumented without touching ``mesos_nb``.

``python -m bench.master_proc [--port 0] [--agent-secret S] [--allocation-interval 1]`` builds
:class:`mesos_nb.master.server.MasterServer` in this process and adds, from outside:

* an asyncio *ticker* (every 5 ms) recording the largest gap between two ticks: the
  master's worst event-loop stall, seen from inside;
* a timer around ``core.allocate`` (an instance attribute wrapping the bound method, which
  the server calls through ``self.core.allocate``): the allocation cycle time;
* a ``gc.callbacks`` hook timing every garbage collection (a stall can be the collector);
* each gap over 50 ms logged with the work counted in it and the thread CPU of the master's
  pieces of work that filled it (``cpu_by``: status updates, ACKNOWLEDGEs, ACCEPT steps,
  effects flushed, frames decoded and encoded, allocator steps and offers made);
* ``GET /bench/stats`` answering both as JSON (``?reset=1`` clears them) plus pid, RSS, CPU.

The master runs with the collector policy of ``mesos-nb master`` (:mod:`mesos_nb.master.gcpolicy`);
``BENCH_GC_FULL=0`` leaves out its full collections; ``POST /bench/frozen_garbage`` counts the
frozen objects that were garbage (a whole-heap collection: diagnostic; ``?types=1``: the live
objects by type too). ``--gc-threshold A,B,C`` sets ``gc.set_threshold`` instead (``--gc-threshold default``: CPython's
own, no policy), to compare; ``--no-feed`` leaves the web UI's utilization feed unstarted (to measure what it costs).
It prints ``ready <port> <pid>`` on stdout once listening. :class:`MasterProcess` starts it
as a subprocess for the benchmarks and reads ``/bench/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from .harness import run_loop

REPO = Path(__file__).resolve().parents[1]


def _name(cb: Any, where: str) -> str:
    return (getattr(cb, "__qualname__", None) or repr(cb)[:100]) + where


class LoopStats:
    """Max gap of a fixed-period asyncio ticker, and allocation cycle durations."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.max_gap = 0.0
        self.gaps_over_50ms = 0
        self.gaps_over_100ms = 0
        self.alloc: list[float] = []
        self.alloc_max = 0.0
        self.started = time.monotonic()
        self.gc_max = 0.0
        self.gc_total = 0.0
        self.gc_full = 0
        self._gc_t0 = 0.0
        self._gc_cpu0 = 0.0
        self._gc_count0: tuple[int, ...] = (0, 0, 0)
        self.gc_cpu_max = 0.0
        self.gc_worst: dict[str, Any] = {}
        self.gc_by_gen: dict[int, int] = {}
        self.slow_steps: list[tuple[float, float, str]] = []  # (CPU s, wall s, callback) of the longest steps
        # one turn of the loop (``_run_once``: the callbacks ready at one pass) is what the ticker's
        # gap measures; its steps are gathered here and the longest turns kept with what ran in them
        self._turn: list[tuple[float, float, Any, str]] = []  # (CPU s, wall s, callback, where)
        self._turn_gc = 0.0
        self.slow_turns: list[tuple[float, dict[str, Any]]] = []  # (wall s of its steps, summary)
        self.turns_over_50ms = 0
        self.alloc_steps: list[float] = []  # thread CPU of each allocator step (``allocator.step``)
        self.alloc_step_agents = 0
        self.make_offers_max: tuple[float, int] = (0.0, 0)  # (CPU s, offers) of the longest make_offers
        self.make_offers_max_gc = 0.0  # collector pauses inside that make_offers
        # what fills a gap, on any loop (uvloop has no ``_run_once`` or ``Handle._run`` to hook):
        # counters the ticker reads at each tick, so a gap over 50 ms gets the master thread's CPU
        # in it (CPU << wall: the box took the CPU; CPU ~ wall: our own work) and what ran
        self.requests = 0  # HTTP handlers started (a middleware)
        self.frames = 0  # agent channel frames decoded
        self.frame_msgs = 0  # messages in them
        self.gap_log: list[dict[str, Any]] = []  # the longest gaps, with their counters
        # thread CPU of named pieces of the master's work (:meth:`watch_cpu`), summed: a gap's
        # entry says which of them filled it (the collector's pauses inside them included)
        self.cpu_by: dict[str, float] = {}
        self.gap_totals = {"wall_s": 0.0, "cpu_s": 0.0, "gc_s": 0.0, "box": 0, "ours": 0}
        self.max_ours_gap = self.max_gap_cpu = 0.0

    def watch_steps(self) -> None:
        """Time every event-loop step (an ``asyncio.Handle`` run) in this thread's CPU time:
        the ticker's gap says a step was long, this says which callback and whether it was the
        master's work or the box taking the CPU away (wall >> CPU)."""
        real = asyncio.events.Handle._run
        stats = self

        def _run(handle: asyncio.events.Handle) -> None:
            cb = getattr(handle, "_callback", None)
            task = getattr(cb, "__self__", None)
            where = ""
            if isinstance(task, asyncio.Task):  # a task's step: name its coroutine
                cb = task.get_coro()
                if getattr(cb, "__qualname__", "") == "RequestHandler._handle_request":
                    frame = getattr(cb, "cr_frame", None)  # (read before the step: it may end it)
                    req = frame.f_locals.get("request") if frame is not None else None
                    if req is not None:  # an HTTP handler: which call
                        where = f" {getattr(req, 'method', '')} {getattr(req, 'path', '')}"
            c0, w0 = time.thread_time(), time.perf_counter()
            real(handle)
            cpu = time.thread_time() - c0
            wall = time.perf_counter() - w0
            stats._turn.append((cpu, wall, cb, where))
            if cpu > 0.02 and (len(stats.slow_steps) < 10 or cpu > stats.slow_steps[-1][0]):
                stats.slow_steps = sorted(stats.slow_steps + [(cpu, wall, _name(cb, where))], reverse=True)[:10]

        asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    def watch_turns(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sum each turn of the loop (the steps one ``_run_once`` ran, not its wait in ``select``):
        a gap over 50 ms is one long step or many short ones, and the ten longest turns are kept
        with their number of steps, the collector's share and the callbacks that took the most."""
        real = getattr(loop, "_run_once", None)
        if real is None:  # (a loop of another make, e.g. uvloop: no turns to sum)
            return
        stats = self

        def _run_once() -> None:
            stats._turn = []
            stats._turn_gc = 0.0
            real()
            steps = stats._turn
            wall = sum(w for _, w, _, _ in steps)
            if wall > 0.05:
                stats.turns_over_50ms += 1
            if wall > 0.03 and (len(stats.slow_turns) < 10 or wall > stats.slow_turns[-1][0]):
                by: dict[str, list[float]] = {}
                for c, w, cb, where in steps:
                    agg = by.setdefault(_name(cb, where), [0, 0.0, 0.0])
                    agg[0] += 1
                    agg[1] += c
                    agg[2] += w
                top = sorted(by.items(), key=lambda kv: -kv[1][2])[:6]
                summary = {"wall_s": round(wall, 4), "cpu_s": round(sum(c for c, _, _, _ in steps), 4),
                           "steps": len(steps), "gc_s": round(stats._turn_gc, 4),
                           "longest_step_cpu_s": round(max((c for c, _, _, _ in steps), default=0.0), 4),
                           "top": [{"callback": n, "n": int(a[0]), "cpu_s": round(a[1], 4), "wall_s": round(a[2], 4)}
                                   for n, a in top]}
                stats.slow_turns = sorted(stats.slow_turns + [(wall, summary)], key=lambda t: -t[0])[:10]

        loop._run_once = _run_once  # type: ignore[attr-defined]

    def watch_work(self, app: Any) -> None:
        """Count HTTP handlers (a middleware, innermost) and agent channel frames (the decoder the
        channel handler calls through its module): what a gap held, on any event loop."""
        from aiohttp import web

        from mesos_nb.protocol import channel as ch

        stats = self
        real_decode = ch.decode_to_master

        @web.middleware
        async def count(request: Any, handler: Any) -> Any:
            stats.requests += 1
            return await handler(request)

        def decode_to_master(data: Any) -> Any:
            c0 = time.thread_time()
            msgs = real_decode(data)
            stats.cpu_by["decode_frames"] = stats.cpu_by.get("decode_frames", 0.0) + time.thread_time() - c0
            stats.frames += 1
            stats.frame_msgs += len(msgs)
            return msgs

        app.middlewares.append(count)
        ch.decode_to_master = decode_to_master  # type: ignore[assignment]

    def watch_cpu(self, srv: Any) -> None:
        """Sum the thread CPU of the master's pieces of work a gap can hold (instance attributes
        over the bound methods the server calls through ``self``/``core``; generators timed a
        step at a time): status updates, acknowledgements, ACCEPT steps, effects flushed, frames
        decoded and encoded."""
        from mesos_nb.protocol import channel as ch

        stats = self

        def timed(name: str, fn: Any) -> Any:
            def call(*a: Any, **kw: Any) -> Any:
                c0 = time.thread_time()
                try:
                    return fn(*a, **kw)
                finally:
                    stats.cpu_by[name] = stats.cpu_by.get(name, 0.0) + time.thread_time() - c0
            return call

        def timed_steps(name: str, fn: Any) -> Any:
            def call(*a: Any, **kw: Any) -> Any:
                gen = fn(*a, **kw)
                step = timed(name, lambda: next(gen))
                while True:
                    try:
                        x = step()
                    except StopIteration as stop:
                        return stop.value
                    yield x
            return call

        core = srv.core
        for name in ("status_update", "acknowledge"):
            setattr(core, name, timed(name, getattr(core, name)))
        core.accept_steps = timed_steps("accept", core.accept_steps)
        srv.flush = timed("flush", srv.flush)
        ch.encode_frames = timed_steps("encode_frames", ch.encode_frames)

    def _marks(self) -> tuple:
        return (time.monotonic(), time.thread_time(), self.gc_total, self.requests, self.frames,
                self.frame_msgs, len(self.alloc_steps), dict(self.cpu_by), self.gc_by_gen.get(1, 0))

    def note_gap(self, before: tuple, after: tuple) -> None:
        """One gap over 50 ms: its wall, the master thread's CPU in it and the work counted."""
        wall, cpu, gcs = after[0] - before[0], after[1] - before[1], after[2] - before[2]
        t = self.gap_totals
        t["wall_s"] += wall
        t["cpu_s"] += cpu
        t["gc_s"] += gcs
        t["box" if cpu < 0.5 * wall else "ours"] += 1
        if cpu >= 0.5 * wall:  # the longest stall that was the master's own work, not the box's
            self.max_ours_gap = max(self.max_ours_gap, wall)
        self.max_gap_cpu = max(self.max_gap_cpu, cpu)
        if len(self.gap_log) < 10 or wall > self.gap_log[-1]["wall_s"]:
            entry = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "gc_s": round(gcs, 4),
                     "requests": after[3] - before[3], "frames": after[4] - before[4],
                     "frame_msgs": after[5] - before[5], "alloc_steps": after[6] - before[6],
                     "gc_gen1": after[8] - before[8],
                     "cpu_by": {k: round(v - before[7].get(k, 0.0), 4) for k, v in after[7].items()
                                if v - before[7].get(k, 0.0) >= 0.0005}}
            self.gap_log = sorted(self.gap_log + [entry], key=lambda e: -e["wall_s"])[:10]

    def watch_allocator(self, allocator: Any) -> None:
        """Time each allocator step (thread CPU) and each batch of offers made from a cycle."""
        from mesos_nb.master import offers

        real_step = allocator.step
        real_make = offers.make_offers
        stats = self

        def step(run: Any, limit: int | None = None) -> Any:
            c0 = time.thread_time()
            out = real_step(run, limit)
            stats.alloc_steps.append(time.thread_time() - c0)
            stats.cpu_by["alloc_step"] = stats.cpu_by.get("alloc_step", 0.0) + stats.alloc_steps[-1]
            stats.alloc_step_agents += limit or 0
            return out

        def make_offers(st: Any, allocations: list) -> None:
            c0, g0 = time.thread_time(), stats.gc_total
            real_make(st, allocations)
            cpu = time.thread_time() - c0
            stats.cpu_by["make_offers"] = stats.cpu_by.get("make_offers", 0.0) + cpu
            if cpu > stats.make_offers_max[0]:  # (with the collector's pauses inside it, if any)
                stats.make_offers_max = (cpu, len(allocations))
                stats.make_offers_max_gc = stats.gc_total - g0

        allocator.step = step
        offers.make_offers = make_offers


    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: a stall can be the collector, not the master's code."""
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            self._gc_cpu0 = time.thread_time()
            self._gc_count0 = gc.get_count()
            return
        d = time.perf_counter() - self._gc_t0
        self.gc_total += d
        self._turn_gc += d
        gen = info.get("generation", 0)
        if d > self.gc_max:
            # the worst pause: which generation, how many objects were waiting in the young
            # generations, how much of the pause was CPU (the rest: the process was off the CPU)
            self.gc_worst = {"generation": gen, "counts_at_start": list(self._gc_count0),
                             "collected": info.get("collected"), "cpu_s": time.thread_time() - self._gc_cpu0}
        self.gc_max = max(self.gc_max, d)
        self.gc_cpu_max = max(self.gc_cpu_max, time.thread_time() - self._gc_cpu0)
        self.gc_by_gen[gen] = self.gc_by_gen.get(gen, 0) + 1
        if gen == 2:
            self.gc_full += 1

    def reset(self) -> None:
        self.gc_max = self.gc_total = self.gc_cpu_max = 0.0
        self.gc_full = 0
        self.gc_worst = {}
        self.gc_by_gen = {}
        self.slow_steps = []
        self.slow_turns = []
        self.turns_over_50ms = 0
        self.alloc_steps = []
        self.alloc_step_agents = 0
        self.make_offers_max = (0.0, 0)
        self.make_offers_max_gc = 0.0
        self.max_gap = 0.0
        self.gaps_over_50ms = self.gaps_over_100ms = 0
        self.alloc = []
        self.alloc_max = 0.0
        self.gap_log = []
        self.gap_totals = {"wall_s": 0.0, "cpu_s": 0.0, "gc_s": 0.0, "box": 0, "ours": 0}
        self.max_ours_gap = self.max_gap_cpu = 0.0
        self.started = time.monotonic()

    async def tick(self) -> None:
        marks = self._marks()
        while True:
            await asyncio.sleep(self.period)
            before, marks = marks, self._marks()
            gap = marks[0] - before[0] - self.period
            if gap > self.max_gap:
                self.max_gap = gap
            if gap > 0.05:
                self.note_gap(before, marks)
                self.gaps_over_50ms += 1
                if gap > 0.1:
                    self.gaps_over_100ms += 1

    def time_allocate(self, fn: Any) -> Any:
        def allocate(now: float, *args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(now, *args, **kw)
            finally:
                dt = time.perf_counter() - t0
                self.alloc.append(dt)
                if len(self.alloc) > 10000:
                    del self.alloc[:5000]
                self.alloc_max = max(self.alloc_max, dt)
        return allocate

    def snapshot(self) -> dict[str, Any]:
        a = sorted(self.alloc)
        steps = sorted(self.alloc_steps)
        return {
            "window_s": time.monotonic() - self.started,
            "loop_max_gap_s": self.max_gap,
            "loop_gaps_over_50ms": self.gaps_over_50ms,
            "loop_gaps_over_100ms": self.gaps_over_100ms,
            "alloc_cycles": len(a),
            "alloc_p50_s": a[len(a) // 2] if a else None,
            "alloc_max_s": self.alloc_max if a else None,
            "alloc_mean_s": (sum(a) / len(a)) if a else None,
            "gc_max_pause_s": self.gc_max,
            "gc_total_s": self.gc_total,
            "gc_full_collections": self.gc_full,
            "gc_max_cpu_s": self.gc_cpu_max,
            "gc_worst": self.gc_worst,
            "gc_collections_by_generation": {str(k): v for k, v in sorted(self.gc_by_gen.items())},
            "loop_slow_steps": [{"cpu_s": round(c, 4), "wall_s": round(w, 4), "callback": n} for c, w, n in self.slow_steps],
            "loop_turns_over_50ms": self.turns_over_50ms,
            "loop_slow_turns": [t for _, t in self.slow_turns],
            "alloc_steps": len(steps),
            "alloc_step_agents": self.alloc_step_agents,
            "alloc_step_p50_cpu_s": steps[len(steps) // 2] if steps else None,
            "alloc_step_p99_cpu_s": steps[int(len(steps) * 0.99)] if steps else None,
            "alloc_step_max_cpu_s": steps[-1] if steps else None,
            "alloc_steps_over_5ms": sum(1 for x in steps if x > 0.005),
            "make_offers_max_cpu_s": self.make_offers_max[0],
            "make_offers_max_offers": self.make_offers_max[1],
            "make_offers_max_gc_s": self.make_offers_max_gc,
            "loop_gap_totals": {k: round(v, 4) for k, v in self.gap_totals.items()},
            "loop_max_ours_gap_s": self.max_ours_gap,  # gaps over 50 ms only (0: none was ours)
            "loop_max_gap_cpu_s": self.max_gap_cpu,
            "loop_gaps": self.gap_log,
            "requests": self.requests,
            "channel_frames": self.frames,
        }


async def serve(port: int, secret: str | None, allocation_interval: float, host: str = "127.0.0.1",
                feed: bool = True, gc_threshold: tuple[int, ...] | None = None) -> None:
    import psutil
    from aiohttp import web

    from mesos_nb.master.server import MasterConfig, MasterServer

    cfg = MasterConfig(host=host, port=port, agent_secret=secret, allocation_interval=allocation_interval)
    srv = MasterServer(cfg)
    stats = LoopStats()
    stats.watch_steps()
    gc.callbacks.append(stats.on_gc)
    from mesos_nb.master import gcpolicy

    if gc_threshold:
        gc.set_threshold(*gc_threshold)  # what the collector's pauses cost: compare with and without
    elif gc_threshold is None:
        alt = os.environ.get("BENCH_GCPOLICY_THRESHOLD")  # the policy with other thresholds (A/B)
        if alt:
            gcpolicy.THRESHOLD = tuple(int(x) for x in alt.split(","))  # type: ignore[assignment]
        # as `mesos-nb master` does; BENCH_GC_FULL=0: without its full collections (A/B, gc_soak);
        # BENCH_GC_FULL_MIN_INTERVAL: seconds between them at most (a soak compresses the hour)
        gcpolicy.FULL_MIN_INTERVAL = float(os.environ.get("BENCH_GC_FULL_MIN_INTERVAL") or gcpolicy.FULL_MIN_INTERVAL)
        gcpolicy.install(full_ratio=None if os.environ.get("BENCH_GC_FULL") == "0" else gcpolicy.FULL_RATIO)
    srv.core.allocate = stats.time_allocate(srv.core.allocate)  # type: ignore[method-assign]
    stats.watch_allocator(srv.core.allocator)
    stats.watch_turns(asyncio.get_running_loop())
    stats.watch_work(srv.app)
    stats.watch_cpu(srv)
    me = psutil.Process()
    me.cpu_percent(None)

    def _warmer_stats(srv: Any) -> dict[str, Any]:
        """The background renders so far (masters without a warmer: none)."""
        w = getattr(srv.views, "warmer", None)
        if w is None:
            return {}
        return {"state_warms": w.warms, "state_warm_busy_s": w.busy, "state_held_bytes": w.held()}

    async def bench_stats(request: web.Request) -> web.Response:
        snap = stats.snapshot()
        cpu = me.cpu_times()
        snap.update(pid=os.getpid(), rss_bytes=me.memory_info().rss, cpu_user_s=cpu.user,
                    cpu_system_s=cpu.system, agents=len(srv.core.agents),
                    frameworks=len(srv.core.frameworks), offers=len(srv.core.offers),
                    # gc.get_freeze_count() walks the frozen generation (~70 ms at 100k tasks):
                    # the probe's own step would be the longest one it reports; only on ?gc=1
                    gc_policy=gcpolicy.stats() if request.query.get("gc") else None,
                    # tasks the state renderers encoded so far (a render reusing its blocks adds none)
                    state_tasks_encoded=srv.views._state.tasks.rendered,
                    get_state_tasks_encoded=srv.views.operator_state.active.rendered
                    + srv.views.operator_state.completed.rendered,
                    # requests the per-turn budget held for a later turn (masters without one: None)
                    turn_budget_deferred=next((mw.__self__.deferred for mw in srv.app.middlewares
                                               if hasattr(getattr(mw, "__self__", None), "deferred")), None),
                    **_warmer_stats(srv))
        if request.query.get("reset"):
            stats.reset()
        return web.json_response(snap)

    async def frozen_garbage(request: web.Request) -> web.Response:
        """Diagnostic (it pauses the master for a whole-heap collection): how many frozen objects
        were garbage: unfreeze, collect everything, freeze again; the RSS before and after.
        ``?types=1``: the live objects by type; ``&referrers=Type``: who holds that type's (the
        same pass over the unfrozen heap)."""
        rss0, frozen0, t0 = me.memory_info().rss, gc.get_freeze_count(), time.perf_counter()
        gc.unfreeze()
        freed = gc.collect(2)
        pause = time.perf_counter() - t0
        types: dict[str, int] = {}
        referrers = None
        if request.query.get("types"):  # what the heap holds, by type (which records grow)
            from .heap_paths import referrers_of

            gc.unfreeze()  # (the policy's callback froze the survivors at the collection's end)
            objs = gc.get_objects()
            for o in objs:
                k = type(o).__qualname__
                types[k] = types.get(k, 0) + 1
            if request.query.get("referrers"):
                referrers = referrers_of(request.query["referrers"], objs=objs)
            del objs
        gc.freeze()
        return web.json_response({"frozen_before": frozen0, "freed": freed, "frozen_after": gc.get_freeze_count(),
                                  "pause_s": pause, "rss_before": rss0, "rss_after": me.memory_info().rss,
                                  "types": types, "referrers": referrers})

    async def heap_paths(request: web.Request) -> web.Response:
        """Diagnostic (it walks the master's records: a pause): container sizes by attribute
        path under the server (``heap_paths.container_sizes``)."""
        from .heap_paths import container_sizes

        return web.json_response({"sizes": container_sizes(srv, "srv")})

    srv.app.router.add_get("/bench/stats", bench_stats)
    srv.app.router.add_get("/bench/heap_paths", heap_paths)
    srv.app.router.add_post("/bench/frozen_garbage", frozen_garbage)
    if os.environ.get("BENCH_TURN_BUDGET") == "0":  # A/B: the master without its per-turn budget
        from mesos_nb.master.turn_budget import TurnBudget

        keep = [mw for mw in srv.app.middlewares if not isinstance(getattr(mw, "__self__", None), TurnBudget)]
        srv.app._middlewares = type(srv.app.middlewares)(keep)  # (not frozen before start)
    if not feed:
        # the web UI's utilization feed rebuilds a whole-cluster snapshot every 0.25 s while
        # anything changes and polls every busy agent's /monitor each second; --no-feed shows
        # the master without it (its routes still answer, built on demand)
        srv.webui.start = lambda: None  # type: ignore[method-assign]
    await srv.start()
    slow = os.environ.get("BENCH_SLOW_STEPS")
    if slow:  # asyncio debug mode names every loop step longer than this (seconds): slow, for hunting
        import logging

        logging.basicConfig(level=logging.WARNING)
        asyncio.get_running_loop().set_debug(True)
        asyncio.get_running_loop().slow_callback_duration = float(slow)
    ticker = asyncio.get_running_loop().create_task(stats.tick())
    print(f"ready {srv.port} {os.getpid()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    ticker.cancel()
    await srv.stop()


class MasterProcess:
    """``bench.master_proc`` as a subprocess; ``with MasterProcess() as m: m.url, m.pid``."""

    def __init__(self, *, secret: str | None = None, allocation_interval: float = 1.0,
                 env: dict[str, str] | None = None, feed: bool = True, gc_threshold: str | None = None) -> None:
        self.feed = feed
        self.gc_threshold = gc_threshold
        self.secret = secret
        self.allocation_interval = allocation_interval
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.pid = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MasterProcess:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "bench.master_proc", "--port", "0",
               "--allocation-interval", str(self.allocation_interval)] + ([] if self.feed else ["--no-feed"])
        if self.gc_threshold:
            cmd += ["--gc-threshold", self.gc_threshold]
        if self.secret:
            env["BENCH_AGENT_SECRET"] = self.secret  # not on the command line (ps)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=str(REPO))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().split()
        if not line or line[0] != "ready":
            self.stop()
            raise RuntimeError("the benchmark master did not start")
        self.port, self.pid = int(line[1]), int(line[2])
        return self

    def stats(self, reset: bool = False) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/bench/stats" + ("?reset=1" if reset else ""), timeout=60) as r:
            return json.loads(r.read())

    def get_json(self, path: str, timeout: float = 60) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> MasterProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="a master with loop/allocation instrumentation")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--allocation-interval", type=float, default=1.0)
    ap.add_argument("--no-feed", action="store_true", help="do not start the web UI's utilization feed")
    ap.add_argument("--gc-threshold", help="gc.set_threshold(A,B,C) in the master, e.g. 100000,50,1000")
    a = ap.parse_args(argv)
    gct: tuple[int, ...] | None = None
    if a.gc_threshold == "default":
        gct = ()
    elif a.gc_threshold:
        gct = tuple(int(x) for x in a.gc_threshold.split(","))
    run_loop(serve(a.port, os.environ.get("BENCH_AGENT_SECRET") or None, a.allocation_interval,
                      feed=not a.no_feed, gc_threshold=gct))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

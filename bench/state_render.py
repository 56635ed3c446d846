"""``/master/state`` at 10k agents / 100k tasks, and what hammering it does to allocation.

    python -m bench.state_render [--agents 10000] [--tasks 100000] [--renders 5] [--json]

A master in its own process (:mod:`bench.master_proc`), ``--agents`` emulated agents in
another (real agent channel, TASK_RUNNING reported without TASK_STARTING to halve the
updates), and a loader framework in this process that launches ``--tasks`` never-ending tasks
(each ``cpus:1;mem:16``; every agent keeps 2 CPUs free so it is still offered), at most 32
ACCEPTs in flight, then declines the rest and suppresses.

1. Render time: ``GET /master/state`` ``--renders`` times. The master caches a render until
   its state version changes, so before each request a probe framework REVIVEs (which bumps
   the version): every figure is a full render. Size in bytes is reported too.
2. Allocation delay: the probe framework repeatedly declines every offer (1 h filter),
   REVIVEs, and times REVIVE→OFFERS (a full allocation cycle over every agent, plus the
   10k offers' delivery): once quiet, once while another process fetches ``/master/state``
   back to back. The master's own allocation cycle times (``core.allocate``) are reported for
   both phases too. Mesos 1.7: 1.86 s per render and it blocked the master; target ≤ 0.5 s,
   allocation delayed < 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import threading
import time
import urllib.request
from typing import Any

from mesos_nb.protocol.messages import ID, CommandInfo, FrameworkInfo, TaskInfo
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import offer_role

from .harness import machine, pct, start_agents
from .master_proc import MasterProcess

TASK = {"cpus": 1.0, "mem": 16.0}


class Loader(Scheduler):
    def __init__(self, total: int, per_agent: int) -> None:
        self.total = total
        self.per_agent = per_agent
        self.launched = 0
        self.running = 0
        self.one = Resources.scalars_of(**TASK)
        self.gate = asyncio.Semaphore(32)  # a steady load, not 10k ACCEPTs at once

    async def _launch(self, driver: Any, offer_id: Any, tasks: list[TaskInfo]) -> None:
        async with self.gate:
            await driver.launch([offer_id], tasks)

    async def offers(self, driver: Any, offers: list[Any]) -> None:
        calls, spare = [], []
        for o in offers:
            k = min(self.per_agent, self.total - self.launched)
            if k <= 0:
                spare.append(o.id)
                continue
            res = self.one.to_proto(offer_role(o))
            tasks = [TaskInfo(name="s", task_id=ID(value=f"s{self.launched + i}"), agent_id=o.agent_id,
                              resources=res, command=CommandInfo(value="serve")) for i in range(k)]
            self.launched += k
            calls.append(self._launch(driver, o.id, tasks))
        if spare:
            calls.append(driver.decline(spare, refuse_seconds=86400))
        await asyncio.gather(*calls)
        if self.launched >= self.total:
            await driver.suppress()

    def update(self, driver: Any, status: Any) -> None:
        if status.state == "TASK_RUNNING":
            self.running += 1


class Reviver(Scheduler):
    """Declines everything for an hour; ``cycle()`` REVIVEs and times the next offers."""

    def __init__(self) -> None:
        self.got: asyncio.Event = asyncio.Event()
        self.n_offers = 0
        self.starved = 0  # cycles that got no offers within the timeout

    async def offers(self, driver: Any, offers: list[Any]) -> None:
        self.n_offers = len(offers)
        self.got.set()
        await driver.decline([o.id for o in offers], refuse_seconds=3600)

    async def cycle(self, driver: Any, timeout: float = 120.0) -> float:
        """Seconds from REVIVE to the next offers; ``timeout`` when none came (starved)."""
        self.got.clear()
        t0 = time.perf_counter()
        await driver.revive()
        try:
            await asyncio.wait_for(self.got.wait(), timeout)
        except asyncio.TimeoutError:
            self.starved += 1
        return time.perf_counter() - t0


def _get(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as r:
        n = len(r.read())
    return time.perf_counter() - t0, n


class Hammer:
    """Fetches a URL back to back from a thread until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.times.append(_get(self.url)[0])

    def __enter__(self) -> Hammer:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join(300)


async def run(agents: int = 10000, tasks: int = 100000, renders: int = 5, cycles: int = 8,
              feed: bool = True, gc_threshold: str | None = None, log: Any = None) -> dict[str, Any]:
    say = log or (lambda *_: None)
    per_agent = math.ceil(tasks / agents)
    res = f"cpus:{per_agent + 2};mem:{16 * per_agent + 256};disk:1024"
    out: dict[str, Any] = {"agents": agents, "tasks": tasks, "machine": machine(), "ui_feed": feed,
                           "master_gc_threshold": gc_threshold or "default"}
    with MasterProcess(secret="state-render", feed=feed, gc_threshold=gc_threshold) as master:
        agents_p = start_agents(master.address, agents, res, "state-render", starting=False)
        loader = Loader(tasks, per_agent)
        ld = SchedulerDriver(loader, FrameworkInfo(user="bench", name="loader"), master.address,
                             call_timeout=600, start_timeout=120)
        rv = Reviver()
        rd = SchedulerDriver(rv, FrameworkInfo(user="bench", name="reviver", roles=["probe"]), master.address,
                             call_timeout=600, start_timeout=120)
        try:
            t0 = time.perf_counter()
            await ld.start()
            while loader.running < tasks:
                await asyncio.sleep(0.5)
                if time.perf_counter() - t0 > 1800 or not ld.running:
                    raise RuntimeError(f"only {loader.running} of {tasks} tasks running after "
                                       f"{time.perf_counter() - t0:.0f} s (the loader framework "
                                       f"{'was removed' if not ld.running else 'is still waiting'})")
            out["load_s"] = time.perf_counter() - t0
            say(f"{tasks} tasks running on {agents} agents after {out['load_s']:.1f} s")
            await rd.start()
            await rv.cycle(rd)  # the first offers: every agent
            out["offers_per_cycle"] = rv.n_offers
            times, sizes = [], []
            for _ in range(renders):
                await rd.revive()  # bumps the state version: the next render is not cached
                dt, n = await asyncio.to_thread(_get, master.url + "/master/state")
                times.append(dt)
                sizes.append(n)
            out.update(render_p50_s=pct(times, 0.5), render_min_s=min(times), render_max_s=max(times),
                       render_bytes=sizes[-1])
            say(f"/master/state: {out['render_p50_s']:.3f} s median, {sizes[-1] / 1e6:.1f} MB")
            await asyncio.sleep(1.0)  # let the last offers be declined
            master.stats(reset=True)
            quiet = [await rv.cycle(rd) for _ in range(cycles)]
            st = master.stats(reset=True)
            out.update(revive_offer_quiet_p50_s=pct(quiet, 0.5), revive_offer_quiet_max_s=max(quiet),
                       alloc_quiet_p50_s=st["alloc_p50_s"], alloc_quiet_max_s=st["alloc_max_s"],
                       loop_max_gap_quiet_s=st["loop_max_gap_s"])
            with Hammer(master.url + "/master/state") as h:
                busy = [await rv.cycle(rd) for _ in range(cycles)]
            out["hammered_cycles_without_offers_in_120s"] = rv.starved
            st = master.stats()
            out.update(revive_offer_hammered_p50_s=pct(busy, 0.5), revive_offer_hammered_max_s=max(busy),
                       alloc_hammered_p50_s=st["alloc_p50_s"], alloc_hammered_max_s=st["alloc_max_s"],
                       loop_max_gap_hammered_s=st["loop_max_gap_s"], hammer_renders=len(h.times),
                       hammer_render_p50_s=pct(h.times, 0.5))
            out["allocation_delay_ratio"] = out["revive_offer_hammered_p50_s"] / out["revive_offer_quiet_p50_s"]
            out["master_rss_bytes"] = master.stats()["rss_bytes"]
        finally:
            for d in (rd, ld):
                await asyncio.gather(asyncio.wait_for(d.stop(), 120), return_exceptions=True)
            out["agents_process"] = agents_p.finish()
    out["verdict"] = "met" if (out.get("render_p50_s") or 9) <= 0.5 and (out.get("allocation_delay_ratio") or 9) < 1.1 else "MISSED"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--renders", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=8, help="REVIVE→offers samples per phase")
    ap.add_argument("--no-feed", action="store_true", help="master without the web UI's utilization feed")
    ap.add_argument("--gc-threshold", help="the master's gc.set_threshold, e.g. 100000,50,1000")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.agents < 1 or a.tasks < 1 or a.renders < 1 or a.cycles < 1:
        print("--agents, --tasks, --renders and --cycles must be positive", file=sys.stderr)
        return 2
    log = None if a.json else (lambda s: print(s, file=sys.stderr, flush=True))
    r = asyncio.run(run(a.agents, a.tasks, a.renders, a.cycles, feed=not a.no_feed,
                        gc_threshold=a.gc_threshold, log=log))
    print(json.dumps(r, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

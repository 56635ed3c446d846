"""Soak: the master's memory over many minutes of production-like churn, with its collector
policy (:mod:`mesos_nb.master.gcpolicy`) freezing what every collection leaves.

A real master (``bench.master_proc``, the policy of ``mesos-nb master``) and, in this process,
emulated agents (``bench.emulated_agents``, the real agent channel) and frameworks (the real
scheduler driver) that churn as a long-lived master sees it:

* frameworks subscribe, launch short tasks (0.3 s on average), get their updates and acknowledge them,
  then (all ended, or after ``--life`` s) TEARDOWN, or disconnect and let their failover timeout (1 s) remove them (alternately);
  ``--frameworks`` of them alive at once, each replaced as it ends;
* agents come and go: a group of ``--churn-agents`` registers every ``--agent-period`` s and
  the oldest group leaves (UNREGISTER, or every third time its channel just drops);
* ``/master/state`` read every ``--state-period`` s.

Every minute (and at the start) it records the master's RSS, its frozen objects
(``gc_policy.frozen`` of the bench master's ``/bench/stats?gc=1``), the full collections the policy ran
and the tasks finished. At the end, the diagnostic ``POST /bench/frozen_garbage``: how many
frozen objects were garbage (unfreeze and collect everything: ``frozen_before - frozen_after``;
``freed`` counts only those in the cycles, not what they held) and the RSS it gives back.

``BENCH_GC_FULL=0`` in the environment runs the master without the policy's full collections
(the A/B); ``--full-min-interval`` (default 60 s) stands for the policy's hour between them, so
that minutes of soak show what hours would. ``python -m bench.gc_soak --minutes 10 [--json]``; ``--pause-objects N`` only times the
full collection's pause at a synthetic heap of N objects (pause against heap size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from typing import Any

import aiohttp
import psutil

from mesos_nb.protocol.messages import FrameworkInfo, TaskStatus
from mesos_nb.scheduler import SchedulerDriver

from . import heap_paths
from .emulated_agents import EmulatedAgents
from .harness import machine, run_loop
from .master_proc import MasterProcess
from .nsdi import Busy


class Churn(Busy):
    """Launches ``n`` short tasks (0.3 s on average), then says it is done (every one terminal)."""

    def __init__(self, name: str, n: int, rng: random.Random) -> None:
        super().__init__(name, n, 0.3, rng, refuse=1.0)
        self.total = n
        self.done = asyncio.Event()

    @property
    def terminal(self) -> int:
        return self.finished + self.lost

    async def offers(self, driver: SchedulerDriver, offers: list[Any]) -> None:
        await super().offers(driver, offers)
        if self.launched >= self.total:
            self.target = 0  # no more launches: the offers to come are declined

    def update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        super().update(driver, status)
        if self.terminal >= self.total:
            self.done.set()


class Soak:
    def __init__(self, master: MasterProcess, a: argparse.Namespace) -> None:
        self.m = master
        self.a = a
        self.rng = random.Random(a.seed)
        self.tasks_done = 0
        self.frameworks_done = 0
        self.framework_errors = 0
        self.agent_groups = 0
        self.state_reads = 0

    async def framework(self, slot: int) -> None:
        """One framework's life after another, in this slot, until cancelled."""
        life = 0
        while True:
            life += 1
            s = Churn(f"soak{slot}-{life}", self.a.tasks, self.rng)
            d = SchedulerDriver(s, FrameworkInfo(user="bench", name=s.name, failover_timeout=1.0),
                                self.m.address, start_timeout=60, call_timeout=60)
            try:
                await d.start()
                # tasks on an agent whose channel dropped end only when the master gives the agent
                # up (75 s): the framework tears down (killing them) or leaves before that
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(s.done.wait(), self.a.life)
            except Exception as e:  # counted, the soak goes on
                self.framework_errors += 1
                if self.framework_errors <= 3:
                    print(f"{s.name}: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                with contextlib.suppress(Exception):
                    await d.stop(failover=life % 2 == 0)  # TEARDOWN, or drop the stream (failover 1 s)
            self.tasks_done += s.terminal
            self.frameworks_done += 1

    async def agents(self, secret: str) -> None:
        groups: list[EmulatedAgents] = []
        n = 0
        try:
            while True:
                n += 1
                g = EmulatedAgents(self.m.address, self.a.churn_agents, secret=secret,
                                   hostname_prefix=f"churn{n}", register_timeout=60)
                await g.start()
                groups.append(g)
                self.agent_groups += 1
                if len(groups) > 2:
                    old = groups.pop(0)
                    await old.stop(unregister=n % 3 != 0)  # every third group just drops its channel
                await asyncio.sleep(self.a.agent_period)
        finally:
            for g in groups:
                await g.stop()

    async def read_state(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(self.m.url + "/master/state") as r:
                    await r.read()
                self.state_reads += 1
                await asyncio.sleep(self.a.state_period)

    async def sample(self, t0: float) -> dict[str, Any]:
        snap = await asyncio.to_thread(self.m.get_json, "/metrics/snapshot")
        policy = (await asyncio.to_thread(self.m.get_json, "/bench/stats?gc=1"))["gc_policy"]
        return {"t_min": round((time.monotonic() - t0) / 60, 2),
                "rss_mib": round(psutil.Process(self.m.pid).memory_info().rss / 2**20, 1),
                "frozen": policy["frozen"],  # (a walk of the frozen generation: the bench's own endpoint)
                "full_collections": snap.get("master/gc_full_collections"),
                "full_freed": snap.get("master/gc_full_collection_freed"),
                "full_max_ms": snap.get("master/gc_full_collection_max_ms"),
                "full_max_cpu_ms": snap.get("master/gc_full_collection_max_cpu_ms"),
                "tasks_done": self.tasks_done, "frameworks_done": self.frameworks_done,
                "load_1min": round(os.getloadavg()[0], 2)}


async def run(a: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    secret = "soak-" + str(random.Random(a.seed).getrandbits(64))
    full = os.environ.get("BENCH_GC_FULL") != "0"
    out: dict[str, Any] = {"minutes": a.minutes, "mitigation": full, "full_min_interval": a.full_min_interval, "frameworks": a.frameworks,
                           "tasks_per_framework": a.tasks, "machine": machine(), "samples": []}
    env = dict(os.environ, BENCH_GC_FULL_MIN_INTERVAL=str(a.full_min_interval))
    with MasterProcess(secret=secret, allocation_interval=0.2, env=env) as m:
        soak = Soak(m, a)
        base = EmulatedAgents(m.address, a.agents, secret=secret, hostname_prefix="base")
        await base.start()
        t0 = time.monotonic()
        early: dict[str, int] | None = None
        early_paths: dict[str, int] = {}
        early_g: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        work = [loop.create_task(soak.framework(i)) for i in range(a.frameworks)]
        work += [loop.create_task(soak.agents(secret)), loop.create_task(soak.read_state())]
        try:
            end = t0 + a.minutes * 60
            nxt = t0
            while True:
                if early is None and a.diagnose_at is not None and time.monotonic() - t0 >= a.diagnose_at * 60:
                    early_g = await asyncio.to_thread(_post_json, m.url + "/bench/frozen_garbage?types=1")
                    early = early_g.pop("types")
                    early_g.pop("referrers")
                    early_paths = (await asyncio.to_thread(m.get_json, "/bench/heap_paths"))["sizes"]
                if nxt <= time.monotonic():
                    s = await soak.sample(t0)
                    out["samples"].append(s)
                    log(json.dumps(s))
                    nxt += a.sample_period
                if time.monotonic() >= end:
                    break
                for w in work:
                    if w.done() and w.exception() is not None:
                        raise w.exception()  # type: ignore[misc]
                await asyncio.sleep(min(1.0, max(0.0, min(nxt, end) - time.monotonic())))
        finally:
            for w in work:
                w.cancel()
            await asyncio.gather(*work, return_exceptions=True)
            await base.stop()
        out["last"] = await soak.sample(t0)
        out["frozen_garbage"] = await asyncio.to_thread(
            _post_json, m.url + "/bench/frozen_garbage?types=1&referrers=" + a.referrers)
        types = out["frozen_garbage"].pop("types")
        referrers = out["frozen_garbage"].pop("referrers")
        if early is not None:  # which types and records grew between the two diagnostics (a leak's)
            out["types_grown"] = heap_paths.grown(early, types)
            out["diagnose_early"] = early_g
            late = await asyncio.to_thread(m.get_json, "/bench/heap_paths")
            out["paths_grown"] = heap_paths.grown(early_paths, late["sizes"])
            out["referrers"] = {a.referrers: referrers}
        out.update(tasks_done=soak.tasks_done, frameworks_done=soak.frameworks_done,
                   framework_errors=soak.framework_errors, agent_groups=soak.agent_groups,
                   state_reads=soak.state_reads)
    return out


def full_pause(objects: int) -> dict[str, Any]:
    """The pause of the policy's full collection at a heap of ``objects`` tracked objects, shaped
    like a master's records (a dict with a list and a small object each: 3 per record), frozen
    as the policy leaves them; run in a fresh process per size (``--pause-objects``)."""
    import gc

    class Rec:
        __slots__ = ("id", "res")

    def rec(i: int) -> dict[str, Any]:
        r = Rec()
        r.id, r.res = i, [i]
        return {"id": str(i), "r": r}

    heap = [rec(i) for i in range(objects // 3)]
    gc.freeze()
    t0, c0 = time.perf_counter(), time.thread_time()
    gc.unfreeze()
    gc.collect(2)
    gc.freeze()
    return {"objects": gc.get_freeze_count(), "records": len(heap), "pause_s": round(time.perf_counter() - t0, 4),
            "cpu_s": round(time.thread_time() - c0, 4),
            "rss_mib": round(psutil.Process().memory_info().rss / 2**20, 1), "load_1min": os.getloadavg()[0]}


def _post_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=300) as r:
        return json.loads(r.read())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the master's RSS and frozen objects over minutes of churn")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sample-period", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--agents", type=int, default=20, help="agents that stay")
    ap.add_argument("--churn-agents", type=int, default=10, help="agents per group that comes and goes")
    ap.add_argument("--agent-period", type=float, default=10.0)
    ap.add_argument("--frameworks", type=int, default=4, help="frameworks alive at once")
    ap.add_argument("--tasks", type=int, default=40, help="tasks per framework life")
    ap.add_argument("--life", type=float, default=15.0, help="a framework's longest life, seconds")
    ap.add_argument("--state-period", type=float, default=2.0)
    ap.add_argument("--full-min-interval", type=float, default=60.0,
                    help="the policy's least seconds between full collections (an hour in production: "
                    "the soak compresses it)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout, samples on stderr")
    ap.add_argument("--diagnose-at", type=float, help="minute of a first frozen-garbage diagnostic: "
                    "the types that grew between it and the end are reported (it collects everything)")
    ap.add_argument("--referrers", default="Resources", help="with --diagnose-at: the type whose holders are "
                    "reported at the end (by the referrers' type, two levels up)")
    ap.add_argument("--pause-objects", type=int, help="only time a full collection at a heap of this many objects")
    a = ap.parse_args(argv)
    if a.pause_objects:
        print(json.dumps(full_pause(a.pause_objects)))
        return 0
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if a.json else (lambda s: print(s, flush=True))
    r = run_loop(run(a, log))
    if a.json:
        print(json.dumps(r))
    else:
        g = r["frozen_garbage"]
        print(f"RSS {r['samples'][0]['rss_mib']} -> {r['last']['rss_mib']} MiB over {a.minutes:g} min "
              f"(mitigation {'on' if r['mitigation'] else 'off'}); frozen garbage at the end: "
              f"{g['frozen_before'] - g['frozen_after']} of {g['frozen_before']} frozen objects ({g['freed']} in "
              f"cycles, the rest held by them), RSS {g['rss_before'] / 2**20:.1f} -> {g['rss_after'] / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

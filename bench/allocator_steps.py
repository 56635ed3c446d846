"""The allocator's steps at the NSDI experiment's state, in-process, in thread CPU time.

    python -m bench.allocator_steps [--agents 50000] [--frameworks 200] [--warmup 12] [--measure 4] [--json]
    python -m bench.allocator_steps --profile          # and a cProfile of the measured steps

Why a bench of its own: at the NSDI run (``bench.nsdi``: 50,000 agents, 200 busy frameworks)
the master's allocator steps of ``big_calls.ALLOC_CHUNK`` agents were the longest steps of its
loop, and the whole master is too noisy a place to see why. Here the allocator alone replays
that run's shape, seeded, on a fake clock (``--tick`` seconds a turn):

* agents of one task slot (``cpus:1;mem:192;disk:1024``: a task is ``cpus:1;mem:128``, so a
  busy agent keeps ``mem:64;disk:1024`` free, which passes ``min_allocatable``);
* ``--frameworks`` frameworks in role ``busy`` each keep up to ``1.1 x agents / frameworks``
  tasks of exponential length (mean 30 s): an offer with a task's room is launched on (the
  rest declined with the default 5 s filter), any other offer declined (5 s filter); a probe
  framework in role ``probe`` stays suppressed, as between its launches;
* every turn: tasks that ended hand back their resources, the frameworks answer the offers of
  the last turn, and the allocator runs an event cycle over the changed agents (the master's
  2 ms timer) and, every ``--interval`` s, a full cycle, each over more than 128 agents in
  steps of ``ALLOC_CHUNK`` agents as the master runs it (``begin`` / ``step``).

So a busy agent's leftover goes round the frameworks, each refusing it for 5 s: after the
warm-up most agents are refused by most frameworks, as in the master. Every step of the
``--measure`` seconds after ``--warmup`` is timed in this thread's CPU time (the collector off:
the allocator's own work) and the figures are per step and per agent looked at.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import io
import json
import math
import pstats
import random
import statistics
import time
from typing import Any

from mesos_nb.master.allocator import HierarchicalDRFAllocator
from mesos_nb.master.big_calls import ALLOC_CHUNK, ALLOC_SLICE
from mesos_nb.protocol.resources import Resources

from .harness import machine

AGENT = "cpus:1;mem:192;disk:1024"
TASK = "cpus:1;mem:128"
REFUSE = 5.0  # the default filter of a DECLINE, and of an ACCEPT's unused part


class Cluster:
    """The allocator and the frameworks' side of the NSDI run (seeded, fake clock)."""

    def __init__(self, agents: int, frameworks: int, seed: int = 1, task_mean: float = 30.0,
                 refuse: float = REFUSE) -> None:
        self.alloc = HierarchicalDRFAllocator(seed=seed)
        self.refuse = refuse
        self.rng = random.Random(seed)
        self.task = Resources.parse(TASK)
        self.mean = task_mean
        self.now = 0.0
        self.target = math.ceil(agents * 1.1 / frameworks)
        self.alive = {f"fw{i:03d}": 0 for i in range(frameworks)}
        self.tasks: list[tuple[float, int, str, str, str]] = []  # (end, n, framework, agent, role)
        self.n = 0
        self.pending: list[Any] = []  # offers the frameworks answer next turn
        total = Resources.parse(AGENT)
        for i in range(agents):
            self.alloc.add_agent(f"a{i:05d}", total)
        for fid in self.alive:
            self.alloc.add_framework(fid, ["busy"])
        self.alloc.add_framework("probe", ["probe"], suppressed_roles=["probe"])
        self.steps: list[tuple[float, int, int]] = []  # (thread CPU s, agents, offers)
        self.record = False

    def answer(self) -> None:
        """The frameworks launch on or decline the offers they got."""
        alloc, task, now = self.alloc, self.task, self.now
        for a in self.pending:
            fid = a.framework_id
            if self.alive.get(fid, self.target) < self.target and a.resources.contains(task):
                self.alive[fid] += 1
                self.n += 1
                end = now + min(self.rng.expovariate(1.0 / self.mean), 10 * self.mean)
                heapq.heappush(self.tasks, (end, self.n, fid, a.agent_id, a.role))
                alloc.recover(fid, a.agent_id, a.resources - task, refuse_seconds=REFUSE, now=now, role=a.role)
            else:
                alloc.recover(fid, a.agent_id, a.resources, refuse_seconds=self.refuse, now=now, role=a.role)
        self.pending = []

    def end_tasks(self) -> None:
        while self.tasks and self.tasks[0][0] <= self.now:
            _, _, fid, aid, role = heapq.heappop(self.tasks)
            self.alive[fid] -= 1
            self.alloc.recover(fid, aid, self.task, role=role)

    def cycle(self, ids: list[str] | None) -> None:
        """One cycle as the master runs it: in steps of ALLOC_CHUNK agents over more than ALLOC_SLICE."""
        alloc = self.alloc
        if ids is not None and len(ids) <= ALLOC_SLICE:
            t0 = time.thread_time()
            made = alloc.allocate(self.now, ids)
            self._note(time.thread_time() - t0, len(ids), made)
            return
        run = alloc.begin(self.now, ids)
        while not run.done:
            before = len(run.cands) - run._pos if run.cands is not None else 0
            t0 = time.thread_time()
            made = alloc.step(run, ALLOC_CHUNK)
            dt = time.thread_time() - t0
            self._note(dt, before - (len(run.cands) - run._pos), made)

    def _note(self, dt: float, agents: int, made: list[Any]) -> None:
        self.pending += made
        if self.record and agents:
            self.steps.append((dt, agents, len(made)))

    def turn(self, tick: float, full: bool) -> None:
        self.now += tick
        self.end_tasks()
        self.answer()
        self.cycle(None if full else self.alloc.take_changed())
        if full:
            self.alloc.take_changed()


def run(agents: int, frameworks: int, warmup: float, measure: float, tick: float = 0.05,
        interval: float = 1.0, seed: int = 1, profile: bool = False, refuse: float = REFUSE) -> dict[str, Any]:
    t0 = time.perf_counter()
    c = Cluster(agents, frameworks, seed, refuse=refuse)
    every = max(1, round(interval / tick))
    turns = 0
    gc.collect()
    gc.freeze()
    while c.now < warmup:
        c.turn(tick, turns % every == 0)
        turns += 1
    setup = time.perf_counter() - t0
    filters = c.alloc.metrics()["allocator/offer_filters"]
    prof = cProfile.Profile() if profile else None
    c.record = True
    gc.disable()
    try:
        if prof:
            prof.enable()
        end = c.now + measure
        while c.now < end:
            c.turn(tick, turns % every == 0)
            turns += 1
        if prof:
            prof.disable()
    finally:
        gc.enable()
        gc.unfreeze()
    cpu = [s for s, _, _ in c.steps]
    full_steps = [s for s, n, _ in c.steps if n == ALLOC_CHUNK]
    per_agent = [s / n for s, n, _ in c.steps if n]
    out: dict[str, Any] = {
        "agents": agents, "frameworks": frameworks, "chunk": ALLOC_CHUNK, "refuse_s": refuse, "warmup_sim_s": warmup,
        "measure_sim_s": measure, "setup_wall_s": setup, "machine": machine(),
        "filters_at_start": filters, "running_tasks": len(c.tasks), "steps": len(cpu),
        "offers": sum(o for _, _, o in c.steps), "agents_looked_at": sum(n for _, n, _ in c.steps),
        "step_max_cpu_s": max(cpu, default=0.0),
        "step_p50_cpu_s": statistics.median(cpu) if cpu else 0.0,
        "chunk_step_p50_cpu_s": statistics.median(full_steps) if full_steps else 0.0,
        "chunk_step_max_cpu_s": max(full_steps, default=0.0),
        "per_agent_max_cpu_s": max(per_agent, default=0.0),
        "total_cpu_s": sum(cpu),
    }
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
        out["profile"] = s.getvalue()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=50000)
    ap.add_argument("--frameworks", type=int, default=200)
    ap.add_argument("--warmup", type=float, default=12.0, help="simulated seconds before the measure")
    ap.add_argument("--measure", type=float, default=4.0, help="simulated seconds measured")
    ap.add_argument("--tick", type=float, default=0.05, help="simulated seconds a turn (the frameworks' answer time)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between full cycles")
    ap.add_argument("--refuse", type=float, default=REFUSE,
                    help="the filter of a declined offer (3600 with --warmup 10 --tick 0.05: every framework "
                         "refuses every leftover, the longest walk)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.agents < 1 or a.frameworks < 1 or a.tick <= 0 or a.measure <= 0 or a.warmup < 0 or a.refuse < 0:
        print("--agents, --frameworks, --tick and --measure must be positive, --warmup and --refuse not negative")
        return 2
    r = run(a.agents, a.frameworks, a.warmup, a.measure, a.tick, a.interval, a.seed, a.profile, a.refuse)
    if a.json:
        print(json.dumps(r))
        return 0
    prof = r.pop("profile", None)
    for k, v in r.items():
        print(f"{k}: {v * 1000:.3f} ms" if k.endswith("cpu_s") else f"{k}: {v}")
    if prof:
        print(prof)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

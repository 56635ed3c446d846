"""The Mesos NSDI'11 scalability experiment, scaled to one box (targets: BENCHMARKS.md).

    python -m bench.nsdi [--agents 50000] [--frameworks 200] [--duration 60]
    python -m bench.nsdi --agents 1000 --frameworks 20 --duration 20      # seconds, CI size

Processes: the master (:mod:`bench.master_proc`, instrumented), N emulated agents in one
process over the real agent channel (:mod:`bench.emulated_agents`), this process running the
busy frameworks on the SDK's asyncio driver (``--framework-procs K``: spread over this process
and K-1 children, as 200 frameworks in one process use most of a core at 50k), a probe framework
in its own process (so the busy frameworks' event loop does not delay what it measures), and a
``/health`` poller.

Busy frameworks keep tasks of exponentially distributed duration (mean ``--task-mean`` 30 s,
as the paper's normal(30, 10)) running: they take every offer while below their share of
the cluster and together want ``--overcommit`` (1.1) times what the cluster holds, so the
cluster stays full and offers are used, not declined (a cluster mostly idle would instead
churn every agent through every framework's decline filter). Each agent holds ``--slots``
task slots (one task = ``cpus:1;mem:128``). The agents report TASK_RUNNING without
TASK_STARTING (as executors before Mesos 1.1, and the paper's Mesos, did; ``--starting``
adds it): half the updates and acknowledgements for the frameworks' process.

The probe framework launches one short task at a time (REVIVE, wait for an offer, ACCEPT,
wait for TASK_RUNNING and TASK_FINISHED, SUPPRESS) and measures REVIVE→offer, offer→
TASK_RUNNING and ACCEPT→TASK_RUNNING. The paper's figure is the overhead of one task launch
with 50,000 agents: < 1 s; the target here is p99 < 1 s and master RSS < 4 GB.

Prints one JSON object (``--json``) or a readable summary. Loop stalls are reported from
inside the master (an asyncio ticker's largest gap) and from outside (``/health`` latency).

``--load-nice N`` (default 10; 0 turns it off): the load generators, i.e. the emulated agents'
process and the busy frameworks (then all in child processes, none in this one), run at nice
N. In the NSDI'11 setup they ran on other machines; on one small box they otherwise take the
CPU the master waits for, and the loop-lag probe measures the box's contention instead of the
master's own stalls. The master, the probe framework and the ``/health`` poller keep nice 0.
The longest step in the master's thread CPU (``loop_slow_steps``) and the collector's pauses
(``gc_max_pause_s``) are reported either way: they do not depend on the other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from typing import Any

from mesos_nb.protocol.messages import (
    ID,
    CommandInfo,
    FrameworkInfo,
    TaskInfo,
    TaskStatus,
    is_terminal,
)
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import offer_role

from .emulated_agents import duration_labels
from .harness import Child, CpuMeter, machine, pct, start_agents, start_health_probe
from .master_proc import MasterProcess

TASK = {"cpus": 1.0, "mem": 128.0}


def make_task(offer: Any, task_id: str, seconds: float) -> TaskInfo:
    res = Resources.scalars_of(role="*", **TASK).to_proto(offer_role(offer))
    return TaskInfo(name="nsdi", task_id=ID(value=task_id), agent_id=offer.agent_id, resources=res,
                    command=CommandInfo(value=f"sleep {seconds:.3f}", shell=True),
                    labels=duration_labels(seconds))


class Busy(Scheduler):
    """Keeps up to ``target`` tasks alive; takes every slot of every offer while below it."""

    def __init__(self, name: str, target: int, mean: float, rng: random.Random, refuse: float) -> None:
        self.name = name
        self.target = target
        self.mean = mean
        self.rng = rng
        self.refuse = refuse
        self.alive = 0  # launched, not terminal
        self.running = 0
        self.launched = 0
        self.finished = 0
        self.lost = 0
        self.n = 0
        self.one = Resources.scalars_of(**TASK)
        self.stopping = False
        self.call_errors = 0

    async def offers(self, driver: SchedulerDriver, offers: list[Any]) -> None:
        calls = []
        spare = []
        for o in offers:
            have = Resources.from_proto(o.resources)
            tasks = []
            while self.alive < self.target and have.contains(self.one):
                have = have - self.one
                d = min(self.rng.expovariate(1.0 / self.mean), 10 * self.mean)
                self.n += 1
                tasks.append(make_task(o, f"{self.name}-{self.n}", d))
                self.alive += 1
            if tasks:
                self.launched += len(tasks)
                calls.append(driver.launch([o.id], tasks))
            else:
                spare.append(o.id)
        if spare:
            calls.append(driver.decline(spare, refuse_seconds=self.refuse))
        for r in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(r, Exception) and not self.stopping:
                self.call_errors += 1
                if self.call_errors <= 3:
                    print(f"{self.name}: call failed: {r}", file=sys.stderr)

    def update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        if status.state == "TASK_RUNNING":
            self.running += 1
        elif is_terminal(status.state):
            self.alive -= 1
            if status.state == "TASK_FINISHED":
                self.finished += 1
                self.running -= 1
            else:
                self.lost += 1


class Probe(Scheduler):
    """One task at a time; records REVIVE→offer, offer→RUNNING, ACCEPT→RUNNING."""

    def __init__(self, task_seconds: float) -> None:
        self.task_seconds = task_seconds
        self.waiting = True
        self.t_want = time.monotonic()
        self.t_offer = self.t_accept = 0.0
        self.current: str | None = None
        self.n = 0
        self.want_offer: list[float] = []
        self.offer_running: list[float] = []
        self.accept_running: list[float] = []
        self.want_running: list[float] = []
        self.failed = 0
        self.one = Resources.scalars_of(**TASK)

    async def offers(self, driver: SchedulerDriver, offers: list[Any]) -> None:
        now = time.monotonic()
        use = None
        if self.waiting:
            use = next((o for o in offers if Resources.from_proto(o.resources).contains(self.one)), None)
        rest = [o.id for o in offers if o is not use]
        if use is not None:
            self.waiting = False
            self.t_offer = now
            self.n += 1
            self.current = f"probe-{self.n}"
            task = make_task(use, self.current, self.task_seconds)
            self.t_accept = time.monotonic()
            await driver.launch([use.id], [task])
        if rest:
            await driver.decline(rest, refuse_seconds=3600)
        if use is not None:
            await driver.suppress()

    async def update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        if status.task_id.value != self.current:
            return
        now = time.monotonic()
        if status.state == "TASK_RUNNING":
            self.want_offer.append(self.t_offer - self.t_want)
            self.offer_running.append(now - self.t_offer)
            self.accept_running.append(now - self.t_accept)
            self.want_running.append(now - self.t_want)
        elif is_terminal(status.state):
            if status.state != "TASK_FINISHED":
                self.failed += 1
            self.current = None
            self.waiting = True
            self.t_want = time.monotonic()
            await driver.revive()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"probe_tasks": len(self.offer_running), "probe_failed": self.failed}
        for name, xs in (("want_offer", self.want_offer), ("offer_running", self.offer_running),
                         ("accept_running", self.accept_running), ("want_running", self.want_running)):
            out[f"{name}_p50_s"] = pct(xs, 0.5)
            out[f"{name}_p99_s"] = pct(xs, 0.99)
            out[f"{name}_max_s"] = max(xs) if xs else None
        return out


async def _probe_main(master: str, task_seconds: float) -> None:
    probe = Probe(task_seconds)
    driver = SchedulerDriver(probe, FrameworkInfo(user="bench", name="nsdi-probe", roles=["probe"]),
                             master, start_timeout=120, call_timeout=120)
    await driver.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    out = probe.summary()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(driver.stop(), 20)
    print(json.dumps(out), flush=True)


def _counters(busy: list[Busy]) -> dict[str, int]:
    return {"launched": sum(b.launched for b in busy), "finished": sum(b.finished for b in busy),
            "running": sum(b.running for b in busy), "lost": sum(b.lost for b in busy),
            "call_errors": sum(b.call_errors for b in busy)}


async def _frameworks_main(master: str, first: int, count: int, target: int, mean: float, refuse: float,
                           seed: int) -> None:
    """Busy frameworks ``fw<first>`` … in their own process: ``ready`` once subscribed; SIGUSR1
    marks the window's start; SIGTERM stops them and prints the counters at the mark and now."""
    rng = random.Random(seed)
    busy = [Busy(f"fw{i}", target, mean, rng, refuse) for i in range(first, first + count)]
    drivers = [SchedulerDriver(b, FrameworkInfo(user="bench", name=b.name, roles=["busy"]), master,
                               start_timeout=300, call_timeout=300) for b in busy]
    await asyncio.gather(*(d.start() for d in drivers))
    print("ready", flush=True)
    stop = asyncio.Event()
    mark: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: mark.update(_counters(busy)))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    end = _counters(busy)
    for b in busy:
        b.stopping = True
    print(json.dumps({"mark": mark, "end": end}), flush=True)
    await asyncio.gather(*(asyncio.wait_for(d.stop(), 30) for d in drivers), return_exceptions=True)


async def run(agents: int, frameworks: int, duration: float, *, task_mean: float = 30.0, slots: int = 1,
              overcommit: float = 1.1, warmup: float = 60.0, probe_task: float = 0.2, refuse: float = 5.0,
              seed: int = 1, feed: bool = True, gc_threshold: str | None = None, starting: bool = False,
              framework_procs: int = 1, load_nice: int = 10, log: Any = None) -> dict[str, Any]:
    say = log or (lambda *_: None)
    res = f"cpus:{slots};mem:{128 * slots + 64};disk:1024"
    result: dict[str, Any] = {"agents": agents, "frameworks": frameworks, "task_mean_s": task_mean,
                              "slots_per_agent": slots, "machine": machine(), "ui_feed": feed,
                              "master_gc_threshold": gc_threshold or "default", "task_starting": starting,
                              "framework_procs": framework_procs, "load_nice": load_nice}
    secret = "bench-" + str(random.Random(seed).getrandbits(64))
    with MasterProcess(secret=secret, feed=feed, gc_threshold=gc_threshold) as master:
        mcpu = CpuMeter(master.pid)
        t0 = time.perf_counter()
        # TASK_RUNNING without TASK_STARTING, as executors did before Mesos 1.1 (and in the
        # paper's Mesos): half the updates and acknowledgements, which the 200 frameworks of this
        # one process could not keep up with at 50k (27,493 tasks waited in STARTING)
        agents_p = start_agents(master.address, agents, res, secret, starting=starting, nice=load_nice)
        result["register_s"] = time.perf_counter() - t0
        result["master_rss_after_register"] = mcpu.p.memory_info().rss
        say(f"{agents} agents registered in {result['register_s']:.1f} s")
        rng = random.Random(seed)
        target = math.ceil(agents * slots * overcommit / frameworks)
        # the frameworks split over ``framework_procs`` processes: this one keeps the first share
        share = math.ceil(frameworks / framework_procs)
        mine = min(frameworks, share) if load_nice <= 0 else 0  # niced: all in (niced) children
        busy = [Busy(f"fw{i}", target, task_mean, rng, refuse) for i in range(mine)]
        drivers = [SchedulerDriver(b, FrameworkInfo(user="bench", name=b.name, roles=["busy"]), master.address,
                                   start_timeout=300, call_timeout=300) for b in busy]
        probe: Child | None = None
        health: Child | None = None
        others: list[Child] = []
        try:
            t0 = time.perf_counter()
            for first in range(mine, frameworks, share):
                others.append(Child("bench.nsdi", [
                    "--frameworks-child", "--master", master.address, "--first", str(first),
                    "--count", str(min(share, frameworks - first)), "--target", str(target),
                    "--task-mean", str(task_mean), "--refuse", str(refuse), "--seed", str(seed + first)],
                    nice=load_nice))
            await asyncio.gather(*(d.start() for d in drivers))
            result["subscribe_s"] = time.perf_counter() - t0
            say(f"{frameworks} frameworks subscribed in {result['subscribe_s']:.1f} s")
            t0 = time.perf_counter()
            full = agents * slots * 0.9
            running = 0
            while time.perf_counter() - t0 < warmup and running < full:
                await asyncio.sleep(0.5 if not others else 2.0)
                running = sum(b.running for b in busy) if not others else (await asyncio.to_thread(
                    master.get_json, "/metrics/snapshot", 300)).get("master/tasks_running", 0)
            result["warmup_s"] = time.perf_counter() - t0
            result["running_at_start"] = running
            say(f"warm-up {result['warmup_s']:.1f} s, {result['running_at_start']} tasks running")
            try:
                probe = Child("bench.nsdi", ["--probe-child", "--master", master.address,
                                             "--probe-task", str(probe_task)])
            except RuntimeError as e:  # the master is too busy to take one more framework
                result["probe_error"] = str(e)
                say(f"probe framework: {e}")
            health = start_health_probe(master.url)
            master.stats(reset=True)
            mcpu = CpuMeter(master.pid)
            acpu = CpuMeter(agents_p.proc.pid)
            fcpu = CpuMeter(os.getpid())
            ocpu = [CpuMeter(c.proc.pid) for c in others]
            launched0 = sum(b.launched for b in busy)
            fin0 = sum(b.finished for b in busy)
            for c in others:
                c.proc.send_signal(signal.SIGUSR1)  # the window starts: the child notes its counters
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < duration:
                await asyncio.sleep(1.0)
                mcpu.sample()
            window = time.perf_counter() - t0
            result["window_s"] = window
            if probe is not None:
                result.update(probe.finish())
                probe = None
            result.update(health.finish())
            health = None
            st = master.stats()  # first: the window's loop, not this bench's own reads below
            result["master_metrics"] = {k: v for k, v in master.get_json("/metrics/snapshot", 300).items()
                                        if k.startswith(("master/slaves", "master/frameworks", "master/tasks_"))}
            result.update({k: st[k] for k in ("loop_max_gap_s", "loop_gaps_over_50ms", "loop_gaps_over_100ms",
                                              "alloc_cycles", "alloc_p50_s", "alloc_max_s", "alloc_mean_s")})
            mc = mcpu.result()
            result["master_cpu_share"] = mc["cpu_share"]
            result["master_rss_bytes"] = mc["rss_bytes"]
            result["master_peak_rss_bytes"] = mc["peak_rss_bytes"]
            result["agents_cpu_share"] = acpu.result()["cpu_share"]
            result["frameworks_cpu_share"] = fcpu.result()["cpu_share"] + sum(c.result()["cpu_share"] for c in ocpu)
            result["load_1min_at_end"] = os.getloadavg()[0]
            result.update({k: st.get(k) for k in ("gc_max_pause_s", "gc_total_s", "gc_full_collections", "gc_max_cpu_s",
                                                  "gc_worst", "gc_collections_by_generation", "loop_slow_steps",
                                                  "loop_turns_over_50ms", "loop_slow_turns", "alloc_steps",
                                                  "alloc_step_agents", "alloc_step_p50_cpu_s", "alloc_step_p99_cpu_s",
                                                  "alloc_step_max_cpu_s", "alloc_steps_over_5ms",
                                                  "make_offers_max_cpu_s", "make_offers_max_offers", "make_offers_max_gc_s",
                                                  "loop_gap_totals", "loop_max_ours_gap_s", "loop_max_gap_cpu_s", "loop_gaps", "requests",
                                                  "channel_frames", "turn_budget_deferred")})
            own = _counters(busy)
            reports = [c.finish() for c in others]
            others = []
            tot = {k: own[k] + sum(r.get("end", {}).get(k, 0) for r in reports) for k in own}
            launched0 += sum(r.get("mark", {}).get("launched", 0) for r in reports)
            fin0 += sum(r.get("mark", {}).get("finished", 0) for r in reports)
            result["call_errors"] = tot["call_errors"]
            result["launch_rate_per_s"] = (tot["launched"] - launched0) / window
            result["finish_rate_per_s"] = (tot["finished"] - fin0) / window
            result["running_at_end"] = tot["running"]
            result["busy_lost"] = tot["lost"]
            # the figures before the teardown (200 drivers, 50,000 agents), which can take minutes
            print("measured " + json.dumps(result), file=sys.stderr, flush=True)
        finally:
            for b in busy:
                b.stopping = True
            for c in (probe, health, *others):
                if c is not None:
                    c.kill()
            await asyncio.gather(*(asyncio.wait_for(d.stop(), 60) for d in drivers), return_exceptions=True)
            result["agents_process"] = agents_p.finish()
    return result


def verdict(r: dict[str, Any]) -> str:
    p99 = r.get("offer_running_p99_s")
    rss = r.get("master_peak_rss_bytes", 0)
    if p99 is None:
        return "no probe sample"
    return "met" if p99 < 1.0 and rss < 4 * 2**30 else "MISSED"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=50000)
    ap.add_argument("--frameworks", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds after warm-up")
    ap.add_argument("--warmup", type=float, default=60.0, help="at most this long to fill the cluster")
    ap.add_argument("--task-mean", type=float, default=30.0)
    ap.add_argument("--slots", type=int, default=1, help="task slots per agent")
    ap.add_argument("--overcommit", type=float, default=1.1)
    ap.add_argument("--probe-task", type=float, default=0.2, help="seconds each probe task runs")
    ap.add_argument("--no-feed", action="store_true", help="master without the web UI's utilization feed")
    ap.add_argument("--gc-threshold", help="the master's gc.set_threshold, e.g. 100000,50,1000")
    ap.add_argument("--starting", action="store_true", help="agents report TASK_STARTING before TASK_RUNNING")
    ap.add_argument("--framework-procs", type=int, default=1,
                    help="processes the busy frameworks are spread over (this one and N-1 children; "
                         "with --load-nice, N children)")
    ap.add_argument("--load-nice", type=int, default=10,
                    help="nice of the emulated agents' and busy frameworks' processes (0: same as the master)")
    ap.add_argument("--frameworks-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--target", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--refuse", type=float, default=5.0, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--probe-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--master", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.probe_child:
        asyncio.run(_probe_main(a.master, a.probe_task))
        return 0
    if a.frameworks_child:
        asyncio.run(_frameworks_main(a.master, a.first, a.count, a.target, a.task_mean, a.refuse, a.seed))
        return 0
    if not 0 <= a.load_nice <= 19:
        print("--load-nice must be between 0 and 19", file=sys.stderr)
        return 2
    if a.framework_procs < 1:
        print("--framework-procs must be at least 1", file=sys.stderr)
        return 2
    if a.agents < 1 or a.frameworks < 1 or a.duration <= 0:
        print("--agents, --frameworks and --duration must be positive", file=sys.stderr)
        return 2
    log = None if a.json else (lambda s: print(s, file=sys.stderr, flush=True))
    r = asyncio.run(run(a.agents, a.frameworks, a.duration, task_mean=a.task_mean, slots=a.slots,
                        overcommit=a.overcommit, warmup=a.warmup, probe_task=a.probe_task,
                        feed=not a.no_feed, gc_threshold=a.gc_threshold, starting=a.starting,
                        framework_procs=a.framework_procs, load_nice=a.load_nice, log=log))
    r["verdict"] = verdict(r)
    print(json.dumps(r, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

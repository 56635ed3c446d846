"""``/master/state`` and ``GET_STATE`` at 10k agents / 100k tasks, and what hammering them does
to allocation.

    python -m bench.state_render [--agents 10000] [--tasks 100000] [--renders 5] [--json]

A master in its own process (:mod:`bench.master_proc`), ``--agents`` emulated agents in
another (real agent channel, TASK_RUNNING reported without TASK_STARTING to halve the
updates), and a loader framework in this process that launches ``--tasks`` never-ending tasks
(each ``cpus:1;mem:16``; every agent keeps 2 CPUs free so it is still offered), at most 32
ACCEPTs in flight, then declines the rest and suppresses.

1. Render time: ``GET /master/state`` and ``POST /api/v1 GET_STATE``, ``--renders`` times each;
   the first of each (the first after the start: cold unless the master warmed its blocks in
   the background) is also reported apart (``*_first_s``, ``*_first_tasks_encoded``).
   The master caches a render until its state version changes, so before each request a probe
   framework SUPPRESSes (which bumps the version and starts no other work): no figure is a
   cached answer. Each figure is the whole request as a client sees it (render, transfer,
   read); the master's CPU for the request (which the box's load does not inflate) and the
   tasks its renderers encoded are reported too. Sizes in bytes too.
2. Allocation delay: the probe framework repeatedly declines every offer (1 h filter),
   REVIVEs, and times REVIVE→OFFERS (a full allocation cycle over every agent, plus the
   10k offers' delivery): once quiet, then while another *process* fetches ``/master/state``
   back to back, then while one fetches ``GET_STATE`` back to back. The master's own
   allocation cycle times (``core.allocate``) and its longest loop stall are reported for each
   phase. Mesos 1.7: 1.86 s per render and it blocked the master; target ≤ 0.5 s, allocation
   delayed < 10 %.

``python -m bench.state_render --hammer URL [--body JSON]`` is the hammer itself: it fetches
URL (POSTs JSON when given) back to back until SIGTERM, then prints the count and median time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from mesos_nb.protocol.messages import ID, CommandInfo, FrameworkInfo, TaskInfo
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver
from mesos_nb.scheduler.tasks import offer_role

from .harness import REPO, machine, pct, run_loop, start_agents
from .master_proc import MasterProcess

TASK = {"cpus": 1.0, "mem": 16.0}


class Loader(Scheduler):
    def __init__(self, total: int, per_agent: int) -> None:
        self.total = total
        self.per_agent = per_agent
        self.launched = 0
        self.launched_sent = 0
        self.running = 0
        self.one = Resources.scalars_of(**TASK)
        self.gate = asyncio.Semaphore(32)  # a steady load, not 10k ACCEPTs at once
        # launched but not RUNNING yet: bounded, so the updates waiting to be read stay far under
        # the master's limit for an unread stream (16 MiB) when this process gets little CPU
        self.in_flight_limit = 4000
        self.progress = asyncio.Event()
        self.pending: list[asyncio.Future] = []

    async def _launch(self, driver: Any, offer_id: Any, tasks: list[TaskInfo]) -> None:
        async with self.gate:
            while self.launched_sent - self.running > self.in_flight_limit:
                self.progress.clear()
                await self.progress.wait()
            self.launched_sent += len(tasks)
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
        # not awaited here: the driver delivers no update while this callback runs, and the
        # launches wait for updates (the in-flight bound)
        self.pending.append(asyncio.ensure_future(asyncio.gather(*calls)))
        if self.launched >= self.total:
            self.pending.append(asyncio.ensure_future(driver.suppress()))

    def update(self, driver: Any, status: Any) -> None:
        if status.state == "TASK_RUNNING":
            self.running += 1
            self.progress.set()


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


def _get(url: str, body: bytes | None = None) -> tuple[float, int]:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=300) as r:
        n = len(r.read())
    return time.perf_counter() - t0, n


GET_STATE = json.dumps({"type": "GET_STATE"}).encode()


def _cpu(master: MasterProcess) -> tuple[float, int]:
    """The master's CPU seconds so far, and the tasks its state renderers encoded so far."""
    st = master.stats()
    return st["cpu_user_s"] + st["cpu_system_s"], st.get("state_tasks_encoded", 0) + st.get("get_state_tasks_encoded", 0)


def _loop(st: dict[str, Any], phase: str) -> dict[str, Any]:
    """The master loop's longest step in a phase, how many steps ran over 50 ms, the
    collector's longest pause (a long step can be the collector, not the code), and the
    background renders (warms) done so far."""
    return {f"loop_max_gap_{phase}_s": st["loop_max_gap_s"], f"state_warms_after_{phase}": st.get("state_warms"),
            f"loop_gaps_over_50ms_{phase}": st["loop_gaps_over_50ms"],
            f"gc_max_pause_{phase}_s": st["gc_max_pause_s"],
            f"loop_slow_steps_{phase}": st.get("loop_slow_steps", [])[:5]}


class Hammer:
    """Fetches a URL back to back from another process (not a thread of this one: the probe
    framework measured here must not share its interpreter with the hammer) until stopped."""

    def __init__(self, url: str, body: bytes | None = None) -> None:
        self.cmd = [sys.executable, "-m", "bench.state_render", "--hammer", url]
        if body:
            self.cmd += ["--body", body.decode()]
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Hammer:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, cwd=str(REPO), env=env)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=300)
        try:
            self.result = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.result = {}


def hammer(url: str, body: bytes | None) -> None:
    times: list[float] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        try:
            times.append(_get(url, body)[0])
        except OSError:
            break
    print(json.dumps({"requests": len(times), "p50_s": pct(times, 0.5) if times else None}), flush=True)


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
            for name, path, body in (("render", "/master/state", None), ("get_state", "/api/v1", GET_STATE)):
                times, sizes, cpu, encoded = [], [], [], []
                for _ in range(renders):
                    await rd.suppress()  # bumps the state version (the next render is not cached), no other work
                    await asyncio.sleep(0.3)
                    c0, e0 = _cpu(master)
                    dt, n = await asyncio.to_thread(_get, master.url + path, body)
                    c1, e1 = _cpu(master)
                    cpu.append(c1 - c0)
                    encoded.append(e1 - e0)
                    times.append(dt)
                    sizes.append(n)
                # the master's CPU for one request (render + send), which the box's load does not
                # inflate as it does the wall-clock time
                # the first request after the start: with the background renders its task blocks
                # are warm (it encodes few or no tasks); without them it encoded every task
                out.update({f"{name}_first_s": times[0], f"{name}_first_master_cpu_s": cpu[0],
                            f"{name}_first_tasks_encoded": encoded[0]})
                out.update({f"{name}_p50_s": pct(times, 0.5), f"{name}_min_s": min(times),
                            f"{name}_max_s": max(times), f"{name}_bytes": sizes[-1],
                            f"{name}_master_cpu_p50_s": pct(cpu, 0.5), f"{name}_master_cpu_max_s": max(cpu),
                            f"{name}_tasks_encoded": encoded})
                say(f"{path} {name}: first {times[0]:.3f} s ({encoded[0]} tasks encoded); "
                    f"{out[name + '_p50_s']:.3f} s median, {sizes[-1] / 1e6:.1f} MB, master CPU "
                    f"{out[name + '_master_cpu_p50_s']:.3f} s, tasks encoded {encoded}")
            await asyncio.sleep(1.0)  # let the last offers be declined
            master.stats(reset=True)
            quiet = [await rv.cycle(rd) for _ in range(cycles)]
            st = master.stats(reset=True)
            out.update(revive_offer_quiet_p50_s=pct(quiet, 0.5), revive_offer_quiet_max_s=max(quiet),
                       alloc_quiet_p50_s=st["alloc_p50_s"], alloc_quiet_max_s=st["alloc_max_s"],
                       **_loop(st, "quiet"))
            for phase, path, body in (("hammered", "/master/state", None),
                                      ("get_state_hammered", "/api/v1", GET_STATE)):
                rv.starved = 0
                with Hammer(master.url + path, body) as h:
                    await asyncio.sleep(2.0)  # the hammer is running
                    busy = [await rv.cycle(rd) for _ in range(cycles)]
                st = master.stats(reset=True)
                out.update({f"{phase}_cycles_without_offers_in_120s": rv.starved,
                            f"revive_offer_{phase}_p50_s": pct(busy, 0.5), f"revive_offer_{phase}_max_s": max(busy),
                            f"alloc_{phase}_p50_s": st["alloc_p50_s"], f"alloc_{phase}_max_s": st["alloc_max_s"],
                            **_loop(st, phase),
                            f"{phase}_requests": h.result.get("requests"), f"{phase}_request_p50_s": h.result.get("p50_s")})
                out[f"allocation_delay_ratio{'' if phase == 'hammered' else '_get_state'}"] = (
                    out[f"revive_offer_{phase}_p50_s"] / out["revive_offer_quiet_p50_s"])
                say(f"{phase}: REVIVE→offers {out[f'revive_offer_{phase}_p50_s']:.3f} s vs quiet "
                    f"{out['revive_offer_quiet_p50_s']:.3f} s; {h.result.get('requests')} renders meanwhile")
            st = master.stats()
            out["master_rss_bytes"] = st["rss_bytes"]
            for k in ("state_warms", "state_warm_busy_s", "state_held_bytes"):  # the background renders
                out[k] = st.get(k)
        finally:
            for d in (rd, ld):
                await asyncio.gather(asyncio.wait_for(d.stop(), 120), return_exceptions=True)
            out["agents_process"] = agents_p.finish()
    met = all((out.get(k) or 9) <= 0.5 for k in ("render_p50_s", "get_state_p50_s", "render_first_s",
                                                  "get_state_first_s")) and all(
        (out.get(k) or 9) < 1.1 for k in ("allocation_delay_ratio", "allocation_delay_ratio_get_state"))
    out["verdict"] = "met" if met else "MISSED"
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
    ap.add_argument("--hammer", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--body", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.hammer:
        hammer(a.hammer, a.body.encode() if a.body else None)
        return 0
    if a.agents < 1 or a.tasks < 1 or a.renders < 1 or a.cycles < 1:
        print("--agents, --tasks, --renders and --cycles must be positive", file=sys.stderr)
        return 2
    log = None if a.json else (lambda s: print(s, file=sys.stderr, flush=True))
    r = run_loop(run(a.agents, a.tasks, a.renders, a.cycles, feed=not a.no_feed,
                        gc_threshold=a.gc_threshold, log=log))
    print(json.dumps(r, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

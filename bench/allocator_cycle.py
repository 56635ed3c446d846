"""Allocation-cycle benchmark, after Mesos's HierarchicalAllocator_BENCHMARK DeclineOffers.

Each agent is ``cpus:24;mem:4096;disk:4096;ports:[31000-32000]``; all frameworks are in one
role and want everything. Round 0 offers every agent; frameworks then decline every offer
with a long filter (refuse_seconds = 1 day) and the next rounds re-offer each agent to some
framework that has not refused it yet (again ``#agents`` offers per round, as in Mesos).

Prints one table row per cluster: first cycle, steady cycle (median of the declined rounds)
and their ratio to the Mesos 1.8 figures (§5.4 of the reference: ≈1.1 s at 10k x 1k,
≈0.05 s at 1k x 100; ratio < 1 means faster than Mesos).

    python3 bench/allocator_cycle.py            # 1k x 100, 10k x 1k and 50k x 1k
    python3 bench/allocator_cycle.py --quick    # 1k x 100 only
    python3 bench/allocator_cycle.py --size 50000x1000 --json
                                                # one cluster; JSON with the machine (load) and date,
                                                # for `python -m bench --load allocator_cycle=FILE`
    python3 bench/allocator_cycle.py --core     # also 1k x 100 through the whole master core
                                                # (OFFERS events, DECLINE calls), via the harness
    python3 bench/allocator_cycle.py --loop [--size 50000x200] [--rounds 5]
                                                # the master's event loop while it runs such cycles
                                                # in steps: longest step and collection, in CPU time
    python3 bench/allocator_cycle.py --quota    # each cluster without and with quota on every
                                                # role (guarantee = half the cluster, limit = all)
    python3 bench/allocator_cycle.py --quota --roles 10 --repeat 5
                                                # frameworks spread over 10 roles, each with quota;
                                                # plain and quota runs alternated, medians compared
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mesos_nb.master.allocator import HierarchicalDRFAllocator, RoleQuota  # noqa: E402
from mesos_nb.master.harness import Harness  # noqa: E402
from mesos_nb.protocol.resources import Resources  # noqa: E402

AGENT = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]"
ANCHOR = {(1000, 100): 0.05, (10000, 1000): 1.1, (50000, 1000): None}  # Mesos 1.8; none published at 50k
TARGET = {(1000, 100): 0.05, (10000, 1000): 0.1, (50000, 1000): 0.5}  # the targets of BENCHMARKS.md
FULL = [(1000, 100), (10000, 1000), (50000, 1000)]
REFUSE = 86400.0


def role_names(n: int) -> list[str]:
    return ["bench"] if n == 1 else [f"bench{i}" for i in range(n)]


def run(agents: int, frameworks: int, rounds: int, quota: bool = False, roles: int = 1) -> dict:
    alloc = HierarchicalDRFAllocator(seed=1)
    total = Resources.parse(AGENT)
    names = role_names(roles)
    if quota:  # every role gets a guarantee (half the cluster in all) and a limit (twice that) that bind
        half = {n: v * agents // 2 // roles for n, v in total.scalar_millis().items()}
        for role in names:
            alloc.update_quota(role, RoleQuota(guarantees=half, limits={n: 2 * v for n, v in half.items()}))
    t0 = time.perf_counter()
    for i in range(agents):
        alloc.add_agent(f"agent-{i:05d}", total, hostname=f"h{i}")
    t_agents = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(frameworks):
        alloc.add_framework(f"fw-{i:04d}", [names[i % roles]])
    t_fws = time.perf_counter() - t0

    now = 0.0
    cycles: list[tuple[float, int]] = []
    cpu: list[float] = []  # the same cycles in this process's CPU time: less moved by a busy box
    decline_s: list[float] = []
    gc.collect()
    for _ in range(rounds):
        now += 1.0
        t0, c0 = time.perf_counter(), time.process_time()
        made = alloc.allocate(now)
        cycles.append((time.perf_counter() - t0, len(made)))
        cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        for a in made:
            alloc.recover(a.framework_id, a.agent_id, a.resources, refuse_seconds=REFUSE, now=now)
        decline_s.append(time.perf_counter() - t0)
    steady = [c for c, _ in cycles[1:]]
    return {
        "agents": agents,
        "frameworks": frameworks,
        "add_agents_s": t_agents,
        "add_frameworks_s": t_fws,
        "first_s": cycles[0][0],
        "first_offers": cycles[0][1],
        "steady_s": statistics.median(steady) if steady else float("nan"),
        "first_cpu_s": cpu[0],
        "steady_cpu_s": statistics.median(cpu[1:]) if len(cpu) > 1 else float("nan"),
        "steady_offers": cycles[1][1] if len(cycles) > 1 else 0,
        "decline_s": statistics.median(decline_s),
        "last_s": cycles[-1][0],
        "last_offers": cycles[-1][1],
    }


def run_core(agents: int, frameworks: int, rounds: int) -> dict:
    """The same rounds through MasterCore: allocation becomes OFFERS events, refusals DECLINE calls."""
    t0 = time.perf_counter()
    h = Harness.build(agents, frameworks, resources=AGENT, roles=["bench"], now=0.0)
    setup = time.perf_counter() - t0
    cycles: list[float] = []
    gc.collect()
    for _ in range(rounds):
        h.now += 1.0
        t0 = time.perf_counter()
        offers = h.allocate()
        for fw in h.frameworks:
            if fw.id in offers:
                h.decline(fw, offers[fw.id], refuse_seconds=REFUSE)
        cycles.append(time.perf_counter() - t0)
    return {"setup_s": setup, "first_s": cycles[0], "steady_s": statistics.median(cycles[1:])}


def run_loop(agents: int, frameworks: int, rounds: int) -> dict:
    """The master's side: a ``MasterServer`` over the harness's core (no sockets), the
    collector policy of ``mesos-nb master``, and ``rounds`` full cycles run as the shell runs
    them (``big_calls.allocate_in_slices``: steps of the loop), each followed by every
    framework declining all its offers (one DECLINE per loop step). Every loop step is timed
    in thread CPU time (and wall), every collection too: the longest ones are what the
    target "no loop step over 50 ms" is about, without the box's load in the CPU figures."""
    import asyncio

    from mesos_nb.master import big_calls, gcpolicy
    from mesos_nb.master.server import MasterConfig, MasterServer
    from mesos_nb.protocol import messages as m

    h = Harness.build(agents, frameworks, resources="cpus:8;mem:16384", now=time.time())
    h.drain()
    steps: list[tuple[float, float]] = []
    gcs: list[float] = []
    mark = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            mark[0] = time.thread_time()
        else:
            gcs.append(time.thread_time() - mark[0])

    real = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        c0, w0 = time.thread_time(), time.perf_counter()
        real(handle)
        steps.append((time.thread_time() - c0, time.perf_counter() - w0))

    async def go() -> list[dict]:
        gcpolicy.install()
        gc.collect()
        srv = MasterServer(MasterConfig(port=0))
        srv.core = h.core
        srv._alloc_handle = object()  # type: ignore[assignment]  # only the cycles below
        await asyncio.sleep(0)
        out = []
        for _ in range(rounds):
            steps.clear()
            gcs.clear()
            c0 = time.process_time()
            await big_calls.allocate_in_slices(srv)
            cycle_cpu = time.process_time() - c0
            offered = len(h.core.offers)
            for fw in list(h.core.frameworks.values()):
                ids = [m.ID(value=o) for o in fw.offers]
                h.core.decline(fw.id, m.Decline(offer_ids=ids, filters=m.Filters(refuse_seconds=3600)), time.time())
                srv.flush()
                await asyncio.sleep(0)
            out.append({"offers": offered, "cycle_cpu_s": cycle_cpu, "steps": len(steps),
                        "step_max_cpu_s": max(c for c, _ in steps), "step_max_wall_s": max(w for _, w in steps),
                        "gc_max_cpu_s": max(gcs, default=0.0), "collections": len(gcs)})
        gcpolicy.uninstall()
        return out

    gc.callbacks.append(on_gc)
    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    try:
        rounds_out = asyncio.run(go())
    finally:
        asyncio.events.Handle._run = real  # type: ignore[method-assign]
        gc.callbacks.remove(on_gc)
    return {"agents": agents, "frameworks": frameworks, "rounds": rounds_out}


def main_quota(sizes: list[tuple[int, int]], rounds: int, roles: int = 1, repeat: int = 1) -> int:
    """Cycle times without and with quota (medians of ``repeat`` alternated runs); within 1.5x."""
    print(f"roles {roles}, median of {repeat} alternated runs each; ratio = max(first, steady) quota/plain, "
          "wall clock (cpu: the same in process CPU time)")
    print(f"{'agents x fws':>14} {'first':>8} {'first+quota':>12} {'steady':>8} {'steady+quota':>13} {'ratio':>6}"
          f" {'cpu ratio':>9}")
    ok = True
    for agents, fws in sizes:
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(repeat):
            for with_quota in (False, True):
                runs[with_quota].append(run(agents, fws, rounds, quota=with_quota, roles=roles))

        plain, quota = (
            {k: statistics.median(r[k] for r in runs[q])
             for k in ("first_s", "steady_s", "first_cpu_s", "steady_cpu_s", "first_offers")}
            for q in (False, True)
        )
        ratio = max(quota["first_s"] / plain["first_s"], quota["steady_s"] / plain["steady_s"])
        cpu_ratio = max(quota["first_cpu_s"] / plain["first_cpu_s"], quota["steady_cpu_s"] / plain["steady_cpu_s"])
        ok &= ratio <= 1.5
        print(f"{agents:>6} x {fws:<5} {plain['first_s']:>7.3f}s {quota['first_s']:>11.3f}s "
              f"{plain['steady_s']:>7.3f}s {quota['steady_s']:>12.3f}s {ratio:>6.2f} {cpu_ratio:>9.2f}"
              f"  (offers {plain['first_offers']:.0f}/{quota['first_offers']:.0f})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small cluster only (1k agents x 100 frameworks)")
    ap.add_argument("--rounds", type=int, default=5, help="cycles per cluster (first + declined rounds)")
    ap.add_argument(
        "--all-refused",
        action="store_true",
        help="also time 1k x 100 once every framework has refused every agent (worst case)",
    )
    ap.add_argument("--core", action="store_true", help="also time 1k x 100 through the master core")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--size", action="append", default=[], metavar="AxF",
                    help="only this cluster, e.g. 50000x1000 (repeatable)")
    ap.add_argument("--quota", action="store_true", help="time each cluster without and with quota on every role")
    ap.add_argument("--roles", type=int, default=1, help="with --quota: spread the frameworks over this many roles")
    ap.add_argument("--repeat", type=int, default=1, help="with --quota: alternated runs per cluster (medians)")
    ap.add_argument("--loop", action="store_true",
                    help="the master's loop during full cycles of --size (default 50000x200): longest step, collections")
    args = ap.parse_args(argv)
    if args.loop:
        import json

        for sz in args.size or ["50000x200"]:
            a, f = (int(x) for x in sz.lower().split("x"))
            r = run_loop(a, f, args.rounds)
            if args.json:
                print(json.dumps(r))
                continue
            print(f"{a} agents x {f} frameworks, the master's loop during {args.rounds} full cycles, each declined:")
            for i, x in enumerate(r["rounds"]):
                print(f"  cycle {i}: {x['offers']} offers, {x['cycle_cpu_s']:.3f} s CPU; longest loop step "
                      f"{1000 * x['step_max_cpu_s']:.1f} ms CPU ({1000 * x['step_max_wall_s']:.1f} ms wall) of "
                      f"{x['steps']}; longest collection {1000 * x['gc_max_cpu_s']:.1f} ms CPU of {x['collections']}")
        return 0
    if args.quota:
        sizes = [(1000, 100)] if args.quick else [(1000, 100), (10000, 1000)]
        return main_quota(sizes, args.rounds, max(1, args.roles), max(1, args.repeat))
    sizes = [(1000, 100)] if args.quick else FULL
    if args.size:
        sizes = [tuple(int(x) for x in sz.lower().split("x")) for sz in args.size]  # type: ignore[misc]
    if args.json:
        import datetime as dt
        import json

        from bench.harness import machine

        mach = machine()  # (its load average: before the runs)
        print(json.dumps({"runs": [run(a, f, args.rounds) for a, f in sizes], "machine": mach,
                          "date": dt.date.today().isoformat()}))
        return 0
    print(f"python {sys.version.split()[0]}; agent = {AGENT}; decline filter {REFUSE:.0f} s")
    hdr = (
        f"{'agents x fws':>14} {'add agents':>10} {'first cycle':>12} {'offers':>7} "
        f"{'steady cycle':>13} {'(cpu)':>7} {'offers':>7} {'decline all':>11} {'Mesos 1.8':>9} "
        f"{'first/Mesos':>11} {'steady/Mesos':>12} {'target':>7}"
    )
    print(hdr)
    print("-" * len(hdr))
    ok = True
    for agents, fws in sizes:
        r = run(agents, fws, args.rounds)
        anchor = ANCHOR.get((agents, fws))
        target = TARGET.get((agents, fws), float("inf"))
        met = r["first_s"] <= target and r["steady_s"] <= target
        ok &= met
        print(
            f"{agents:>6} x {fws:<5} {r['add_agents_s']:>9.3f}s {r['first_s']:>11.3f}s "
            f"{r['first_offers']:>7} {r['steady_s']:>12.3f}s {r['steady_cpu_s']:>6.3f}s {r['steady_offers']:>7} "
            + (f"{r['decline_s']:>10.3f}s {anchor:>8.2f}s {r['first_s'] / anchor:>11.2f} "
               f"{r['steady_s'] / anchor:>12.2f} " if anchor else f"{r['decline_s']:>10.3f}s {'—':>9} {'—':>11} {'—':>12} ")
            + f"{'met' if met else 'MISSED':>7}"
        )
    if args.all_refused:
        r = run(1000, 100, 101)
        print(f"1k x 100, cycle after every framework refused every agent: {r['last_s']:.3f}s "
              f"({r['last_offers']} offers; 100k filter checks)")
    if args.core:
        r = run_core(1000, 100, args.rounds)
        print(f"1k x 100 through MasterCore (offer + decline per round): setup {r['setup_s']:.3f}s, "
              f"first {r['first_s']:.3f}s, steady {r['steady_s']:.3f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

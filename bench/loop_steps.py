"""The longest loop step of the master's whole-framework and whole-agent work, in-process.

    python -m bench.loop_steps [--agents 50000] [--tasks 100000] [--one-go] [--json]

A :class:`~mesos_nb.master.harness.Harness` with ``--agents`` agents (``cpus:8;mem:4096``) and one
framework running ``--tasks`` tasks on half of them and holding an offer of each of the others,
so it holds resources on every agent. Then, each on a fresh copy of that cluster: its implicit
RECONCILE, its TEARDOWN, its stream lost with failover timeout 0, and (on a cluster of one agent
running 20,000 tasks) that agent marked unreachable. Each runs as the master's shell runs it, as
resumable steps (``--one-go``: the one-call form, which is what a master without the steps did in
one loop step); every step is timed in this thread's CPU with the collector off (the master's own
work, not whichever step a collection falls in). Target: no step over 50 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from mesos_nb.master.harness import Harness
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources

from .harness import machine


def _launch(h: Harness, fw: Any, offer: m.Offer, first: int, n: int, res: list[m.Resource]) -> None:
    infos = [m.TaskInfo(name="t", task_id=m.ID(value=f"t{first + i}"), agent_id=offer.agent_id, resources=res,
                        command=m.CommandInfo(value="true")) for i in range(n)]
    h.core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[
        m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos))], filters=m.Filters(refuse_seconds=0)), h.now)


def cluster(agents: int, tasks: int, failover: float = 10.0) -> tuple[Harness, Any]:
    h = Harness.build(agents=agents, frameworks=1, resources="cpus:8;mem:4096", failover_timeout=failover)
    fw = h.frameworks[0]
    res = Resources.parse("cpus:0.5;mem:16").to_proto()
    with_tasks = h.allocate()[fw.id][: max(1, agents // 2)]
    per = -(-tasks // len(with_tasks))
    for k, offer in enumerate(with_tasks):
        _launch(h, fw, offer, k * per, per, res)
    h.drain()
    h.allocate()  # what is left of every agent offered again: an offer of each
    return h, fw


def busy_agent(tasks: int) -> tuple[Harness, Any]:
    h = Harness.build(agents=1, frameworks=1, resources=f"cpus:{tasks // 100 + 1};mem:{tasks + 1024}")
    fw = h.frameworks[0]
    _launch(h, fw, h.allocate()[fw.id][0], 0, tasks, Resources.parse("cpus:0.01;mem:1").to_proto())
    h.drain()
    return h, fw


def timed(h: Harness, steps: Iterator[Any]) -> dict[str, float]:
    """Run ``steps`` to the end, draining the effects after each as the shell flushes them."""
    gc.collect()
    gc.freeze()
    gc.disable()
    times: list[float] = []
    try:
        while True:
            t0 = time.thread_time()
            end = next(steps, StopIteration) is StopIteration
            times.append(time.thread_time() - t0)
            h.drain()
            if end:
                break
    finally:
        gc.enable()
        gc.unfreeze()
    return {"steps": len(times), "longest_step_s": max(times), "total_s": sum(times)}


def _one(call: Callable[[Harness, Any], object], h: Harness, fw: Any) -> Iterator[None]:
    call(h, fw)
    yield


def run(agents: int, tasks: int, one_go: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"agents": agents, "tasks": tasks, "one_go": one_go, "machine": machine()}
    cases: list[tuple[str, Callable[[], tuple[Harness, Any]], Callable[[Harness, Any], Iterator[Any]],
                      Callable[[Harness, Any], object]]] = [
        ("reconcile", lambda: cluster(agents, tasks),
         lambda h, fw: h.core.reconcile_steps(fw.id, m.Reconcile(tasks=[]), h.now),
         lambda h, fw: h.core.reconcile(fw.id, m.Reconcile(tasks=[]), h.now)),
        ("teardown", lambda: cluster(agents, tasks),
         lambda h, fw: h.core.teardown_steps(fw.id, h.now), lambda h, fw: h.core.teardown(fw.id, h.now)),
        ("disconnect_failover_0", lambda: cluster(agents, tasks, failover=0.0),
         lambda h, fw: h.core.disconnect_steps(fw.id, fw.stream_id, h.now),
         lambda h, fw: h.core.disconnect(fw.id, fw.stream_id, h.now)),
        ("agent_of_20000_tasks_unreachable", lambda: busy_agent(20000),
         lambda h, fw: h.core.mark_unreachable_steps(h.agents[0].id, h.now, "bench"),
         lambda h, fw: h.core.mark_unreachable(h.agents[0].id, h.now, "bench")),
    ]
    for name, build, stepped, whole in cases:
        h, fw = build()
        out[name] = timed(h, _one(whole, h, fw) if one_go else stepped(h, fw))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=50000)
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--one-go", action="store_true", help="the one-call forms (a master without the steps)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.agents < 2 or a.tasks < 1:
        print("--agents must be at least 2 and --tasks at least 1", file=sys.stderr)
        return 2
    r = run(a.agents, a.tasks, a.one_go)
    if a.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            if isinstance(v, dict):
                print(f"{k}: {v['steps']} steps, longest {1000 * v['longest_step_s']:.1f} ms, "
                      f"total {1000 * v['total_s']:.0f} ms")
            else:
                print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One task at a time on an idle cluster: ACCEPT → TASK_RUNNING latency.

    python -m bench.launch_latency [-n 40] [--work-dir /dev/shm] [--isolation posix] [--json]

A real cluster (:func:`bench.launch_throughput.start_cluster`: a master process and an agent
process with two agents, as on a machine), a framework on the SDK in this process that
launches ONE ``/bin/true`` command task, waits for it to finish (so the cluster is idle again),
then launches the next (offers it cannot use now are declined for a minute and it REVIVEs when
it is ready, so no offer churns between tasks). For each task: the time from sending the ACCEPT to receiving
TASK_RUNNING (framework's clock; both sides on this machine). target: p50 ≤ 3 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from typing import Any

from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver

from .harness import machine, pct, run_loop
from .launch_throughput import _cpu, start_cluster

REFUSE_S = 60.0


class _OneAtATime(Scheduler):
    def __init__(self, n: int) -> None:
        self.n = n
        self.i = 0
        self.busy = False
        self.sent: dict[str, float] = {}
        self.running: list[float] = []
        self.failed = 0
        self.done = asyncio.Event()
        self.res = Resources.parse("cpus:0.1;mem:4")
        self.cpu_ms: dict[str, float] = {}  # CPU per task of each process (agents: with helper and tasks)

    async def offers(self, driver: Any, offers: list[Any]) -> None:
        for offer in offers:
            if self.busy or self.i >= self.n or not Resources.from_proto(offer.resources).contains(self.res):
                # Not 0: refused offers would come straight back (every 2 ms) and the cluster would
                # not be idle; the REVIVE after each task clears the filter (as Mesos frameworks do).
                await driver.decline([offer.id], refuse_seconds=REFUSE_S)
                continue
            self.busy = True
            tid = f"l{self.i}"
            self.i += 1
            task = m.TaskInfo(name=tid, task_id=m.ID(value=tid), agent_id=offer.agent_id, resources=self.res.to_proto(),
                              command=m.CommandInfo(value="/bin/true", shell=False))
            self.sent[tid] = time.perf_counter()
            await driver.launch([offer.id], [task], filters=None)

    async def update(self, driver: Any, status: Any) -> None:
        tid = status.task_id.value
        if status.state == "TASK_RUNNING" and tid in self.sent:
            self.running.append(time.perf_counter() - self.sent.pop(tid))
        elif status.state in m.TERMINAL_STATES:
            if status.state != "TASK_FINISHED":
                self.failed += 1
            self.busy = False
            if self.i >= self.n:
                self.done.set()
            else:
                await driver.revive()


async def drive(sched: _OneAtATime, work_dir: str, isolation: str, name: str = "launch-latency") -> None:
    """Run ``sched`` against a fresh cluster (sandboxes under ``work_dir``) until it is done."""
    os.makedirs(work_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mesos-nb-latency-", dir=work_dir) as wd:
        procs, master = start_cluster(wd, 4, True, isolation)
        try:
            driver = SchedulerDriver(sched, FrameworkInfo(user="bench", name=name), master)
            await driver.start()
            cpu0, own0 = [_cpu(p) for p in procs], time.process_time()
            await asyncio.wait_for(sched.done.wait(), timeout=60 + sched.n)
            cpu = [_cpu(p) - c for p, c in zip(procs, cpu0, strict=True)] + [time.process_time() - own0]
            sched.cpu_ms = {k: 1e3 * c / sched.n for k, c in zip(("master", "agents", "framework"), cpu, strict=True)}
            await driver.stop()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)


async def run(n: int, work_dir: str, isolation: str) -> dict[str, Any]:
    sched = _OneAtATime(n + 3)  # the first 3 warm the path up and are not counted
    await drive(sched, work_dir, isolation)
    lat = sorted(sched.running[3:])
    return {"n": len(lat), "isolation": isolation, "work_dir": work_dir, "machine": machine(),
            "accept_running_p50_s": pct(lat, 0.5), "accept_running_p90_s": pct(lat, 0.9),
            "accept_running_min_s": lat[0] if lat else None, "failed": sched.failed,
            **{f"{k}_cpu_ms_per_task": v for k, v in sched.cpu_ms.items()}}


def options(doc: str, n: int) -> argparse.ArgumentParser:
    """The one-task-at-a-time benches' options: ``-n``, ``--work-dir``, ``--isolation``, ``--json``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=n)
    ap.add_argument("--work-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else "/var/tmp")
    ap.add_argument("--isolation", default="posix")
    ap.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = options(__doc__ or "", 40).parse_args(argv)
    r = run_loop(run(a.n, a.work_dir, a.isolation))
    print(json.dumps(r, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What one cgroups launch costs the agent's launcher helper: its CPU (user/system) and, with
``--strace``, its system calls per launch, cgroup removal (or recycling) included.

    python -m bench.helper_cost [-n 400] [--concurrency 16] [--isolation cgroups] [--strace]

A containerizer (``agent/containerizer.py``) in this process, no cluster: ``n`` ``/bin/true``
containers (0.1 cpus, 64 MiB) launched ``--concurrency`` at a time through the launcher
helper; after the last exit it waits until every ended container's cgroups are dealt with
(removed, or kept in the pool of ``agent/cgroup_pool.py``), then reads the helper's CPU
from ``/proc/<pid>/stat`` (and the whole machine's busy CPU from ``/proc/stat``: it includes
other load on the machine, so compare it only across alternated runs). ``--strace`` attaches ``strace -c -f`` to the helper for the run
(much slower; for the counts, not the times). Run it against two checkouts (PYTHONPATH) to
compare a change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time

from mesos_nb.agent.containerizer import LaunchSpec, PosixContainerizer
from mesos_nb.agent.isolation import make_isolator
from mesos_nb.agent.isolator import Limits


def _cpu(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy (``/proc/stat``): kernel workers too (a
    removed memory cgroup is taken offline by a kworker, not by the helper)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


async def run(n: int, concurrency: int, isolation: str, strace: str | None) -> dict:
    iso = make_isolator(isolation, f"helper-cost-{os.getpid()}")
    c = PosixContainerizer(iso)
    box = tempfile.mkdtemp(prefix="helper-cost-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    limits = Limits(cpus=0.1, mem_bytes=64 << 20)
    sem = asyncio.Semaphore(concurrency)
    tracer = None
    taken = [0]
    pool = getattr(iso, "_pool", None)
    if pool is not None:  # count the launches that got a recycled cgroup
        take = pool.take
        pool.take = lambda: (r := take()) and (taken.__setitem__(0, taken[0] + 1) or r)

    async def one(i: int) -> None:
        async with sem:
            ct = await c.launch(LaunchSpec(container_id=f"hc{i}", argv=["/bin/true"], env={}, cwd=box,
                                           stdout_path=os.devnull, stderr_path=os.devnull, limits=limits))
            await ct.wait()

    try:
        await one(-1)  # starts the helper
        helper = c._launcher.pid if c._launcher is not None else None
        if helper is None:
            raise SystemExit("no launcher helper here (no pidfd?)")
        while c._removal.pending or c._live:
            await asyncio.sleep(0.05)
        if strace:
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", strace, "-p", str(helper)],
                                      stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.0)  # attached
        u0, s0 = _cpu(helper)
        m0 = _machine_busy()
        taken[0] = 0
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
        while c._removal.pending or c._live:  # removal (or recycling) is the helper's work too
            await asyncio.sleep(0.05)
        u1, s1 = _cpu(helper)
        m1 = _machine_busy()
        return {"n": n, "isolation": iso.name, "concurrency": concurrency, "loadavg": os.getloadavg()[0],
                "launches_per_s": n / wall, "helper_user_ms_per_launch": (u1 - u0) * 1e3 / n,
                "helper_sys_ms_per_launch": (s1 - s0) * 1e3 / n,
                "helper_cpu_ms_per_launch": (u1 - u0 + s1 - s0) * 1e3 / n,
                "machine_busy_ms_per_launch": (m1 - m0) * 1e3 / n, "reused": taken[0], "pooled_at_end": len(getattr(iso, "_pool", ()))}
    finally:
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
        c.close()
        for ctrl in getattr(iso, "CONTROLLERS", ()):
            try:
                os.rmdir(os.path.join(iso.root, ctrl, iso.nested))
            except OSError:
                pass
        os.rmdir(box)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--isolation", default="cgroups")
    ap.add_argument("--strace", metavar="FILE", help="strace -c -f the helper into FILE")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.n, a.concurrency, a.isolation, a.strace))))


if __name__ == "__main__":
    main()

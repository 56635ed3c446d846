"""Launch cost of plain containers under the cgroups v2 isolator, on this machine's unified
hierarchy (a cgroup per container under a fresh ``--cgroups-root``: its mkdir and limits,
the child's join, its removal after the exit). Prints wall time, launches/s, ``launch()``
latency and the agent process's CPU per launch (all its threads: the figure the load of a
shared box disturbs least).

    PYTHONPATH=<tree> python bench/launch_cgroups_v2.py -n 300 -c 20

Runs by path, so one file measures any tree (A/B: ``PYTHONPATH=/path/to/main`` vs this one).
Needs root and a cgroup2 mount; with no controller in it (a hybrid v1/v2 machine) pass no limits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid

from mesos_nb.agent.cgroups_v2 import CgroupsV2Isolator
from mesos_nb.agent.containerizer import LaunchSpec, PosixContainerizer
from mesos_nb.agent.isolator import Limits


def _mount() -> str:
    with open("/proc/self/mounts") as f:
        points = [ln.split()[1] for ln in f if ln.split()[2:3] == ["cgroup2"]]
    if not points:
        raise SystemExit("no cgroup2 mount on this machine")
    return "/sys/fs/cgroup" if "/sys/fs/cgroup" in points else points[0]


async def run(n: int, conc: int, limits: Limits) -> str:
    mount = _mount()
    nested = f"mesos-nb-bench-{uuid.uuid4().hex[:8]}"
    c = PosixContainerizer(CgroupsV2Isolator(mount, nested=nested))
    box = tempfile.mkdtemp()
    lat: list[float] = []
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            ct = await c.launch(LaunchSpec(container_id=f"c{i}", argv=["true"], env={"PATH": "/usr/bin:/bin"},
                                           cwd=box, stdout_path=os.devnull, stderr_path=os.devnull, limits=limits))
            lat.append(time.perf_counter() - t)
            await ct.wait()

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    d = os.path.join(mount, nested)
    deadline = time.monotonic() + 30
    while any(e.is_dir() for e in os.scandir(d)) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    left = sum(1 for e in os.scandir(d) if e.is_dir())
    if not left:
        os.rmdir(d)
    lat.sort()
    return (f"n={n} conc={conc} wall={wall:.3f}s rate={n / wall:.0f}/s launch p50={statistics.median(lat) * 1e3:.2f}ms "
            f"p90={lat[int(len(lat) * .9)] * 1e3:.2f}ms agent_cpu/launch={cpu / n * 1e6:.0f}us cgroups_left={left}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("-c", "--concurrency", type=int, default=20)
    ap.add_argument("--cpus", type=float, default=0.0, help="a cpus limit per container (needs the cpu controller)")
    ap.add_argument("--mem-mb", type=int, default=0, help="a memory limit per container (needs the memory controller)")
    a = ap.parse_args()
    print(asyncio.run(run(a.n, a.concurrency, Limits(cpus=a.cpus, mem_bytes=a.mem_mb << 20))))


if __name__ == "__main__":
    main()

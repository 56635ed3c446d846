"""Time to "4 Dask workers ready": MesosCluster on a `mesos-nb local` cluster vs
``distributed.LocalCluster(n_workers=4, processes=True)``, in the same run (target
ratio <= 1.3).

    python bench/dask_startup.py [--repeat 3] [--workers 4] [--json]

Each round starts a cluster object, connects a Client, waits until N workers are registered
with the scheduler, and stops the clock; then closes everything. The mesos-nb master and its
agents are a separate process started once (not timed), as they would be for a notebook.
The two kinds alternate so that background load hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # also run as a script

from bench.harness import start_local  # noqa: E402


def start_master(workers: int) -> tuple[subprocess.Popen, str]:
    return start_local(tempfile.mkdtemp(prefix="bench-dask-"), f"cpus:{workers};mem:{workers * 1024};disk:1024")


def _time_workers(make_cluster: Callable[[], Any], n: int) -> float:
    """Seconds from creating a cluster until ``n`` workers are connected to it."""
    from distributed import Client

    t0 = time.perf_counter()
    cluster = make_cluster()
    client = Client(cluster)
    client.wait_for_workers(n, timeout=120)
    took = time.perf_counter() - t0
    client.close()
    cluster.close()
    return took


def time_mesos(master: str, n: int) -> float:
    from mesos_nb.frameworks.dask import MesosCluster

    return _time_workers(lambda: MesosCluster(master, n_workers=n, cpus=0.5, mem=512, dashboard_address=":0"), n)


def time_local(n: int) -> float:
    from distributed import LocalCluster

    return _time_workers(lambda: LocalCluster(n_workers=n, processes=True, threads_per_worker=1,
                                              dashboard_address=":0"), n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    proc, master = start_master(args.workers)
    mesos: list[float] = []
    local: list[float] = []
    try:
        # warm the imports (distributed, bokeh) outside the timed rounds, for both alike
        time_local(1)
        for _ in range(args.repeat):
            mesos.append(time_mesos(master, args.workers))
            local.append(time_local(args.workers))
    finally:
        proc.terminate()
        proc.wait(20)
    m, loc = statistics.median(mesos), statistics.median(local)
    result = {
        "workers": args.workers, "repeat": args.repeat, "cpus": os.cpu_count(),
        "mesos_cluster_s": [round(x, 3) for x in mesos], "local_cluster_s": [round(x, 3) for x in local],
        "mesos_median_s": round(m, 3), "local_median_s": round(loc, 3), "ratio": round(m / loc, 3),
        "target_ratio": 1.3,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.workers} Dask workers ready (median of {args.repeat}, {os.cpu_count()} CPUs):")
        print(f"  MesosCluster (mesos-nb local, 2 agents)   {m:6.2f} s   {result['mesos_cluster_s']}")
        print(f"  LocalCluster(processes=True)              {loc:6.2f} s   {result['local_cluster_s']}")
        print(f"  ratio MesosCluster / LocalCluster         {m / loc:6.2f}   (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_master(workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    work = tempfile.mkdtemp(prefix="bench-dask-")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "local", "--no-authenticate", "--agents", "2", "--port", str(port),
         "--work-dir", work, "--resources", f"cpus:{workers};mem:{workers * 1024};disk:1024"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/master/state", timeout=2) as r:
                if len(json.load(r).get("slaves", [])) >= 2:
                    return proc, f"127.0.0.1:{port}"
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("mesos-nb local did not start within 60 s")


def time_mesos(master: str, n: int) -> float:
    from distributed import Client

    from mesos_nb.frameworks.dask import MesosCluster

    t0 = time.perf_counter()
    cluster = MesosCluster(master, n_workers=n, cpus=0.5, mem=512, dashboard_address=":0")
    client = Client(cluster)
    client.wait_for_workers(n, timeout=120)
    took = time.perf_counter() - t0
    client.close()
    cluster.close()
    return took


def time_local(n: int) -> float:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=n, processes=True, threads_per_worker=1, dashboard_address=":0")
    client = Client(cluster)
    client.wait_for_workers(n, timeout=120)
    took = time.perf_counter() - t0
    client.close()
    cluster.close()
    return took


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

"""Round trip of a trivial remote cell in a real kernel: ``%%mesos task`` (warm executor)
next to Dask's ``client.submit(...).result()`` on a one-worker LocalCluster, in the same
kernel and the same run (the issue's target: warm p50 <= 2x Dask, the first cell <= 1 s).

    python bench/remote_cell.py [--rounds 30] [--fresh 5] [--isolation auto|posix|...]
                                [--cgroups-root NAME] [--json]

A `mesos-nb local` cluster (2 agents) runs as a separate process (not timed). One ipykernel
is started through jupyter_client; every figure is the time from sending an execute request
to its reply, measured by the client, like a user pressing Shift-Enter. The cells:

* warm:  ``%%mesos task --cpus 0.1 --mem 64`` / ``2 + 2`` (the first one starts the executor)
* dask:  ``client.submit(operator.add, 2, 2, pure=False).result()``
* fresh: ``%%mesos task --fresh --cpus 0.1 --mem 64`` / ``2 + 2`` (a new process per cell)

Warm and Dask cells alternate so that background load hits both alike. On a machine where
other agents run containers, give ``--cgroups-root`` a name of this run's own: sibling cgroups
share CPU by ``cpu.shares`` whatever their nice values, Dask's processes do not.
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # also run as a script

from bench.harness import start_local  # noqa: E402

WARM = "%%mesos task --cpus 0.1 --mem 64\n2 + 2"
FRESH = "%%mesos task --fresh --cpus 0.1 --mem 64\n2 + 2"
DASK = "client.submit(operator.add, 2, 2, pure=False).result()"


def start_cluster(work: str, isolation: str = "auto", cgroups_root: str | None = None) -> tuple[subprocess.Popen, str]:
    extra = ["--isolation", isolation] + (["--cgroups-root", cgroups_root] if cgroups_root else [])
    return start_local(work, "cpus:2;mem:2048;disk:1024", extra=extra)


class Kernel:
    """One real ipykernel, driven like a notebook front end."""

    def __init__(self, home: str) -> None:
        from jupyter_client.manager import start_new_kernel

        env = dict(os.environ, HOME=home, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("JPY_SESSION_NAME", None)
        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env, cwd=home)

    def run(self, code: str, timeout: float = 120.0) -> tuple[float, dict[str, Any], list[str]]:
        """Seconds from request to reply, the reply's content, and the text the cell printed."""
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            c = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(c["text"])
            elif msg["msg_type"] in ("execute_result", "display_data"):
                out.append(c["data"].get("text/plain", ""))
            elif msg["msg_type"] == "error":
                out.append("\n".join(c["traceback"]))

        t0 = time.perf_counter()
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
        took = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {code!r}: {''.join(out)[-2000:]}")
        return took, reply["content"], out

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def p50(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run(rounds: int = 30, fresh: int = 5, isolation: str = "auto", cgroups_root: str | None = None) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="bench-cell-")
    home = os.path.join(work, "home")
    os.makedirs(home)
    proc, master = start_cluster(os.path.join(work, "cluster"), isolation, cgroups_root)
    kernel = None
    try:
        kernel = Kernel(home)
        kernel.run(f"%load_ext mesos_nb\n%mesos connect {master}")
        kernel.run("import operator\nfrom distributed import Client, LocalCluster\n"
                   "dask_cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, "
                   "dashboard_address=None)\nclient = Client(dask_cluster)")
        first, _, out = kernel.run(WARM)
        assert any("4" in o for o in out), out
        kernel.run(DASK)  # Dask's first submit pays its own warm-up; not counted
        warm: list[float] = []
        dask: list[float] = []
        for _ in range(rounds):
            warm.append(kernel.run(WARM)[0])
            dask.append(kernel.run(DASK)[0])
        cold = [kernel.run(FRESH)[0] for _ in range(fresh)]
        kernel.run("client.close(); dask_cluster.close()")
    finally:
        if kernel is not None:
            kernel.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    res = {"rounds": rounds, "first_warm_cell_s": round(first, 4), "warm_p50_ms": round(p50(warm) * 1000, 2),
           "dask_p50_ms": round(p50(dask) * 1000, 2), "fresh_p50_ms": round(p50(cold) * 1000, 2),
           "warm_p90_ms": round(sorted(warm)[int(0.9 * (len(warm) - 1))] * 1000, 2) if warm else None,
           "isolation": isolation, "cgroups_root": cgroups_root}
    res["warm_over_dask"] = round(res["warm_p50_ms"] / res["dask_p50_ms"], 2)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--fresh", type=int, default=5)
    ap.add_argument("--isolation", default="auto", help="the agents' --isolation (auto: cgroups where writable)")
    ap.add_argument("--cgroups-root", help="the agents' --cgroups-root (a parent of their own: containers of "
                                           "other clusters on this machine then do not share its CPU weight)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = run(a.rounds, a.fresh, a.isolation, a.cgroups_root)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"first warm cell (starts the executor): {res['first_warm_cell_s'] * 1000:.0f} ms")
        print(f"warm %%mesos task p50: {res['warm_p50_ms']:.1f} ms (p90 {res['warm_p90_ms']:.1f} ms)")
        print(f"Dask client.submit p50: {res['dask_p50_ms']:.1f} ms")
        print(f"ratio warm/Dask: {res['warm_over_dask']:.2f} (target <= 2)")
        print(f"fresh-process %%mesos task p50: {res['fresh_p50_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

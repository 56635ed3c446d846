"""CPU per ACKNOWLEDGE on the real call path: a master process and the SDK's sender.

    python -m bench.ack_path [-n 6000] [--rounds 3] [--json]

Issue 14's commonest call: a ``mesos-nb`` master (``MasterServer``, uvloop, in its own
process) and a framework subscribed through ``SchedulerDriver`` in this one, which POSTs ``n``
ACKNOWLEDGE calls (8 in flight, through the driver's own ``CallSender``) for a task the master
does not know, so each call costs the master its whole HTTP and handler path and nothing
else. Printed: the master's CPU per call (psutil) and this process's (the SDK's sender), per
round and their medians. For an A/B run the same file with ``PYTHONPATH`` at each checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid

import psutil

from mesos_nb.protocol import event_loop
from mesos_nb.protocol import messages as m
from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver

SERVE = """
import asyncio
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import event_loop
async def main():
    x = MasterServer(MasterConfig(port={port}))
    await x.start()
    print("ready", flush=True)
    await asyncio.Event().wait()
event_loop.run(main(), "uvloop")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _round(master: str, pid: int, n: int) -> tuple[float, float]:
    d = SchedulerDriver(Scheduler(), FrameworkInfo(user="bench", name="ack-path"), master)
    await d.start()
    ack = m.Acknowledge(agent_id=m.ID(value="unknown-S0"), task_id=m.ID(value="t1"), uuid=uuid.uuid4().bytes)
    body = m.encode(m.Call(type="ACKNOWLEDGE", framework_id=m.ID(value=d.framework_id), acknowledge=ack))
    sem = asyncio.Semaphore(8)

    async def one() -> None:
        async with sem:
            await d._post(body)

    try:
        for _ in range(200):  # warm: connections made, code paths hot
            await one()
        proc = psutil.Process(pid)
        t0, c0 = proc.cpu_times(), time.process_time()
        await asyncio.gather(*(one() for _ in range(n)))
        t1, c1 = proc.cpu_times(), time.process_time()
    finally:
        await d.stop(failover=True)
    return 1e6 * ((t1.user + t1.system) - (t0.user + t0.system)) / n, 1e6 * (c1 - c0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=6000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    port = _free_port()
    env = dict(os.environ, MESOS_NB_LOG_LEVEL="warning")
    master = subprocess.Popen([sys.executable, "-c", SERVE.format(port=port)], stdout=subprocess.PIPE, env=env)
    try:
        assert master.stdout is not None
        if b"ready" not in master.stdout.readline():
            raise SystemExit("the master did not start")
        load = os.getloadavg()[0]
        runs = [event_loop.run(_round(f"http://127.0.0.1:{port}", master.pid, a.n), "uvloop")
                for _ in range(a.rounds)]
    finally:
        master.kill()
        master.wait()
    out = {"n": a.n, "rounds": a.rounds, "loadavg": load,
           "master_us": statistics.median(r[0] for r in runs), "sdk_us": statistics.median(r[1] for r in runs),
           "master_us_all": [round(r[0], 1) for r in runs], "sdk_us_all": [round(r[1], 1) for r in runs]}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"load {load:.2f}: master {out['master_us']:.1f} us/ACKNOWLEDGE {out['master_us_all']}, "
              f"SDK {out['sdk_us']:.1f} us/ACKNOWLEDGE {out['sdk_us_all']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

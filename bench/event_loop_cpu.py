"""CPU per HTTP call on each event loop: what ``--event-loop`` changes, without a cluster.

    python -m bench.event_loop_cpu [-n 4000] [--rounds 3] [--json]

The shape of the launch path's commonest call (an SDK's ACKNOWLEDGE to the master): a client
on :class:`mesos_nb.scheduler.sender.CallSender` (the SDK's own session settings) POSTs a
small JSON body, 8 calls in flight, to an aiohttp server in another process that reads and
decodes it (msgspec, as the master does) and answers 202. Each configuration — both processes
on the stdlib loop, both on uvloop, the server's uvloop counting ``call_soon`` all the time
(as it does only while a state render gives way) — runs
``--rounds`` times, alternated; printed: the server's and the client's CPU per call (CPU time,
which a loaded box inflates far less than wall time), median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import msgspec
import psutil

from .harness import REPO

BODY = (b'{"type":"ACKNOWLEDGE","framework_id":{"value":"f"},"acknowledge":{"agent_id":{"value":"a-S0"},'
        b'"task_id":{"value":"t1"},"uuid":"0f9a6b8e2d1c4e5fa0b1c2d3e4f50617"}}')
CONFIGS = (("asyncio", False), ("uvloop", False), ("uvloop", True))


async def _serve(counting: bool) -> None:
    from aiohttp import web

    if counting:  # as while a state render gives way (doc_render._give_way), all the time
        asyncio.get_running_loop().count_scheduled()  # type: ignore[attr-defined]

    async def handle(request: web.Request) -> web.Response:
        msgspec.json.decode(await request.read())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/api/v1/scheduler", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


async def _client(port: int, n: int, in_flight: int) -> float:
    from mesos_nb.scheduler.sender import CallSender

    sender = CallSender()
    master = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):  # warm: connections made, code paths hot
            await sender.post(master, BODY, "s")
        sem = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with sem:
                await sender.post(master, BODY, "s")

        t = time.process_time()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.process_time() - t
    finally:
        await sender.close()


def one_run(loop: str, counting: bool, n: int) -> dict[str, float]:
    from mesos_nb.protocol import event_loop

    server = subprocess.Popen([sys.executable, "-m", "bench.event_loop_cpu", "--serve", loop]
                              + (["--counting"] if counting else []), stdout=subprocess.PIPE, cwd=str(REPO))
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        sp = psutil.Process(server.pid)
        t0 = sp.cpu_times()
        client_s = event_loop.run(_client(port, n, 8), loop)
        t1 = sp.cpu_times()
        server_s = (t1.user + t1.system) - (t0.user + t0.system)
    finally:
        server.kill()
        server.wait()
    return {"server_us": 1e6 * server_s / n, "client_us": 1e6 * client_s / n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=4000, help="calls per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--counting", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        from mesos_nb.protocol import event_loop

        event_loop.run(_serve(a.counting), a.serve)
        return 0
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(a.rounds):
        for loop, counting in CONFIGS:
            runs.setdefault(loop + ("_counting" if counting else ""), []).append(one_run(loop, counting, a.n))
    out: dict = {"n": a.n, "rounds": a.rounds, "loadavg": os.getloadavg()[0]}
    for name, rs in runs.items():
        for k in ("server_us", "client_us"):
            out[f"{name}_{k}"] = statistics.median(r[k] for r in rs)
            out[f"{name}_{k}_all"] = [round(r[k], 1) for r in rs]
    if a.json:
        print(json.dumps(out))
    else:
        for name in runs:
            print(f"{name:15s} server {out[f'{name}_server_us']:6.1f} us/call {out[f'{name}_server_us_all']}, "
                  f"client {out[f'{name}_client_us']:6.1f} us/call {out[f'{name}_client_us_all']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

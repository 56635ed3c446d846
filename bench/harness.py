"""Subprocess plumbing shared by the cluster-scale benchmarks.

Each heavy part runs in its own process so that no two share a GIL or an event loop: the
master (:mod:`bench.master_proc`), the emulated agents (:mod:`bench.emulated_agents`) and the
``/health`` poller (:mod:`bench.loop_probe`). Each prints ``ready …`` on stdout when it is up
and, on SIGTERM, one JSON line with its figures.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]



def run_loop(main: Any) -> Any:
    """``asyncio.run(main)`` on the loop mesos-nb's daemons pick (``event_loop``: uvloop when
    installed; ``$MESOS_NB_EVENT_LOOP=asyncio`` for the stdlib's), or the stdlib's on a
    checkout without that module (an A/B against an older main). Self-contained: its source
    is :data:`RUN_LOOP`, put into the ``python -c`` cluster programs of launch_throughput."""
    import asyncio
    import os

    try:
        from mesos_nb.protocol import event_loop
    except ImportError:
        return asyncio.run(main)
    return event_loop.run(main, os.environ.get("MESOS_NB_EVENT_LOOP") or "auto")


RUN_LOOP = inspect.getsource(run_loop).replace("main: Any) -> Any:", "main):")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Child:
    """A ``python -m bench.X`` child that says ``ready …`` and ends with a JSON line."""

    def __init__(self, module: str, args: list[str], *, env: dict[str, str] | None = None,
                 ready_timeout: float = 900.0, nice: int = 0) -> None:
        # nice > 0: a load generator standing in for another machine (it gets the CPU only
        # when the measured processes leave it)
        prefix = ["nice", "-n", str(nice)] if nice > 0 else []  # (nice execs: the pid is python's)
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                                     env=_env(env), cwd=str(REPO))
        assert self.proc.stdout is not None
        # readline blocks; the children always print ready or exit, so EOF ends the wait
        line = self.proc.stdout.readline().decode().split()
        if not line or line[0] != "ready":
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{module} did not start (exit {self.proc.returncode})")
        self.ready = line[1:]
        self.ps = psutil.Process(self.proc.pid)

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        """SIGTERM; return the JSON line it prints (empty if it died)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        for line in reversed(out.decode().splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local(work: str, resources: str, agents: int = 2, timeout: float = 60.0,
                extra: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """``mesos-nb local`` without authentication in its own session, once its agents are
    registered: (the process, the master's HOST:PORT). Its output is dropped."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "local", "--no-authenticate", "--agents", str(agents), "--port", str(port),
         "--work-dir", work, "--resources", resources, *extra],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/master/state", timeout=2) as r:
                if len(json.load(r).get("slaves", [])) >= agents:
                    return proc, f"127.0.0.1:{port}"
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"mesos-nb local did not start within {timeout:.0f} s")


def start_agents(master: str, n: int, resources: str, secret: str | None = None,
                 per_connection: int = 5000, starting: bool = True, nice: int = 0) -> Child:
    env = {"BENCH_AGENT_SECRET": secret} if secret else None
    args = ["--master", master, "--agents", str(n), "--resources", resources,
            "--per-connection", str(per_connection), "--no-unregister"]
    return Child("bench.emulated_agents", args + ([] if starting else ["--no-starting"]), env=env, nice=nice)


def start_health_probe(url: str, interval: float = 0.01) -> Child:
    return Child("bench.loop_probe", ["--url", url, "--interval", str(interval)], ready_timeout=30)


class CpuMeter:
    """CPU seconds a process used over a window (user + system), as a share of one core."""

    def __init__(self, pid: int) -> None:
        self.p = psutil.Process(pid)
        self.t0 = time.monotonic()
        c = self.p.cpu_times()
        self.c0 = c.user + c.system
        self.peak_rss = self.p.memory_info().rss

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.p.memory_info().rss)

    def result(self) -> dict[str, float]:
        c = self.p.cpu_times()
        dt = time.monotonic() - self.t0
        self.sample()
        return {"cpu_share": (c.user + c.system - self.c0) / dt if dt > 0 else 0.0,
                "rss_bytes": self.p.memory_info().rss, "peak_rss_bytes": self.peak_rss}


def machine() -> str:
    load = os.getloadavg()[0]
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, load {load:.1f} at start, CPython {sys.version.split()[0]}"


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]

"""How long the master takes to answer ``/health``, polled every 10 ms from outside.

A stalled event loop answers nothing, so the worst ``/health`` latency during an operation
bounds the master's longest stall from above (plus one request's own cost). The inside view
(an asyncio ticker in the master) is :class:`bench.master_proc.LoopStats`.

Library: ``with HealthProbe(url) as p: ...; p.summary()`` polls from a thread over one
keep-alive connection. Script: ``python -m bench.loop_probe --url http://H:P`` polls until
SIGTERM/SIGINT, then prints the summary as one JSON line (for benchmarks that must not share
a process, and so a GIL, with the probe).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class HealthProbe:
    def __init__(self, url: str, interval: float = 0.01, path: str = "/health", timeout: float = 60.0) -> None:
        u = urlsplit(url if "://" in url else "http://" + url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 5050
        self.interval = interval
        self.path = path
        self.timeout = timeout
        self.samples: list[tuple[float, float]] = []  # (monotonic start, latency)
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("GET", self.path)
                r = conn.getresponse()
                r.read()
                self.samples.append((t0, time.monotonic() - t0))
                if r.status != 200:
                    self.errors += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            rest = self.interval - (time.monotonic() - t0)
            if rest > 0:
                self._stop.wait(rest)
        if conn is not None:
            conn.close()

    def start(self) -> HealthProbe:
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def mark(self) -> int:
        """An index into ``samples``: ``summary(since=mark)`` covers only what follows."""
        return len(self.samples)

    def summary(self, since: int = 0) -> dict[str, Any]:
        lat = [x for _, x in self.samples[since:]]
        return {
            "health_samples": len(lat),
            "health_errors": self.errors,
            "health_p50_s": percentile(lat, 0.5),
            "health_p99_s": percentile(lat, 0.99),
            "health_max_s": max(lat) if lat else None,
        }

    def __enter__(self) -> HealthProbe:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="poll /health until SIGTERM; print a JSON summary")
    ap.add_argument("--url", required=True)
    ap.add_argument("--interval", type=float, default=0.01)
    a = ap.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    p = HealthProbe(a.url, a.interval).start()
    print("ready", flush=True)
    done.wait()
    p.stop()
    print(json.dumps(p.summary()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

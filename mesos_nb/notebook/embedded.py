"""The embedded default: a master and agents inside the kernel, shared by the kernels of this machine.

The first kernel that needs a cluster and finds none starts a :class:`LocalCluster` on a
private event-loop thread, on the well-known port (5050 when free), and writes
``~/.mesos-nb/local.json`` (address, pid). Any later kernel reads that file, checks the pid is
alive and ``/health`` answers, and connects to the same cluster instead of starting another.
The cluster requires authentication: ``local.json`` names its ``credentials.json``, and the
SDK and the client library find them through the discovery file LocalCluster writes.
A file lock serialises the check-and-start of two kernels starting at the same moment.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from mesos_nb.client import HttpClient, MesosClientError
from mesos_nb.client import master_url as resolve_master
from mesos_nb.local import LocalCluster
from mesos_nb.protocol import event_loop


def state_dir() -> Path:
    """``~/.mesos-nb`` (follows ``$HOME``, so tests can point it at a temporary directory)."""
    return Path(os.environ.get("HOME") or os.path.expanduser("~")) / ".mesos-nb"


def local_file() -> Path:
    return state_dir() / "local.json"


def healthy(master_url: str, timeout: float = 2.0) -> bool:
    """Whether the master answers ``/health``; for a ``zk://`` URL, the master leading now."""
    try:
        if master_url.startswith("zk://"):
            master_url = resolve_master(master_url, zk_timeout=max(timeout, 5.0))
        status, _ = HttpClient(timeout=timeout).request(master_url.rstrip("/") + "/health")
    except (MesosClientError, ValueError):
        return False
    return status == 200


def running_local() -> dict[str, Any] | None:
    """The embedded cluster described by ``~/.mesos-nb/local.json`` when it is alive, else None."""
    try:
        info = json.loads(local_file().read_text())
    except (OSError, ValueError):
        return None
    pid = int(info.get("pid") or 0)
    url = str(info.get("url") or "")
    if not pid or not url or not psutil.pid_exists(pid) or not healthy(url):
        return None
    return info


class ClusterThread:
    """A :class:`LocalCluster` on its own event-loop thread, driven from synchronous code."""

    def __init__(self, agents: int = 2, port: int = 0, agent_resources: str | None = None,
                 work_dir: str | None = None, **kwargs: Any) -> None:
        self.cluster = LocalCluster(agents=agents, port=port, work_dir=work_dir,
                                    agent_resources=agent_resources or None, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _run(self, coro: Any, timeout: float) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, timeout: float = 30.0) -> ClusterThread:
        loop = event_loop.new_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="mesos-nb-local", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        try:
            self._run(self.cluster.start(timeout=timeout), timeout + 5)
        except BaseException:
            self._close()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is None:
            return
        try:
            self._run(self.cluster.stop(kill_tasks=True), timeout)
        finally:
            self._close()

    def _close(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)

    @property
    def master_address(self) -> str:
        return self.cluster.master_address

    @property
    def master_url(self) -> str:
        return self.cluster.master_url


_embedded: ClusterThread | None = None
_lock = threading.Lock()


def current() -> ClusterThread | None:
    """The embedded cluster this process started, if any."""
    return _embedded


@contextlib.contextmanager
def _file_lock():
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "local.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def start_embedded(agents: int = 2, resources: str | None = None, port: int = 5050) -> tuple[str, bool]:
    """``(master_url, started_here)``: the machine's embedded cluster, started now if none is alive."""
    global _embedded
    with _lock:
        if _embedded is not None:
            return _embedded.master_url, False
        with _file_lock():
            info = running_local()
            if info is not None:
                return str(info["url"]), False
            ct = None
            for p in ([port, 0] if port else [0]):
                # secure by default: credentials.json, named in local.json and found by the clients
                ct = ClusterThread(agents=agents, port=p, agent_resources=resources, authenticate=True)
                try:
                    ct.start()
                    break
                except OSError:
                    ct = None  # the port is taken: fall back to any free port
            if ct is None:
                raise OSError("could not start the embedded cluster")
            _embedded = ct
            info = {"master": ct.master_address, "url": ct.master_url, "pid": os.getpid(),
                    "agents": agents, "work_dir": ct.cluster.work_dir, "started": time.time(),
                    "credentials": ct.cluster.credentials_path}
            tmp = local_file().with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=1))
            os.replace(tmp, local_file())
            return ct.master_url, True


def stop_embedded() -> None:
    """Stop the embedded cluster this process started (its tasks are killed)."""
    global _embedded
    with _lock:
        ct, _embedded = _embedded, None
        if ct is None:
            return
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(local_file().read_text())
            if int(info.get("pid") or 0) == os.getpid():
                local_file().unlink()
        ct.stop()


def _safe_stop() -> None:
    with contextlib.suppress(Exception):
        stop_embedded()


atexit.register(_safe_stop)


__all__ = ["ClusterThread", "current", "healthy", "local_file", "running_local", "start_embedded",
           "state_dir", "stop_embedded"]

"""One framework per Jupyter server process for all of its remote kernels.

Kernels of the same master, role and GPU need share a :class:`~mesos_nb.frameworks.launcher.TaskPool`
(started on first use). A re-attached kernel (``load_provisioner_info`` after a server
restart) re-subscribes with the framework id it was launched under. At interpreter exit a
pool with no live kernel tears its framework down; one that still has kernels fails over
(the master keeps them for ``failover_timeout`` seconds, so a restarted server re-attaches).
"""

from __future__ import annotations

import atexit
import os
import socket
import threading

from mesos_nb.frameworks.launcher import TaskPool

_lock = threading.Lock()
_pools: dict[tuple[str, str, bool, str], TaskPool] = {}


def _name() -> str:
    return f"jupyter-kernels ({socket.gethostname()} pid {os.getpid()})"


def get_pool(master: str, role: str, gpus: bool, failover_timeout: float,
             framework_id: str | None = None) -> TaskPool:
    """The started pool for these kernels (blocking: subscribing takes a round trip)."""
    with _lock:
        if framework_id:
            for p in _pools.values():
                if p.framework_id == framework_id and p._loop is not None:
                    return p
        key = (master, role or "*", gpus, framework_id or "")
        pool = _pools.get(key)
        # a pool that is re-subscribing (the master restarted) is kept; one whose framework
        # the master ended, or that was stopped, is replaced
        if pool is not None and pool._loop is not None and not isinstance(pool.error, str):
            return pool
        pool = TaskPool(master, _name(), role=role or "*", failover_timeout=failover_timeout,
                        framework_id=framework_id, gpus=gpus)
        pool.start()
        _pools[key] = pool
        if framework_id is None:  # later launches of this server use it too
            _pools[(master, role or "*", gpus, pool.framework_id or "")] = pool
        return pool


def close_all() -> None:
    """Tear down pools without live kernels; fail over the others (see the module doc)."""
    with _lock:
        pools = {id(p): p for p in _pools.values()}.values()
        _pools.clear()
    for p in pools:
        live = any(not t.done for t in list(p.tasks.values()))
        p.stop(teardown=not live)


atexit.register(close_all)

__all__ = ["close_all", "get_pool"]

"""Where the framework keeps its state, and who among its replicas may act.

:class:`Store` is the seam: four key/value calls over named collections (``apps``, ``jobs``,
``runs``, ``instances``, ``meta``). :class:`SQLiteStore` implements it in one file under the
state directory; a ZooKeeper store (the master's registry work) only has to implement the same
four methods. Every write is durable before it returns, so the shell writes an instance
*before* sending its LAUNCH (write-ahead) and never loses track of a task it started.

:class:`Leadership` is the second seam: :class:`FileLock` takes an exclusive ``flock`` on
``leader.lock`` in the state directory, so two replicas on one state directory never both act;
the lock dies with its process (SIGKILL included), so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import msgspec

from .model import AppDef, JobDef, RunRecord
from .reconcile import Backoff, Instance

_enc = msgspec.json.Encoder()


class Store(Protocol):
    def put(self, kind: str, key: str, value: bytes) -> None: ...

    def delete(self, kind: str, key: str) -> None: ...

    def get(self, kind: str, key: str) -> bytes | None: ...

    def items(self, kind: str) -> Iterator[tuple[str, bytes]]: ...

    def close(self) -> None: ...


class SQLiteStore:
    """The :class:`Store` in an SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (kind TEXT, key TEXT, value BLOB, PRIMARY KEY (kind, key))")

    def put(self, kind: str, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (kind, key, value))

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE kind = ? AND key = ?", (kind, key))

    def get(self, kind: str, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else row[0]

    def items(self, kind: str) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM kv WHERE kind = ? ORDER BY key", (kind,)).fetchall()
        return iter(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class State:
    """Typed access to a :class:`Store`: the framework's definitions, instances and runs."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _put(self, kind: str, key: str, obj: Any) -> None:
        self.store.put(kind, key, _enc.encode(obj))

    def _all(self, kind: str, typ: type) -> dict[str, Any]:
        return {k: msgspec.json.decode(v, type=typ) for k, v in self.store.items(kind)}

    # apps, jobs
    def save_app(self, app: AppDef) -> None:
        self._put("apps", app.id, app)

    def delete_app(self, app_id: str) -> None:
        self.store.delete("apps", app_id)
        self.store.delete("backoff", app_id)

    def apps(self) -> dict[str, AppDef]:
        return self._all("apps", AppDef)

    def save_job(self, job: JobDef) -> None:
        self._put("jobs", job.id, job)

    def delete_job(self, job_id: str) -> None:
        self.store.delete("jobs", job_id)

    def jobs(self) -> dict[str, JobDef]:
        return self._all("jobs", JobDef)

    # instances (tasks of apps), backoffs
    def save_instance(self, inst: Instance) -> None:
        self._put("instances", inst.task_id, inst)

    def delete_instance(self, task_id: str) -> None:
        self.store.delete("instances", task_id)

    def instances(self) -> dict[str, Instance]:
        return self._all("instances", Instance)

    def save_backoff(self, app_id: str, b: Backoff) -> None:
        self._put("backoff", app_id, b)

    def backoffs(self) -> dict[str, Backoff]:
        return self._all("backoff", Backoff)

    # runs of jobs
    def save_run(self, run: RunRecord) -> None:
        self._put("runs", f"{run.job_id}/{run.id}", run)

    def delete_run(self, run: RunRecord) -> None:
        self.store.delete("runs", f"{run.job_id}/{run.id}")

    def runs(self) -> dict[str, RunRecord]:
        return self._all("runs", RunRecord)

    # framework id
    def framework_id(self) -> str | None:
        v = self.store.get("meta", "framework_id")
        return v.decode() if v else None

    def save_framework_id(self, fid: str) -> None:
        self.store.put("meta", "framework_id", fid.encode())


class Leadership(Protocol):
    async def acquire(self) -> None: ...

    def release(self) -> None: ...


class FileLock:
    """Leadership among replicas sharing one state directory: an exclusive ``flock``."""

    def __init__(self, path: str, poll: float = 0.2) -> None:
        self.path = path
        self.poll = poll
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def acquire(self) -> None:
        while not self.try_acquire():
            await asyncio.sleep(self.poll)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


__all__ = ["FileLock", "Leadership", "SQLiteStore", "State", "Store"]

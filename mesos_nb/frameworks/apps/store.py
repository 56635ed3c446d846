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
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import msgspec

from .model import AppDef, JobDef, RunRecord, run_key
from .reconcile import Backoff, Instance

_enc = msgspec.json.Encoder()
T = TypeVar("T")


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


class Records(Generic[T]):
    """One kind of typed record in a :class:`Store` (``kind`` names its collection); a record's
    key is ``key(record)``, or given to :meth:`save` where the record does not carry it."""

    def __init__(self, store: Store, kind: str, typ: type[T], key: Callable[[T], str] | None = None) -> None:
        self.store, self.kind, self.typ, self.key = store, kind, typ, key

    def save(self, obj: T, key: str | None = None) -> None:
        if key is None:
            if self.key is None:
                raise TypeError(f"{self.kind} records are saved under a given key")
            key = self.key(obj)
        self.store.put(self.kind, key, _enc.encode(obj))

    def delete(self, key: str) -> None:
        self.store.delete(self.kind, key)

    def all(self) -> dict[str, T]:
        return {k: msgspec.json.decode(v, type=self.typ) for k, v in self.store.items(self.kind)}


class State:
    """Typed access to a :class:`Store`: the framework's definitions, instances (tasks of apps),
    back-offs (per app id) and runs of jobs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.apps: Records[AppDef] = Records(store, "apps", AppDef, lambda a: a.id)
        self.jobs: Records[JobDef] = Records(store, "jobs", JobDef, lambda j: j.id)
        self.instances: Records[Instance] = Records(store, "instances", Instance, lambda i: i.task_id)
        self.backoffs: Records[Backoff] = Records(store, "backoff", Backoff)
        self.runs: Records[RunRecord] = Records(store, "runs", RunRecord, run_key)

    def delete_app(self, app_id: str) -> None:
        self.apps.delete(app_id)
        self.backoffs.delete(app_id)

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


__all__ = ["FileLock", "Leadership", "Records", "SQLiteStore", "State", "Store"]

"""The framework's state and leadership in ZooKeeper (``--zk zk://…/mesos-nb-apps``).

:class:`ZkLeadership` elects one leader among replicas with kazoo's ``Lock`` recipe
(ephemeral sequential znodes under ``<path>/leader``): a replica that dies (SIGKILL included)
loses its session after the session timeout and the next in line leads.

:class:`ZkStore` is the :class:`~mesos_nb.frameworks.apps.store.Store` in ZooKeeper, fenced:
``claim()`` (called by the new leader, once it holds the lock) bumps the version of
``<path>/epoch`` by a compare-and-set; every later write is one transaction that starts with
``check(epoch, version=ours)``. A deposed leader (paused, partitioned, its session expired) that
still tries to write fails as a whole and gets :class:`StoreFencedError`; a write that times out
or loses the session gets :class:`StoreUnavailableError`. Both call ``on_lost`` so the process
stops acting (fail-stop) and leaves the tasks running for the new leader to adopt.

Layout::

    <path>/leader/…           the Lock recipe's contenders (data: "host pid")
    <path>/epoch              {"owner", "claimed_at"}; its version is the fencing token
    <path>/endpoint           {"api", "pid"} of the leader, for clients
    <path>/data/<kind>/<key>  the value bytes (key percent-encoded)

Why kazoo's recipe and our own epoch rather than the lock alone: a lock holder cannot know it
lost the lock before its next write; the transaction's version check makes that write fail.
Values are limited by ZooKeeper's 1 MiB znode size (a notebook job's input notebook included).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote

from mesos_nb.protocol.zk_detector import kazoo_client
from mesos_nb.protocol.zk_url import ZkUrl, parse_zk_url

log = logging.getLogger("mesos_nb.apps.zk")

KINDS = ("apps", "jobs", "runs", "instances", "backoff", "meta")


class StoreError(RuntimeError):
    """A store operation failed; the leader must stop acting as leader."""


class StoreFencedError(StoreError):
    """Another replica claimed the store after us: we are a stale leader."""


class StoreUnavailableError(StoreError):
    """ZooKeeper did not answer in time, or the session is gone."""


def connect(url: str | ZkUrl, session_timeout: float = 10.0, timeout: float = 15.0) -> Any:
    """A started KazooClient for ``url`` (raises :class:`StoreUnavailableError` in one sentence)."""
    from kazoo.handlers.threading import KazooTimeoutError

    zurl = parse_zk_url(url) if isinstance(url, str) else url
    zk = kazoo_client(zurl, session_timeout)
    try:
        zk.start(timeout=timeout)
    except KazooTimeoutError:
        zk.close()
        raise StoreUnavailableError(f"could not connect to ZooKeeper at {zurl} within {timeout:g} s") from None
    return zk


class ZkStore:
    """The fenced :class:`Store` under ``base`` (a znode path); writes need :meth:`claim` first."""

    def __init__(self, zk: Any, base: str, *, timeout: float = 20.0,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.zk = zk
        self.base = base.rstrip("/") or "/"
        self.timeout = timeout
        self.on_lost = on_lost
        self._epoch: int | None = None
        self._known: set[str] = set()  # znodes that exist (we are the only writer while leader)

    def _p(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts])

    def _key(self, kind: str, key: str | None = None) -> str:
        return self._p("data", kind) if key is None else self._p("data", kind, quote(key, safe=""))

    def _wait(self, result: Any, what: str) -> Any:
        from kazoo.exceptions import ConnectionLoss, SessionExpiredError

        try:
            return result.get(timeout=self.timeout)
        except self.zk.handler.timeout_exception:
            raise self._lost(StoreUnavailableError(f"ZooKeeper did not answer {what} within {self.timeout:g} s")) from None
        except (ConnectionLoss, SessionExpiredError) as e:
            raise self._lost(StoreUnavailableError(f"ZooKeeper session lost during {what}: {type(e).__name__}")) from None

    def _lost(self, err: StoreError) -> StoreError:
        self._epoch = None
        log.error("event=store_lost reason=%s", err)
        if self.on_lost is not None:
            self.on_lost(str(err))
        return err

    # ---------------------------------------------------------------- leadership's side
    def claim(self, owner: str) -> int:
        """Fence every earlier leader: compare-and-set the epoch; returns our fencing token."""
        from kazoo.exceptions import BadVersionError, NodeExistsError

        for kind in KINDS:
            self._wait(self.zk.ensure_path_async(self._key(kind)), "creating the store")
        epoch = self._p("epoch")
        data = json.dumps({"owner": owner, "claimed_at": time.time()}).encode()
        try:
            self._wait(self.zk.create_async(epoch, data), "creating the epoch")
            self._epoch = 0
        except NodeExistsError:
            _, stat = self._wait(self.zk.get_async(epoch), "reading the epoch")
            try:
                stat = self._wait(self.zk.set_async(epoch, data, stat.version), "claiming the epoch")
            except BadVersionError:
                raise self._lost(StoreFencedError("another replica claimed the store at the same time")) from None
            self._epoch = stat.version
        self._known = set()
        log.info("event=store_claimed owner=%s epoch=%d base=%s", owner, self._epoch, self.base)
        return self._epoch

    def set_endpoint(self, info: dict[str, Any]) -> None:
        self.put_path(self._p("endpoint"), json.dumps(info).encode())

    # ---------------------------------------------------------------- writes
    def _exists(self, path: str) -> bool:
        if path in self._known:
            return True
        if self._wait(self.zk.exists_async(path), "checking a key") is not None:
            self._known.add(path)
            return True
        return False

    def _commit(self, op: str, path: str, value: bytes | None, what: str) -> None:
        from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

        if self._epoch is None:
            raise StoreFencedError(f"not the leader (store not claimed); refusing to {what}")
        for _ in (1, 2):
            exists = self._exists(path)
            if op == "delete" and not exists:
                return
            t = self.zk.transaction()
            t.check(self._p("epoch"), self._epoch)
            if op == "delete":
                t.delete(path)
            elif exists:
                t.set_data(path, value)
            else:
                t.create(path, value)
            results = self._wait(t.commit_async(), what)
            if isinstance(results[0], (BadVersionError, NoNodeError)):
                raise self._lost(StoreFencedError(f"another replica leads now; refusing to {what}"))
            r = results[1]
            if not isinstance(r, Exception):
                if op == "delete":
                    self._known.discard(path)
                else:
                    self._known.add(path)
                return
            # our picture of which znodes exist was wrong: fix it, retry once
            if isinstance(r, NodeExistsError):
                self._known.add(path)
            elif isinstance(r, NoNodeError):
                self._known.discard(path)
            else:
                raise StoreError(f"could not {what}: {r!r}")
        raise StoreError(f"could not {what}: the key changed under us")

    def put_path(self, path: str, value: bytes) -> None:
        self._commit("put", path, value, f"write {path}")

    def put(self, kind: str, key: str, value: bytes) -> None:
        self._commit("put", self._key(kind, key), value, f"write {kind}/{key}")

    def delete(self, kind: str, key: str) -> None:
        self._commit("delete", self._key(kind, key), None, f"delete {kind}/{key}")

    # ---------------------------------------------------------------- reads
    def get(self, kind: str, key: str) -> bytes | None:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self._wait(self.zk.get_async(self._key(kind, key)), f"reading {kind}/{key}")
        except NoNodeError:
            return None
        self._known.add(self._key(kind, key))
        return data

    def items(self, kind: str) -> Iterator[tuple[str, bytes]]:
        """All of a kind, sorted by key; the reads are sent at once (one round trip's wait)."""
        from kazoo.exceptions import NoNodeError

        try:
            children = self._wait(self.zk.get_children_async(self._key(kind)), f"listing {kind}")
        except NoNodeError:
            return iter(())
        pending = [(c, self.zk.get_async(f"{self._key(kind)}/{c}")) for c in children]
        out = []
        for child, res in pending:
            try:
                data, _ = self._wait(res, f"reading {kind}")
            except NoNodeError:
                continue
            self._known.add(f"{self._key(kind)}/{child}")
            out.append((unquote(child), data))
        return iter(sorted(out))

    def close(self) -> None:
        self._epoch = None


class ZkLeadership:
    """Leadership among replicas: kazoo's ``Lock`` recipe under ``<base>/leader``.

    ``acquire()`` waits (in a thread) until this replica holds the lock. The session's loss
    (expiry, or ZooKeeper unreachable past the session timeout) means the lock is gone:
    ``on_lost`` is called (from a kazoo thread) so the process steps down."""

    def __init__(self, zk: Any, base: str, identifier: str | None = None,
                 on_lost: Callable[[str], None] | None = None) -> None:
        from kazoo.protocol.states import KazooState

        self.zk = zk
        self.path = base.rstrip("/") + "/leader"
        self.identifier = identifier or f"{socket.gethostname()} {os.getpid()}"
        self.on_lost = on_lost
        self.held = False
        self._lock = zk.Lock(self.path, self.identifier)

        def listener(st: Any) -> bool:
            if st == KazooState.LOST and self.held:
                self.held = False
                log.error("event=leadership_lost path=%s", self.path)
                if self.on_lost is not None:
                    self.on_lost("the ZooKeeper session expired: leadership lost")
                return True  # remove the listener
            return False

        zk.add_listener(listener)

    def contenders(self) -> list[str]:
        return list(self._lock.contenders())

    async def acquire(self) -> None:
        """Wait for the lock; a ZooKeeper hiccup while waiting (connection or session lost)
        is retried: a standby has nothing to give up."""
        from kazoo.exceptions import KazooException

        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self._lock.acquire)
                break
            except asyncio.CancelledError:
                self._lock.cancel()
                raise
            except KazooException as e:
                log.warning("event=leadership_wait_retry error=%r", e)
                await asyncio.sleep(0.5)
        self.held = True
        log.info("event=leadership_acquired path=%s id=%s", self.path, self.identifier)

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self._lock.release()
            except Exception as e:  # session already gone: the lock went with it
                log.info("event=leadership_release_failed error=%r", e)


def leader_endpoint(zk: Any, base: str) -> dict[str, Any] | None:
    """The leading replica's ``{"api", "pid"}`` as it wrote it (None before any leader has)."""
    from kazoo.exceptions import NoNodeError

    try:
        data, _ = zk.get(base.rstrip("/") + "/endpoint")
    except NoNodeError:
        return None
    return json.loads(data) if data else None


__all__ = ["StoreError", "StoreFencedError", "StoreUnavailableError", "ZkLeadership", "ZkStore", "connect",
           "leader_endpoint"]

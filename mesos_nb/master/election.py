"""Leader election among masters in ZooKeeper (the ``--zk`` mode), fail-stop like Mesos.

Each master joins the group at ``<path>`` with an EPHEMERAL|SEQUENTIAL znode
``json.info_<10-digit seq>`` holding its ``MasterInfo`` JSON; the smallest sequence leads
(:func:`mesos_nb.protocol.zk_detector.leader_znode`). Every contender watches the whole group
(no herd-effect handling, as Mesos: the group is small) and also reports the current leader's
address so that a follower can redirect (307) to it.

Fail-stop: a leader that loses its session (expired, or disconnected for longer than the
session timeout: like Mesos we time the session out ourselves, because the client only learns
of expiry when it reconnects), or whose znode disappears, or that sees an older member appear,
calls ``on_lost(reason)`` once and never leads again through this object; the master must stop
acting as leader at once (Mesos aborts and lets a supervisor restart it). A follower that
loses its session joins again with a new znode, as Mesos' ``lostCandidacy`` does.

``--quorum``: in Mesos it is the majority size of the replicated log that stores the registry.
Here the registry is stored in ZooKeeper itself (``registry_zk``), whose ensemble has its own
majority, so the value is accepted, checked (>= 1) and recorded (``quorum``, logged and shown
in the state) but gates nothing.

Callbacks run on a kazoo thread, or through ``loop.call_soon_threadsafe`` when an asyncio
``loop`` is given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..protocol.zk_detector import (
    MASTER_INFO_JSON_LABEL,
    DetectorError,
    MasterDetector,
    kazoo_client,
    leader_znode,
    master_address,
    master_info_json,
)
from ..protocol.zk_url import ZkUrl, parse_zk_url

log = logging.getLogger("mesos_nb.master.election")


class ElectionError(RuntimeError):
    """The contender could not join the group (ZooKeeper unreachable, no permission)."""


class MasterContender:
    """One master's candidacy. ``start()`` joins; ``is_leader`` tells; ``stop()`` withdraws."""

    def __init__(self, url: str | ZkUrl, master_info: Any, *, session_timeout: float = 10.0,
                 quorum: int | None = None,
                 on_elected: Callable[[], None] | None = None,
                 on_lost: Callable[[str], None] | None = None,
                 on_leader_change: Callable[[str | None], None] | None = None,
                 loop: Any = None) -> None:
        self.url = parse_zk_url(url) if isinstance(url, str) else url
        if quorum is not None and quorum < 1:
            raise ValueError("--quorum must be a positive integer")
        self.quorum = quorum
        self.session_timeout = session_timeout
        self.data = master_info_json(master_info)
        self.info_port = master_info["port"] if isinstance(master_info, dict) else master_info.port
        self.on_elected, self.on_lost, self.on_leader_change = on_elected, on_lost, on_leader_change
        self.loop = loop
        self.znode: str | None = None        # our member's name, e.g. json.info_0000000003
        self.leader: str | None = None       # host:port of the current leader (maybe us)
        self.leader_znode: str | None = None
        self.is_leader = False
        self.lost_reason: str | None = None  # set once, when leadership was lost (fail-stop)
        self._zk: Any = None
        self._lock = threading.RLock()
        self._refresh_lock = threading.RLock()  # one group evaluation at a time
        self._elected_event = threading.Event()
        self._suspend_timer: threading.Timer | None = None
        self._rejoin = False
        self._stopped = False

    # ---------------------------------------------------------------- lifecycle
    def start(self, connect_timeout: float = 15.0) -> MasterContender:
        from kazoo.exceptions import KazooException
        from kazoo.handlers.threading import KazooTimeoutError

        self._zk = kazoo_client(self.url, self.session_timeout)
        try:
            self._zk.start(timeout=connect_timeout)
            self._zk.ensure_path(self.url.path)
            self._join()
        except KazooTimeoutError:
            self._close_client()
            raise ElectionError(f"Could not connect to ZooKeeper at {self.url} within {connect_timeout:g} s") from None
        except KazooException as e:
            self._close_client()
            raise ElectionError(f"Could not join the master group at {self.url}: {type(e).__name__}") from None
        self._zk.add_listener(self._on_state)
        self._refresh()
        log.info("event=contender_started url=%s znode=%s quorum=%s", self.url, self.znode, self.quorum)
        return self

    def stop(self) -> None:
        """Withdraw: our znode is deleted (by closing the session), a follower takes over."""
        with self._lock:
            self._stopped = True
            was_leader, self.is_leader = self.is_leader, False
            self._cancel_timer()
        if was_leader:
            log.info("event=leader_withdrew url=%s znode=%s", self.url, self.znode)
        self._close_client()

    def wait_elected(self, timeout: float) -> bool:
        return self._elected_event.wait(timeout)

    @property
    def session_id(self) -> int | None:
        zk = self._zk
        return zk.client_id[0] if zk is not None and zk.client_id else None

    # ---------------------------------------------------------------- internals
    def _close_client(self) -> None:
        zk, self._zk = self._zk, None
        if zk is not None:
            try:
                zk.stop()
                zk.close()
            except Exception:  # closing a client that is already broken
                log.debug("event=contender_close_failed", exc_info=True)

    def _join(self) -> None:
        path = self._zk.create(f"{self.url.path.rstrip('/')}/{MASTER_INFO_JSON_LABEL}_", self.data,
                               ephemeral=True, sequence=True, makepath=True)
        self.znode = path.rsplit("/", 1)[1]
        log.info("event=contender_joined url=%s znode=%s", self.url, self.znode)

    def _dispatch(self, cb: Callable[..., None] | None, *args: Any) -> None:
        if cb is None:
            return
        if self.loop is not None:
            self.loop.call_soon_threadsafe(cb, *args)
        else:
            try:
                cb(*args)
            except Exception:
                log.exception("event=election_callback_failed")

    def _lose(self, reason: str) -> None:
        """Fail-stop: report once, stop leading, drop the session so nobody sees us any more."""
        with self._lock:
            if self.lost_reason is not None or self._stopped:
                return
            self.lost_reason = reason
            self.is_leader = False
            self._stopped = True
            self._cancel_timer()
        log.warning("event=leadership_lost url=%s znode=%s reason=%s", self.url, self.znode, reason)
        self._dispatch(self.on_lost, reason)
        # kazoo must not be stopped from its own threads
        threading.Thread(target=self._close_client, name="contender-close", daemon=True).start()

    def _cancel_timer(self) -> None:
        if self._suspend_timer is not None:
            self._suspend_timer.cancel()
            self._suspend_timer = None

    def _on_state(self, state: str) -> None:
        from kazoo.client import KazooState

        with self._lock:
            if self._stopped:
                return
            if state == KazooState.SUSPENDED:
                if self._suspend_timer is None:
                    t = threading.Timer(self.session_timeout, self._suspended_too_long)
                    t.daemon = True
                    self._suspend_timer = t
                    t.start()
                return
            self._cancel_timer()
            leader = self.is_leader
            if state == KazooState.LOST:
                if not leader:
                    self._rejoin = True
                    self.leader = self.leader_znode = None
            elif state == KazooState.CONNECTED and self._zk is not None:
                self._zk.handler.spawn(self._after_reconnect)
        if state == KazooState.LOST and leader:
            self._lose("ZooKeeper session expired")

    def _suspended_too_long(self) -> None:
        with self._lock:
            self._suspend_timer = None
            leader = self.is_leader and not self._stopped
        if leader:
            self._lose(f"disconnected from ZooKeeper for more than the session timeout ({self.session_timeout:g} s)")

    def _after_reconnect(self) -> None:
        from kazoo.exceptions import KazooException

        with self._refresh_lock:
            with self._lock:
                rejoin, self._rejoin = self._rejoin, False
            if rejoin and not self._stopped:
                try:
                    self._join()  # a follower whose session expired contends again
                except KazooException as e:
                    log.warning("event=contender_rejoin_failed url=%s error=%r", self.url, e)
                    with self._lock:
                        self._rejoin = True
                    return
            self._evaluate()

    def _watch(self, _event: Any = None) -> None:
        zk = self._zk
        if zk is not None and not self._stopped:
            zk.handler.spawn(self._refresh)

    def _refresh(self) -> None:
        with self._refresh_lock:
            self._evaluate()

    def _evaluate(self) -> None:
        from kazoo.exceptions import KazooException, NoNodeError

        zk = self._zk
        if zk is None or self._stopped:
            return
        base = self.url.path.rstrip("/")
        try:
            children = zk.get_children(self.url.path, watch=self._watch)
        except NoNodeError:
            children = []
        except KazooException as e:
            log.warning("event=contender_watch_failed url=%s error=%r", self.url, e)
            return
        lead = leader_znode(children)
        elected = lost = None
        rejoin = False
        with self._lock:
            if self._stopped:
                return
            ours_present = self.znode in children
            if self.is_leader and not ours_present:
                lost = "our znode disappeared from ZooKeeper"
            elif self.is_leader and lead != self.znode:
                lost = f"an older member {lead} appeared"
            elif not ours_present and not self._rejoin:
                rejoin = True  # a follower's znode was removed (not by us): contend again
            elif lead == self.znode and not self.is_leader:
                self.is_leader = elected = True
        if lost:
            self._lose(lost)
            return
        if rejoin:
            try:
                self._join()
            except KazooException as e:
                log.warning("event=contender_rejoin_failed url=%s error=%r", self.url, e)
            self._watch()
            return
        if lead != self.leader_znode:
            addr = None
            if lead is not None:
                try:
                    data, _ = zk.get(f"{base}/{lead}")
                    addr = master_address(lead, data)
                except NoNodeError:
                    return  # gone already: the children watch fires again
                except (KazooException, ValueError) as e:
                    log.warning("event=leader_unreadable url=%s znode=%s error=%s", self.url, lead, e)
            with self._lock:
                self.leader, self.leader_znode = addr, lead
            log.info("event=leader_detected url=%s leader=%s znode=%s", self.url, addr, lead)
            self._dispatch(self.on_leader_change, addr)
        if elected:
            log.info("event=elected url=%s znode=%s", self.url, self.znode)
            self._elected_event.set()
            self._dispatch(self.on_elected)


__all__ = ["DetectorError", "ElectionError", "MasterContender", "MasterDetector"]

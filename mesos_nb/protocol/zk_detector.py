"""Finding the leading master in ZooKeeper, as Mesos lays it out (shared by agents, SDK, CLI).

Why here and not in ``master/``: the agent, the scheduler SDK and the operator client all need
to follow the leader, and they may only import layers below them. The pure part (which child
leads, what address its data names) is plain functions; :class:`MasterDetector` is the thin
kazoo shell around them.

Layout (Mesos ``src/zookeeper/group.cpp``, ``src/master/detector/zookeeper.cpp``): every
master contender owns an EPHEMERAL|SEQUENTIAL child ``<path>/json.info_<10-digit seq>`` whose
data is the compact JSON of its ``MasterInfo``; the member with the smallest sequence number,
whatever its label, leads. Children that are not members (``log_replicas``) are ignored.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .zk_url import ZkUrl, parse_zk_url

log = logging.getLogger("mesos_nb.zk")

MASTER_INFO_JSON_LABEL = "json.info"
MASTER_INFO_LABEL = "info"  # legacy binary protobuf; we never write it
_MEMBER = re.compile(r"^(?:(?P<label>.+)_)?(?P<seq>\d{10})$")


class DetectorError(RuntimeError):
    """ZooKeeper could not be reached or the leader's znode could not be read."""


# --------------------------------------------------------------------------- pure
def member_sequence(name: str) -> int | None:
    """The sequence number of a group member's znode name, or None for a non-member."""
    mo = _MEMBER.match(name)
    return int(mo.group("seq")) if mo else None


def leader_znode(children: Iterable[str]) -> str | None:
    """The leading member: the oldest (smallest sequence), compared across labels as Mesos does."""
    best: tuple[int, str] | None = None
    for c in children:
        seq = member_sequence(c)
        if seq is not None and (best is None or seq < best[0]):
            best = (seq, c)
    return best[1] if best else None


def master_info_json(info: Any) -> bytes:
    """Compact JSON of a ``MasterInfo`` exactly as Mesos writes it (sorted keys: stout's
    ``JSON::Object`` is a ``std::map``). ``info`` is a ``messages.MasterInfo`` or a dict."""
    if not isinstance(info, dict):
        import msgspec

        d = msgspec.to_builtins(info)
        d["port"] = info.port  # omit_defaults would drop port 5050; Mesos always sets it
    else:
        d = dict(info)
    if not d.get("capabilities"):
        d.pop("capabilities", None)
    return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()


def ip_from_uint32(ip: int) -> str:
    """Mesos' deprecated ``MasterInfo.ip``: IPv4 bytes in network order read as a host-order
    (little-endian on x86) uint32."""
    return socket.inet_ntoa(struct.pack("<I", ip & 0xFFFFFFFF))


def ip_to_uint32(ip: str) -> int:
    return struct.unpack("<I", socket.inet_aton(ip))[0]


def master_address(name: str, data: bytes) -> str:
    """``host:port`` of the master described by a member znode; ValueError if unreadable."""
    mo = _MEMBER.match(name)
    label = mo.group("label") if mo else None
    if label is None:  # pre-0.22 members hold a bare UPID 'master@ip:port'
        text = data.decode(errors="replace").strip()
        _, _, addr = text.rpartition("@")
        if ":" not in addr:
            raise ValueError(f"znode {name} does not hold a master UPID")
        return addr
    if label != MASTER_INFO_JSON_LABEL:
        raise ValueError(f"znode {name} has label {label!r}; only {MASTER_INFO_JSON_LABEL!r} (JSON) is readable")
    try:
        info = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"znode {name} does not hold MasterInfo JSON: {e}") from None
    if not isinstance(info, dict):
        raise ValueError(f"znode {name} does not hold a MasterInfo object")
    addr = info.get("address") or {}
    port = addr.get("port") or info.get("port") or 5050
    host = addr.get("ip") or addr.get("hostname") or info.get("hostname")
    if not host and isinstance(info.get("ip"), int):
        host = ip_from_uint32(info["ip"])
    if not host:
        raise ValueError(f"znode {name}: MasterInfo names no address")
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# --------------------------------------------------------------------------- kazoo shell
def kazoo_client(url: ZkUrl, session_timeout: float) -> Any:
    """A KazooClient for ``url``: digest credentials and Mesos' ACLs when the URL has them
    (``EVERYONE_READ_CREATOR_ALL``), open ACLs otherwise."""
    from kazoo.client import KazooClient
    from kazoo.security import CREATOR_ALL_ACL, READ_ACL_UNSAFE

    kw: dict[str, Any] = {}
    if url.digest is not None:
        kw["auth_data"] = [("digest", url.digest)]
        kw["default_acl"] = CREATOR_ALL_ACL + READ_ACL_UNSAFE
    # connection_retry: keep reconnecting forever; session expiry is the server's decision
    return KazooClient(hosts=url.hosts, timeout=session_timeout,
                       connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 1.0}, **kw)


class MasterDetector:
    """Follows the leading master of a zk:// URL.

    ``leader`` is the current ``host:port`` (None while there is none or while the session is
    lost: as Mesos agents do, we then ignore masters until we learn the leader again).
    ``on_change(leader)`` is called on every change, from a kazoo thread, or through
    ``loop.call_soon_threadsafe`` when an asyncio ``loop`` is given.
    """

    def __init__(self, url: str | ZkUrl, *, session_timeout: float = 10.0,
                 on_change: Callable[[str | None], None] | None = None, loop: Any = None) -> None:
        self.url = parse_zk_url(url) if isinstance(url, str) else url
        self.session_timeout = session_timeout
        self.on_change = on_change
        self.loop = loop
        self.leader: str | None = None
        self.leader_znode: str | None = None
        self._zk: Any = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._setting = threading.Lock()
        self._announced: str | None = None  # the leader waiters see: set after on_change ran
        self._stopped = False

    # ---------------------------------------------------------------- lifecycle
    def start(self, connect_timeout: float = 15.0) -> MasterDetector:
        from kazoo.handlers.threading import KazooTimeoutError

        self._zk = kazoo_client(self.url, self.session_timeout)
        try:
            self._zk.start(timeout=connect_timeout)
        except KazooTimeoutError:
            self._zk.stop()
            self._zk.close()
            raise DetectorError(f"Could not connect to ZooKeeper at {self.url} within {connect_timeout:g} s") from None
        self._zk.add_listener(self._on_state)
        self._refresh()
        return self

    def stop(self) -> None:
        self._stopped = True
        zk, self._zk = self._zk, None
        if zk is not None:
            zk.stop()
            zk.close()

    def __enter__(self) -> MasterDetector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_leader(self, timeout: float, different_from: str | None = None) -> str | None:
        """Block until a leader (other than ``different_from``) is known, or the timeout."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._announced is not None and self._announced != different_from, timeout)
            return self._announced if self._announced != different_from else None

    # ---------------------------------------------------------------- watching
    def _on_state(self, state: str) -> None:
        from kazoo.client import KazooState

        if state == KazooState.LOST:
            self._set(None, None)
        elif state == KazooState.CONNECTED and self._zk is not None:
            # after an expired session the watches are gone: arm them again
            self._zk.handler.spawn(self._refresh)

    def _watch(self, _event: Any = None) -> None:
        if self._zk is not None and not self._stopped:
            self._zk.handler.spawn(self._refresh)

    def _refresh(self) -> None:
        from kazoo.exceptions import KazooException, NoNodeError

        zk = self._zk
        if zk is None or self._stopped:
            return
        path = self.url.path
        try:
            try:
                children = zk.get_children(path, watch=self._watch)
            except NoNodeError:
                # nobody contends yet: learn when the group's path appears
                if zk.exists(path, watch=self._watch) is None:
                    self._set(None, None)
                    return
                children = zk.get_children(path, watch=self._watch)
            name = leader_znode(children)
            if name is None:
                self._set(None, None)
                return
            if name == self.leader_znode:
                return
            data, _ = zk.get(f"{path.rstrip('/')}/{name}")
        except NoNodeError:
            return  # the leader went away between the listing and the read: a new event follows
        except KazooException as e:
            log.warning("event=detector_error url=%s error=%r", self.url, e)
            return
        try:
            addr = master_address(name, data)
        except ValueError as e:
            log.warning("event=detector_unreadable_leader url=%s znode=%s error=%s", self.url, name, e)
            addr = None
        self._set(addr, name)

    def _set(self, leader: str | None, znode: str | None) -> None:
        # Kazoo may run two refreshes at once: changes are taken one at a time (``_setting``, the
        # only writer's lock), so callbacks see them in order. A waiter is woken only after a
        # thread-called ``on_change`` has returned, so whoever waited for a leader finds their
        # callback has already heard of it.
        with self._setting:
            changed = leader != self.leader
            self.leader, self.leader_znode = leader, znode
            if changed:
                log.info("event=leader_detected url=%s leader=%s znode=%s", self.url, leader, znode)
                cb = self.on_change
                if cb is not None:
                    if self.loop is not None:
                        self.loop.call_soon_threadsafe(cb, leader)
                    else:
                        cb(leader)
            with self._changed:
                self._announced = leader
                self._changed.notify_all()


def detect_leader(url: str | ZkUrl, timeout: float = 10.0) -> str:
    """One-shot lookup for the CLI: the leader's ``host:port``; DetectorError if none in time."""
    d = MasterDetector(url, session_timeout=max(timeout, 4.0)).start(connect_timeout=timeout)
    try:
        leader = d.wait_for_leader(timeout)
    finally:
        d.stop()
    if leader is None:
        raise DetectorError(f"No leading master found in {d.url} within {timeout:g} s")
    return leader


__all__ = [
    "MASTER_INFO_JSON_LABEL", "DetectorError", "MasterDetector", "detect_leader", "ip_from_uint32",
    "ip_to_uint32", "kazoo_client", "leader_znode", "master_address", "master_info_json", "member_sequence",
]

"""The registry in ZooKeeper (``--zk`` mode): what any new leader must know, fenced by epoch.

Same method surface as the SQLite registry (``registry.py``) plus the records Mesos' own
registry keeps (unreachable and gone agents, weights, quotas, maintenance), and ``recover()``.

Why ZooKeeper and not a replicated log: Mesos' Paxos log is a custom C++ protocol; ZooKeeper
already gives a majority-replicated, linearizable store, and we run it for the election anyway.

Fencing (two masters never both write as leader): ``recover()`` claims ``epoch`` with a
compare-and-set on its version (``set(epoch, version=v)``); every later write is one ZooKeeper
transaction that starts with ``check(epoch, version=ours)``. Once a newer leader has claimed
the epoch, a stale leader's next write fails as a whole and raises
:class:`RegistryFencedError`: it must step down at once (fail-stop, as Mesos' registrar).
Timeouts and lost connections raise :class:`RegistryUnavailableError` (a write that timed out
may still have happened: the leader steps down too).

Layout, under ``<zk path>/log_replicas/registry`` (where Mesos keeps its replicated log; every
Mesos detector, pymesos' included, skips ``log_replicas`` when looking for the leader)::

    epoch                      {"master_id", "master_info"?, "claimed_at"}; version = fencing token
    frameworks/<id>            {"info": FrameworkInfo, "registered_time", "failover_deadline"}
    removed_frameworks/<id>    {"n"}: the newest MAX_REMOVED_FRAMEWORKS; age: czxid, then n (place in its batch)
    agents/<id>                {"hostname", "port", "resources", "attributes", "registered_time"}
    unreachable/<id>           {"timestamp"}
    gone/<id>                  {"timestamp"}
    principals/<agent id>      {"principal"}: who registered the agent (kept while it is unreachable)
    quotas/<role>              QuotaConfig JSON
    weights                    {"<role>": weight}
    maintenance                maintenance schedule JSON

Names are percent-encoded (roles may contain ``/``). Calls block the caller for at most
``store_timeout`` (Mesos ``--registry_store_timeout``, 20 s) or ``fetch_timeout`` (1 min).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from ..protocol import messages as m
from ..protocol.zk_detector import kazoo_client
from ..protocol.zk_url import ZkUrl, parse_zk_url
from . import effects as fx
from .effects import RegistryEffect
from .effects import RegistryState as _BaseRegistryState
from .partitions import prune_agent_list
from .registry import AgentRecord, FrameworkRecord

log = logging.getLogger("mesos_nb.master.registry_zk")

_DIRS = ("frameworks", "removed_frameworks", "agents", "unreachable", "gone", "quotas", "principals")


class RegistryError(RuntimeError):
    """A registry operation failed; the leader must stop acting as leader."""


class RegistryFencedError(RegistryError):
    """Another master claimed the registry after us: we are a stale leader."""


class RegistryUnavailableError(RegistryError):
    """ZooKeeper did not answer in time, or the session is gone."""


@dataclass
class RegistryState(_BaseRegistryState):
    """Everything ``recover()`` read, for the new leader to rebuild from (the core's
    :class:`~mesos_nb.master.effects.RegistryState` plus who led before and the records the
    core does not use yet)."""
    master_id: str = ""
    previous_master_id: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    quotas: dict[str, Any] = field(default_factory=dict)
    maintenance: Any = None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _msg_to_json(msg: Any) -> Any:
    return json.loads(m.encode(msg))


def _msg_from_json(obj: Any, typ: Any) -> Any:
    return m.decode(json.dumps(obj).encode(), typ)


class ZkRegistry:
    """One master's handle on the ZooKeeper registry. Writes need ``recover()`` first."""

    def __init__(self, url: str | ZkUrl, *, session_timeout: float = 10.0, store_timeout: float = 20.0,
                 fetch_timeout: float = 60.0, client: Any = None) -> None:
        self.url = parse_zk_url(url) if isinstance(url, str) else url
        self.base = f"{self.url.path.rstrip('/')}/log_replicas/registry"
        self.session_timeout = session_timeout
        self.store_timeout = store_timeout
        self.fetch_timeout = fetch_timeout
        self._zk = client
        self._own_client = client is None
        self._epoch_version: int | None = None
        self._known: set[str] = set()  # znodes that exist (we are the only writer while leader)
        self.master_id: str | None = None
        self.master_info: Any = None

    # ---------------------------------------------------------------- lifecycle
    @property
    def enabled(self) -> bool:
        return True

    def start(self, connect_timeout: float = 15.0) -> ZkRegistry:
        from kazoo.handlers.threading import KazooTimeoutError

        if self._zk is None:
            self._zk = kazoo_client(self.url, self.session_timeout)
        if not self._zk.connected:
            try:
                self._zk.start(timeout=connect_timeout)
            except KazooTimeoutError:
                raise RegistryUnavailableError(
                    f"Could not connect to ZooKeeper at {self.url} within {connect_timeout:g} s") from None
        return self

    def close(self) -> None:
        zk, self._zk = self._zk, None
        self._epoch_version = None
        if zk is not None and self._own_client:
            zk.stop()
            zk.close()

    # ---------------------------------------------------------------- plumbing
    def _wait(self, result: Any, timeout: float, what: str) -> Any:
        from kazoo.exceptions import ConnectionLoss, SessionExpiredError

        try:
            return result.get(timeout=timeout)
        except self._client().handler.timeout_exception:
            raise RegistryUnavailableError(f"ZooKeeper did not answer {what} within {timeout:g} s") from None
        except (ConnectionLoss, SessionExpiredError) as e:
            raise RegistryUnavailableError(f"ZooKeeper session lost during {what}: {type(e).__name__}") from None

    def _client(self) -> Any:
        if self._zk is None:
            raise RegistryUnavailableError("the registry is closed")
        return self._zk

    def _path(self, kind: str, name: str | None = None) -> str:
        return f"{self.base}/{kind}" if name is None else f"{self.base}/{kind}/{quote(name, safe='')}"

    def _read_entries(self, kind: str) -> list[tuple[str, Any, int]]:
        """Every child of ``kind``: (name, data, czxid: the zxid that created it, ZooKeeper's
        total order of writes, so the oldest has the smallest). The gets are all sent before
        the first answer is awaited (10,000 children: one pipelined burst, not 10,000 trips)."""
        from kazoo.exceptions import NoNodeError

        zk = self._client()
        out: list[tuple[str, Any, int]] = []
        children = self._wait(zk.get_children_async(self._path(kind)), self.fetch_timeout, f"listing {kind}")
        paths = [(child, f"{self._path(kind)}/{child}") for child in children]
        pending = [(child, path, zk.get_async(path)) for child, path in paths]  # all sent first
        for child, path, result in pending:
            try:
                data, stat = self._wait(result, self.fetch_timeout, f"reading {kind}")
            except NoNodeError:
                continue
            out.append((unquote(child), json.loads(data) if data else {}, stat.czxid))
            self._known.add(path)
        return out

    def _read_dir(self, kind: str) -> dict[str, Any]:
        return {name: data for name, data, _ in self._read_entries(kind)}

    def _read_names_by_age(self, kind: str) -> list[str]:
        """The children of ``kind``, the oldest created first: by czxid, then (the znodes one
        transaction made share its zxid) by their place ``n`` in it (0 for ``{}``, older ones)."""
        entries = sorted(self._read_entries(kind), key=lambda e: (e[2], e[1].get("n", 0)))
        return [name for name, _, _ in entries]

    def _read_one(self, kind: str) -> Any:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self._wait(self._client().get_async(self._path(kind)), self.fetch_timeout, f"reading {kind}")
        except NoNodeError:
            return None
        self._known.add(self._path(kind))
        return json.loads(data) if data else None

    def _commit(self, ops: list[tuple[str, str, bytes | None]], what: str) -> None:
        """Apply ``ops`` atomically, only if we still hold the epoch. ``("put", path, data)``
        creates or overwrites; ``("delete", path, None)`` deletes if present."""
        from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

        if self._epoch_version is None:
            raise RegistryError(f"the registry must be recovered before {what}")
        for attempt in (1, 2):
            zk = self._client()
            t = zk.transaction()
            t.check(self._path("epoch"), self._epoch_version)
            effective = []
            known = set(self._known)  # as it will be after each op of this transaction
            for op, path, data in ops:
                if op == "put":
                    if path in known:
                        t.set_data(path, data)
                    else:
                        t.create(path, data)
                        known.add(path)
                    effective.append((op, path))
                elif path in known:
                    t.delete(path)
                    known.discard(path)
                    effective.append((op, path))
            results = self._wait(t.commit_async(), self.store_timeout, what)
            first = results[0] if results else None
            if isinstance(first, (BadVersionError, NoNodeError)):
                self._epoch_version = None
                log.error("event=registry_fenced url=%s master_id=%s op=%s", self.url, self.master_id, what)
                raise RegistryFencedError(f"another master has claimed the registry; refusing to {what}")
            failed = [(eff, r) for eff, r in zip(effective, results[1:], strict=False) if isinstance(r, Exception)
                      and type(r).__name__ not in ("RolledBackError", "RuntimeInconsistency")]
            if not failed:
                self._known = known
                return
            # our picture of which znodes exist was wrong (only after a ZooKeeper restore): fix it, retry once
            for (_op, path), r in failed:
                if isinstance(r, NodeExistsError):
                    self._known.add(path)
                elif isinstance(r, NoNodeError):
                    self._known.discard(path)
            if attempt == 2:
                raise RegistryError(f"could not {what}: {failed[0][1]!r}")

    # ---------------------------------------------------------------- recovery
    def recover(self, master_id: str | None = None, master_info: Any = None, now: float | None = None) -> RegistryState:
        """Claim the registry for ``master_id`` (fencing every earlier leader), then read it.

        Without arguments (the :class:`~mesos_nb.master.registry.Registry` protocol) it claims
        for ``self.master_id`` / ``self.master_info``, which the master sets first."""
        from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

        master_id = master_id or self.master_id
        if master_id is None:
            raise RegistryError("recover() needs the id of the master claiming the registry")
        master_info = master_info if master_info is not None else self.master_info
        zk = self._client()
        for kind in _DIRS:
            self._wait(zk.ensure_path_async(self._path(kind)), self.fetch_timeout, "creating the registry")
        epoch = self._path("epoch")
        claim = {"master_id": master_id, "claimed_at": time.time() if now is None else now}
        if master_info is not None:
            claim["master_info"] = master_info if isinstance(master_info, dict) else _msg_to_json(master_info)
        previous: str | None = None
        try:
            data, stat = self._wait(zk.get_async(epoch), self.fetch_timeout, "reading the epoch")
            previous = (json.loads(data) or {}).get("master_id") if data else None
            try:
                stat = self._wait(zk.set_async(epoch, _dumps(claim), stat.version), self.store_timeout, "claiming")
            except BadVersionError:
                raise RegistryFencedError("another master claimed the registry at the same time") from None
        except NoNodeError:
            try:
                self._wait(zk.create_async(epoch, _dumps(claim)), self.store_timeout, "claiming")
            except NodeExistsError:
                raise RegistryFencedError("another master claimed the registry at the same time") from None
            _, stat = self._wait(zk.get_async(epoch), self.fetch_timeout, "reading the epoch")
        self._epoch_version = stat.version
        self.master_id = master_id
        self._known = {epoch}
        state = RegistryState(master_id=master_id, previous_master_id=previous)
        for fid, d in self._read_dir("frameworks").items():
            state.frameworks.append(FrameworkRecord(fid, _msg_from_json(d["info"], m.FrameworkInfo),
                                                    d["registered_time"], d.get("failover_deadline")))
        state.removed_framework_ids = self._read_names_by_age("removed_frameworks")
        for aid, d in self._read_dir("agents").items():
            state.agents.append(self._agent_from_json(aid, d))
        state.unreachable = {k: v["timestamp"] for k, v in self._read_dir("unreachable").items()}
        state.gone = {k: v["timestamp"] for k, v in self._read_dir("gone").items()}
        state.agent_principals = {k: v.get("principal") for k, v in self._read_dir("principals").items()}
        state.quotas = self._read_dir("quotas")
        state.weights = self._read_one("weights") or {}
        state.maintenance = self._read_one("maintenance")
        log.info("event=registry_recovered url=%s master_id=%s previous=%s epoch=%d frameworks=%d agents=%d "
                 "unreachable=%d gone=%d", self.url, master_id, previous, stat.version, len(state.frameworks),
                 len(state.agents), len(state.unreachable), len(state.gone))
        return state

    @staticmethod
    def _agent_from_json(aid: str, d: dict[str, Any]) -> AgentRecord:
        return AgentRecord(aid, d["hostname"], d["port"], _msg_from_json(d["resources"], list[m.Resource]),
                           _msg_from_json(d["attributes"], list[m.Attribute]), d["registered_time"])

    # ---------------------------------------------------------------- Registry protocol
    def apply(self, effects: Sequence[RegistryEffect]) -> None:
        """The core's registry effects as ONE transaction fenced by the epoch (all or none).
        Blocks up to ``store_timeout``: the master calls it from a worker thread."""
        ops: list[tuple[str, str, bytes | None]] = []
        for n, eff in enumerate(effects):
            ops += self._ops(eff, n)
        for i in range(0, len(ops), 500):  # keep each transaction well under ZooKeeper's 1 MB
            self._commit(ops[i:i + 500], f"store {len(effects)} registry changes")

    def _ops(self, eff: RegistryEffect, n: int = 0) -> list[tuple[str, str, bytes | None]]:
        """``n``: the effect's place in its batch (a transaction's znodes share one czxid)."""
        t = type(eff)
        if t is fx.SaveFramework:
            rec = {"info": _msg_to_json(eff.info), "registered_time": eff.registered_time,  # type: ignore[attr-defined]
                   "failover_deadline": eff.failover_deadline}  # type: ignore[attr-defined]
            return [("put", self._path("frameworks", eff.id), _dumps(rec))]  # type: ignore[attr-defined]
        if t is fx.RemoveFramework:
            return [("delete", self._path("frameworks", eff.id), None),  # type: ignore[attr-defined]
                    ("put", self._path("removed_frameworks", eff.id), _dumps({"n": n}))]  # type: ignore[attr-defined]
        if t is fx.ForgetRemovedFrameworks:
            return [("delete", self._path("removed_frameworks", f), None) for f in eff.ids]  # type: ignore[attr-defined]
        if t is fx.SaveAgent:
            return self._agent_ops(eff.record)  # type: ignore[attr-defined]
        if t is fx.RemoveAgent:
            return [("delete", self._path("agents", eff.id), None),  # type: ignore[attr-defined]
                    ("delete", self._path("principals", eff.id), None)]  # type: ignore[attr-defined]
        if t is fx.SaveAgentPrincipal:
            return [("put", self._path("principals", eff.id), _dumps({"principal": eff.principal}))]  # type: ignore[attr-defined]
        if t is fx.MarkAgentUnreachable:
            return [("delete", self._path("agents", eff.id), None),  # type: ignore[attr-defined]
                    ("put", self._path("unreachable", eff.id), _dumps({"timestamp": eff.timestamp}))]  # type: ignore[attr-defined]
        if t is fx.MarkAgentGone:
            return [("delete", self._path("agents", eff.id), None),  # type: ignore[attr-defined]
                    ("delete", self._path("unreachable", eff.id), None),  # type: ignore[attr-defined]
                    ("delete", self._path("principals", eff.id), None),  # type: ignore[attr-defined]
                    ("put", self._path("gone", eff.id), _dumps({"timestamp": eff.timestamp}))]  # type: ignore[attr-defined]
        if t is fx.PruneAgents:
            return ([("delete", self._path("unreachable", a), None) for a in eff.unreachable]  # type: ignore[attr-defined]
                    + [("delete", self._path("principals", a), None) for a in eff.unreachable]  # type: ignore[attr-defined]
                    + [("delete", self._path("gone", a), None) for a in eff.gone])  # type: ignore[attr-defined]
        if t is fx.SaveQuota:
            if eff.config is None:  # type: ignore[attr-defined]
                return [("delete", self._path("quotas", eff.role), None)]  # type: ignore[attr-defined]
            return [("put", self._path("quotas", eff.role), _dumps(eff.config))]  # type: ignore[attr-defined]
        if t is fx.SaveWeights:
            merged = {**(self._read_one("weights") or {}), **eff.weights}  # type: ignore[attr-defined]
            return [("put", self._path("weights"), _dumps(merged))]
        if t is fx.SaveMaintenance:
            return [("put", self._path("maintenance"), _dumps(eff.doc))]  # type: ignore[attr-defined]
        raise TypeError(f"unknown registry effect {t.__name__}")

    def _agent_ops(self, rec: AgentRecord) -> list[tuple[str, str, bytes | None]]:
        d = {"hostname": rec.hostname, "port": rec.port, "resources": _msg_to_json(rec.resources),
             "attributes": _msg_to_json(rec.attributes), "registered_time": rec.registered_time}
        # admitting an agent also makes it reachable again (Mesos MarkSlaveReachable)
        return [("put", self._path("agents", rec.id), _dumps(d)), ("delete", self._path("unreachable", rec.id), None)]

    # ---------------------------------------------------------------- writes (SQLite surface)
    def put_framework(self, fw_id: str, info: m.FrameworkInfo, registered_time: float, deadline: float | None) -> None:
        rec = {"info": _msg_to_json(info), "registered_time": registered_time, "failover_deadline": deadline}
        self._commit([("put", self._path("frameworks", fw_id), _dumps(rec))], f"store framework {fw_id}")

    def remove_framework(self, fw_id: str) -> None:
        self._commit([("delete", self._path("frameworks", fw_id), None),
                      ("put", self._path("removed_frameworks", fw_id), _dumps({"n": 0}))], f"remove framework {fw_id}")

    def put_agent(self, rec: AgentRecord) -> None:
        self._commit(self._agent_ops(rec), f"store agent {rec.id}")

    def remove_agent(self, agent_id: str) -> None:
        self._commit([("delete", self._path("agents", agent_id), None)], f"remove agent {agent_id}")

    # ---------------------------------------------------------------- writes (Mesos registry records)
    def mark_agent_unreachable(self, agent_id: str, timestamp: float) -> None:
        """Admitted -> unreachable, atomically (Mesos MarkSlaveUnreachable)."""
        self._commit([("delete", self._path("agents", agent_id), None),
                      ("put", self._path("unreachable", agent_id), _dumps({"timestamp": timestamp}))],
                     f"mark agent {agent_id} unreachable")

    def mark_agent_gone(self, agent_id: str, timestamp: float) -> None:
        """Admitted or unreachable -> gone, for good (Mesos MarkSlaveGone)."""
        self._commit([("delete", self._path("agents", agent_id), None),
                      ("delete", self._path("unreachable", agent_id), None),
                      ("put", self._path("gone", agent_id), _dumps({"timestamp": timestamp}))],
                     f"mark agent {agent_id} gone")

    def prune_agent_lists(self, now: float, max_age: float, max_count: int) -> tuple[list[str], list[str]]:
        """Registry GC (Mesos ``--registry_gc_interval``): drop unreachable and gone entries
        older than ``max_age`` or beyond the newest ``max_count``. Returns what was dropped."""
        unreachable = {k: v["timestamp"] for k, v in self._read_dir("unreachable").items()}
        gone = {k: v["timestamp"] for k, v in self._read_dir("gone").items()}
        _, drop_u = prune_agent_list(unreachable, now, max_age, max_count)
        _, drop_g = prune_agent_list(gone, now, max_age, max_count)
        ops = [("delete", self._path("unreachable", a), None) for a in drop_u]
        ops += [("delete", self._path("gone", a), None) for a in drop_g]
        for i in range(0, len(ops), 500):  # keep each transaction well under ZooKeeper's 1 MB
            self._commit(ops[i:i + 500], "prune the agent lists")
        return drop_u, drop_g

    def put_weights(self, weights: dict[str, float]) -> None:
        self._commit([("put", self._path("weights"), _dumps(weights))], "store weights")

    def put_quota(self, role: str, config: Any) -> None:
        self._commit([("put", self._path("quotas", role), _dumps(config))], f"store the quota of {role}")

    def remove_quota(self, role: str) -> None:
        self._commit([("delete", self._path("quotas", role), None)], f"remove the quota of {role}")

    def put_maintenance_schedule(self, schedule: Any) -> None:
        self._commit([("put", self._path("maintenance"), _dumps(schedule))], "store the maintenance schedule")

    # ---------------------------------------------------------------- reads (SQLite surface)
    def frameworks(self) -> list[FrameworkRecord]:
        return [FrameworkRecord(fid, _msg_from_json(d["info"], m.FrameworkInfo), d["registered_time"],
                                d.get("failover_deadline")) for fid, d in self._read_dir("frameworks").items()]

    def removed_framework_ids(self) -> list[str]:
        """Oldest removal first."""
        return self._read_names_by_age("removed_frameworks")

    def agents(self) -> list[AgentRecord]:
        return [self._agent_from_json(aid, d) for aid, d in self._read_dir("agents").items()]

    def unreachable_agents(self) -> dict[str, float]:
        return {k: v["timestamp"] for k, v in self._read_dir("unreachable").items()}

    def gone_agents(self) -> dict[str, float]:
        return {k: v["timestamp"] for k, v in self._read_dir("gone").items()}

    def weights(self) -> dict[str, float]:
        return self._read_one("weights") or {}

    def quotas(self) -> dict[str, Any]:
        return self._read_dir("quotas")

    def maintenance_schedule(self) -> Any:
        return self._read_one("maintenance")


__all__ = ["RegistryError", "RegistryFencedError", "RegistryState", "RegistryUnavailableError", "ZkRegistry"]

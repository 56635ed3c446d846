"""The SQLite registry under ``--work-dir`` (``registry.sqlite``, WAL, ``synchronous=FULL``).

One transaction per batch of effects, so a batch is on disk entirely or not at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence

from ..protocol import messages as m
from . import effects as fx
from .effects import AgentRecord, FrameworkRecord, RegistryEffect, RegistryState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frameworks (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    registered_time REAL NOT NULL,
    failover_deadline REAL
);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    port INTEGER NOT NULL,
    resources BLOB NOT NULL,
    attributes BLOB NOT NULL,
    registered_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS removed_frameworks (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS unreachable_agents (id TEXT PRIMARY KEY, timestamp REAL NOT NULL);
CREATE TABLE IF NOT EXISTS gone_agents (id TEXT PRIMARY KEY, timestamp REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quotas (role TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS weights (role TEXT PRIMARY KEY, weight REAL NOT NULL);
CREATE TABLE IF NOT EXISTS maintenance (id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agent_principals (id TEXT PRIMARY KEY, principal TEXT);
"""


class SqliteRegistry:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"registry {self.path} is closed")
        return self._db

    def apply(self, effects: Sequence[RegistryEffect]) -> None:
        db = self._conn()
        with db:  # one transaction: BEGIN … COMMIT, or ROLLBACK on error
            db.execute("BEGIN")
            for eff in effects:
                t = type(eff)
                if t is fx.SaveFramework:
                    db.execute(
                        "INSERT OR REPLACE INTO frameworks VALUES (?, ?, ?, ?)",
                        (eff.id, m.encode(eff.info), eff.registered_time, eff.failover_deadline),  # type: ignore[attr-defined]
                    )
                elif t is fx.RemoveFramework:
                    db.execute("DELETE FROM frameworks WHERE id = ?", (eff.id,))  # type: ignore[attr-defined]
                    db.execute("INSERT OR IGNORE INTO removed_frameworks VALUES (?)", (eff.id,))  # type: ignore[attr-defined]
                elif t is fx.ForgetRemovedFrameworks:
                    db.executemany("DELETE FROM removed_frameworks WHERE id = ?", [(f,) for f in eff.ids])  # type: ignore[attr-defined]
                elif t is fx.SaveAgent:
                    rec: AgentRecord = eff.record  # type: ignore[attr-defined]
                    db.execute(
                        "INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?, ?, ?)",
                        (rec.id, rec.hostname, rec.port, m.encode(rec.resources), m.encode(rec.attributes),
                         rec.registered_time),
                    )
                    db.execute("DELETE FROM unreachable_agents WHERE id = ?", (rec.id,))
                elif t is fx.RemoveAgent:
                    db.execute("DELETE FROM agents WHERE id = ?", (eff.id,))  # type: ignore[attr-defined]
                    db.execute("DELETE FROM agent_principals WHERE id = ?", (eff.id,))  # type: ignore[attr-defined]
                elif t is fx.SaveAgentPrincipal:
                    db.execute("INSERT OR REPLACE INTO agent_principals VALUES (?, ?)",
                               (eff.id, eff.principal))  # type: ignore[attr-defined]
                elif t is fx.MarkAgentUnreachable:
                    db.execute("DELETE FROM agents WHERE id = ?", (eff.id,))  # type: ignore[attr-defined]
                    db.execute("INSERT OR REPLACE INTO unreachable_agents VALUES (?, ?)",
                               (eff.id, eff.timestamp))  # type: ignore[attr-defined]
                elif t is fx.MarkAgentGone:
                    db.execute("DELETE FROM agents WHERE id = ?", (eff.id,))  # type: ignore[attr-defined]
                    db.execute("DELETE FROM unreachable_agents WHERE id = ?", (eff.id,))  # type: ignore[attr-defined]
                    db.execute("DELETE FROM agent_principals WHERE id = ?", (eff.id,))  # type: ignore[attr-defined]
                    db.execute("INSERT OR REPLACE INTO gone_agents VALUES (?, ?)",
                               (eff.id, eff.timestamp))  # type: ignore[attr-defined]
                elif t is fx.PruneAgents:
                    db.executemany("DELETE FROM unreachable_agents WHERE id = ?",
                                   [(a,) for a in eff.unreachable])  # type: ignore[attr-defined]
                    db.executemany("DELETE FROM agent_principals WHERE id = ?",
                                   [(a,) for a in eff.unreachable])  # type: ignore[attr-defined]
                    db.executemany("DELETE FROM gone_agents WHERE id = ?", [(a,) for a in eff.gone])  # type: ignore[attr-defined]
                elif t is fx.SaveQuota:
                    if eff.config is None:  # type: ignore[attr-defined]
                        db.execute("DELETE FROM quotas WHERE role = ?", (eff.role,))  # type: ignore[attr-defined]
                    else:
                        db.execute("INSERT OR REPLACE INTO quotas VALUES (?, ?)",
                                   (eff.role, json.dumps(eff.config)))  # type: ignore[attr-defined]
                elif t is fx.SaveWeights:
                    db.executemany("INSERT OR REPLACE INTO weights VALUES (?, ?)",
                                   list(eff.weights.items()))  # type: ignore[attr-defined]
                elif t is fx.SaveMaintenance:
                    db.execute("INSERT OR REPLACE INTO maintenance VALUES (1, ?)",
                               (json.dumps(eff.doc),))  # type: ignore[attr-defined]
                else:
                    raise TypeError(f"unknown registry effect {t.__name__}")

    def recover(self) -> RegistryState:
        db = self._conn()
        fws = [
            FrameworkRecord(r[0], m.decode(r[1], m.FrameworkInfo), r[2], r[3])
            for r in db.execute("SELECT id, info, registered_time, failover_deadline FROM frameworks")
        ]
        # oldest removal first: a rowid table, new rows get the largest rowid so far
        removed = [r[0] for r in db.execute("SELECT id FROM removed_frameworks ORDER BY rowid")]
        agents = [
            AgentRecord(r[0], r[1], r[2], m.decode(r[3], list[m.Resource]), m.decode(r[4], list[m.Attribute]), r[5])
            for r in db.execute("SELECT id, hostname, port, resources, attributes, registered_time FROM agents")
        ]
        unreachable = dict(db.execute("SELECT id, timestamp FROM unreachable_agents").fetchall())
        gone = dict(db.execute("SELECT id, timestamp FROM gone_agents").fetchall())
        quotas = {r: json.loads(c) for r, c in db.execute("SELECT role, config FROM quotas")}
        weights = dict(db.execute("SELECT role, weight FROM weights").fetchall())
        row = db.execute("SELECT doc FROM maintenance WHERE id = 1").fetchone()
        principals = dict(db.execute("SELECT id, principal FROM agent_principals").fetchall())
        return RegistryState(frameworks=fws, removed_framework_ids=removed, agents=agents,
                             unreachable=unreachable, gone=gone, quotas=quotas, weights=weights,
                             maintenance=json.loads(row[0]) if row else None, agent_principals=principals)

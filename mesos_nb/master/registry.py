"""The registry: what a restarted master must remember (SQLite under ``--work-dir``).

Mesos keeps frameworks in memory only, so after a master failover a framework that never
comes back leaves its tasks running forever (MESOS-4659). mesos-nb persists admitted
frameworks with their failover deadline, and admitted agents, so a restarted master waits
for both and still expires what does not return. Tasks are not stored: agents report them
when they re-register.

Writes happen in the shell, in effect order, before the events that follow them are sent:
a framework is on disk before it is told SUBSCRIBED.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from ..protocol import messages as m

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
"""


@dataclass
class FrameworkRecord:
    id: str
    info: m.FrameworkInfo
    registered_time: float
    failover_deadline: float | None


@dataclass
class AgentRecord:
    id: str
    hostname: str
    port: int
    resources: list[m.Resource]
    attributes: list[m.Attribute]
    registered_time: float


class Registry:
    """SQLite-backed; ``path=None`` keeps nothing (tests, embedded clusters)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ------------------------------------------------------------------ writes
    def put_framework(self, fw_id: str, info: m.FrameworkInfo, registered_time: float, deadline: float | None) -> None:
        if self._db is None:
            return
        self._db.execute(
            "INSERT OR REPLACE INTO frameworks VALUES (?, ?, ?, ?)",
            (fw_id, m.encode(info), registered_time, deadline),
        )

    def remove_framework(self, fw_id: str) -> None:
        if self._db is None:
            return
        with self._db:
            self._db.execute("DELETE FROM frameworks WHERE id = ?", (fw_id,))
            self._db.execute("INSERT OR IGNORE INTO removed_frameworks VALUES (?)", (fw_id,))

    def put_agent(self, rec: AgentRecord) -> None:
        if self._db is None:
            return
        self._db.execute(
            "INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?, ?, ?)",
            (rec.id, rec.hostname, rec.port, m.encode(rec.resources), m.encode(rec.attributes), rec.registered_time),
        )

    def remove_agent(self, agent_id: str) -> None:
        if self._db is None:
            return
        self._db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))

    # ------------------------------------------------------------------ reads
    def frameworks(self) -> list[FrameworkRecord]:
        if self._db is None:
            return []
        rows = self._db.execute("SELECT id, info, registered_time, failover_deadline FROM frameworks").fetchall()
        return [FrameworkRecord(r[0], m.decode(r[1], m.FrameworkInfo), r[2], r[3]) for r in rows]

    def removed_framework_ids(self) -> set[str]:
        if self._db is None:
            return set()
        return {r[0] for r in self._db.execute("SELECT id FROM removed_frameworks")}

    def agents(self) -> list[AgentRecord]:
        if self._db is None:
            return []
        rows = self._db.execute("SELECT id, hostname, port, resources, attributes, registered_time FROM agents").fetchall()
        return [
            AgentRecord(r[0], r[1], r[2], m.decode(r[3], list[m.Resource]), m.decode(r[4], list[m.Attribute]), r[5])
            for r in rows
        ]

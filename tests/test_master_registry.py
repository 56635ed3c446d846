"""Registry writes are effects the shell carries out: a failing registry holds later effects
back in order, is retried with backoff, shows on /health, and never stops the master's timers."""

from __future__ import annotations

import json

import aiohttp
import pytest
from conftest import async_wait_for

from mesos_nb.master.core import MasterCore
from mesos_nb.master.effects import (
    AgentRecord,
    RemoveFramework,
    SaveAgent,
    SaveFramework,
    ToFramework,
)
from mesos_nb.master.outbox import Outbox
from mesos_nb.master.registry import MemoryRegistry
from mesos_nb.master.registry_sqlite import SqliteRegistry
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import messages as m
from mesos_nb.protocol import recordio
from mesos_nb.protocol.backoff import Backoff
from mesos_nb.protocol.resources import Resources


class FlakyRegistry(MemoryRegistry):
    """A registry whose disk can fill up: writes raise while ``failing`` (or for ``fail_next`` writes)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.fail_next = 0
        self.attempts = 0

    def apply(self, effects) -> None:
        self.attempts += 1
        if self.failing or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            raise OSError(28, "No space left on device")
        super().apply(effects)


def test_failed_write_holds_later_effects_and_is_retried_with_backoff():
    reg = FlakyRegistry()
    delivered: list = []
    outbox = Outbox(reg, delivered.append, Backoff(base=0.1, maximum=5.0, rng=lambda: 1.0))
    core = MasterCore("M")
    reg.fail_next = 2
    fw = core.subscribe(m.Subscribe(framework_info=m.FrameworkInfo(user="u", name="f", failover_timeout=1)), "s", 10.0)
    out, core.out = core.out, []
    first = outbox.run(out)
    assert first == pytest.approx(0.1)
    assert delivered == [] and not outbox.healthy and "No space left" in outbox.error
    # The core and its timers go on: the framework is disconnected and expires meanwhile.
    core.disconnect(fw.id, "s", 11.0)
    core.tick(13.0)
    assert fw.id not in core.frameworks
    out, core.out = core.out, []
    assert outbox.run(out) is None  # held behind the failed write; the retry is already due
    assert reg.attempts == 1
    second = outbox.retry()
    assert second == pytest.approx(0.2)  # backoff grows
    assert outbox.retry() is None  # the disk has space again
    assert outbox.healthy and not outbox.pending
    assert [type(e) for e in delivered] == [ToFramework]  # SUBSCRIBED, after the write
    assert fw.id in reg.removed_framework_ids and fw.id not in reg.frameworks
    assert outbox.backoff.attempt == 0


def test_sqlite_registry_round_trip_and_atomic_batches(tmp_path):
    path = str(tmp_path / "reg" / "registry.sqlite")
    reg = SqliteRegistry(path)
    info = m.FrameworkInfo(user="u", name="f", id=m.ID(value="F1"))
    rec = AgentRecord("A1", "h", 5051, Resources.parse("cpus:2;mem:64").to_proto(), [], 1.0)
    reg.apply([SaveFramework("F1", info, 1.0, None), SaveFramework("F2", info, 1.0, 9.0), SaveAgent(rec)])
    reg.apply([RemoveFramework("F2")])
    with pytest.raises(TypeError):
        reg.apply([SaveFramework("F3", info, 1.0, None), object()])  # type: ignore[list-item]
    reg.close()
    back = SqliteRegistry(path).recover()
    assert [f.id for f in back.frameworks] == ["F1"]  # F3's batch was rolled back as a whole
    assert back.frameworks[0].info.name == "f" and back.removed_framework_ids == ["F2"]
    assert [(a.id, a.port) for a in back.agents] == [("A1", 5051)]


async def _health(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/health") as r:
        return r.status


async def test_master_keeps_expiring_frameworks_while_registry_fails_and_recovers():
    reg = FlakyRegistry()
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.2, agent_ping_timeout=0.2), registry=reg)
    await master.start()
    try:
        async with aiohttp.ClientSession() as s:
            body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "f", "failover_timeout": 0.5}}}
            resp = await s.post(master.url + "/api/v1/scheduler", json=body)
            assert resp.status == 200
            dec = recordio.Decoder()
            recs: list[bytes] = []
            while not recs:
                recs = dec.feed(await resp.content.readany())
            fid = json.loads(recs[0])["subscribed"]["framework_id"]["value"]
            assert fid in reg.frameworks
            reg.failing = True  # the disk fills up
            resp.close()  # the framework goes away: its failover deadline must be written
            await async_wait_for(lambda: master.outbox.error is not None, timeout=10)
            async with s.get(master.url + "/health") as r:
                assert r.status == 503 and "No space left" in await r.text()
            async with s.post(master.url + "/api/v1", json={"type": "GET_HEALTH"}) as r:
                assert r.status == 200 and (await r.json())["get_health"]["healthy"] is False
            r2 = await s.post(master.url + "/api/v1/scheduler", json=body)
            assert r2.status == 503 and "registry" in await r2.text()
            # The tick timer still removes the framework past its failover timeout.
            await async_wait_for(lambda: fid not in master.core.frameworks, timeout=10)
            assert fid in reg.frameworks  # not written yet
            reg.failing = False  # space comes back
            await async_wait_for(lambda: fid in reg.removed_framework_ids, timeout=15)
            assert fid not in reg.frameworks
            assert await _health(s, master.url) == 200
    finally:
        await master.stop()

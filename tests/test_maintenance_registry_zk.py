"""The maintenance document (schedule, DOWN machines, drains) in the ZooKeeper registry: a
new leader recovers what the old one stored."""

from __future__ import annotations

import pytest

from mesos_nb.master.effects import SaveMaintenance
from mesos_nb.master.registry_zk import ZkRegistry

pytest_plugins = ["zk_fixture"]


@pytest.fixture
def registries():
    made: list[ZkRegistry] = []

    def make(url: str) -> ZkRegistry:
        r = ZkRegistry(url, session_timeout=2.0).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_maintenance_document_survives_a_failover(zk_server, registries):
    url = zk_server.unique_url()
    r = registries(url)
    r.recover("master-1", now=1.0)
    doc = {"windows": [{"machine_ids": [{"hostname": "m1"}],
                        "unavailability": {"start": {"nanoseconds": 1}}}],
           "down": [{"hostname": "m1"}], "deactivated": ["S1"],
           "drains": {"S1": {"state": "DRAINING", "config": {"mark_gone": False}}}}
    r.apply([SaveMaintenance({"windows": []})])
    r.apply([SaveMaintenance(doc)])
    assert registries(url).recover("master-2", now=2.0).maintenance == doc

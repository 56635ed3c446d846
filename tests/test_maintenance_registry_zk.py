"""The maintenance document (schedule, DOWN machines, drains) in the ZooKeeper registry: a
new leader recovers what the old one stored."""

from __future__ import annotations

from test_registry_zk import registries  # noqa: F401,F811 - the fixture, shared

from mesos_nb.master.effects import SaveMaintenance

pytest_plugins = ["zk_fixture"]


def test_maintenance_document_survives_a_failover(zk_server, registries):  # noqa: F811
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

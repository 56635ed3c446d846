"""Role names validated as Mesos ``roles::validate`` (hierarchical roles included)."""

from __future__ import annotations

import pytest

from mesos_nb.master.harness import Harness
from mesos_nb.master.validation import validate_role


@pytest.mark.parametrize("role", ["*", "dev", "eng/ml", "eng/ml/alice", "a.b", "a-b", "x/.y"])
def test_valid_roles(role):
    assert validate_role(role) is None


@pytest.mark.parametrize("role", ["", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a/*", "*/a",
                                  "-a", "a/-b", "a b", "a\tb", "a\nb", "a\x7fb", "a\x0bb"])
def test_invalid_roles(role):
    assert validate_role(role)


def test_weights_apply_to_a_hierarchical_role_and_it_may_use_its_ancestors_reservation():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:4096;cpus(eng):2;mem(eng):512")
    h.core.update_weights({"eng/ml": 4.0})
    ml = h.subscribe("ml", roles=["eng/ml"])
    other = h.subscribe("other", roles=["other"])
    offers = h.allocate()
    assert ml.id in offers and other.id not in offers  # one agent: the ml role goes first
    role = offers[ml.id][0].resources[0].allocation_info.role
    assert role == "eng/ml"
    assert h.core.allocator.weights()["eng/ml"] == 4.0


def test_update_framework_moves_a_multi_role_framework_to_new_roles_keeping_its_tasks():
    h = Harness.build(agents=1, frameworks=0, resources="cpus:4;mem:4096")
    fw = h.subscribe("multi", roles=["eng/ml"])
    offer = h.allocate()[fw.id][0]
    h.launch(fw, offer, "t1", refuse_seconds=0.0)
    h.update("t1", "TASK_RUNNING")
    info = {"user": "u", "name": "multi", "id": {"value": fw.id}, "roles": ["eng/ml", "ops"],
            "capabilities": [{"type": "MULTI_ROLE"}]}
    assert h.core.update_framework(fw.id, {"framework_info": info}, h.now)
    h.drain()
    assert h.core.frameworks[fw.id].info.roles == ["eng/ml", "ops"]
    assert h.core.find_task("t1", fw.id) is not None  # the running task is kept
    h.now += 1.0
    roles = {o.resources[0].allocation_info.role for o in h.allocate().get(fw.id, [])}
    assert roles <= {"eng/ml", "ops"} and roles

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

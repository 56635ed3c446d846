"""The pure part of ``mesos_nb.client.roles``: the rows of ``roles``/``quota`` and the sentence
that says a task waits because of its role."""

from __future__ import annotations

from mesos_nb.client.roles import RoleInfo, quota_rows, role_rows, role_wait_reason

FREE = {"cpus": 4.0, "mem": 4096.0}


def test_a_role_at_its_limit_and_one_with_too_little_left():
    dev = RoleInfo("dev", limit={"cpus": 4.0}, consumed={"cpus": 4.0})
    assert role_wait_reason("dev", {"cpus": 1.0}, [dev], FREE) == "role 'dev' is at its quota limit of cpus 4"
    dev.consumed = {"cpus": 3.5}
    assert role_wait_reason("dev", {"cpus": 1.0}, [dev], FREE) == (
        "role 'dev' has only cpus 0.5 left under its quota limit of cpus 4 (asked for 1)")
    assert role_wait_reason("dev", {"cpus": 0.5}, [dev], FREE) is None


def test_a_parent_limit_bounds_a_child_role():
    eng = RoleInfo("eng", limit={"mem": 1024.0}, consumed={"mem": 1024.0})
    assert role_wait_reason("eng/ml/alice", {"mem": 64.0}, [eng], FREE) == (
        "role 'eng' is at its quota limit of mem 1024")


def test_free_resources_reserved_or_held_back_for_other_roles():
    other = RoleInfo("batch", reserved={"cpus": 3.0}, allocated={"cpus": 0.0})
    assert role_wait_reason("dev", {"cpus": 2.0}, [other], FREE) == (
        "the free cpus (4) are reserved for other roles ('batch')")
    assert role_wait_reason("dev", {"cpus": 1.0}, [other], FREE) is None
    # a reservation for the role itself (or an ancestor) is no obstacle
    assert role_wait_reason("batch/x", {"cpus": 2.0}, [other], FREE) is None
    guaranteed = RoleInfo("prod", guarantee={"cpus": 3.0}, consumed={"cpus": 0.5})
    assert role_wait_reason("dev", {"cpus": 2.0}, [guaranteed], FREE) == (
        "the free cpus (4) are held back for the unmet quota guarantees of other roles ('prod')")
    # not enough free anyway: the role is not the reason
    assert role_wait_reason("dev", {"cpus": 8.0}, [other, guaranteed], FREE) is None


def test_rows():
    roles = [RoleInfo("dev", weight=2.0, frameworks=["f1", "f2"], consumed={"cpus": 1.5, "mem": 0.0},
                      guarantee={"cpus": 1.0}, limit={"cpus": 4.0}, share=0.25),
             RoleInfo("web", allocated={"cpus": 1.0})]
    assert role_rows(roles) == [("dev", "2", 2, "cpus 1.5", "0.250"), ("web", "1", 0, "cpus 1", "-")]
    assert quota_rows(roles) == [("dev", "cpus 1", "cpus 4", "cpus 1.5", "cpus 2.5")]

"""Partition rules (pure): unreachable detection, what each framework is told, re-registration,
MARK_AGENT_GONE, reconciliation answers and the bounded unreachable list."""

from __future__ import annotations

import pytest

from mesos_nb.master.partitions import (
    REREGISTERED_MESSAGE,
    Admission,
    AgentStanding,
    PartitionConfig,
    ReregisteredTask,
    admit_agent,
    is_unreachable,
    on_agent_disconnected,
    on_agent_gone,
    on_agent_unreachable,
    on_ping_timeout,
    on_pong,
    on_unreachable_agent_reregistered,
    prune_agent_list,
    reconcile_unknown_task,
    state_for_framework,
)

DAY = 24 * 3600.0


def test_defaults_are_mesos():
    cfg = PartitionConfig()
    assert (cfg.agent_ping_timeout, cfg.max_agent_ping_timeouts) == (15.0, 5)
    assert cfg.unreachable_after == 75.0
    assert cfg.registry_max_agent_age == 14 * DAY and cfg.registry_max_agent_count == 102400


def test_unreachable_on_the_fifth_consecutive_missed_ping_and_a_pong_resets():
    cfg = PartitionConfig()
    misses, verdicts = 0, []
    for _ in range(5):
        misses, down = on_ping_timeout(misses, cfg)
        verdicts.append(down)
    assert verdicts == [False, False, False, False, True]
    misses = on_pong()
    assert on_ping_timeout(misses, cfg) == (1, False)
    assert on_ping_timeout(0, PartitionConfig(max_agent_ping_timeouts=1)) == (1, True)


def test_clock_form():
    cfg = PartitionConfig(agent_ping_timeout=2.0, max_agent_ping_timeouts=3)
    assert not is_unreachable(100.0, 105.9, cfg)
    assert is_unreachable(100.0, 106.0, cfg)


@pytest.mark.parametrize("kw", [{"agent_ping_timeout": 0}, {"max_agent_ping_timeouts": 0},
                                {"registry_max_agent_age": 0}, {"registry_max_agent_count": -1}])
def test_bad_flags_are_refused(kw):
    with pytest.raises(ValueError, match="--"):
        PartitionConfig(**kw)


def test_unreachable_agent_partition_aware_vs_not():
    aware = on_agent_unreachable(True, 1234.5, "h1")
    assert (aware.state, aware.reason, aware.source, aware.unreachable_time) == (
        "TASK_UNREACHABLE", "REASON_AGENT_REMOVED", "SOURCE_MASTER", 1234.5)
    assert "h1" in aware.message
    legacy = on_agent_unreachable(False, 1234.5)
    assert (legacy.state, legacy.reason) == ("TASK_LOST", "REASON_AGENT_REMOVED")


def test_state_mapping_for_non_partition_aware_frameworks():
    for s in ("TASK_UNREACHABLE", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"):
        assert state_for_framework(s, False) == "TASK_LOST"
        assert state_for_framework(s, True) == s
    assert state_for_framework("TASK_RUNNING", False) == "TASK_RUNNING"
    assert state_for_framework("TASK_DROPPED", False) == "TASK_DROPPED"


def test_disconnect_loses_only_non_checkpointing_tasks():
    assert on_agent_disconnected(checkpoint=True) is None
    d = on_agent_disconnected(checkpoint=False)
    assert (d.state, d.reason) == ("TASK_LOST", "REASON_AGENT_DISCONNECTED")


def test_mark_agent_gone_and_the_gone_agent_is_refused_if_it_returns():
    d = on_agent_gone(True)
    assert (d.state, d.reason, d.source) == ("TASK_GONE_BY_OPERATOR", "REASON_AGENT_REMOVED_BY_OPERATOR",
                                             "SOURCE_MASTER")
    assert on_agent_gone(False).state == "TASK_LOST"
    gone, unreachable = {"a1": 10.0}, {"a2": 20.0}
    assert admit_agent("a1", gone, unreachable) is Admission.REFUSE_GONE
    assert admit_agent("a2", gone, unreachable) is Admission.READMIT_UNREACHABLE
    assert admit_agent("a3", gone, unreachable) is Admission.ADMIT
    assert admit_agent(None, gone, unreachable) is Admission.ADMIT
    # gone wins even if a stale unreachable entry remains
    assert admit_agent("a1", gone, {"a1": 5.0}) is Admission.REFUSE_GONE


def test_reregistered_unreachable_agent_reports_current_states_and_kills_nothing():
    tasks = [ReregisteredTask("t1", "fw-aware", "TASK_RUNNING"),
             ReregisteredTask("t2", "fw-legacy", "TASK_FINISHED"),
             ReregisteredTask("t3", "fw-offline", "TASK_RUNNING"),
             ReregisteredTask("t4", "fw-done", "TASK_RUNNING"),
             ReregisteredTask("t5", "fw-done", "TASK_STAGING")]
    plan = on_unreachable_agent_reregistered(tasks, connected={"fw-aware", "fw-legacy"}, completed={"fw-done"})
    assert plan.adopt == ["t1", "t2", "t3"]  # never killed; t3's framework learns on reconcile
    assert [(f, t, u.state) for f, t, u in plan.updates] == [
        ("fw-aware", "t1", "TASK_RUNNING"), ("fw-legacy", "t2", "TASK_FINISHED")]
    for _, _, u in plan.updates:
        assert (u.reason, u.source, u.message) == ("REASON_AGENT_REREGISTERED", "SOURCE_MASTER", REREGISTERED_MESSAGE)
    assert plan.shutdown_frameworks == ["fw-done"]


@pytest.mark.parametrize(("standing", "aware", "expected"), [
    (AgentStanding.RECOVERED, True, None),
    (AgentStanding.REGISTERED, True, "TASK_GONE"),
    (AgentStanding.UNREACHABLE, True, "TASK_UNREACHABLE"),
    (AgentStanding.GONE, True, "TASK_GONE_BY_OPERATOR"),
    (AgentStanding.UNKNOWN, True, "TASK_UNKNOWN"),
    (AgentStanding.UNREACHABLE, False, "TASK_LOST"),
    (AgentStanding.UNKNOWN, False, "TASK_LOST"),
])
def test_reconciliation_of_unknown_tasks(standing, aware, expected):
    d = reconcile_unknown_task(standing, aware)
    if expected is None:
        assert d is None
    else:
        assert (d.state, d.reason) == (expected, "REASON_RECONCILIATION")


def test_unreachable_list_bounded_by_age_then_count():
    now = 100 * DAY
    entries = {"old": now - 15 * DAY, "a": now - 3 * DAY, "b": now - 2 * DAY, "c": now - 1 * DAY}
    kept, dropped = prune_agent_list(entries, now, max_age=14 * DAY, max_count=2)
    assert dropped == ["old", "a"]  # too old first, then the oldest beyond the count
    assert kept == {"b": now - 2 * DAY, "c": now - DAY}
    kept, dropped = prune_agent_list(entries, now, max_age=14 * DAY, max_count=102400)
    assert dropped == ["old"] and set(kept) == {"a", "b", "c"}
    assert prune_agent_list({}, now, 1.0, 0) == ({}, [])

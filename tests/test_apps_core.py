"""The pure core of the apps framework: definitions, constraints, the reconciler, schedules."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_nb.frameworks.apps.constraints import Place, normalise, rejection
from mesos_nb.frameworks.apps.model import (
    Attempt,
    InvalidDefinition,
    RunRecord,
    parse_app,
    run_json,
)
from mesos_nb.frameworks.apps.reconcile import Backoff, Instance, after_failure, is_healthy, plan
from mesos_nb.frameworks.apps.schedule import (
    after_attempt,
    check_parents,
    decide,
    parse_duration,
    parse_job,
    parse_schedule,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


# ------------------------------------------------------------------ definitions
def test_app_defaults_and_camel_case_names():
    app = parse_app({"id": "team/web", "cmd": "sleep 100", "healthChecks": [{"protocol": "COMMAND", "command": "true"}],
                     "upgradeStrategy": {"minimumHealthCapacity": 0.5}})
    assert app.id == "/team/web"
    assert (app.instances, app.cpus, app.mem, app.backoff_factor) == (1, 1.0, 128.0, 1.15)
    assert app.health_checks[0].grace_period_seconds == 300
    assert app.upgrade_strategy.minimum_health_capacity == 0.5
    assert app.upgrade_strategy.maximum_over_capacity == 1.0


@pytest.mark.parametrize("body,field", [
    ({"id": "Web", "cmd": "x"}, "id"),
    ({"id": "web"}, "cmd"),
    ({"id": "web", "cmd": "x", "instances": -1}, "instances"),
    ({"id": "web", "cmd": "x", "instances": "three"}, "instances"),
    ({"id": "web", "cmd": "x", "cpus": 0}, "cpus"),
    ({"id": "web", "cmd": "x", "mem": 0}, "mem"),
    ({"id": "web", "cmd": "x", "gpus": 0.5}, "gpus"),
    ({"id": "web", "cmd": "x", "colour": "red"}, "colour"),
    ({"id": "web", "cmd": "x", "constraints": [["hostname", "NEAR"]]}, "constraints[0]"),
    ({"id": "web", "cmd": "x", "constraints": [["rack", "LIKE"]]}, "constraints[0]"),
    ({"id": "web", "cmd": "x", "constraints": [["rack", "MAX_PER", "two"]]}, "constraints[0]"),
    ({"id": "web", "cmd": "x", "constraints": [["rack", "LIKE", "("]]}, "constraints[0]"),
    ({"id": "web", "cmd": "x", "healthChecks": [{"protocol": "COMMAND"}]}, "healthChecks[0].command"),
    ({"id": "web", "cmd": "x", "healthChecks": [{"protocol": "HTTP"}]}, "healthChecks[0].portIndex"),
    ({"id": "web", "cmd": "x", "healthChecks": [{"protocol": "UDP"}]}, "healthChecks[0].protocol"),
    ({"id": "web", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 1.5}},
     "upgradeStrategy.minimumHealthCapacity"),
    ({"id": "web", "cmd": "x", "backoffFactor": 0.5}, "backoffFactor"),
    ({"id": "web", "cmd": "x", "env": {"1BAD": "x"}}, "env.1BAD"),
    ({"id": "web", "cmd": "x", "ports": [70000]}, "ports[0]"),
])
def test_bad_app_names_the_field(body, field):
    with pytest.raises(InvalidDefinition) as e:
        parse_app(body)
    assert e.value.field == field, str(e.value)


@pytest.mark.parametrize("body,field", [
    ({"id": "Nightly", "cmd": "x"}, "id"),
    ({"id": "a"}, "cmd"),
    ({"id": "a", "cmd": "x", "schedule": "every day"}, "schedule"),
    ({"id": "a", "cmd": "x", "schedule": "R/2026-01-01T00:00:00Z/10S"}, "schedule"),
    ({"id": "a", "cmd": "x", "schedule": "* * * * *", "timezone": "Mars/Olympus"}, "schedule"),
    ({"id": "a", "cmd": "x", "timezone": "Mars/Olympus"}, "timezone"),
    ({"id": "a", "cmd": "x", "schedule": "* * * * *", "parents": ["b"]}, "parents"),
    ({"id": "a", "cmd": "x", "concurrencyPolicy": "SOMETIMES"}, "concurrencyPolicy"),
    ({"id": "a", "cmd": "x", "retries": -1}, "retries"),
    ({"id": "a", "notebook": {"notebook": {"nbformat": 4}}}, "notebook.notebook"),
])
def test_bad_job_names_the_field(body, field):
    with pytest.raises(InvalidDefinition) as e:
        parse_job(body)
    assert e.value.field == field, str(e.value)


def test_run_record_json_has_duration():
    r = RunRecord(id="r1", job_id="a", status="SUCCESS", started_at=10.0, finished_at=12.5, exit_code=0,
                  attempts=[Attempt(task_id="t", state="TASK_FINISHED", exit_code=0)])
    j = run_json(r)
    assert j["duration"] == 2.5 and j["jobId"] == "a" and j["attempts"][0]["taskId"] == "t"


# ------------------------------------------------------------------ constraints
A, B, C = Place("a", {"rack": "r1", "zone": "0.80"}), Place("b", {"rack": "r2"}), Place("c", {"rack": "r1"})


def test_unique_hostname_says_why():
    assert rejection([["hostname", "UNIQUE"]], A, [], 3) is None
    why = rejection([["hostname", "UNIQUE"]], A, [A], 3)
    assert "UNIQUE" in why and "hostname=a" in why


def test_cluster_like_unlike_is_max_per():
    assert rejection([["rack", "CLUSTER", "r1"]], B, [], 2) is not None
    assert rejection([["rack", "CLUSTER"]], C, [A], 2) is None
    assert rejection([["rack", "CLUSTER"]], B, [A], 2) is not None
    assert rejection([["rack", "LIKE", "r[12]"]], B, [], 1) is None
    assert rejection([["rack", "LIKE", "r"]], B, [], 1) is not None  # whole-value match
    assert rejection([["rack", "UNLIKE", "r2"]], B, [], 1) is not None
    assert rejection([["gpu", "UNLIKE", "x"]], B, [], 1) is None  # missing attribute: only UNLIKE accepts
    assert "no attribute" in rejection([["gpu", "LIKE", "x"]], B, [], 1)
    assert rejection([["zone", "IS", "0.8"]], A, [], 1) is None
    assert rejection([["zone", "IS", "0.800"]], A, [], 1) is None
    assert rejection([["rack", "MAX_PER", "2"]], C, [A], 3) is None
    assert rejection([["rack", "MAX_PER", "2"]], C, [A, C], 3) is not None


def test_normalise_like_decimal_format():
    assert normalise("0.8001") == "0.8" and normalise("2.0") == "2" and normalise("r1") == "r1"
    assert normalise("0.0005") == "0"  # half-even


def test_group_by_spreads_instances():
    g = [["rack", "GROUP_BY", "2"]]
    # 4 instances over 2 racks: 2 each
    assert rejection(g, A, [A], 4) is None
    assert rejection(g, A, [A, C], 4) is not None
    assert rejection(g, B, [A, C], 4) is None
    # 3 instances over 2 racks: one rack may hold 2
    assert rejection(g, A, [A, B], 3) is None
    assert rejection(g, B, [A, C, B], 3) is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=12), st.integers(1, 12))
def test_max_per_and_unique_are_counts(hosts, n):
    placed = [Place(h) for h in hosts]
    for h in "abcd":
        ok = rejection([["hostname", "MAX_PER", str(n)]], Place(h), placed, 20) is None
        assert ok == (hosts.count(h) < n)
        assert (rejection([["hostname", "UNIQUE"]], Place(h), placed, 20) is None) == (h not in hosts)


# ------------------------------------------------------------------ reconciler
def app(**kw):
    return parse_app({"id": "web", "cmd": "x", "version": "v1", **kw})


def inst(i, version="v1", state="TASK_RUNNING", healthy=None, launched=0.0):
    return Instance(task_id=f"t{i}", app_id="/web", version=version, state=state, healthy=healthy,
                    launched_at=launched)


def test_scale_up_down_and_suspend():
    a = app(instances=3)
    assert plan(a, [inst(1)], Backoff(), 0).launch == 2
    p = plan(app(instances=1), [inst(1, launched=1), inst(2, launched=2), inst(3, state="TASK_STAGING")], Backoff(), 0)
    assert p.kill == ["t3", "t2"]  # not running first, then youngest
    assert set(plan(app(instances=0), [inst(1), inst(2)], Backoff(), 0).kill) == {"t1", "t2"}


def test_unreachable_instance_is_replaced_and_surplus_killed_when_back():
    a = app(instances=2)
    assert plan(a, [inst(1), inst(2, state="TASK_UNREACHABLE")], Backoff(), 0).launch == 1
    back = plan(a, [inst(1, launched=1), inst(2, launched=2), inst(3, launched=3)], Backoff(), 0)
    assert back.kill == ["t3"] and back.launch == 0


def test_backoff_delays_launches_and_grows():
    a = app(instances=1, backoffSeconds=1, backoffFactor=2, maxLaunchDelaySeconds=5)
    b = after_failure(a, Backoff(), 100.0)
    assert b.next_launch_at == 101.0
    p = plan(a, [], b, 100.5)
    assert p.launch == 0 and "backoff" in p.waiting
    assert plan(a, [], b, 101.0).launch == 1
    b2 = after_failure(a, b, 101.5)
    b3 = after_failure(a, b2, 103.0)
    b4 = after_failure(a, b3, 104.0)
    assert (b2.delay, b3.delay, b4.delay) == (2, 4, 5)
    assert after_failure(a, b4, 200.0).delay == 1  # quiet for delay + max: reset


def test_rolling_deploy_keeps_minimum_health_capacity():
    a = app(instances=3, upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0})
    olds = [inst(i, version="v0") for i in range(3)]
    p = plan(a, olds, Backoff(), 0)
    # ceil(1.5) = 2 must stay healthy: kill one old, launch one new (capacity 3)
    assert len(p.kill) == 1 and p.launch == 1


def test_rolling_deploy_min_1_over_0_moves_one_at_a_time():
    a = app(instances=2, upgradeStrategy={"minimumHealthCapacity": 1, "maximumOverCapacity": 0})
    olds = [inst(1, version="v0"), inst(2, version="v0")]
    p = plan(a, olds, Backoff(), 0)
    assert p.kill == [] and p.launch == 1  # capacity raised by one, nothing killed up front
    p2 = plan(a, [*olds, inst(3)], Backoff(), 0)
    # the new one is healthy: one old may go, and its replacement starts (3 at most)
    assert len(p2.kill) == 1 and p2.launch == 1


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 6), st.floats(0, 1), st.floats(0, 1),
    st.lists(st.tuples(st.booleans(), st.sampled_from(["TASK_RUNNING", "TASK_STAGING"]), st.booleans()), max_size=8),
)
def test_kills_never_take_healthy_below_minimum(n, mhc, moc, spec):
    a = app(instances=n, healthChecks=[{"protocol": "COMMAND", "command": "true"}],
            upgradeStrategy={"minimumHealthCapacity": mhc, "maximumOverCapacity": moc})
    insts = [inst(i, version="v1" if new else "v0", state=state, healthy=h) for i, (new, state, h) in enumerate(spec)]
    p = plan(a, insts, Backoff(), 0)
    healthy_before = sum(is_healthy(a, i) for i in insts)
    healthy_after = sum(is_healthy(a, i) for i in insts if i.task_id not in p.kill)
    if any(i.version != "v1" for i in insts):
        assert healthy_after >= min(healthy_before, math.ceil(n * mhc - 1e-9))
        assert len(insts) - len(p.kill) + p.launch <= max(
            math.floor(n * (1 + moc) + 1e-9) + 1, len(insts) - len(p.kill))
    new_after = sum(1 for i in insts if i.version == "v1" and i.task_id not in p.kill) + p.launch
    assert new_after <= n


# ------------------------------------------------------------------ schedules
def test_iso_repeating_interval():
    s = parse_schedule("R/2026-01-01T00:00:00Z/PT10S")
    assert s.next_after(T0 - 5) == T0
    assert s.next_after(T0) == T0 + 10
    assert s.next_after(T0 + 25) == T0 + 30
    s3 = parse_schedule("R3/2026-01-01T00:00:00Z/PT10S")
    assert s3.next_after(T0 + 19) == T0 + 20 and s3.next_after(T0 + 20) is None
    monthly = parse_schedule("R/2026-01-31T00:00:00Z/P1M")
    assert datetime.fromtimestamp(monthly.next_after(T0 + 31 * 86400), timezone.utc).month == 2


def test_cron_in_a_time_zone():
    s = parse_schedule("0 2 * * *", "Europe/Berlin")
    fire = datetime.fromtimestamp(s.next_after(T0), timezone.utc)
    assert (fire.hour, fire.day) == (1, 1)  # 02:00 CET = 01:00 UTC
    assert parse_duration("PT1H30M").minutes == 30


def test_every_two_seconds_fires_once_per_period():
    job = parse_job({"id": "tick", "cmd": "true", "schedule": "R/2026-01-01T00:00:00Z/PT2S"})
    nf: dict = {}
    starts = []
    t = T0 - 0.5
    while t < T0 + 10:
        for d in decide([job], {}, nf, t):
            starts.append((d.kind, d.scheduled_at))
        t += 0.1
    assert [s[1] - T0 for s in starts] == [0, 2, 4, 6, 8]
    assert {s[0] for s in starts} == {"start"}


def test_missed_fires_beyond_deadline_are_dropped():
    job = parse_job({"id": "tick", "cmd": "true", "schedule": "R/2026-01-01T00:00:00Z/PT10S",
                     "startingDeadlineSeconds": 5})
    nf = {"tick": T0}
    assert decide([job], {}, nf, T0 + 36) == []  # the latest missed fire is 6 s late: dropped
    assert nf["tick"] == T0 + 40
    nf = {"tick": T0}
    d = decide([job], {}, nf, T0 + 31)
    assert [x.scheduled_at for x in d] == [T0 + 30] and nf["tick"] == T0 + 40


def test_concurrency_policies():
    running = {"j": [RunRecord(id="r0", job_id="j", status="ACTIVE", created_at=T0 - 1)]}
    for policy, kinds in [("ALLOW", ["start"]), ("FORBID", ["skip"]), ("REPLACE", ["kill", "start"])]:
        job = parse_job({"id": "j", "cmd": "x", "schedule": "R/2026-01-01T00:00:00Z/PT2S",
                         "concurrencyPolicy": policy})
        assert [d.kind for d in decide([job], running, {"j": T0}, T0)] == kinds


def test_retries_with_backoff():
    job = parse_job({"id": "j", "cmd": "x", "retries": 2, "retryBackoffSeconds": 1, "retryBackoffFactor": 2})
    run = RunRecord(id="r", job_id="j", attempts=[Attempt(task_id="a1", state="TASK_FAILED")])
    assert after_attempt(job, run, False, 10.0) == ("INITIAL", 11.0)
    run.attempts.append(Attempt(task_id="a2", state="TASK_FAILED"))
    assert after_attempt(job, run, False, 20.0) == ("INITIAL", 22.0)
    run.attempts.append(Attempt(task_id="a3", state="TASK_FAILED"))
    assert after_attempt(job, run, False, 30.0) == ("FAILED", 30.0)
    assert after_attempt(job, run, True, 30.0) == ("SUCCESS", 30.0)


def test_child_runs_once_after_parent_success():
    parent = parse_job({"id": "p", "cmd": "x"})
    child = parse_job({"id": "c", "cmd": "x", "parents": ["p"]})
    assert decide([parent, child], {}, {}, T0) == []
    failed = {"p": [RunRecord(id="1", job_id="p", status="FAILED", created_at=T0, finished_at=T0 + 1)]}
    assert decide([parent, child], failed, {}, T0 + 2) == []
    ok = {"p": [RunRecord(id="2", job_id="p", status="SUCCESS", created_at=T0, finished_at=T0 + 1)]}
    assert [(d.kind, d.job_id, d.trigger) for d in decide([parent, child], ok, {}, T0 + 2)] == [("start", "c", "parent")]
    ok["c"] = [RunRecord(id="3", job_id="c", status="ACTIVE", created_at=T0 + 2)]
    assert decide([parent, child], ok, {}, T0 + 3) == []  # not again for the same parent success


def test_parent_cycles_and_unknown_parents_are_refused():
    a = parse_job({"id": "a", "cmd": "x", "parents": ["b"]})
    with pytest.raises(ValueError, match="unknown parent"):
        check_parents({}, a)
    b = parse_job({"id": "b", "cmd": "x", "parents": ["a"]})
    with pytest.raises(ValueError, match="cycle"):
        check_parents({"a": a}, b)

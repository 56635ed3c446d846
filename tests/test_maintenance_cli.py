"""``mesos-nb maintenance …`` as a user runs it (subprocesses against ``mesos-nb local``), the
MAINTENANCE / DRAIN columns of ``mesos-nb agents`` and ``%mesos agents``, and the pure value
parsers (durations, start times, machines)."""

from __future__ import annotations

import argparse
import time

import pytest
from conftest import mesos_shell, start_cluster_process, stop_cluster_process, wait_for

from mesos_nb.cli.maintenance import schedule_rows, seconds, start_time
from mesos_nb.client.maintenance import Machine, Maintenance, Window

HOST = "127.0.0.1,127.0.0.1"  # both agents of `mesos-nb local` are at 127.0.0.1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("mesos_nb.agent.process")
    cp = start_cluster_process(tmp_path_factory.mktemp("maintenance-cli"), authenticate=True)
    try:
        yield cp
    finally:
        stop_cluster_process(cp)


def ok(cp, *args: str) -> str:
    r = cp.cli(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def refused(cp, *args: str) -> str:
    """Exit 2 with one sentence on stderr, no traceback."""
    r = cp.cli(*args)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mesos-nb: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def agent_table(cp) -> dict[str, dict[str, str]]:
    """``mesos-nb agents`` (piped: plain columns) as {agent id: {column: cell}}."""
    lines = ok(cp, "agents").splitlines()
    head = lines[0]
    cols = [(name, head.index(name)) for name in head.split()]
    out = {}
    for line in lines[1:]:
        cells = {name: line[start:(cols[i + 1][1] if i + 1 < len(cols) else None)].strip()
                 for i, (name, start) in enumerate(cols)}
        out[cells["ID"]] = cells
    return out


def test_drain_deactivate_reactivate_show_in_the_agents_table(cluster):
    ids = sorted(a["id"] for a in cluster.state()["slaves"])
    assert len(ids) == 2
    table = agent_table(cluster)
    assert {t["MAINTENANCE"] for t in table.values()} == {"UP"} and {t["DRAIN"] for t in table.values()} == {"-"}

    assert "deactivated agent" in ok(cluster, "maintenance", "deactivate", ids[0])
    assert agent_table(cluster)[ids[0]]["DRAIN"] == "deactivated"
    ok(cluster, "maintenance", "reactivate", ids[0])
    assert agent_table(cluster)[ids[0]]["DRAIN"] == "-"

    t0 = time.time()
    out = ok(cluster, "maintenance", "drain", ids[1], "--grace", "5")
    t1 = time.time()
    assert f"draining agent {ids[1]}, grace at most 5s" in out
    wait_for(lambda: agent_table(cluster)[ids[1]]["DRAIN"] == "DRAINED", timeout=20, message="DRAINED (no tasks)")
    drained = next(a for a in cluster.state()["slaves"] if a["id"] == ids[1])
    assert drained["drain_info"]["config"] == {"mark_gone": False, "max_grace_period": {"nanoseconds": 5_000_000_000}}
    assert t0 <= drained["estimated_drain_start_time_seconds"] <= t1  # as Mesos's v0 /master/state
    assert "still DRAINING" not in refused(cluster, "maintenance", "reactivate", ids[0])  # not deactivated: 400
    ok(cluster, "maintenance", "reactivate", ids[1])
    assert agent_table(cluster)[ids[1]]["DRAIN"] == "-"
    again = next(a for a in cluster.state()["slaves"] if a["id"] == ids[1])
    assert "drain_info" not in again and "estimated_drain_start_time_seconds" not in again

    line = refused(cluster, "maintenance", "drain", "ghost")
    assert line == "mesos-nb: the master refused to drain agent ghost (400: No agent found with specified ID 'ghost')"
    assert "empty" in refused(cluster, "maintenance", "deactivate", " ")
    assert "bad duration" in refused(cluster, "maintenance", "drain", ids[0], "--grace", "soon")


def test_schedule_set_show_status_down_up(cluster):
    assert ok(cluster, "maintenance", "schedule").splitlines() == ["WINDOW  MACHINE  START  DURATION  MODE"]
    out = ok(cluster, "maintenance", "schedule", "set", "--machine", HOST, "--start", "+1h", "--duration", "2h")
    assert out.startswith(f"scheduled {HOST}: ") and "for 2h (window 1 of 1)" in out
    out = ok(cluster, "maintenance", "schedule", "set", "--machine", "other.example", "--machine", "10.0.0.9",
             "--start", "2030-01-01T00:00", "--duration", "30m")
    assert "2030-01-01 00:00 UTC for 30m (window 2 of 2)" in out
    rows = [ln.split() for ln in ok(cluster, "maintenance", "schedule").splitlines()[1:]]
    assert [(r[0], r[1], r[-2], r[-1]) for r in rows] == [
        ("1", HOST, "2h", "DRAINING"), ("2", "other.example", "30m", "DRAINING"), ("2", "10.0.0.9", "30m", "DRAINING")]
    assert rows[1][2:5] == ["2030-01-01", "00:00:00", "UTC"]
    # one machine is in one window only: the master's rule, as one sentence
    line = refused(cluster, "maintenance", "schedule", "set", "--machine", "10.0.0.9", "--start", "+1m")
    assert "refused to update the maintenance schedule (400:" in line and "more than once" in line

    # both agents are on the draining machine: the agents table says so, with the window
    table = agent_table(cluster)
    assert all(t["MAINTENANCE"].startswith("DRAINING ") and t["MAINTENANCE"].endswith(" for 2h")
               for t in table.values()), table
    status = ok(cluster, "maintenance", "status").splitlines()
    assert status[0].split()[:2] == ["MACHINE", "MODE"]
    assert {ln.split()[0]: ln.split()[1] for ln in status[1:]} == {
        HOST: "DRAINING", "other.example": "DRAINING", "10.0.0.9": "DRAINING"}

    assert "down: other.example" in ok(cluster, "maintenance", "down", "other.example")
    status = {ln.split()[0]: ln.split()[1] for ln in ok(cluster, "maintenance", "status").splitlines()[1:]}
    assert status["other.example"] == "DOWN"
    assert [r.split()[-1] for r in ok(cluster, "maintenance", "schedule").splitlines()[1:]] == [
        "DRAINING", "DOWN", "DRAINING"]
    line = refused(cluster, "maintenance", "up", "10.0.0.9")
    assert line == ("mesos-nb: the master refused to stop maintenance "
                    "(400: Machine '10.0.0.9' is not in DOWN mode and cannot be brought up)")
    assert "up: other.example" in ok(cluster, "maintenance", "up", "other.example")
    assert "other.example" not in ok(cluster, "maintenance", "schedule")

    # the notebook's agents listing shows the same column
    with mesos_shell(cluster.master) as shell:
        ag = shell.run_line_magic("mesos", "agents")
    assert all(m.startswith("DRAINING ") for m in ag.column("MAINTENANCE")) and ag.column("DRAIN") == ["-", "-"]

    # bad input: one sentence, exit 2, nothing posted
    assert "bad start 'tomorrow'" in refused(cluster, "maintenance", "schedule", "set", "--machine", "h",
                                             "--start", "tomorrow")
    assert "bad duration '-5'" in refused(cluster, "maintenance", "schedule", "set", "--machine", "h",
                                          "--start", "+1h", "--duration=-5")
    assert "expected HOST, IP or HOST,IP" in refused(cluster, "maintenance", "down", "a,b,c")
    assert "required" in refused(cluster, "maintenance", "schedule", "set", "--start", "+1h")
    assert "more than once" in refused(cluster, "maintenance", "schedule", "set", "--machine", "h",
                                       "--machine", "h", "--start", "+1h")
    assert len(ok(cluster, "maintenance", "schedule").splitlines()) == 3  # header + 2 machines left


def test_unreachable_master_is_one_sentence(tmp_path):
    from conftest import run_cli

    r = run_cli("maintenance", "status", "--master", "127.0.0.1:1")
    assert r.returncode == 2 and r.stderr.strip() == (
        "mesos-nb: cannot reach the master at http://127.0.0.1:1 (connection refused)")


def test_value_parsers():
    assert seconds("90") == 90 and seconds("1h30m") == 5400 and seconds("2d") == 172800 and seconds("250ms") == 0.25
    for bad in ("", "1x", "h", "-1", "nan", "1h-2m"):
        with pytest.raises(argparse.ArgumentTypeError):
            seconds(bad)
    assert start_time("+1h", 1000.0) == 4600.0
    assert start_time("2030-01-01T00:00", 0) == start_time("2030-01-01T01:00+01:00", 0) == 1893456000
    assert start_time("2030-01-01T00:00Z", 0) == 1893456000
    assert Machine.parse("10.0.0.1") == Machine(ip="10.0.0.1")
    assert Machine.parse("Host.A,10.0.0.1") == Machine("Host.A", "10.0.0.1")
    for bad in ("a,b", ",", "a,", "a,10.0.0.1,x"):
        with pytest.raises(ValueError):
            Machine.parse(bad)


def test_agent_mode_follows_the_masters_matching_rule():
    now = time.time()
    w = Window((Machine("host-a"), Machine("h2", "10.0.0.2")), now, 3600)
    m = Maintenance(windows=(w,), down=(Machine("h2", "10.0.0.2"),))
    assert m.mode("HOST-A").startswith("DRAINING ") and m.mode("HOST-A").endswith(" for 1h")
    assert m.mode("host-b") == "UP"
    assert m.mode("10.0.0.2") == "UP"  # hostname h2 given: an agent at 10.0.0.2 is not "h2"
    assert Maintenance(down=(Machine(ip="10.0.0.2"),)).mode("10.0.0.2") == "DOWN"
    rows = schedule_rows([w], {Machine("h2", "10.0.0.2")})
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [(1, "host-a", "1h", "DRAINING"), (1, "h2,10.0.0.2", "1h", "DOWN")]


async def test_agents_rows_say_unknown_when_maintenance_may_not_be_read(tmp_path):
    """A user whom the ACLs keep from the maintenance calls still gets the agents listing."""
    import asyncio
    import json

    from test_maintenance_http import start_agents

    from mesos_nb.client import MasterClient
    from mesos_nb.client.maintenance import maintenance_or_none
    from mesos_nb.client.tables import AGENT_HEADERS, agent_rows
    from mesos_nb.master.security import SecurityConfig
    from mesos_nb.master.server import MasterConfig, MasterServer

    acls = {"permissive": True,
            "get_maintenance_schedules": [{"principals": {"type": "ANY"}, "machines": {"type": "NONE"}}]}
    master = MasterServer(MasterConfig(port=0, agent_secret="s3cret", security=SecurityConfig(acls=json.dumps(acls))))
    await master.start()
    agents = await start_agents(master, tmp_path, "127.0.0.1")
    try:
        client = MasterClient(master.url)
        state = await asyncio.to_thread(client.state)
        assert await asyncio.to_thread(maintenance_or_none, client) is None
        (row,) = agent_rows(state, None)
        cells = dict(zip(AGENT_HEADERS, row, strict=True))
        assert cells["MAINTENANCE"] == "?" and cells["DRAIN"] == "-"
    finally:
        await agents.stop()
        await master.stop()

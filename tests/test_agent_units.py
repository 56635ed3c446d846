"""Unit tests for the agent's pure parts: status update manager, attributes, detection, sandbox."""

from __future__ import annotations

import os
import uuid

import pytest

from mesos_nb.agent import parse_master
from mesos_nb.agent.attributes import attributes_dict, parse_attributes
from mesos_nb.agent.containerizer import describe_status
from mesos_nb.agent.detect import detect_resources
from mesos_nb.agent.sandbox import create_sandbox, valid_id, virtual_path
from mesos_nb.agent.status_updates import StatusUpdateManager, UpdateStore
from mesos_nb.protocol.channel import StatusUpdate
from mesos_nb.protocol.messages import ID, TaskStatus
from mesos_nb.protocol.resources import ResourceParseError


class FakeTimers:
    """call_later replacement driven by a fake clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[list] = []  # [deadline, fn, cancelled]

    def call_later(self, delay, fn):
        entry = [self.now + delay, fn, False]
        self.timers.append(entry)

        class H:
            def cancel(_self):
                entry[2] = True

        return H()

    def advance(self, dt: float) -> None:
        target = self.now + dt
        while True:
            due = [t for t in self.timers if not t[2] and t[0] <= target]
            if not due:
                break
            t = min(due, key=lambda x: x[0])
            self.timers.remove(t)
            self.now = t[0]
            t[1]()
        self.now = target


def upd(task="t1", state="TASK_RUNNING", fw="fw1", u=None):
    return StatusUpdate(agent_id="A", framework_id=fw, status=TaskStatus(
        task_id=ID(value=task), state=state, uuid=u or uuid.uuid4().bytes))


def make(min_=10.0, max_=600.0, store=None):
    sent: list[StatusUpdate] = []
    timers = FakeTimers()
    m = StatusUpdateManager(sent.append, retry_min=min_, retry_max=max_, call_later=timers.call_later,
                            clock=lambda: timers.now, store=store)
    return m, sent, timers


def test_only_head_in_flight_and_ack_pops():
    m, sent, _ = make()
    a, b = upd(state="TASK_STARTING"), upd(state="TASK_RUNNING")
    assert m.update(a) and m.update(b)
    assert sent == [a]
    assert not m.acknowledge("fw1", "t1", b"wrong-uuid-0000")
    assert m.acknowledge("fw1", "t1", a.status.uuid)
    assert sent == [a, b]
    assert not m.acknowledge("fw1", "t1", a.status.uuid)  # stale ack


def test_retry_backoff_doubles_to_max():
    m, sent, timers = make(10, 40)
    a = upd()
    m.update(a)
    times = []
    for _ in range(200):
        timers.advance(1)
        if len(sent) > len(times) + 1:
            times.append(timers.now)
    assert times[:5] == [10, 30, 70, 110, 150]  # +10, +20, +40 (cap), +40, +40
    assert all(s is a for s in sent)


def test_ack_cancels_retry_and_next_starts_at_min():
    m, sent, timers = make(10, 600)
    a, b = upd(state="TASK_STARTING"), upd(state="TASK_FINISHED")
    m.update(a)
    m.update(b)
    timers.advance(35)  # resent at 10 and 30
    assert sent.count(a) == 3
    m.acknowledge("fw1", "t1", a.status.uuid)
    assert sent[-1] is b
    n = len(sent)
    timers.advance(9)
    assert len(sent) == n
    timers.advance(1)
    assert len(sent) == n + 1 and sent[-1] is b
    assert a not in sent[n:]


def test_updates_share_retry_timers_and_unacked_ones_are_resent():
    """A busy agent arms no timer per update: the updates sent within one slot of the retry
    grid share one timer, and at its due time exactly the ones still unacknowledged go again."""
    m, sent, timers = make(10, 600)
    ups = [upd(f"t{i}") for i in range(100)]
    for u in ups:
        m.update(u)
    assert len(timers.timers) == 1
    for u in ups[:60]:  # acked: off the grid, not resent
        assert m.acknowledge("fw1", u.status.task_id.value, u.status.uuid)
    timers.advance(9.9)
    assert sent == ups
    timers.advance(0.1)
    assert sent[100:] == ups[60:]  # each unacked head once, in the order they were sent
    timers.advance(19.9)
    assert len(sent) == 140
    timers.advance(0.1)
    assert sent[140:] == ups[60:]  # then after 20 s (doubled)


def test_duplicates_ignored():
    m, sent, _ = make()
    a = upd()
    assert m.update(a)
    assert not m.update(upd(u=a.status.uuid))
    assert len(m.pending()) == 1


def test_terminal_ack_removes_stream_and_later_updates_dropped():
    m, sent, _ = make()
    a = upd(state="TASK_FINISHED")
    m.update(a)
    m.acknowledge("fw1", "t1", a.status.uuid)
    assert len(m) == 0
    # a new stream with the same task id starts fresh (the task id may be reused after ack)
    assert m.update(upd(state="TASK_RUNNING"))


def test_pause_and_resend_all_heads():
    m, sent, timers = make(10, 600)
    a, b, c = upd("t1"), upd("t2"), upd("t2", state="TASK_FINISHED")
    m.update(a)
    m.pause()
    m.update(b)
    m.update(c)
    assert sent == [a]
    timers.advance(100)
    assert sent == [a]  # no retries while paused
    m.resend_all()
    assert sent[1:] == [a, b]
    timers.advance(10)
    assert sent[3:] == [a, b]


def test_streams_are_independent_and_cleanup_framework():
    m, sent, _ = make()
    a, b = upd("t1"), upd("t2", fw="fw2")
    m.update(a)
    m.update(b)
    assert sent == [a, b]
    m.cleanup_framework("fw1")
    assert [u.framework_id for u in m.pending()] == ["fw2"]


def test_store_seam_is_called():
    calls = []

    class Store(UpdateStore):
        def append(self, update):
            calls.append(("append", update.status.state))

        def acknowledge(self, fw, task, u):
            calls.append(("ack", task))

    m, _, _ = make(store=Store())
    a = upd()
    m.update(a)
    m.acknowledge("fw1", "t1", a.status.uuid)
    assert calls == [("append", "TASK_RUNNING"), ("ack", "t1")]


def test_update_without_uuid_rejected():
    m, _, _ = make()
    with pytest.raises(ValueError):
        m.update(StatusUpdate(agent_id="A", framework_id="f", status=TaskStatus(task_id=ID(value="t"), state="TASK_RUNNING")))


# ---------------------------------------------------------------------- attributes
def test_parse_attributes_types():
    attrs = parse_attributes("rack:a;zone:1;ports:[1-3,5-6];tags:{x,y};ratio:0.5")
    assert [a.type for a in attrs] == ["TEXT", "SCALAR", "RANGES", "SET", "SCALAR"]
    assert attributes_dict(attrs) == {"rack": "a", "zone": 1, "ports": "[1-3, 5-6]", "tags": "{x, y}", "ratio": 0.5}
    assert parse_attributes(None) == [] and parse_attributes("") == []


@pytest.mark.parametrize("bad", ["rack", "rack:", ":a", "p:[3-1]", "p:[a-b]", "x:[1-2"])
def test_parse_attributes_bad(bad):
    with pytest.raises(ValueError) as e:
        parse_attributes(bad)
    assert str(e.value).endswith(".") and "\n" not in str(e.value)


# ---------------------------------------------------------------------- detection
def test_detect_defaults(tmp_path):
    r = detect_resources(None, str(tmp_path), gpus=False)
    assert r.scalar("cpus") == os.cpu_count()
    assert r.scalar("mem") > 0
    assert r.ranges("ports") == [(31000, 32000)]
    assert "disk" in r.names()


def test_detect_explicit_overrides(tmp_path):
    r = detect_resources("cpus:3;ports:[5000-5001];foo:7", str(tmp_path / "missing" / "dir"), gpus=False)
    assert r.scalar("cpus") == 3
    assert r.ranges("ports") == [(5000, 5001)]
    assert r.scalar("foo") == 7
    assert r.scalar("mem") > 0  # still detected


def test_detect_bad_text(tmp_path):
    with pytest.raises(ResourceParseError):
        detect_resources("cpus:x", str(tmp_path), gpus=False)


# ---------------------------------------------------------------------- sandbox, misc
def test_sandbox_layout(tmp_path):
    d = create_sandbox(str(tmp_path), "AG1", "FW1", "EX1", "C1")
    assert d == str(tmp_path / "slaves/AG1/frameworks/FW1/executors/EX1/runs/C1")
    assert os.path.isdir(d)
    latest = tmp_path / "slaves/AG1/frameworks/FW1/executors/EX1/runs/latest"
    assert os.path.realpath(latest) == d
    d2 = create_sandbox(str(tmp_path), "AG1", "FW1", "EX1", "C2")
    assert os.path.realpath(latest) == d2
    assert virtual_path("FW1", "EX1") == "/frameworks/FW1/executors/EX1/runs/latest"


@pytest.mark.parametrize("v,ok", [("a", True), ("", False), ("..", False), ("a/b", False), ("a\\b", False), ("a\nb", False), ("x" * 256, False)])
def test_valid_id(v, ok):
    assert valid_id(v) is ok


def test_parse_master():
    assert parse_master("h:1") == ("ws://h:1/api/v1/agent-channel", "h:1")
    assert parse_master("http://h:1/") == ("ws://h:1/api/v1/agent-channel", "h:1")
    assert parse_master("https://h") == ("wss://h:5050/api/v1/agent-channel", "h:5050")
    with pytest.raises(ValueError):
        parse_master("ftp://h:1")


def test_describe_status():
    assert describe_status(0) == (True, "Command exited with status 0")
    assert describe_status(3 << 8) == (False, "Command exited with status 3")
    ok, msg = describe_status(9)
    assert not ok and msg.startswith("Command terminated with signal Killed")


def test_make_containerizer():
    from mesos_nb.agent.containerizer import PosixContainerizer, make_containerizer

    assert isinstance(make_containerizer("posix"), PosixContainerizer)
    assert isinstance(make_containerizer("cgroups"), PosixContainerizer)
    with pytest.raises(ValueError, match="Unsupported isolation 'docker'"):
        make_containerizer("docker")


def test_agent_modules_small_and_http_executor_api_acyclic():
    """One job per module: none over 600 lines, and the executor API does not import http.py
    (the app -> Agent link is app_key.py, which both use)."""
    import ast
    import pathlib

    import mesos_nb.agent as pkg

    root = pathlib.Path(pkg.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in root.glob("*.py")}
    assert max(sizes.values()) <= 600, sizes
    tree = ast.parse((root / "executor_api.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "http" not in imported and "app_key" in imported


def test_build_environment_is_pure_and_mesos_shaped():
    from mesos_nb.agent.config import AgentConfig
    from mesos_nb.agent.environment import build_environment, command_argv, limits_for
    from mesos_nb.protocol.messages import CommandInfo
    from mesos_nb.protocol.resources import Resources

    cfg = AgentConfig(master="m:5050")
    base = {"PATH": "/bin", "MESOS_TASK_ID": "stale", "MESOS_CHECKPOINT": "1"}
    res = Resources.parse("cpus:0.5;mem:64;ports:[31000-31001]")
    env = build_environment(
        base, cfg, agent_id="A", agent_pid="slave(1)@h:1", endpoint="h:1", framework_id="F",
        executor_id="E", container_id="C", directory="/s", checkpoint=False, task_id=None,
        port_sources=[res], gpus=None, command=None)
    assert base["MESOS_TASK_ID"] == "stale"  # the base is not changed
    assert "MESOS_TASK_ID" not in env and "MESOS_CHECKPOINT" not in env and "CUDA_VISIBLE_DEVICES" not in env
    assert (env["MESOS_AGENT_ID"], env["MESOS_CONTAINER_ID"], env["PORTS"]) == ("A", "C", "31000,31001")
    env = build_environment(
        base, cfg, agent_id="A", agent_pid="p", endpoint="h:1", framework_id="F", executor_id="T",
        container_id="C", directory="/s", checkpoint=True, task_id="T", port_sources=[], gpus=[1],
        command=None)
    assert (env["MESOS_TASK_ID"], env["MESOS_CHECKPOINT"], env["CUDA_VISIBLE_DEVICES"]) == ("T", "1", "1")
    assert command_argv(CommandInfo(value="echo hi")) == (None, ["/bin/sh", "-c", "echo hi"])
    assert limits_for(res, 1).mem_bytes == 64 * 1024 * 1024 + 1


def test_update_uuids_are_random_version_4_uuids():
    """The agent's update uuids (made without a UUID object) read back as RFC 4122 v4 UUIDs."""
    from mesos_nb.agent.task_status import update_uuid

    got = [update_uuid() for _ in range(1000)]
    assert len(set(got)) == 1000
    for b in got:
        u = uuid.UUID(bytes=b)
        assert len(b) == 16 and u.version == 4 and u.variant == uuid.RFC_4122

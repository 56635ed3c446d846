"""The launch path's overlaps: TASK_STARTING leaves the agent before the container is started
(its acknowledgement travels while the process starts), and a task that ended at the agent
gives its resources back to the master at once (Mesos' ``StatusUpdate.latest_state``), not
after the framework has acknowledged every update in between."""

from __future__ import annotations

from test_agent_integration import cluster, master, run_task  # noqa: F401 - fixtures
from test_agent_units import make, upd

from mesos_nb.master.harness import Harness
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources


def test_head_carries_the_newest_state_waiting_behind_it():
    mgr, sent, timers = make(10, 40)
    a, b, c = upd(state="TASK_STARTING"), upd(state="TASK_RUNNING"), upd(state="TASK_FINISHED")
    mgr.update(a)
    assert sent[-1] is a and a.latest_state is None  # nothing behind it
    mgr.update(b)
    mgr.update(c)
    assert mgr.acknowledge("fw1", "t1", a.status.uuid)
    assert sent[-1] is b and b.latest_state == "TASK_FINISHED"
    timers.advance(10)  # a retry says it too
    assert sent[-1] is b and len(sent) == 3 and b.latest_state == "TASK_FINISHED"
    assert mgr.acknowledge("fw1", "t1", b.status.uuid)
    assert sent[-1] is c and c.latest_state is None


def _cpus(offer) -> float:
    return Resources.from_proto(offer.resources).scalar("cpus")


def test_master_frees_a_task_ended_at_the_agent_before_the_framework_acknowledges():
    h = Harness.build(agents=1, frameworks=1)
    fw, agent = h.frameworks[0], h.agents[0]
    offer = h.allocate()[fw.id][0]
    total = _cpus(offer)
    h.launch(fw, offer, "t1", resources=f"cpus:{total};mem:32")

    def offered() -> float:
        return sum(_cpus(o) for o in h.allocate().get(fw.id, []))

    def update(state: str, uuid: bytes, latest: str | None = None) -> list:
        status = m.TaskStatus(task_id=m.ID(value="t1"), state=state, uuid=uuid, source="SOURCE_EXECUTOR")
        h.core.status_update(ch.StatusUpdate(agent_id=agent.id, framework_id=fw.id, status=status,
                                             latest_state=latest), h.now)
        return h.drain()

    assert offered() == 0  # all cpus taken
    update("TASK_STARTING", b"s" * 16)
    assert offered() == 0  # STARTING alone frees nothing
    h.acknowledge("t1")
    out = update("TASK_RUNNING", b"r" * 16, latest="TASK_FINISHED")
    assert [e.update.status.state for e in h.events(out, "UPDATE")] == ["TASK_RUNNING"]
    assert fw.tasks["t1"].state == "TASK_RUNNING"  # the framework's view follows its updates
    assert offered() == total  # offered again, RUNNING not acknowledged yet
    h.acknowledge("t1")
    out = update("TASK_FINISHED", b"f" * 16)
    assert [e.update.status.state for e in h.events(out, "UPDATE")] == ["TASK_FINISHED"]
    h.acknowledge("t1")
    assert "t1" not in fw.tasks and fw.completed_tasks[-1].state == "TASK_FINISHED"
    assert offered() == 0  # not given back a second time (the first offer still holds them)


async def test_task_starting_is_on_the_wire_before_the_container_starts(cluster):  # noqa: F811 - the fixture
    """Through the launcher helper (the default for a plain container): TASK_STARTING has been
    written to the channel by the time the helper reports the started child; the agent's loop
    wrote it while the helper forked."""
    fake_master, proc, agent = cluster
    launcher = agent.containerizer._launcher
    queued_at_start: list[list] = []
    dispatch = launcher._dispatch

    def observed(msg):
        if "pid" in msg:
            queued_at_start.append([m for m in proc._out if isinstance(m, ch.StatusUpdate)])
        return dispatch(msg)

    launcher._dispatch = observed  # type: ignore[method-assign]
    await fake_master.send(run_task(agent.agent_id, "t1", "true"))
    await fake_master.wait_state("t1", "TASK_RUNNING")
    assert queued_at_start == [[]]  # TASK_STARTING had been written already
    assert fake_master.states("t1")[:2] == ["TASK_STARTING", "TASK_RUNNING"]


async def test_task_starting_is_written_before_the_agents_own_popen_blocks(cluster, monkeypatch):  # noqa: F811
    """Without the helper the agent vforks itself (Popen holds its loop until the child execs):
    it lets the channel writer send TASK_STARTING first."""
    import subprocess

    fake_master, proc, agent = cluster
    agent.containerizer._launcher = None
    queued_at_popen: list[list] = []
    popen = subprocess.Popen

    def observed(*a, **kw):
        queued_at_popen.append([m for m in proc._out if isinstance(m, ch.StatusUpdate)])
        return popen(*a, **kw)

    monkeypatch.setattr(subprocess, "Popen", observed)
    await fake_master.send(run_task(agent.agent_id, "t2", "true"))
    await fake_master.wait_state("t2", "TASK_RUNNING")
    assert queued_at_popen == [[]]
    assert fake_master.states("t2")[:2] == ["TASK_STARTING", "TASK_RUNNING"]

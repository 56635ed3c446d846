"""The launch path's reliability rules, with command tasks started by the launcher helper: a
status update is checkpointed before it is sent, so one the framework never acknowledged is
sent again by a restarted agent (SIGKILLed in between), with the same uuid; once acknowledged it
is forgotten, and every task reaches exactly one terminal state."""

from __future__ import annotations

import os
import signal
from collections import defaultdict

from test_recovery import start_agent, stop_agent, until

from mesos_nb.master.harness import Harness
from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.messages import ID, CommandInfo, FrameworkInfo, TaskInfo, is_terminal
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler import Scheduler, SchedulerDriver


class HoldsFinal(Scheduler):
    """Launches ``n`` quick tasks; acknowledges every update except the terminal ones until
    ``release`` is set."""

    def __init__(self, n: int) -> None:
        self.to_launch = [f"q{i}" for i in range(n)]
        self.updates: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        self.held: dict[str, object] = {}
        self.release = False

    async def offers(self, driver, offers):
        for offer in offers:
            if not self.to_launch:
                await driver.decline([offer.id], refuse_seconds=60)
                continue
            infos = [TaskInfo(name=tid, task_id=ID(value=tid), agent_id=offer.agent_id,
                              resources=Resources.parse("cpus:0.1;mem:16").to_proto(),
                              command=CommandInfo(value="true")) for tid in self.to_launch]
            self.to_launch = []
            await driver.launch([offer.id], infos)

    async def update(self, driver, status):
        self.updates[status.task_id.value].append((status.state, status.uuid))
        if is_terminal(status.state) and not self.release:
            self.held[status.task_id.value] = status
            return
        await driver.acknowledge(status)

    def terminal(self, tid: str) -> list[tuple[str, bytes]]:
        return [u for u in self.updates.get(tid, []) if is_terminal(u[0])]


async def test_unacknowledged_update_survives_an_agent_sigkill_and_ends_once(tmp_path):
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1, agent_ping_timeout=1.0,
                                       max_agent_ping_timeouts=60))
    await master.start()
    sched = HoldsFinal(3)
    fw = FrameworkInfo(user="", name="reliability", checkpoint=True, failover_timeout=300)
    driver = SchedulerDriver(sched, fw, master.address, implicit_acknowledgements=False)
    work, log = tmp_path / "agent", tmp_path / "agent.log"
    agent = start_agent(master.address, work, log)
    tids = ["q0", "q1", "q2"]
    try:
        await driver.start()
        await until(lambda: all(sched.terminal(t) for t in tids), 60, "three tasks finished, final updates held")
        first = {t: sched.terminal(t) for t in tids}
        assert all(len(v) == 1 and v[0][0] == "TASK_FINISHED" for v in first.values()), first
        # Sent, so persisted first: each task's update stream is on disk, its final update unacked.
        assert len(list((work / "meta").rglob("task.updates"))) == 3
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        agent = start_agent(master.address, work, log)
        # The restarted agent reads its checkpoint and sends each held update again, same uuid.
        await until(lambda: all(len(sched.terminal(t)) >= 2 for t in tids), 30,
                    lambda: f"final updates re-sent: {dict(sched.updates)}")
        for t in tids:
            assert {u for u in sched.terminal(t)} == set(first[t]), sched.updates[t]
        sched.release = True
        for status in sched.held.values():
            await driver.acknowledge(status)
        # Acknowledged: the agent forgets the streams (checkpoints removed), nothing more comes.
        await until(lambda: not list((work / "meta").rglob("task.updates")), 30, "streams acknowledged")
        for t in tids:
            states = [s for s, _ in sched.updates[t]]
            assert states[:2] == ["TASK_STARTING", "TASK_RUNNING"], states
            assert {u for u in sched.terminal(t)} == set(first[t])  # one terminal state, one uuid
    finally:
        await driver.stop()
        stop_agent(agent)
        await master.stop()


def test_master_completes_a_task_only_when_its_terminal_update_is_acknowledged():
    """A restarted agent resends an older update (RUNNING) of a task the master knows ended:
    the framework's ack of that one must not complete the task, or the master would answer the
    resent terminal update itself and the framework would never get it."""
    h = Harness.build(agents=1, frameworks=1)
    fw, agent = h.frameworks[0], h.agents[0]
    h.launch(fw, h.allocate()[fw.id][0], "t1", resources="cpus:0.1;mem:16")

    def update(state: str, uuid: bytes) -> list[str]:
        status = m.TaskStatus(task_id=m.ID(value="t1"), state=state, uuid=uuid, source="SOURCE_EXECUTOR")
        h.core.status_update(ch.StatusUpdate(agent_id=agent.id, framework_id=fw.id, status=status), h.now)
        return [e.update.status.state for e in h.events(h.drain(), "UPDATE")]

    update("TASK_RUNNING", b"r" * 16)
    h.acknowledge("t1")
    assert update("TASK_FINISHED", b"f" * 16) == ["TASK_FINISHED"]  # not acknowledged: agent crashes
    assert update("TASK_RUNNING", b"r" * 16) == ["TASK_RUNNING"]  # resent after its restart
    h.acknowledge("t1")
    assert "t1" in fw.tasks  # not completed by a RUNNING ack
    assert update("TASK_FINISHED", b"f" * 16) == ["TASK_FINISHED"]  # forwarded, not answered
    h.acknowledge("t1")
    assert "t1" not in fw.tasks and fw.completed_tasks[-1].state == "TASK_FINISHED"


def test_update_records_are_appended_and_a_torn_last_line_is_dropped_then_rewritten(tmp_path):
    """``task.updates`` grows by one fdatasync'd line per record (the file is not replaced); a
    crash mid-write tears only the last line: recovery skips it, and the first write after
    recovery rewrites the stream whole, so the torn bytes never glue onto a new record."""
    from test_agent_units import upd

    from mesos_nb.agent import checkpoint as ckpt

    d = tmp_path / "tasks" / "t1"
    d.mkdir(parents=True)
    (d / "task.info").write_bytes(m.encode(m.TaskInfo(name="t1", task_id=m.ID(value="t1"), agent_id=m.ID(value="A"))))
    store = ckpt.DiskUpdateStore(lambda fw, task: str(d))
    a, b = upd(state="TASK_STARTING"), upd(state="TASK_RUNNING")
    store.append(a)
    inode = (d / "task.updates").stat().st_ino
    store.acknowledge("fw1", "t1", a.status.uuid)
    store.append(b)
    assert (d / "task.updates").stat().st_ino == inode  # appended, not rewritten
    assert len((d / "task.updates").read_bytes().splitlines()) == 3
    with open(d / "task.updates", "ab") as f:
        f.write(b'{"update":{"task_id":{"val')  # the crash
    back = ckpt._read_task(str(d))
    assert [u.state for u in back.unacked()] == ["TASK_RUNNING"] and len(back.records) == 3
    store = ckpt.DiskUpdateStore(lambda fw, task: str(d))  # the restarted agent
    store.load("fw1", "t1", back.records)
    store.acknowledge("fw1", "t1", b.status.uuid)
    again = ckpt._read_task(str(d))
    assert len(again.records) == 4 and again.unacked() == []  # clean: nothing torn left in it

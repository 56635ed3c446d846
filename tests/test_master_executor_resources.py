"""A custom executor's own resources in the master (Mesos): allocated from the launch of its
first task until the executor ends, however many of its tasks come and go meanwhile; each
task's resources go back at that task's terminal update. Driven through the real core (harness).
"""

from __future__ import annotations

from mesos_nb.master.harness import Harness
from mesos_nb.protocol import channel as ch
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources

EXECUTOR = "cpus:0.5;mem:128"
TASK = "cpus:0.25;mem:64"


def executor_info(ex_id: str = "warm-1") -> m.ExecutorInfo:
    return m.ExecutorInfo(executor_id=m.ID(value=ex_id), command=m.CommandInfo(value="run-executor"),
                          resources=Resources.parse(EXECUTOR).to_proto())


def task_info(task_id: str, agent_id: m.ID, ex: m.ExecutorInfo | None) -> m.TaskInfo:
    return m.TaskInfo(name=task_id, task_id=m.ID(value=task_id), agent_id=agent_id,
                      resources=Resources.parse(TASK).to_proto(), executor=ex)


def accept(h: Harness, fw, offer: m.Offer, op: m.Operation) -> list:
    h.core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[op], filters=m.Filters(refuse_seconds=0)),
                  h.now)
    return h.drain()


def launch(h: Harness, fw, offer: m.Offer, *task_ids: str, ex: m.ExecutorInfo | None = None) -> list:
    ex = ex or executor_info()
    infos = [task_info(t, offer.agent_id, ex) for t in task_ids]
    return accept(h, fw, offer, m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos)))


def offered(h: Harness) -> Resources:
    """What the next allocation offers of the one agent (all of it to the one framework)."""
    offers = h.allocate()
    total = Resources()
    for o in offers.get(h.frameworks[0].id, []):
        total = total + Resources.from_proto(o.resources)
    for fw_offers in offers.values():  # hand them back so the next look sees the same
        h.decline(h.frameworks[0], fw_offers, refuse_seconds=0)
    return total


def used(h: Harness) -> tuple[Resources, Resources]:
    """The framework's and the agent's resources in use, as the master's views sum them."""
    from mesos_nb.master.operator_views import StateView

    view = StateView(h.core)
    fw, agent = h.frameworks[0], h.agents[0]
    return view._fw_allocated.get(fw.id, Resources()), view._allocated.get(agent.id, Resources())


def finish(h: Harness, task_id: str) -> None:
    h.update(task_id, "TASK_FINISHED")
    h.acknowledge(task_id)


def executor_exits(h: Harness, ex_id: str = "warm-1") -> list:
    fw, agent = h.frameworks[0], h.agents[0]
    h.core.executor_exited(ch.ExecutorExited(agent_id=agent.id, framework_id=fw.id, executor_id=ex_id, status=0))
    return h.drain()


def test_the_executor_keeps_its_resources_after_its_first_task_ends_until_it_exits():
    h = Harness.build(resources="cpus:2;mem:1024")
    fw = h.frameworks[0]
    offer = h.allocate()[fw.id][0]
    launch(h, fw, offer, "cell-1")
    assert used(h) == (Resources.parse("cpus:0.75;mem:192"),) * 2  # executor + its first task
    h.update("cell-1", "TASK_RUNNING")
    finish(h, "cell-1")
    # the executor still runs: its own resources stay allocated, not offered
    assert used(h) == (Resources.parse(EXECUTOR),) * 2
    assert offered(h) == Resources.parse("cpus:1.5;mem:896")
    assert h.core.frameworks[fw.id].tasks == {}
    # a second task into the running executor takes only its own share, and gives it back
    offer = h.allocate()[fw.id][0]
    launch(h, fw, offer, "cell-2")
    assert used(h)[0] == Resources.parse("cpus:0.75;mem:192")
    finish(h, "cell-2")
    assert used(h)[0] == Resources.parse(EXECUTOR)
    assert offered(h) == Resources.parse("cpus:1.5;mem:896")
    # the executor ends: now its resources go back
    failures = h.events(executor_exits(h), "FAILURE")
    assert failures and failures[0].failure.executor_id.value == "warm-1"
    assert used(h) == (Resources(), Resources())
    assert offered(h) == Resources.parse("cpus:2;mem:1024")


def test_tasks_of_one_launch_starting_one_executor_charge_it_once():
    h = Harness.build(resources="cpus:2;mem:1024")
    fw = h.frameworks[0]
    launch(h, fw, h.allocate()[fw.id][0], "a", "b", "c")
    assert used(h)[0] == Resources.parse("cpus:1.25;mem:320")  # 0.5+3*0.25, 128+3*64
    for t in ("a", "b", "c"):
        finish(h, t)
    assert used(h)[0] == Resources.parse(EXECUTOR)
    executor_exits(h)
    assert offered(h) == Resources.parse("cpus:2;mem:1024")


def test_a_task_group_charges_its_executor_once():
    h = Harness.build(resources="cpus:2;mem:1024")
    fw = h.frameworks[0]
    offer = h.allocate()[fw.id][0]
    ex = executor_info("group-ex")
    group = m.LaunchGroup(executor=ex, task_group=m.TaskGroupInfo(
        tasks=[task_info(t, offer.agent_id, None) for t in ("g1", "g2")]))
    accept(h, fw, offer, m.Operation(type="LAUNCH_GROUP", launch_group=group))
    assert used(h)[0] == Resources.parse("cpus:1;mem:256")
    finish(h, "g1")
    finish(h, "g2")
    assert used(h)[0] == Resources.parse(EXECUTOR)
    executor_exits(h, "group-ex")
    assert used(h)[0] == Resources()


def test_an_executor_exit_the_master_no_longer_knows_gives_nothing_back_twice():
    h = Harness.build(resources="cpus:2;mem:1024")
    fw = h.frameworks[0]
    launch(h, fw, h.allocate()[fw.id][0], "cell-1")
    finish(h, "cell-1")
    executor_exits(h)
    executor_exits(h)  # a repeated report
    assert offered(h) == Resources.parse("cpus:2;mem:1024")

"""The SDK's task pool (``mesos_nb.scheduler.pool.TaskPool``) against a real local cluster: the
features the notebook's framework needs from it — offer holds that keep the framework from
SUPPRESSing, a task pinned to a held offer, the per-task sentence saying why a task waits, and
a placer (tasks of another kind) placed on the same offers — and the notebook's framework
being such a pool."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import cluster_thread, get_json, wait_for

from mesos_nb.protocol.messages import ID, Offer, TaskInfo
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler.pool import TaskHandle, TaskPool, TaskSpec
from mesos_nb.scheduler.tasks import command_info, offer_role, take_from

AGENT = "cpus:2;mem:1024;disk:1024"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with cluster_thread(tmp_path_factory.mktemp("pool-cluster"), 2, AGENT) as ct:
        yield ct


@pytest.fixture
def pool(cluster):
    p = TaskPool(cluster.master_url, "pool-test")
    p.start()
    try:
        yield p
    finally:
        p.stop(teardown=True)


def suppressed(cluster: Any, framework_id: str | None) -> list[str] | None:
    fws = get_json(cluster.master_url + "/master/state")["frameworks"]
    return next((f["suppressed_roles"] for f in fws if f["id"] == framework_id), None)


def test_holds_keep_offers_and_the_framework_unsuppressed_a_pinned_task_uses_one(pool, cluster):
    wait_for(lambda: suppressed(cluster, pool.framework_id) == ["*"], 30,
             message="an idle pool SUPPRESSes its offers")
    pool.hold_offers(True)  # REVIVE: offers come and are kept, not declined
    wait_for(lambda: len({o.agent_id.value for o in pool.held_offers()}) == 2, 30,
             message="offers from both agents held")
    assert suppressed(cluster, pool.framework_id) == []
    chosen = pool.held_offers()[0]
    task = pool.submit(TaskSpec("echo pinned", cpus=0.1, mem=32, name="pinned", offer_id=chosen.id.value))
    assert task.wait_for({"TASK_FINISHED"}, 60)
    assert task.agent_id == chosen.agent_id.value and chosen.id.value not in pool.held
    assert suppressed(cluster, pool.framework_id) == []  # still holding: never SUPPRESSed
    pool.hold_offers(False)  # the last hold ends: every offer goes back, and the pool is idle
    assert pool.held == {}
    wait_for(lambda: suppressed(cluster, pool.framework_id) == ["*"], 10, message="SUPPRESSed again")


def test_without_suppress_when_idle_the_pool_never_suppresses(cluster):
    p = TaskPool(cluster.master_url, "no-suppress", suppress_when_idle=False)
    p.start()
    try:
        wait_for(lambda: p.offers_seen > 0, 30, message="offers came")
        p.refresh_waiting()
        assert suppressed(cluster, p.framework_id) == [] and p.held == {}  # declined, not suppressed
    finally:
        p.stop(teardown=True)


def test_each_waiting_task_says_why_with_the_largest_offer(pool):
    big = pool.submit(TaskSpec("true", cpus=3, mem=32, name="big"))
    small = pool.submit(TaskSpec("true", cpus=0.1, mem=32, name="small"))
    assert small.wait_for({"TASK_FINISHED"}, 60)
    wait_for(lambda: (big.waiting or "").startswith("no offer fits"), 30,
             message=lambda: f"a reason for the big task (last: {big.waiting})")
    assert re.fullmatch(r"no offer fits: requested cpus 3, mem 32; the largest of \d offers has "
                        r"cpus [\d.]+, mem [\d.]+ \(on 127\.0\.0\.1\)", big.waiting), big.waiting
    assert big.state == "PENDING" and small.waiting is None
    assert pool.status()["waiting"].startswith("no offer fits") and pool.why_waiting == pool.status()["waiting"]
    pool.kill(big.id)
    wait_for(lambda: big.state == "TASK_KILLED", 10, message="the waiting task dropped")
    assert big.message == "killed before it was launched"


class OnAgent:
    """A placer of tasks that must run on one agent: a task of another kind than the pool's
    command tasks, as the notebook's warm executors are."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.pending: list[TaskHandle] = []
        self.failed = 0
        self.keep = False  # keep the agent's unused offers (as a warm executor does for its next cell)

    def match(self, offer: Offer, have: Resources, framework_id: str | None) -> list[tuple[TaskInfo, TaskHandle]]:
        out = []
        for task in list(self.pending):
            res = take_from(have, offer_role(offer), task.spec.amounts) if offer.agent_id.value == self.agent_id else None
            if res is None:
                continue
            have = have - res
            self.pending.remove(task)
            out.append((TaskInfo(name=task.spec.name, task_id=ID(value=task.id), agent_id=offer.agent_id,
                                 resources=res.to_proto(offer_role(offer)),
                                 command=command_info(str(task.spec.cmd))), task))
        return out

    def launch_failed(self, launches: list[tuple[TaskInfo, TaskHandle]]) -> None:
        self.failed += 1
        self.pending.extend(t for _, t in launches)

    def keeps(self, offer: Offer) -> bool:
        return self.keep and offer.agent_id.value == self.agent_id


def test_a_placer_places_its_tasks_on_the_same_offers(pool, cluster):
    agents = [a["id"] for a in get_json(cluster.master_url + "/master/state")["slaves"]]
    placer = OnAgent(agents[1])
    pool.placers.append(placer)
    tasks = [TaskHandle(f"placed-{i}", TaskSpec("true", cpus=0.1, mem=16, name="placed")) for i in range(3)]
    for t in tasks:
        pool._run(pool._enqueue(t, placer))
    for t in tasks:
        assert t.wait_for({"TASK_FINISHED"}, 60), t
    assert {t.agent_id for t in tasks} == {agents[1]} and placer.failed == 0
    assert all(pool.tasks[t.id] is t for t in tasks)


def test_offers_a_placer_keeps_go_back_on_a_heartbeat_once_it_stops_keeping_them(cluster):
    agents = [a["id"] for a in get_json(cluster.master_url + "/master/state")["slaves"]]
    placer = OnAgent(agents[0])
    placer.keep = True
    # declined offers stay away for 120 s: no offer of the other agent comes back to start a round
    pool = TaskPool(cluster.master_url, "keeper", idle_refuse=120)
    pool.placers.append(placer)
    pool.start()
    try:
        kept_offers_go_back_on_a_heartbeat(pool, placer, agents, cluster)
    finally:
        pool.stop(teardown=True)


def kept_offers_go_back_on_a_heartbeat(pool: TaskPool, placer: OnAgent, agents: list[str], cluster: Any) -> None:
    pool.hold_offers(True)
    wait_for(lambda: len({o.agent_id.value for o in pool.held_offers()}) == 2, 30, message="offers from both agents")
    pool.hold_offers(False)  # the other agent's offers go back; the kept agent's stay
    assert {o.agent_id.value for o in pool.held_offers()} == {agents[0]}
    assert suppressed(cluster, pool.framework_id) == []  # something is held: not idle
    placer.keep = False  # no other offer comes to trigger a round: the master's heartbeat does
    wait_for(lambda: not pool.held_offers() and suppressed(cluster, pool.framework_id) == ["*"], 40,
             message="the kept offers given back and the pool SUPPRESSed")


def test_the_notebook_framework_is_a_task_pool_and_suppresses_only_when_idle(cluster, tmp_path, monkeypatch):
    """On main the notebook had its own offer handling: it never SUPPRESSed (an idle notebook
    was offered the cluster again every 30 s). As a pool it SUPPRESSes when idle, but not while
    an offer browser holds offers."""
    pytest.importorskip("ipywidgets")
    from mesos_nb.notebook.framework import NotebookFramework
    from mesos_nb.notebook.offers import OfferBrowser

    monkeypatch.setenv("HOME", str(tmp_path))
    fw = NotebookFramework(cluster.master_url, name="nb-pool-test")
    fw.start()
    try:
        wait_for(lambda: suppressed(cluster, fw.framework_id) == ["*"], 30, message="idle notebook SUPPRESSed")
        browser = OfferBrowser(fw)
        try:
            browser.wait(30, count=2)
            assert len(browser.offers) == 2 and suppressed(cluster, fw.framework_id) == []
            task = browser.launch(browser.offers[0].id.value, "echo from the browser")
            assert task.wait(60).state == "TASK_FINISHED"
            assert fw.status()["finished"] == 1  # the pool's counts, for the notebook's tasks too
        finally:
            browser.close()
        # close() gives the holds back at once; the SUPPRESS that follows is a call in flight
        assert fw.held == {}
        wait_for(lambda: suppressed(cluster, fw.framework_id) == ["*"], 30,
                 message="the notebook SUPPRESSed again once the browser closed")
        assert isinstance(fw, TaskPool)
    finally:
        fw.close(teardown=True)


def test_waiting_reasons_name_the_pinned_offer_the_attributes_the_role_and_the_time_waited():
    """The sentences the notebook has always shown, now said by the pool for every framework."""
    from test_cli_client import offer

    from mesos_nb.notebook.display import amounts_text as nb_text
    from mesos_nb.scheduler.matcher import waiting_reason

    held = {"o1": offer("o1", cpus=0.5, mem=100, attrs={"rack": "a"}), "o2": offer("o2", cpus=1.25, mem=64)}
    spec = TaskSpec("x", cpus=2, mem=64)
    assert waiting_reason(spec, held, 0.5, text=nb_text) == \
        "no offer fits: requested cpus 2, mem 64; the largest of 2 offers has cpus 1.25, mem 64 (on h1)"
    assert waiting_reason(spec, {}, 1.0, text=nb_text) == "requested cpus 2, mem 64; waiting for an offer"
    assert waiting_reason(spec, {}, 7.2, "role 'ml' is at its quota limit", nb_text) == \
        "requested cpus 2, mem 64; no offer for 7 s: role 'ml' is at its quota limit"
    assert waiting_reason(TaskSpec("x", cpus=0.1, constraints={"rack": "b"}), held, 9) == \
        "no offer fits: none of the 2 offers is from an agent with rack=b"
    assert waiting_reason(TaskSpec("x", offer_id="gone"), held, 9) == \
        "offer gone is no longer held (declined, used or rescinded)"
    assert waiting_reason(TaskSpec("x", cpus=4, offer_id="o1"), held, 9) == "offer o1 does not hold cpus 4, mem 256"
    assert "requested cpus 1, mem 256, ports 3;" in waiting_reason(TaskSpec("x", ports=3), held, 9)

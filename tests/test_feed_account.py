"""The utilization feed's snapshot from its kept account (feed_account.py) equals the one built
from every task, after any sequence of changes; after a change only the changed parts are
summed again and only the rows of the agents whose figures changed are rebuilt."""

from __future__ import annotations

import random

import pytest

from bench.feed_reference import full_build
from mesos_nb.master import feed as feed_mod
from mesos_nb.master.feed import UtilizationFeed
from mesos_nb.master.harness import Harness
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources

STATES = ("TASK_RUNNING", "TASK_RUNNING", "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST")


class _View:
    def __init__(self, core) -> None:  # type: ignore[no-untyped-def]
        self.core = core


def _launch(h: Harness, fw, offer: m.Offer, names: list[str], res: str) -> None:  # type: ignore[no-untyped-def]
    infos = [m.TaskInfo(name=n, task_id=m.ID(value=n), agent_id=offer.agent_id,
                        resources=Resources.parse(res).to_proto(), command=m.CommandInfo(value="true"))
             for n in names]
    op = m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos))
    h.core.accept(fw.id, m.Accept(offer_ids=[offer.id], operations=[op]), h.now)
    h.drain()


def _plain(snap: dict) -> dict:
    return {k: v for k, v in snap.items() if k not in ("time", "recent")}


def _events(snap: dict) -> list[tuple]:
    return [(c["task_id"], c["state"], c["time"], c["framework_id"], c["seq"]) for c in snap["recent"]]


class _Run:
    """A random cluster history, step by step."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.h = Harness.build(agents=12, frameworks=3, resources="cpus:8;mem:4096;disk:100",
                               attrs={"rack": "r1"})
        self.n = 0

    def live(self) -> list:  # type: ignore[type-arg]
        return [t for fw in self.h.core.frameworks.values() for t in fw.tasks.values()]

    def step(self) -> None:
        h, rnd = self.h, self.rnd
        h.now += rnd.choice((0.0, 0.5, 1.0))
        op = rnd.random()
        if op < 0.35:
            offers = h.allocate()
            for fw in h.core.frameworks.values():
                for offer in offers.get(fw.id, []):
                    k = rnd.randint(0, 3)
                    names = [f"t{self.n + i}" for i in range(k)]
                    self.n += k
                    res = rnd.choice(("cpus:1;mem:32", "cpus:0.5;mem:100;disk:3", "cpus:0.25;mem:1.5"))
                    if names:
                        _launch(h, fw, offer, names, res)
                    else:
                        h.decline(fw, [offer], refuse_seconds=0.0)
        elif op < 0.75:
            tasks = [t for t in self.live() if t.state not in m.TERMINAL_STATES]
            if tasks:
                h.update(rnd.choice(tasks).id, rnd.choice(STATES))
        elif op < 0.9:
            tasks = [t for t in self.live() if t.unacked is not None]
            if tasks:
                h.acknowledge(rnd.choice(tasks).id)
        elif op < 0.95:
            h.add_agent("cpus:4;mem:2048", {"rack": rnd.choice(("r1", "r2"))} if rnd.random() < 0.5 else None)
        elif op < 0.98 and len(h.core.frameworks) > 1:
            h.core.teardown(rnd.choice(list(h.core.frameworks)), h.now)
            h.drain()
        else:
            agent = rnd.choice(list(h.core.agents.values()))
            h.core.remove_agent(agent.id, h.now, "AGENT_REMOVED", "gone")
            h.drain()


@pytest.mark.parametrize("seed", range(6))
def test_the_kept_account_gives_the_snapshot_built_from_every_task(seed: int, monkeypatch):
    monkeypatch.setattr(feed_mod, "THROTTLE_ABOVE", 1e9)
    monkeypatch.setattr(feed_mod, "STEP_ITEMS", 7)  # many steps, as at scale
    monkeypatch.setattr(feed_mod, "STEP_AGENTS", 3)
    run = _Run(seed)
    feed = UtilizationFeed(_View(run.h.core), collect=False)  # type: ignore[arg-type]
    ref = UtilizationFeed(_View(run.h.core), collect=False)  # type: ignore[arg-type]
    for i in range(80):
        run.step()
        if i % 7 == 3:  # the agents' usage as sampled
            a = run.rnd.choice(list(run.h.core.agents))
            feed.ingest(a, [{"framework_id": "f", "executor_id": "e",
                             "statistics": {"timestamp": float(i), "cpus_user_time_secs": float(i),
                                            "mem_rss_bytes": (i % 3) << 20}}])
            feed.samples += 1  # as the sampling loop does after a round
        if run.rnd.random() < 0.6:  # not after every change: several changes between snapshots
            ref.usage, ref.samples = feed.usage, feed.samples
            got = feed._snapshot(None)
            want = full_build(ref)
            assert _plain(got) == _plain(want), f"seed {seed} step {i}"
            assert _events(got) == _events(want)
    assert run.n > 20 and feed._account.blocks_made > 0


def test_after_one_task_change_one_block_is_summed_and_one_agent_row_rebuilt(monkeypatch):
    monkeypatch.setattr(feed_mod, "THROTTLE_ABOVE", 1e9)  # every change rebuilds (no reuse for 10x its cost)
    h = Harness.build(agents=200, frameworks=1, resources="cpus:16;mem:4096")
    fw = h.frameworks[0]
    for i, offer in enumerate(h.allocate()[fw.id]):
        _launch(h, fw, offer, [f"t{i}-{j}" for j in range(10)], "cpus:1;mem:64")
    feed = UtilizationFeed(_View(h.core), collect=False)  # type: ignore[arg-type]
    first = feed._snapshot(None)
    assert first["tasks"]["active"] == 2000 and feed.rows_built == 200
    blocks, rows = feed._account.blocks_made, feed.rows_built
    task = h.core.frameworks[fw.id].tasks["t7-3"]
    h.update("t7-3", "TASK_FINISHED")
    snap = feed._snapshot(None)
    assert feed._account.blocks_made - blocks <= 2  # the block holding the task (a cut may move)
    assert feed.rows_built - rows == 1  # its agent's row only
    row = next(a for a in snap["agents"] if a["id"] == task.agent_id)
    assert row["tasks"] == 9 and row["allocated"]["cpus"] == 9.0
    assert snap["tasks"]["counts"]["TASK_FINISHED"] == 1
    assert [c["task_id"] for c in snap["recent"][-1:]] == ["t7-3"]
    ref = UtilizationFeed(_View(h.core), collect=False)  # type: ignore[arg-type]
    assert _plain(snap) == _plain(full_build(ref))

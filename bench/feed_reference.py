"""The utilization snapshot built in one go from every task: the reference that the feed's kept
account (``mesos_nb/master/feed_account.py``) must equal (``tests/test_feed_account.py``), and
what the account saves (``bench/dashboard_scale.py``'s ``snapshot_build_s_median`` row).

Not the master's code: the master builds its snapshots from the account only. The rows, the
offers and the finished document are the feed's own (``UtilizationFeed._agent_row``,
``_offers_steps``, ``_finish``); what differs is only how the running tasks are summed, here
every task every time, and the timeline, read from every task (``Timeline.scan_steps``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mesos_nb.master import feed as feed_mod
from mesos_nb.master.feed import UtilizationFeed
from mesos_nb.master.feed_account import add_into, sum_running
from mesos_nb.master.slices import run_all


def full_build(feed: UtilizationFeed) -> dict[str, Any]:
    """A snapshot built in one go from every task (tools and tests)."""
    return run_all(full_steps(feed))


def full_steps(feed: UtilizationFeed) -> Generator[None, None, dict[str, Any]]:
    """:func:`full_build` in loop steps (``feed.STEP_ITEMS`` tasks, ``feed.STEP_AGENTS`` agents)."""
    step_items, step_agents = feed_mod.STEP_ITEMS, feed_mod.STEP_AGENTS
    core = feed.master.core
    yield from feed.timeline.scan_steps(core, step_items)
    per_agent: dict[str, list[int]] = {}  # [cpus, mem, disk, gpus] thousandths, running tasks
    counts: dict[str, int] = {}
    shares = core.allocator.shares()
    frameworks = []
    for fw in list(core.frameworks.values()):
        tasks = list(fw.tasks.values())
        fw_alloc, n = [0, 0, 0, 0], 0
        for a in range(0, len(tasks), step_items):  # a slice of tasks per step
            chunk = tasks[a:a + step_items]
            states = [t.state for t in chunk]
            for st in states:
                counts[st] = counts.get(st, 0) + 1
            by_agent, alloc, k = sum_running(chunk, states)
            add_into(per_agent, by_agent)
            fw_alloc = [x + y for x, y in zip(fw_alloc, alloc, strict=True)]
            n += k
            yield
        for t in fw.completed_tasks:
            counts[t.state] = counts.get(t.state, 0) + 1
        frameworks.append(feed_mod._framework_row(fw, fw_alloc, n, shares))
    offered_per_agent, offered = yield from feed._offers_steps({})
    rows, keys = [], []
    for i, a in enumerate(list(core.agents.values())):
        if i and not i % step_agents:
            yield
        rows.append(feed._agent_row(a, per_agent.get(a.id), offered_per_agent.get(a.id)))
        keys.append(feed_mod._group_key(a))
    active = sum(v[4] for v in per_agent.values())
    return feed._finish(rows, keys, frameworks, counts, active, offered, shares)

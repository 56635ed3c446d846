"""Web UI and utilization feed at scale: 1,000 emulated agents, 10,000 tasks.

Agents are registered directly with the master's ``MasterCore`` (one fake channel, many
REGISTER messages), tasks are launched through the core's offer/accept path and moved to
RUNNING with status updates; the real ``MasterServer`` serves the HTTP side. Measured:

* the feed's snapshot build (in-process, cold: version changed) and ``GET /master/utilization``;
* the web UI's pieces: ``GET /``, ``/master/ui/plots`` (Bokeh json_item), the first table pages;
* with Chromium (``/usr/bin/chromium``, Playwright): first contentful paint and the time until
  the tables and the plots are on screen, from navigation start.

    python bench/webui_scale.py [--agents 1000] [--tasks 10000] [--frameworks 10] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mesos_nb.master.core import ToFramework  # noqa: E402
from mesos_nb.master.server import MasterConfig, MasterServer  # noqa: E402
from mesos_nb.protocol import channel as ch  # noqa: E402
from mesos_nb.protocol import messages as m  # noqa: E402
from mesos_nb.protocol.resources import Resources  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class _NullChannel:
    def send(self, msg) -> None:
        pass


def populate(core, agents: int = 1000, tasks: int = 10000, frameworks: int = 10,
             agent_resources: str = "cpus:16;mem:65536;disk:100000", finished_every: int = 5,
             now: float | None = None) -> dict[str, int]:
    """Register ``agents`` agents (unreachable port 9) and launch ``tasks`` tasks through the
    core, RUNNING (every ``finished_every``-th one FINISHED). Returns counts."""
    now = now or time.time()
    chan = _NullChannel()
    res = Resources.parse(agent_resources).to_proto()
    for i in range(agents):
        core.register_agent(ch.RegisterAgent(key=f"k{i}", hostname=f"10.{i // 250}.{i % 250}.1", port=9,
                                             resources=res), chan, now)
    fws = []
    for j in range(frameworks):
        info = m.FrameworkInfo(user="bench", name=f"bench-{j}", failover_timeout=3600)
        fws.append(core.subscribe(m.Subscribe(framework_info=info), f"s{j}", now))
    core.out = []
    launched = 0
    per_offer = max(1, -(-tasks // agents))
    task_res = Resources.parse("cpus:0.1;mem:32").to_proto()
    rounds = 0
    while launched < tasks and rounds < 50:
        rounds += 1
        core.allocate(now)
        offers = [o for e in core.out if type(e) is ToFramework and e.event.type == "OFFERS"
                  for o in e.event.offers.offers]
        core.out = []
        for offer in offers:
            n = min(per_offer, tasks - launched)
            infos = [m.TaskInfo(name=f"t{launched + k}", task_id=m.ID(value=f"task-{launched + k:06d}"),
                                agent_id=offer.agent_id, resources=task_res,
                                command=m.CommandInfo(value="sleep 3600")) for k in range(n)]
            ops = [m.Operation(type="LAUNCH", launch=m.Launch(task_infos=infos))] if n else []
            core.accept(offer.framework_id.value, m.Accept(offer_ids=[offer.id], operations=ops,
                                                           filters=m.Filters(refuse_seconds=0)), now)
            launched += n
        core.out = []
    finished = 0
    for fw in fws:
        for k, t in enumerate(list(fw.tasks.values())):
            for state in ("TASK_STARTING", "TASK_RUNNING"):
                core.status_update(ch.StatusUpdate(agent_id=t.agent_id, framework_id=fw.id, status=m.TaskStatus(
                    task_id=m.ID(value=t.id), state=state, timestamp=now)), now)
            if finished_every and k % finished_every == 0:
                core.status_update(ch.StatusUpdate(agent_id=t.agent_id, framework_id=fw.id, status=m.TaskStatus(
                    task_id=m.ID(value=t.id), state="TASK_FINISHED", timestamp=now + 1)), now + 1)
                finished += 1
        core.out = []
    return {"agents": len(core.agents), "tasks": launched, "finished": finished, "frameworks": len(fws)}


def _get(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - t0, body


async def timed_get(url: str, repeat: int = 5) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        dt, body = await asyncio.to_thread(_get, url)
        times.append(dt)
        size = len(body)
    return statistics.median(times), max(times), size


async def browser_paint(url: str) -> dict[str, float] | None:
    if not os.path.exists(CHROMIUM):
        return None
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        return None
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            out: dict[str, float] = {}
            for _attempt in range(3):  # the last of three loads (warm browser cache)
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                await page.goto(url + "/", wait_until="commit")
                await page.wait_for_function(
                    "performance.getEntriesByName('mesos-tables').length && performance.getEntriesByName('mesos-plots').length",
                    timeout=60000)
                marks = await page.evaluate("""() => {
                    const at = (n, t) => (performance.getEntriesByName(n, t)[0] || {startTime: -1}).startTime / 1000;
                    return {fcp: at('first-contentful-paint', 'paint'), tables: at('mesos-tables'), plots: at('mesos-plots'),
                            rows: document.querySelectorAll('#tasks-table tbody tr').length};
                }""")
                out = {"first_contentful_paint_s": marks["fcp"], "tables_rendered_s": marks["tables"],
                       "plots_rendered_s": marks["plots"]}
                assert marks["rows"] > 0
                await page.close()
            return out
        finally:
            await browser.close()


async def run(args) -> dict[str, object]:
    server = MasterServer(MasterConfig(port=0, allocation_interval=1.0))
    await server.start()
    try:
        t0 = time.perf_counter()
        counts = populate(server.core, args.agents, args.tasks, args.frameworks)
        populate_s = time.perf_counter() - t0
        feed = server.webui.feed
        builds = []
        for _ in range(5):
            server.core.version += 1  # force a cold build
            t0 = time.perf_counter()
            feed.snapshot()
            builds.append(time.perf_counter() - t0)
        url = server.url
        server.core.version += 1
        res: dict[str, object] = {"counts": counts, "populate_s": round(populate_s, 2),
                                  "snapshot_build_s_median": round(statistics.median(builds), 4),
                                  "snapshot_build_s_max": round(max(builds), 4)}
        for name, path in (("utilization_default", "/master/utilization"),
                           ("utilization_all_agents", "/master/utilization?agents=all"),
                           ("index_html", "/"), ("ui_plots", "/master/ui/plots"),
                           ("ui_agents_page", "/master/ui/agents?offset=0&limit=25"),
                           ("ui_tasks_page", "/master/ui/tasks?offset=0&limit=25"),
                           ("ui_tasks_filtered", "/master/ui/tasks?q=task-0099&state=TASK_RUNNING"),
                           ("master_state", "/master/state")):
            med, worst, size = await timed_get(url + path, repeat=args.repeat)
            res[name] = {"median_s": round(med, 4), "max_s": round(worst, 4), "bytes": size}
        if not args.no_browser:
            paint = await browser_paint(url)
            res["browser"] = {k: round(v, 3) for k, v in paint.items()} if paint else "chromium/playwright not available"
        return res
    finally:
        await server.stop()


def scale_parser(doc: str, agents: int, tasks: int, repeat: int) -> argparse.ArgumentParser:
    """The options of the benchmarks that ``populate()`` a master: its size, repeats, browser."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--agents", type=int, default=agents)
    p.add_argument("--tasks", type=int, default=tasks)
    p.add_argument("--frameworks", type=int, default=10)
    p.add_argument("--repeat", type=int, default=repeat)
    p.add_argument("--no-browser", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = scale_parser(__doc__, agents=1000, tasks=10000, repeat=5).parse_args(argv)
    res = asyncio.run(run(args))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``%mesos dashboard`` on a big cluster, as a user sees it in JupyterLab (headless Chromium).

A master with 300 emulated agents (``bench.webui_scale.populate``, registered into MasterCore,
3,000 tasks RUNNING) and a JupyterLab server whose notebook runs ``%load_ext mesos_nb``,
``%mesos connect`` and ``%mesos dashboard``. What BokehJS holds in the page is read back: the
agents plot shows groups of agents with their counts (not 40 of 300 agents), and the busiest
plot names the top agents. And BokehJS reaches the page with ``%load_ext mesos_nb``, before any
dashboard cell; a page opened again on the same kernel (no BokehJS there) still draws it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest

from bench.dashboard_scale import (
    CHROMIUM,
    chromium,
    figure_count,
    lab_server,
    notebook,
    open_dashboard,
    open_notebook,
    run_setup_cells,
    time_dashboard_cell,
)
from bench.webui_scale import populate
from mesos_nb.dashboards import data as d
from mesos_nb.master.server import MasterConfig, MasterServer

AGENTS = 300

SOURCE_JS = """(name) => {
  for (const doc of (window.Bokeh && window.Bokeh.documents) || []) {
    const s = doc.get_model_by_name(name);
    if (s) {
      const col = (k) => Array.from((s.data instanceof Map ? s.data.get(k) : s.data[k]) || []);
      return {agent: col('agent'), agents: col('agents'), cpus_allocated_frac: col('cpus_allocated_frac')};
    }
  }
  return null;
}"""


def _need_browser() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    for mod in ("playwright.async_api", "jupyterlab", "jupyter_bokeh"):
        pytest.importorskip(mod)


async def _scenario(base) -> tuple[dict, dict]:
    server = MasterServer(MasterConfig(port=0, allocation_interval=1.0))
    await server.start()
    try:
        populate(server.core, agents=AGENTS, tasks=10 * AGENTS, frameworks=3)
        async with lab_server(base) as lab, chromium() as browser:
            page, _marks = await open_dashboard(browser, lab, server.url.split("://", 1)[1], "groups",
                                                figure_count(), timeout=180)
            return await page.evaluate(SOURCE_JS, "agents-source"), await page.evaluate(SOURCE_JS, "busiest-source")
    finally:
        await server.stop()


@pytest.mark.timeout(600)
def test_dashboard_of_300_agents_plots_groups_with_counts_and_the_busiest_agents(tmp_path):
    _need_browser()
    agents, busiest = asyncio.run(_scenario(tmp_path))
    assert agents is not None and busiest is not None, "BokehJS never held the dashboard's sources"
    # one bar per group of agents, labelled with its count; together they cover every agent
    assert 1 < len(agents["agent"]) <= d.MAX_GROUPS, agents["agent"]
    assert sum(agents["agents"]) == AGENTS
    for label, n in zip(agents["agent"], agents["agents"], strict=True):
        assert re.search(rf"\({n}\)$", label), label
    # populate() launches 10 tasks of 0.1 CPU on each 16-CPU agent and finishes every 5th one:
    # 0.8 of 16 CPUs allocated in every group
    assert agents["cpus_allocated_frac"] == pytest.approx([0.8 / 16] * len(agents["agent"]))
    # and the busiest agents by name (host:port)
    assert len(busiest["agent"]) == d.TOP_AGENTS
    assert all(re.fullmatch(r"10\.\d+\.\d+\.1:9", a) for a in busiest["agent"]), busiest["agent"]


BOKEH_JS = "() => typeof window.Bokeh !== 'undefined' && typeof window.Bokeh.require === 'function'"


async def _reopened(base) -> dict:
    server = MasterServer(MasterConfig(port=0, allocation_interval=1.0))
    await server.start()
    out: dict = {}
    try:
        populate(server.core, agents=AGENTS, tasks=10 * AGENTS, frameworks=3)
        master = server.url.split("://", 1)[1]
        async with lab_server(base) as lab, chromium() as browser:
            path = lab["root"] / "again.ipynb"
            nb = notebook(master)
            # the warm-up thread done before %mesos connect (as when a user reads between cells)
            nb["cells"][0]["source"] += ("\nimport threading\nfor t in threading.enumerate():\n"
                                         "    if t.name == 'mesos-nb-dashboard-prewarm': t.join(120)")
            path.write_text(json.dumps(nb))
            page = await open_notebook(browser, lab, "again")
            assert not await page.evaluate(BOKEH_JS)
            await run_setup_cells(page)  # %load_ext, %mesos connect: no dashboard cell yet
            await page.wait_for_function(BOKEH_JS, timeout=60000)  # evaluated when the page was idle
            # and the dashboard the kernel prebuilt, drawn once offscreen after %mesos connect
            await page.wait_for_function("() => window.mesos_nb_warm_up !== undefined", timeout=60000)
            out["warm_up"] = await page.evaluate("window.mesos_nb_warm_up")
            out["documents_after_warm_up"] = await page.evaluate("(window.Bokeh.documents || []).length")
            out["load_ext_output"] = await page.evaluate(
                "document.querySelectorAll('.jp-Notebook .jp-CodeCell')[0].querySelector('.jp-OutputArea').innerText")
            out["first"] = await time_dashboard_cell(page, figure_count(), timeout=180)
            await page.close()
            # the same notebook in a new page, its kernel kept: the page has no BokehJS, and the
            # saved notebook no outputs (as if never saved) to bring it back
            path.write_text(json.dumps(notebook(master)))
            page = await open_notebook(browser, lab, "again")
            out["bokeh_before"] = await page.evaluate(BOKEH_JS)
            await page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".jp-InputArea-editor").click()
            await page.keyboard.press("Escape")
            out["again"] = await time_dashboard_cell(page, figure_count(), timeout=180)
            out["agents"] = await page.evaluate(SOURCE_JS, "agents-source")
    finally:
        await server.stop()
    return out


@pytest.mark.timeout(600)
def test_bokehjs_comes_with_load_ext_and_a_reopened_page_still_draws_the_dashboard(tmp_path):
    _need_browser()
    out = asyncio.run(_reopened(tmp_path))
    assert out["load_ext_output"].strip() == ""  # nothing shown for it
    assert out["warm_up"] == "done" and out["documents_after_warm_up"] == 0  # drawn, then removed
    assert out["first"]["drawn"] > 0
    assert out["bokeh_before"] is False
    assert out["again"]["drawn"] > 0 and out["agents"] is not None and sum(out["agents"]["agents"]) == AGENTS

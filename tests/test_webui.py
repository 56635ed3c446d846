"""Issue 6: the master's web UI in headless Chromium (Playwright) against a real local cluster,
plus the UI's JSON endpoints at a small emulated scale (no speed asserted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

pytest.importorskip("mesos_nb.agent.process")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _browser_or_skip():
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed (pip install playwright)")
    try:
        import bokeh  # noqa: F401
    except ImportError:
        missing.append("bokeh is not installed (pip install 'mesos-nb[dashboard]')")
    if missing:
        if IN_CI:
            pytest.fail("CI=true but the browser test cannot run: " + "; ".join(missing))
        pytest.skip("; ".join(missing))


def artifact_path(tmp_path: Path, name: str) -> Path:
    base = os.environ.get("MESOS_NB_TEST_ARTIFACTS")
    d = Path(base) if base else tmp_path
    d.mkdir(parents=True, exist_ok=True)
    return d / name


@contextlib.asynccontextmanager
async def ui_page(url: str, errors: list[str], width: int, height: int, agents: int) -> AsyncIterator[Any]:
    """The master's web UI in headless Chromium, once its agents table lists ``agents`` rows;
    the page's script errors are appended to ``errors``."""
    _browser_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(url + "/")
            await page.wait_for_function(
                f"document.querySelectorAll('#agents-table tbody tr').length === {agents}", timeout=30000)
            yield page
        finally:
            await browser.close()


async def test_webui_live_agents_task_log_and_growing_plot(local_cluster, tmp_path):
    from test_dashboard import BUSY, launch, start_framework

    url = local_cluster.master_url
    errors: list[str] = []
    async with ui_page(url, errors, 1400, 1800, agents=2) as page:
        driver = None
        try:
            # the agents are listed
            ids = await page.eval_on_selector_all("#agents-table tbody tr", "rs => rs.map(r => r.dataset.agent)")
            assert sorted(ids) == sorted(local_cluster.master.core.agents)
            # the header and the ‹ prev / next › pager that app.js builds: next shows the last agent
            # alone (the offset stops at the last row), prev goes back to both
            heads = await page.eval_on_selector_all("#tasks-table thead th", "hs => hs.map(h => h.textContent)")
            assert heads == ["task", "name", "framework", "agent", "state", "CPUs", "mem MB", "updated", "sandbox"]
            pager = "document.querySelector('#agents-pager').textContent === '{}' && " \
                    "document.querySelectorAll('#agents-table tbody tr').length === {}"
            await page.click("button[data-page='agents'][data-dir='1']")
            await page.wait_for_function(pager.format("2–2 of 2", 1), timeout=15000)
            await page.click("button[data-page='agents'][data-dir='-1']")
            await page.wait_for_function(pager.format("1–2 of 2", 2), timeout=15000)
            await page.wait_for_function("window.mesosUI.doc !== null", timeout=60000)
            # a freshly launched task appears without a reload, and its log shows its line
            driver, fw = await start_framework(local_cluster, "webui-test")
            await launch(driver, fw, "webui-hello", "echo hello-from-the-webui-test; sleep 120",
                         cpus=0.25, mem=32)
            row = "#tasks-table tbody tr[data-task='webui-hello']"
            await page.wait_for_selector(row, timeout=30000)
            await page.wait_for_function(
                f"(document.querySelector(\"{row}\") || {{textContent: ''}}).textContent.includes('TASK_RUNNING')",
                timeout=30000)
            await page.click(f"{row} button.open-log")
            await page.wait_for_function(
                "document.querySelector('#log-text').textContent.includes('hello-from-the-webui-test')",
                timeout=30000)
            # the utilization time series grows, and shows CPU used, while a CPU-bound task runs
            await launch(driver, fw, "webui-busy", BUSY, cpus=1.0, mem=64)
            n0 = await page.evaluate("window.mesosUI.doc.get_model_by_name('timeseries-source').data.time.length")
            await page.wait_for_function(
                f"window.mesosUI.doc.get_model_by_name('timeseries-source').data.time.length >= {n0 + 3}",
                timeout=30000)
            await page.wait_for_function(
                "Math.max(...window.mesosUI.doc.get_model_by_name('timeseries-source').data.cpus_used) > 0.05",
                timeout=30000)
            agents_plotted = await page.evaluate(
                "window.mesosUI.doc.get_model_by_name('agents-source').data.agent.length")
            assert agents_plotted == 2
            timeline = await page.evaluate(
                "Array.from(window.mesosUI.doc.get_model_by_name('timeline-source').data.task_id)")
            assert "webui-hello" in timeline and "webui-busy" in timeline
            # the filter narrows the (server-paginated) table
            await page.fill("#tasks-filter", "webui-busy")
            await page.wait_for_function(
                "Array.from(document.querySelectorAll('#tasks-table tbody tr')).map(r => r.dataset.task).join() === 'webui-busy'",
                timeout=15000)
            # the framework goes away: its tasks are killed by the teardown. The state filter lists
            # them (finished frameworks' tasks included) and the timeline ends them, in the page.
            await driver.teardown()
            await page.fill("#tasks-filter", "")
            await page.select_option("#tasks-state", "TASK_KILLED")
            await page.wait_for_function(
                "Array.from(document.querySelectorAll('#tasks-table tbody tr')).map(r => r.dataset.task)"
                ".sort().join() === 'webui-busy,webui-hello'", timeout=15000)
            await page.select_option("#tasks-state", "")
            await page.wait_for_function(
                "document.querySelectorAll('#tasks-table tbody tr[data-task=\"webui-busy\"]').length === 1",
                timeout=15000)
            await page.wait_for_function(
                "(() => { const d = window.mesosUI.doc.get_model_by_name('timeline-source').data;"
                " const ids = Array.from(d.task_id), st = Array.from(d.state);"
                " return ['webui-busy', 'webui-hello'].every(t => st[ids.lastIndexOf(t)] === 'TASK_KILLED'); })()",
                timeout=15000)
            shot = artifact_path(tmp_path, "webui.png")
            await page.screenshot(path=str(shot), full_page=True)
            print(f"web UI screenshot: {shot}")
            assert shot.stat().st_size > 10000
            assert not errors, errors
        finally:
            if driver is not None:
                await driver.stop()


async def test_webui_log_proxy_errors(local_cluster):
    url = local_cluster.master_url

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    async def astatus(path: str) -> int:
        return await asyncio.to_thread(status, path)

    assert await astatus("/master/files/read?path=/x") == 400
    assert await astatus("/master/files/read?agent_id=nope&path=/x") == 404
    aid = next(iter(local_cluster.master.core.agents))
    assert await astatus(f"/master/files/read?agent_id={aid}") == 400
    assert await astatus(f"/master/files/read?agent_id={aid}&path=/frameworks/none/stdout") == 404
    assert await astatus("/master/ui/tasks?limit=nope") == 400


async def test_webui_tables_paginate_and_filter_emulated_scale():
    """A small version of bench/webui_scale.py: 60 emulated agents, 600 tasks (no timing)."""
    sys.path.insert(0, str(REPO / "bench"))
    from webui_scale import populate

    from mesos_nb.master.server import MasterConfig, MasterServer

    server = MasterServer(MasterConfig(port=0))
    await server.start()
    try:
        counts = populate(server.core, agents=60, tasks=600, frameworks=3)
        assert counts["tasks"] == 600 and counts["agents"] == 60

        def get_sync(path: str):
            with urllib.request.urlopen(server.url + path, timeout=30) as r:
                return json.load(r) if "json" in r.headers["Content-Type"] else r.read()

        async def get(path: str):  # the server runs on this loop: block a thread, not the loop
            return await asyncio.to_thread(get_sync, path)

        snap = await get("/master/utilization")
        assert snap["agents_total"] == 60 and len(snap["agents"]) == 60
        assert snap["tasks"]["active"] == 600 - counts["finished"]
        assert abs(snap["cluster"]["allocated"]["cpus"] - 0.1 * snap["tasks"]["active"]) < 1e-6
        assert len((await get("/master/utilization?agents=5"))["agents"]) == 5
        assert len(snap["frameworks"]) == 3 and all(f["share"] > 0 for f in snap["frameworks"])
        page = await get("/master/ui/tasks?offset=50&limit=25")
        assert page["total"] == 600 and len(page["rows"]) == 25
        assert (await get("/master/ui/tasks?state=TASK_FINISHED"))["total"] == counts["finished"]
        assert (await get("/master/ui/tasks?state=active&limit=1"))["total"] == 600 - counts["finished"]
        assert [r["id"] for r in (await get("/master/ui/tasks?q=task-000123"))["rows"]] == ["task-000123"]
        agents = await get("/master/ui/agents?offset=40&limit=50")
        assert agents["total"] == 60 and len(agents["rows"]) == 20
        html = await get("/")
        assert b"/static/ui/app.js" in html and b"cdn." not in html
        plots = await get("/master/ui/plots")
        assert plots["item"]["target_id"] == "plots"
        assert {u["name"] for u in plots["updates"]} >= {"agents", "shares", "timeline", "timeseries", "offers"}
        bokeh_js = await get("/static/bokeh/js/bokeh.min.js")
        assert len(bokeh_js) > 100000
    finally:
        await server.stop()

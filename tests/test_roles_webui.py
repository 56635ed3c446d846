"""Issue 13 in the web UI: the roles table (role, weight, guarantee, limit, allocated, DRF
share) in headless Chromium against a real local cluster, and ``/master/roles`` in Mesos's
shape with nested roles, quota and consumption filled in."""

from __future__ import annotations

import aiohttp
import pytest
from conftest import async_wait_for
from test_dashboard import Placer
from test_webui import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip

from mesos_nb.protocol.messages import Capability, FrameworkInfo
from mesos_nb.scheduler import SchedulerDriver

pytest.importorskip("mesos_nb.agent.process")


async def _post(url: str, body: dict) -> None:
    async with aiohttp.ClientSession() as s, s.post(url + "/api/v1", json=body) as r:
        assert r.status == 200, await r.text()


async def _get(url: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def _team_cluster(local_cluster) -> tuple[SchedulerDriver, Placer]:
    url = local_cluster.master_url
    await _post(url, {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "eng", "weight": 2}]}})
    await _post(url, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "eng", "guarantees": {"cpus": {"value": 0.5}}, "limits": {"cpus": {"value": 1.5}}}]}})
    fw = Placer()
    info = FrameworkInfo(user="tester", name="ml", roles=["eng/ml"], capabilities=[Capability(type="MULTI_ROLE")])
    driver = SchedulerDriver(fw, info, local_cluster.master_address)
    await driver.start()
    fw.pending.append(("ml-1", "sleep 120", 1.0, 64.0, None))
    await driver.revive()
    await async_wait_for(lambda: fw.states.get("ml-1") == "TASK_RUNNING", timeout=30, message="ml-1 running")
    return driver, fw


async def test_master_roles_lists_nested_roles_with_quota_and_subtree_consumption(local_cluster):
    driver, _ = await _team_cluster(local_cluster)
    try:
        roles = {r["name"]: r for r in (await _get(local_cluster.master_url + "/master/roles"))["roles"]}
        eng, ml = roles["eng"], roles["eng/ml"]
        assert eng["weight"] == 2 and ml["weight"] == 1
        assert eng["quota"]["guarantee"] == {"cpus": 0.5} and eng["quota"]["limit"] == {"cpus": 1.5}
        # the parent's quota counts its child's task; the task's resources are the child's own
        assert eng["quota"]["consumed"]["cpus"] >= 1 and ml["allocated"]["cpus"] == 1
        assert len(ml["frameworks"]) == 1 and eng["frameworks"] == []
        for key in ("resources", "allocated", "offered", "reserved"):
            assert set(eng[key]) >= {"cpus", "mem", "disk", "gpus"}
    finally:
        await driver.stop()


async def test_webui_roles_table(local_cluster):
    _browser_or_skip()
    from playwright.async_api import async_playwright

    driver, _ = await _team_cluster(local_cluster)
    errors: list[str] = []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1800})
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(local_cluster.master_url + "/")
                await page.wait_for_selector("#roles-table tbody tr[data-role='eng/ml']", timeout=30000)
                heads = await page.eval_on_selector_all("#roles-table thead th", "hs => hs.map(h => h.textContent)")
                assert heads == ["role", "weight", "guarantee", "limit", "allocated", "DRF share"]
                cells = await page.eval_on_selector_all(
                    "#roles-table tbody tr[data-role='eng'] td", "cs => cs.map(c => c.textContent)")
                assert cells[0] == "eng" and cells[1] == "2"
                assert cells[2] == "cpus 0.5" and cells[3] == "cpus 1.5"
                assert "cpus 1" in cells[4]
                assert float(cells[5]) > 0
                ml = await page.eval_on_selector_all(
                    "#roles-table tbody tr[data-role='eng/ml'] td", "cs => cs.map(c => c.textContent)")
                assert ml[1] == "1" and ml[2] == "–" and ml[3] == "–" and float(ml[5]) == float(cells[5])
                assert errors == []
            finally:
                await browser.close()
    finally:
        await driver.stop()


async def test_notebook_dashboard_plots_the_quota_headroom_of_its_role(local_cluster):
    pytest.importorskip("jupyter_bokeh")
    from mesos_nb.dashboards.widget import DashboardWidget

    driver, _ = await _team_cluster(local_cluster)
    w = DashboardWidget(local_cluster.master_url, role="eng/ml").start()
    plain = DashboardWidget(local_cluster.master_url).start()
    try:
        quota = w.dashboard["quota"]
        src = quota.source
        # eng/ml has no quota of its own: the plot shows eng's, which bounds it
        await async_wait_for(lambda: src.data["resource"] == ["cpus"] and src.data["consumed"][0] >= 1,
                             timeout=20, message="eng's cpus quota with the ml task in it")
        assert src.data["limit"] == [1.5] and src.data["guarantee"] == [0.5]
        assert src.data["headroom"][0] == pytest.approx(1.5 - src.data["consumed"][0])
        assert src.data["guarantee_frac"] == [pytest.approx(1 / 3)]
        assert quota.root.title.text.startswith("Quota headroom of role 'eng': cpus ")
        assert "quota" not in plain.dashboard.components  # without a role: no quota plot
    finally:
        w.close()
        plain.close()
        await driver.stop()


async def test_a_new_parent_limit_below_its_childrens_consumption_is_refused(local_cluster):
    fw = Placer()
    info = FrameworkInfo(user="tester", name="db", roles=["ops/db"], capabilities=[Capability(type="MULTI_ROLE")])
    driver = SchedulerDriver(fw, info, local_cluster.master_address)
    await driver.start()
    try:
        fw.pending.append(("db-1", "sleep 120", 1.0, 64.0, None))
        await driver.revive()
        await async_wait_for(lambda: fw.states.get("db-1") == "TASK_RUNNING", timeout=30, message="db-1 running")
        body = {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "ops", "limits": {"cpus": {"value": 0.5}}}]}}
        async with aiohttp.ClientSession() as s, s.post(local_cluster.master_url + "/api/v1", json=body) as r:
            assert r.status == 400
            assert "role 'ops' already consumes" in await r.text()
    finally:
        await driver.stop()

"""The web UI's agents table shows each agent's maintenance mode (UP / DRAINING with its
window / DOWN) and drain state (DRAINING / DRAINED / deactivated), live, in headless Chromium
against a real master with agents on two addresses (127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import time

import aiohttp
import pytest
from test_maintenance_http import HOUR_NS, M2, agent_id_at, call, two_hosts  # noqa: F401 (a fixture)
from test_webui import artifact_path, ui_page

pytest.importorskip("mesos_nb.agent.process")


async def ui_agents(url: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(url + "/master/ui/agents") as r:
        assert r.status == 200, await r.text()
        return await r.json()


def cells(page_rows: list[dict], aid: str) -> dict:
    return next(r for r in page_rows if r["id"] == aid)


async def test_agents_table_shows_maintenance_mode_window_and_drain_state(two_hosts, tmp_path):  # noqa: F811
    master, _ = two_hosts
    url = master.url
    a1, a2 = agent_id_at(master, "127.0.0.1"), agent_id_at(master, "127.0.0.2")
    errors: list[str] = []

    def cell(aid: str, col: int) -> str:
        return (f"(document.querySelector(\"#agents-table tbody tr[data-agent='{aid}'] td:nth-child({col})\")"
                " || {textContent: ''}).textContent")

    async with ui_page(url, errors, 1600, 1000, agents=2) as page:
        headers = await page.eval_on_selector_all("#agents-table thead th", "hs => hs.map(h => h.textContent)")
        mode_col, drain_col = headers.index("maintenance") + 1, headers.index("drain") + 1
        for aid in (a1, a2):
            assert await page.evaluate(cell(aid, mode_col)) == "UP"
            assert await page.evaluate(cell(aid, drain_col)) == ""

        # a window for 127.0.0.2's machine: its row says DRAINING with the window, live
        start_ns = int((time.time() + 2 * 86400) * 1e9)
        schedule = {"windows": [{"machine_ids": [M2], "unavailability": {
            "start": {"nanoseconds": start_ns}, "duration": {"nanoseconds": HOUR_NS + 30 * 60 * 10**9}}}]}
        await call(url, {"type": "UPDATE_MAINTENANCE_SCHEDULE",
                         "update_maintenance_schedule": {"schedule": schedule}})
        await page.wait_for_function(f"{cell(a2, mode_col)}.startsWith('DRAINING from ')", timeout=15000)
        text = await page.evaluate(cell(a2, mode_col))
        local_day = await page.evaluate(f"new Date({start_ns // 10**6}).toLocaleDateString()")
        assert text.endswith(" for 1h30m") and local_day in text, text
        assert await page.get_attribute(f"#agents-table tbody tr[data-agent='{a2}'] td:nth-child({mode_col})",
                                        "class") == "mode-DRAINING"
        assert await page.evaluate(cell(a1, mode_col)) == "UP"

        # the other agent: deactivated, then reactivated and drained (it has no tasks: DRAINED)
        await call(url, {"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": a1}}})
        await page.wait_for_function(f"{cell(a1, drain_col)} === 'deactivated'", timeout=15000)
        await call(url, {"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": a1}}})
        await page.wait_for_function(f"{cell(a1, drain_col)} === ''", timeout=15000)
        t0 = time.time()
        await call(url, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": a1}}})
        t1 = time.time()
        # GET_AGENTS: Mesos's estimated_drain_start_time (when the master asked it to drain)
        agents = (await call(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
        got = next(a for a in agents if a["agent_info"]["id"]["value"] == a1)
        assert t0 * 1e9 <= got["estimated_drain_start_time"]["nanoseconds"] <= t1 * 1e9
        assert "estimated_drain_start_time" not in next(a for a in agents if a is not got)
        await page.wait_for_function(f"{cell(a1, drain_col)} === 'DRAINED'", timeout=15000)
        shot = artifact_path(tmp_path, "webui-maintenance.png")
        await page.screenshot(path=str(shot), full_page=True)
        assert not errors, errors

    # the table's JSON carries the window itself; a DOWN machine's agents are gone from the
    # table (removed, as Mesos), and the rule still names the mode for any agent there
    rows = (await ui_agents(url))["rows"]
    assert cells(rows, a2)["maintenance"] == {"mode": "DRAINING", "window": schedule["windows"][0]["unavailability"]}
    assert cells(rows, a1)["maintenance"] == {"mode": "UP", "window": None} and cells(rows, a1)["drain"] == "DRAINED"
    await call(url, {"type": "START_MAINTENANCE", "start_maintenance": {"machines": [M2]}})
    assert [x["id"] for x in (await ui_agents(url))["rows"]] == [a1]
    assert master.webui._maintenance("any", "127.0.0.2")["maintenance"]["mode"] == "DOWN"

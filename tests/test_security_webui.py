"""The web UI on a secure-by-default cluster: the browser is asked for credentials (HTTP Basic),
and with them the live tables work; without them nothing is shown."""

from __future__ import annotations

import aiohttp
import pytest
from test_webui import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip

from mesos_nb.local import LocalCluster

pytest.importorskip("mesos_nb.agent.process")


@pytest.fixture
async def cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    c = LocalCluster(agents=2, port=0, work_dir=str(tmp_path / "c"), agent_resources="cpus:1;mem:256",
                     authenticate=True)
    await c.start()
    yield c
    await c.stop()


async def test_webui_asks_for_credentials_and_works_with_them(cluster):
    _browser_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            async with aiohttp.ClientSession() as s, s.get(cluster.master_url + "/") as r:
                # what makes a browser show its login prompt
                assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="mesos"'
                assert "agents-table" not in await r.text()
            anon = await browser.new_context()  # headless: nobody answers the prompt
            with pytest.raises(Exception, match="ERR_INVALID_AUTH_CREDENTIALS"):
                await (await anon.new_page()).goto(cluster.master_url + "/")

            wrong = await browser.new_context(http_credentials={"username": cluster.principal, "password": "x"})
            resp = await (await wrong.new_page()).goto(cluster.master_url + "/")
            assert resp.status == 401

            ok = await browser.new_context(http_credentials={"username": cluster.principal,
                                                             "password": cluster.secret})
            page = await ok.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            resp = await page.goto(cluster.master_url + "/")
            assert resp.status == 200
            await page.wait_for_function("document.querySelectorAll('#agents-table tbody tr').length === 2",
                                         timeout=30000)
            # the plots document loads too (through the same credentials)
            await page.wait_for_function("window.mesosUI.doc !== null", timeout=60000)
            assert not errors
        finally:
            await browser.close()

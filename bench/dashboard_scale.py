"""``%mesos dashboard`` at scale: a real JupyterLab in headless Chromium against a big master.

The master runs in this process, populated like the web UI benchmark (``webui_scale.populate``:
emulated agents registered into ``MasterCore``, tasks launched through offers and RUNNING).
A JupyterLab server (``bench.jupyter_lab``) serves notebooks that run ``%load_ext mesos_nb``,
``%mesos connect`` and ``%mesos dashboard``. Measured:

* in the page, from the dashboard cell's execution (Shift+Enter) until its plots are drawn:
  the Bokeh canvases laid out (one per figure) and the agents plot's bars painted (pixels of
  the "CPU allocated" colour in a canvas). Each repeat opens a fresh notebook (its own kernel);
* the ``%load_ext mesos_nb`` cell, from Shift+Enter until its prompt shows it done (it publishes
  BokehJS into the page, for the page to evaluate when idle);
* the kernel side of one dashboard update at this size: decode the snapshot the stream sends,
  ``Dashboard.update`` and the PATCH-DOC messages jupyter_bokeh would send for it.

    python bench/dashboard_scale.py [--agents 10000] [--tasks 100000] [--repeat 3] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.feed_reference import full_build  # noqa: E402
from bench.harness import machine  # noqa: E402
from bench.jupyter_lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab, shutdown_kernels  # noqa: E402
from bench.webui_scale import populate, scale_parser  # noqa: E402
from mesos_nb.master.server import MasterConfig, MasterServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def notebook(master: str) -> dict[str, Any]:
    def cell(src: str) -> dict[str, Any]:
        return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": src}

    return {"cells": [cell("%load_ext mesos_nb"), cell(f"%mesos connect {master}"),
                      cell("dash = %mesos dashboard\ndash.widget")],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


# Resolves with performance.now() once the dashboard is drawn: every figure has its canvas laid
# out and a canvas of the dashboard cell (the third) holds pixels of the agents plot's "CPU allocated" bars (#9ecae1).
DRAWN_JS = """(minFigures) => new Promise((resolve) => {
  const canvases = () => {
    const out = [];
    const walk = (root) => { for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS') out.push(el); if (el.shadowRoot) walk(el.shadowRoot); } };
    const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[2];
    if (cell) walk(cell);
    return out;
  };
  const barsPainted = (cs) => { for (const c of cs) {
    if (!c.width || !c.height) continue;
    const ctx = c.getContext('2d'); if (!ctx) continue;
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < px.length; i += 4)
      if (px[i + 3] > 200 && Math.abs(px[i] - 158) < 6 && Math.abs(px[i + 1] - 202) < 6 && Math.abs(px[i + 2] - 225) < 6)
        return true; }
    return false; };
  const marks = {};
  const poll = () => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[2];
    if (!marks.busy && cell && cell.querySelector('.jp-InputPrompt').textContent.includes('*')) marks.busy = performance.now();
    if (!marks.output && cell && cell.querySelector('.jp-OutputArea-child')) marks.output = performance.now();
    if (!marks.bokehjs && window.Bokeh && window.Bokeh.version) marks.bokehjs = performance.now();
    if (!marks.widget && cell && cell.querySelectorAll('.jp-OutputArea-child').length >= 2) marks.widget = performance.now();
    const cs = canvases().filter(c => c.width > 0 && c.height > 0);
    if (!marks.canvas && cs.length) marks.canvas = performance.now();
    const figures = new Set(cs.map(c => c.getRootNode()));
    if (figures.size >= minFigures && barsPainted(cs)) resolve({...marks, drawn: performance.now()});
    else setTimeout(poll, 15);
  };
  poll();
})"""


async def open_notebook(browser: Any, server: dict[str, Any], name: str) -> Any:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    await page.goto(f"{server['url']}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={server['token']}")
    await page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120000)
    select = page.locator(".jp-Dialog button.jp-mod-accept")
    try:
        await select.wait_for(timeout=5000)
        await select.click()
    except Exception:  # no kernel dialog: the notebook names its kernel
        pass
    await page.wait_for_function(
        "() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
        " return s && s.dataset.status === 'idle' && !document.querySelector('.jp-Dialog'); }", timeout=120000)
    return page


async def run_setup_cells(page: Any) -> dict[str, float]:
    """Run the first two cells (load the extension, connect), leaving the dashboard cell active.
    Returns the seconds from Shift+Enter on the ``%load_ext`` cell to its prompt showing it done
    (``load_ext``), as the page shows it."""
    await page.locator(".jp-Notebook .jp-CodeCell").first.click()
    t0 = await page.evaluate("performance.now()")
    done = asyncio.ensure_future(page.evaluate(
        """() => new Promise((resolve) => { const poll = () => {
             const p = document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')[0];
             if (p && /\\[\\d+\\]/.test(p.textContent)) resolve(performance.now()); else setTimeout(poll, 5); };
           poll(); })"""))
    await page.keyboard.press("Shift+Enter")
    t1 = await asyncio.wait_for(done, 120)
    await page.keyboard.press("Shift+Enter")
    await page.wait_for_function(
        "() => { const ps = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'));"
        " return ps.length >= 3 && /\\[\\d+\\]/.test(ps[1].textContent) && !ps.some(p => p.textContent.includes('*')); }",
        timeout=120000)
    await page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".jp-InputArea-editor").click()
    await page.keyboard.press("Escape")  # command mode on the dashboard cell
    return {"load_ext": round((t1 - t0) / 1000.0, 3)}


async def time_dashboard_cell(page: Any, figures: int, timeout: float) -> dict[str, float]:
    """Seconds from Shift+Enter on the dashboard cell to: the cell shown running (``busy``), its
    first output (``output``), BokehJS defined (``bokehjs``), the widget's output (``widget``), the first canvas (``canvas``) and
    every plot drawn (``drawn``); and whether the page had drawn the prebuilt dashboard offscreen
    before (``page_warm_up``: 'done', 'not yet' or why it failed)."""
    warm_up = await page.evaluate("window.mesos_nb_warm_up === undefined ? 'not yet' : window.mesos_nb_warm_up")
    t0 = await page.evaluate("performance.now()")
    drawn = asyncio.ensure_future(page.evaluate(DRAWN_JS, figures))
    await page.keyboard.press("Shift+Enter")
    try:
        t1 = await asyncio.wait_for(drawn, timeout)
    except asyncio.TimeoutError:
        shot = Path(tempfile.gettempdir()) / "dashboard-scale-timeout.png"
        await page.screenshot(path=str(shot))
        text = await page.evaluate("document.querySelector('.jp-Notebook').innerText")
        raise TimeoutError(f"the dashboard was not drawn in {timeout:g} s (screenshot {shot}): {text[-800:]}") from None
    return {**{k: round((v - t0) / 1000.0, 3) for k, v in t1.items()}, "page_warm_up": warm_up}


async def open_dashboard(browser: Any, server: dict[str, Any], master: str, name: str, figures: int,
                         timeout: float) -> tuple[Any, dict[str, float]]:
    """A new notebook ``name`` (its own kernel) connected to ``master``, its dashboard cell run
    and drawn: the page and the cell's timings (:func:`time_dashboard_cell`)."""
    (server["root"] / f"{name}.ipynb").write_text(json.dumps(notebook(master)))
    page = await open_notebook(browser, server, name)
    setup = await run_setup_cells(page)
    return page, {**await time_dashboard_cell(page, figures, timeout), **setup}


@contextlib.asynccontextmanager
async def lab_server(base: Path) -> AsyncIterator[dict[str, Any]]:
    """JupyterLab serving ``base/root``, its kernels importing this checkout's mesos_nb."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESOS_NB_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    lab = jupyter_lab(base, root, env)
    srv = await asyncio.to_thread(lab.__enter__)
    try:
        yield srv
    finally:
        await asyncio.to_thread(shutdown_kernels, srv)
        await asyncio.to_thread(lab.__exit__, None, None, None)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def browser_runs(server: dict[str, Any], master: str, repeat: int, figures: int,
                       timeout: float) -> list[dict[str, float]]:
    out = []
    async with chromium() as browser:
        for i in range(repeat):
            page, marks = await open_dashboard(browser, server, master, f"dashboard-{i}", figures, timeout)
            out.append(marks)
            await page.close()
            await asyncio.to_thread(shutdown_kernels, server)
    return out


def figure_count() -> int:
    """The figures a plain ``%mesos dashboard`` draws (one canvas each)."""
    from mesos_nb.dashboards.components import COMPONENTS

    return len(COMPONENTS)


def kernel_update_cost(feed: Any, core: Any, repeat: int = 5) -> dict[str, float]:
    """One update as the kernel makes it: decode the streamed snapshot, update the Bokeh models,
    serialize the PATCH-DOC messages for the changed models (what jupyter_bokeh sends)."""
    import msgspec
    from bokeh.document import Document
    from bokeh.protocol import Protocol

    from mesos_nb.dashboards.components import Dashboard
    from mesos_nb.dashboards.widget import PLOTTED_AGENTS

    class Sink:
        bytes = 0

        def _document_patched(self, event: Any) -> None:
            self.bytes += len(Protocol().create("PATCH-DOC", [event]).content_json)

    dash = Dashboard()
    doc = Document()
    doc.add_root(dash.root)
    sink = Sink()
    doc.on_change_dispatch_to(sink)
    times, sizes, patch = [], [], []
    for i in range(repeat):
        core.version += 1
        body = msgspec.json.encode(feed.snapshot(PLOTTED_AGENTS))
        sink.bytes = 0
        t0 = time.perf_counter()
        snap = json.loads(body)
        snap["time"] += i  # a new sample: the time series stream one row
        dash.update(snap)
        times.append(time.perf_counter() - t0)
        sizes.append(len(body))
        patch.append(sink.bytes)
    return {"median_s": round(statistics.median(times[1:] or times), 4), "max_s": round(max(times), 4),
            "first_s": round(times[0], 4), "snapshot_bytes": sizes[-1], "patch_bytes": patch[-1]}


def snapshot_after_change(feed: Any, core: Any, repeat: int = 5) -> dict[str, Any]:
    """The snapshot a reader waits for after the cluster changed: one running task ends (a real
    status update through the core), then the feed's snapshot is taken as ``/master/utilization``
    takes it (rebuilt as the feed rebuilds after a change). Thread CPU, so the box's load does
    not inflate it; the first snapshot (the feed's first, nothing kept yet) is reported apart."""
    from mesos_nb.master import feed as feed_mod
    from mesos_nb.protocol import channel as ch
    from mesos_nb.protocol import messages as m

    throttle, feed_mod.THROTTLE_ABOVE = feed_mod.THROTTLE_ABOVE, 1e9  # every change rebuilds here
    try:
        t0 = time.thread_time()
        feed.snapshot(None)
        first = time.thread_time() - t0
        running = [t for fw in core.frameworks.values() for t in fw.tasks.values() if t.state == "TASK_RUNNING"]
        times = []
        for t in running[:repeat]:
            core.status_update(ch.StatusUpdate(agent_id=t.agent_id, framework_id=t.framework_id, status=m.TaskStatus(
                task_id=m.ID(value=t.id), state="TASK_FINISHED", timestamp=time.time())), time.time())
            core.out = []
            t0 = time.thread_time()
            feed.snapshot(None)
            times.append(time.thread_time() - t0)
    finally:
        feed_mod.THROTTLE_ABOVE = throttle
    return {"first_cpu_s": round(first, 4), "cpu_s_median": round(statistics.median(times), 4),
            "cpu_s_max": round(max(times), 4)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = MasterServer(MasterConfig(port=0, allocation_interval=1.0))
    await server.start()
    try:
        t0 = time.perf_counter()
        counts = populate(server.core, args.agents, args.tasks, args.frameworks)
        res: dict[str, Any] = {"counts": counts, "populate_s": round(time.perf_counter() - t0, 2),
                               "machine": machine()}
        feed = server.webui.feed
        builds = []
        for _ in range(3):  # the master's side: one snapshot built (throttled at this cost)
            t0 = time.perf_counter()
            full_build(feed)
            builds.append(time.perf_counter() - t0)
        res["snapshot_build_s_median"] = round(statistics.median(builds), 4)
        res["snapshot_after_change"] = snapshot_after_change(feed, server.core, args.repeat)
        res["kernel_update"] = kernel_update_cost(feed, server.core)
        if not args.no_browser:
            if not os.path.exists(CHROMIUM):
                res["browser"] = "chromium not available"
                return res
            figures = figure_count()
            with tempfile.TemporaryDirectory(prefix="dash-bench-") as tmp:
                async with lab_server(Path(tmp)) as srv:
                    runs = await browser_runs(srv, server.url.split("://", 1)[1], args.repeat, figures,
                                              args.timeout)
            res["runs"] = runs
            res["plots_drawn_s"] = [r["drawn"] for r in runs]
            res["plots_drawn_s_median"] = round(statistics.median(res["plots_drawn_s"]), 3)
            res["load_ext_s"] = [r["load_ext"] for r in runs]
        return res
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    p = scale_parser(__doc__, agents=10000, tasks=100000, repeat=3)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the plots in one run")
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

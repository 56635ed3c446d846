"""The notebooks as a user sees them: JupyterLab 4 (and Notebook 7) in headless Chromium.

One Jupyter server on a loopback port (token auth, a temporary root with copies of
``notebooks/``, a private HOME and settings) and one embedded cluster (``$MESOS_NB_MASTER``).
Each notebook is opened in the browser, run with Run > Run All Cells, and what the page shows
is checked: every widget view created (no "Failed to create view", no "Loading widget..." left),
no unexpected error output, the dashboard's plots drawn (canvases) and its time series gaining
points while a busy task runs (read from BokehJS's documents in the page, not from the kernel),
the offer browser's Decline working. Screenshots go to ``tests/artifacts/notebook-browser``
(or ``$MESOS_NB_TEST_ARTIFACTS``).

Every notebook runs: quickstart, dashboard (JupyterLab and Notebook 7), dask, ipyparallel, spark
and an offer-browser notebook made here; the outputs a notebook declares in its cells'
``metadata.mesos_nb.expect`` are read from the page.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, cli_env, cluster_thread, wait_for, with_agent_ports

from bench.jupyter_lab import CHROMIUM, CHROMIUM_ARGS, jupyter_lab, shutdown_kernels

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = Path(os.environ.get("MESOS_NB_TEST_ARTIFACTS") or REPO / "tests" / "artifacts") / "notebook-browser"

OFFERS_NB = {
    "cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "%load_ext mesos_nb"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "cluster = %mesos connect\ncluster"},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "browser = %mesos offers --wait 20\nbrowser"},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}

# Error text a notebook is expected to show (quickstart's cell tagged raises-exception).
EXPECTED_ERRORS = {"quickstart": ["is too big for this cluster"]}


def _need_browser() -> None:
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    for mod, pkg in (("playwright.sync_api", "playwright"), ("jupyterlab", "jupyterlab"),
                     ("notebook", "notebook"), ("jupyter_bokeh", "jupyter_bokeh")):
        try:
            __import__(mod)
        except ImportError:
            missing.append(f"{pkg} is not installed (pip install -e '.[notebook,test]')")
    if missing:
        if IN_CI:
            pytest.fail("CI=true but the notebook browser tests cannot run: " + "; ".join(missing))
        pytest.skip("; ".join(missing))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Any]:
    _need_browser()
    # one agent with a port block of its own: other test runs on this machine hold ports of the
    # default 31000-32000 (a task's server then cannot bind the port it was offered)
    with cluster_thread(tmp_path_factory.mktemp("nb-cluster"), 1,
                        with_agent_ports("cpus:4;mem:6144;disk:4096")) as ct:
        yield ct


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A JupyterLab server (it also serves Notebook 7 at /notebooks/) on a loopback port."""
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "root"
    shutil.copytree(REPO / "notebooks", root)
    (root / "offers.ipynb").write_text(json.dumps(OFFERS_NB))
    with jupyter_lab(base, root, cli_env(MESOS_NB_MASTER=cluster.master_address)) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(server) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


NOTEBOOK_HEIGHT_JS = """() => {
  const n = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
         || document.querySelector('.jp-Notebook');
  if (!n) return 0;
  n.scrollTop = 0;  // from the first cell
  return n.scrollHeight;
}"""


class Opened:
    """One notebook open in a page, with the console errors the page logged."""

    def __init__(self, browser: Any, server: dict[str, Any], name: str, ui: str = "lab") -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.name, self.ui = name, ui
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.console: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        self.page.on("pageerror", lambda e: self.console.append(str(e)))
        # a workspace of its own, reset: only this notebook is open in the page
        path = (f"/lab/workspaces/{name}/tree/{name}.ipynb?reset&" if ui == "lab"
                else f"/notebooks/{name}.ipynb?")
        self.page.goto(f"{server['url']}{path}token={server['token']}")
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60000)
        # a fresh server may ask which kernel to start (the notebook names "python3"): accept it
        select = self.page.locator(".jp-Dialog button.jp-mod-accept")
        with contextlib.suppress(PlaywrightTimeout):
            select.wait_for(timeout=5000)
            select.click()
        self.page.wait_for_function(
            "() => { const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
            " return s && s.dataset.status === 'idle' && !document.querySelector('.jp-Dialog'); }",
            timeout=90000)

    def run_all(self) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()
        # every code cell gets queued ([*]) at once; wait for that before waiting for the end
        self.page.wait_for_function(
            "Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))"
            ".some(p => p.textContent.includes('*'))", timeout=30000)

    def finished(self) -> bool:
        """Nothing queued or running any more (a failed cell stops Run All: the rest stay [ ])."""
        return self.page.evaluate(
            "() => { const ps = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'));"
            " const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
            " return ps.length > 0 && !ps.some(p => p.textContent.includes('*'))"
            " && (!s || s.dataset.status === 'idle'); }")

    def all_ran(self) -> None:
        prompts = self.page.eval_on_selector_all(".jp-CodeCell .jp-InputPrompt", "ps => ps.map(p => p.textContent)")
        assert all(re.search(r"\[\d+\]", p) for p in prompts), \
            f"{self.name}: not every cell ran: {prompts} (screenshot {self.shot('-failed')})"

    def wait_finished(self, timeout: float) -> None:
        wait_for(self.finished, timeout=timeout, interval=0.5,
                 message=f"{self.name}: Run All did not finish within {timeout} s")

    def shot(self, suffix: str = "") -> Path:
        """The whole notebook: JupyterLab scrolls it inside the page (a full-page screenshot is
        the viewport), so the viewport grows to the notebook's height for the shot."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.ui}-{self.name}{suffix}.png"
        size = self.page.viewport_size
        height = self.page.evaluate(NOTEBOOK_HEIGHT_JS)
        if size and height > size["height"] - 200:
            self.page.set_viewport_size({"width": size["width"], "height": min(int(height) + 300, 12000)})
        try:
            self.page.screenshot(path=str(path), full_page=True)
        finally:
            if size:
                self.page.set_viewport_size(size)
        return path

    def check_widgets_and_errors(self) -> None:
        """No widget failed; no widget still loading; only the expected error outputs; every
        cell ran."""
        body = lambda: self.page.evaluate("document.body.innerText")  # noqa: E731
        wait_for(lambda: "Loading widget" not in body(), timeout=30, interval=0.5,
                 message=f"{self.name}: a widget view stayed at 'Loading widget...'")
        text = body()
        for bad in ("Failed to create view", "Error displaying widget", "model not found",
                    "Javascript Error"):
            assert bad not in text, f"{self.name}: the page shows {bad!r} (screenshot {self.shot('-failed')})"
        bad_console = [m for m in self.console if re.search(
            r"reading 'require'|Failed to create view|Could not create a view|Error displaying widget", m)]
        assert not bad_console, f"{self.name}: console errors {bad_console}"
        errors = self.page.eval_on_selector_all(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
            "ns => ns.map(n => n.innerText)")
        expected = EXPECTED_ERRORS.get(self.name, [])
        # an error output (IPython's "-----" traceback header, or a one-sentence "XError: ...");
        # log lines a library writes on stderr (distributed's INFO lines at shutdown) are not
        unexpected = [e for e in errors if re.match(r"-{20,}|\w*(Error|Exception)\b", e.lstrip())
                      and not any(x in e for x in expected)]
        assert not unexpected, f"{self.name}: error outputs {unexpected}"
        for x in expected:
            assert any(x in e for e in errors), f"{self.name}: the expected error {x!r} is not shown"
        self.all_ran()

    def check_declared(self, root: Path) -> int:
        """The outputs the notebook declares (a code cell's ``metadata.mesos_nb.expect``) are on the
        page under that cell; returns how many were checked."""
        cells = [c for c in json.loads((root / f"{self.name}.ipynb").read_text())["cells"]
                 if c["cell_type"] == "code"]
        shown = self.page.eval_on_selector_all(
            ".jp-Notebook .jp-CodeCell", "cs => cs.map(c => (c.querySelector('.jp-OutputArea') || {}).innerText || '')")
        assert len(shown) == len(cells), f"{self.name}: {len(shown)} code cells on the page, {len(cells)} in the file"
        checked = 0
        for cell, text in zip(cells, shown, strict=True):
            for want in cell.get("metadata", {}).get("mesos_nb", {}).get("expect", []):
                checked += 1
                src = "".join(cell["source"])[:40]
                assert want in text, f"{self.name}: cell {src!r} shows {text[-300:]!r}, not {want!r}"
        return checked

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def opened(browser, server) -> Iterator[Any]:
    pages: list[Opened] = []

    def open_(name: str, ui: str = "lab") -> Opened:
        o = Opened(browser, server, name, ui)
        pages.append(o)
        return o

    yield open_
    for o in pages:
        o.shot()
        o.close()
    shutdown_kernels(server)


TIMESERIES_JS = """() => {
  const B = window.Bokeh;
  if (!B || !B.documents) return null;
  for (const d of B.documents) {
    const s = d.get_model_by_name('timeseries-source');
    if (s) {
      const col = (k) => Array.from((s.data instanceof Map ? s.data.get(k) : s.data[k]) || []);
      const used = col('cpus_used');
      return {n: s.get_length() || 0, used: used.length ? Math.max(...used) : 0};
    }
  }
  return null;
}"""


def _dashboard(opened: Any, ui: str) -> None:
    nb = opened("dashboard", ui)
    nb.run_all()
    samples: list[tuple[float, int, float]] = []

    def sampled_until_finished() -> bool:  # what BokehJS holds, sampled while the cells run
        ts = nb.page.evaluate(TIMESERIES_JS)
        if ts is not None:
            samples.append((time.monotonic(), ts["n"], ts["used"]))
        return nb.finished()

    wait_for(sampled_until_finished, timeout=190, interval=0.5, message="the dashboard notebook did not finish")
    nb.wait_finished(10)
    nb.check_widgets_and_errors()
    assert samples, f"BokehJS never held the dashboard's document (screenshot {nb.shot('-failed')})"
    counts = [n for _, n, _ in samples]
    assert max(counts) >= min(counts) + 3, f"the time-series plot did not gain points: {counts}"
    # used CPU shows up (how much depends on the machine's load: only "some" is asserted)
    assert max(u for *_, u in samples) > 0, f"the busy task's CPU never showed: {samples[-5:]}"
    canvases = nb.page.locator(".bk-Figure canvas, .bk-Canvas canvas")
    assert canvases.count() >= 5, f"{canvases.count()} plot canvases drawn (screenshot {nb.shot('-failed')})"
    text = nb.page.evaluate("document.body.innerText")
    assert "TASK_FINISHED; dashboard:" in text, "the busy task did not run to its end"


def test_dashboard_in_jupyterlab_draws_and_updates(opened):
    _dashboard(opened, "lab")


def test_dashboard_in_notebook7_draws_and_updates(opened):
    _dashboard(opened, "notebook")


def test_quickstart_in_jupyterlab(opened):
    nb = opened("quickstart")
    nb.run_all()
    nb.wait_finished(240)
    nb.check_widgets_and_errors()
    text = nb.page.evaluate("document.body.innerText")
    assert "hello from mesos-nb" in text and "TASK_FINISHED on" in text


OFFER_COLUMNS_JS = """() => {
  const rows = Array.from(document.querySelectorAll('.mesos-offer-row'));
  const lefts = (el) => Array.from(el.children).map(c => Math.round(c.getBoundingClientRect().left));
  return {head: lefts(rows[0].parentElement.firstElementChild), rows: rows.map(lefts)};
}"""


def test_offer_browser_decline_removes_the_offer_for_the_refuse_period(opened):
    nb = opened("offers")
    nb.run_all()
    nb.wait_finished(120)
    nb.check_widgets_and_errors()
    rows = nb.page.locator(".mesos-offer-row")
    wait_for(lambda: rows.count() >= 1, timeout=30, message="no offer rows shown")
    # every row's cells start where the header's do (the columns line up), within less than one
    # character (the buttons' margins shift the row by a few pixels; content-sized cells drift by tens)
    lefts = nb.page.evaluate(OFFER_COLUMNS_JS)
    assert lefts["rows"] and all(len(r) == len(lefts["head"]) for r in lefts["rows"]), lefts
    for r in lefts["rows"]:
        assert all(abs(a - b) <= 7 for a, b in zip(r, lefts["head"], strict=True)), \
            f"offer rows do not line up under the header: {lefts} (screenshot {nb.shot('-failed')})"
    first = rows.first
    agent = next(c for c in (first.get_attribute("class") or "").split() if c.startswith("mesos-agent-"))
    first.get_by_role("button", name="Decline").click()
    gone = f".mesos-offer-row.{agent}"
    wait_for(lambda: nb.page.locator(gone).count() == 0, timeout=10,
             message="the declined offer is still shown")
    # the browser's refuse period is 30 s: the agent's resources must not come back at once
    # (the browser tells the moment a row with that agent appears; none may within 8 s)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with pytest.raises(PlaywrightTimeout):
        nb.page.wait_for_selector(gone, state="attached", timeout=8000)
        raise AssertionError("the declined offer came back within 8 s")
    assert "declined" in nb.page.evaluate("document.body.innerText")


def test_dask_in_jupyterlab_shows_the_cluster_widget(opened, server):
    pytest.importorskip("distributed")
    nb = opened("dask")
    nb.run_all()
    nb.wait_finished(240)
    nb.check_widgets_and_errors()
    text = nb.page.evaluate("document.body.innerText")
    assert "4 workers" in text and "3 workers" in text
    assert "Scaling" in text, "the Dask cluster widget is not shown"
    assert nb.check_declared(server["root"])


def test_ipyparallel_in_jupyterlab(opened, server):
    pytest.importorskip("ipyparallel")
    nb = opened("ipyparallel")
    nb.run_all()
    nb.wait_finished(240)
    nb.check_widgets_and_errors()
    assert "4 engines" in nb.page.evaluate("document.body.innerText")
    assert nb.check_declared(server["root"])


def test_spark_in_jupyterlab(opened, server):
    """spark.ipynb as a user runs it (master, 2 workers, their executors and the driver: six JVMs,
    about a minute on 2 loaded cores); its cells' declared outputs are read from the page."""
    if IN_CI:
        import pyspark  # noqa: F401  CI installs the spark extra and Java: their absence is a failure
        assert shutil.which("java") or os.environ.get("JAVA_HOME"), "CI=true but java is not installed"
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("java is not installed")
    nb = opened("spark")
    nb.run_all()
    nb.wait_finished(420)
    nb.check_widgets_and_errors()
    assert nb.check_declared(server["root"]) >= 6
    assert "1000000" in nb.page.evaluate("document.body.innerText")

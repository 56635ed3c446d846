"""What makes ``%mesos dashboard`` draw sooner: the warm-up thread's prebuilt and pre-serialized
dashboard, BokehJS published (its core only, guarded) already by ``%load_ext mesos_nb``, and the
sample the widget was drawn with not applied again."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import types
import zlib

import IPython
import IPython.display
import pytest
from IPython.core.interactiveshell import InteractiveShell
from test_dashboard import _snap

from mesos_nb import dashboards
from mesos_nb.dashboards import PREWARM_THREAD, bokehjs, prewarm, widget


def _bundle_json(bundle: dict) -> str:
    (doc,) = bundle["docs_json"].values()
    return json.dumps(doc, sort_keys=True)


def test_the_warm_up_thread_builds_one_dashboard_that_the_next_widget_takes():
    widget.take_prebuilt()
    t = prewarm()
    assert t is not None
    t.join(120)
    assert not t.is_alive()
    prebuilt = widget._prebuilt[0]
    first = widget.DashboardWidget("http://127.0.0.1:9", role="eng")
    second = widget.DashboardWidget("http://127.0.0.1:9")
    try:
        assert first.dashboard is prebuilt and "quota" in first.dashboard.components  # the role's plot
        assert first.dashboard["quota"].role == "eng"
        assert second.dashboard is not prebuilt and "quota" not in second.dashboard.components
    finally:
        first.close()
        second.close()


def test_the_prebuilt_bundle_is_what_bokeh_serializes_after_the_first_snapshot():
    """The widget's document, taken from the warm-up thread's serialization with the changed
    attributes re-encoded, is exactly Bokeh's full serialization of the drawn document."""
    from jupyter_bokeh import BokehModel

    widget.take_prebuilt()
    widget.prebuild()
    w = widget.DashboardWidget("http://127.0.0.1:9", role="eng", initial=_snap())
    try:
        sent = json.loads(w.widget.get_state()["render_bundle"])
        full = BokehModel._model_to_traits(w.dashboard.root)
        assert _bundle_json(sent) == _bundle_json(full)
        text = _bundle_json(sent)
        assert "h:5051 #1" in text and "t2" in text  # the snapshot's agents and tasks are in it
        assert "Quota headroom of role 'eng'" in text and "role '*'" not in text
    finally:
        w.close()


def test_a_change_the_prebuilt_bundle_cannot_express_falls_back_to_bokehs_serialization():
    from bokeh.models import Div
    from jupyter_bokeh import BokehModel

    widget.take_prebuilt()
    widget.prebuild()
    dash = widget.take_prebuilt()
    dash.root.children.insert(0, Div(text="first"))  # not an append: the rows' definitions would move
    assert dash.prerendered.take() is None
    w = widget.DashboardWidget("http://127.0.0.1:9")  # what the widget then does: Bokeh's own way
    try:
        assert "render_bundle" in w.widget.get_state()
    finally:
        w.close()
    widget.prebuild()
    dash = widget.take_prebuilt()
    dash.root.children.append(Div(text="below"))  # an append: the plots keep their definitions
    dash.update(_snap())
    bundle = dash.prerendered.take()
    assert bundle is not None and '"below"' in _bundle_json(bundle)
    assert _bundle_json(bundle) == _bundle_json(BokehModel._model_to_traits(dash.root))


def _published(monkeypatch) -> list[dict]:
    out: list[dict] = []
    monkeypatch.setattr(IPython.display, "publish_display_data",  # updates (emptied outputs) left out
                        lambda data, metadata=None, **kw: None if kw.get("update") else out.append(data))
    return out


def test_bokehjs_is_published_as_its_core_only_and_guarded(monkeypatch):
    published = _published(monkeypatch)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))
    assert bokehjs.load_bokehjs()
    (data,) = published
    assert set(data) == {bokehjs.LOAD_MIME_TYPE, bokehjs.JS_MIME_TYPE}  # lab extension; classic notebook
    core = base64.b64encode(bokehjs.bokehjs_path().read_bytes()).decode()
    for script in data.values():
        assert core in script and len(script) < 2_000_000  # the full INLINE set: ≈ 3.9 MB (5.2 in base64)
        assert "if (window.Bokeh === undefined)" in script  # skipped where the page has it
        assert "closest('.jp-CodeCell')" not in script and script.endswith("load();\n})();")  # at once


def test_load_ext_publishes_bokehjs_deferred_in_a_kernel_and_nothing_in_a_terminal(monkeypatch):
    """``%load_ext mesos_nb``: in a kernel the page gets BokehJS to evaluate when idle; in a
    plain terminal IPython (no frontend) nothing is published and the magics work."""
    published = _published(monkeypatch)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    try:
        monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
        shell.run_line_magic("load_ext", "mesos_nb")
        assert published == [] and "mesos" in shell.magics_manager.magics["line"]
        shell.run_line_magic("unload_ext", "mesos_nb")
        shell.kernel = object()  # what an ipykernel shell has
        shell.run_line_magic("load_ext", "mesos_nb")
        (data,) = published
        assert set(data) == {bokehjs.LOAD_MIME_TYPE}  # jupyter_bokeh's renderer only: half the message
        script = data[bokehjs.LOAD_MIME_TYPE]
        assert "requestIdleCallback(load" in script and "if (window.Bokeh === undefined)" in script
        assert "closest('.jp-CodeCell')" in script  # after its cell shows done
        assert base64.b64encode(zlib.compress(bokehjs.bokehjs_path().read_bytes(), 1)).decode() in script
        assert len(script) < 700_000  # compressed: the cell's reply waits behind this message
    finally:
        shell.run_line_magic("unload_ext", "mesos_nb")
        InteractiveShell.clear_instance()


def test_a_dashboard_made_while_the_warm_up_thread_builds_takes_its_dashboard_not_a_second(monkeypatch):
    """A dashboard cell run right after ``%mesos connect`` can find the warm-up thread still
    building: it waits for that dashboard instead of building its own beside it (two builds
    fighting for one GIL held the widget back 0.7-2.1 s at 10,000 agents)."""
    widget.take_prebuilt()
    made = []
    real = widget.Dashboard

    def counted(*a, **kw):
        made.append(threading.current_thread().name)
        return real(*a, **kw)

    monkeypatch.setattr(widget, "Dashboard", counted)
    go = threading.Event()
    t = threading.Thread(target=lambda: go.wait(30) and widget.prebuild(), name=PREWARM_THREAD, daemon=True)
    monkeypatch.setattr(dashboards, "_warm_thread", t)  # what prewarm() records of the thread it starts
    t.start()
    try:
        go.set()  # the thread builds now; the widget below is made while it does
        w = widget.DashboardWidget("http://127.0.0.1:9", role="analytics", initial=_snap())
        assert made == [PREWARM_THREAD]  # one dashboard, the warm-up thread's
        assert w.dashboard["quota"] is not None
    finally:
        t.join(30)
        widget.take_prebuilt()


HALF_IMPORTED = r"""
import importlib.abc, sys, threading
from mesos_nb import dashboards

entered, release = threading.Event(), threading.Event()

class HoldComponents(importlib.abc.MetaPathFinder):
    # holds the warm-up thread inside the widget module's import (as a slow Bokeh import does)
    def find_spec(self, name, path=None, target=None):
        if name == "mesos_nb.dashboards.components" and threading.current_thread().name == dashboards.PREWARM_THREAD:
            entered.set()
            release.wait(60)
        return None

sys.meta_path.insert(0, HoldComponents())
t = dashboards.prewarm()
assert entered.wait(60)
assert "mesos_nb.dashboards.widget" in sys.modules  # half-imported, as the connect cell finds it
print("warm_page while importing:", dashboards.warm_page())
release.set()
t.join(120)
from mesos_nb.dashboards import widget
print("prebuilt after:", widget.prebuilt_warm_up() is not None)
"""


def test_connect_while_the_warm_up_thread_is_still_importing_the_widget_does_not_fail():
    """``%mesos connect`` publishes the page warm-up if the warm-up thread has prebuilt it. Run
    while that thread was still inside the widget module's import (Bokeh's, seconds on a busy
    machine), it read the half-imported module and the cell failed with "partially initialized
    module ... has no attribute 'prebuilt_warm_up'". Now it publishes nothing yet and goes on."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HALF_IMPORTED], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "warm_page while importing: False" in done.stdout, done.stdout + done.stderr
    assert "prebuilt after: True" in done.stdout, done.stdout + done.stderr


def test_the_sample_the_widget_was_drawn_with_is_not_applied_again():
    """The stream's first event is usually the snapshot the widget was built with: the time
    series must not get that point twice (nor the page a patch for it while it draws)."""
    widget.take_prebuilt()
    w = widget.DashboardWidget("http://127.0.0.1:9", initial=_snap(), check_every=0.05)
    w.should_stop = lambda: w.updates >= 1  # type: ignore[method-assign]

    async def read(queue: asyncio.Queue) -> None:
        queue.put_nowait(_snap())  # the same sample again
        queue.put_nowait(_snap(time=1001.0))  # a new one
        await asyncio.Event().wait()

    w._read = read  # type: ignore[method-assign]
    try:
        asyncio.run(asyncio.wait_for(w.run(), 20))
        assert list(w.dashboard["timeseries"].source.data["time"]) == [1e6, 1.001e6]
    finally:
        w.close()


@pytest.fixture(autouse=True)
def _no_leftover_prebuilt():
    yield
    widget.take_prebuilt()

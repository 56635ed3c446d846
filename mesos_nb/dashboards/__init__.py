"""Live utilization dashboards (Bokeh), shared by ``%mesos dashboard`` and the master's web UI.

``dashboard(master)`` returns a started :class:`DashboardWidget` (display it in a notebook).
See README.md in this folder for the job and the data flow.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
from typing import Any

PREWARM_THREAD = "mesos-nb-dashboard-prewarm"  # the thread that builds the prebuilt dashboard

# The warm-up thread prewarm() started. While it runs, the widget module may sit in sys.modules
# half-imported (Bokeh's import is seconds on a busy machine), and a cell's `%mesos connect`
# reading it would fail with "partially initialized module".
_warm_thread: threading.Thread | None = None


def dashboard(master: Any, alive: Any = None, load_js: bool = True, role: str | None = None) -> Any:
    """The started widget (``role``: also plot that role's quota headroom). Bokeh is imported
    only when a dashboard is asked for."""
    if load_js:  # BokehJS first (guarded: skipped where the page has it from %load_ext)
        from .bokehjs import load_bokehjs

        load_bokehjs()
    from .widget import dashboard as _dashboard

    return _dashboard(master, alive=alive, load_js=False, role=role)


def prewarm() -> threading.Thread | None:
    """Have a later ``%mesos dashboard`` draw at once (the extension calls this when it loads in
    a kernel): publish BokehJS into the page now, deferred (the page evaluates it when idle,
    long before the dashboard cell runs), and import Bokeh and jupyter_bokeh and build and
    serialize one dashboard on a daemon thread. Returns the thread, or None where Bokeh or
    jupyter_bokeh is not installed."""
    if importlib.util.find_spec("bokeh") is None or importlib.util.find_spec("jupyter_bokeh") is None:
        return None
    from .bokehjs import load_bokehjs

    load_bokehjs(deferred=True)  # outside a kernel (terminal IPython) it publishes nothing

    global _warm_thread

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module("jupyter_bokeh")
            importlib.import_module(f"{__name__}.widget").prebuild()

    t = _warm_thread = threading.Thread(target=load, name=PREWARM_THREAD, daemon=True)
    t.start()
    return t


def wait_for_prewarm(timeout: float) -> None:
    """Wait (at most ``timeout`` s) for the warm-up thread, if one was started and is not the
    caller."""
    t = _warm_thread
    if t is not None and t is not threading.current_thread():
        t.join(timeout)


def warm_page() -> bool:
    """Publish the page-side warm-up (the prebuilt dashboard drawn once offscreen, after this
    cell) if the warm-up thread has built it; ``%mesos connect`` calls this, as the cell a
    dashboard cell usually follows. Returns whether it was published (inside a kernel only)."""
    if _warm_thread is not None and _warm_thread.is_alive():  # the widget may be half-imported
        return False
    widget = sys.modules.get(f"{__name__}.widget")  # not imported: nothing is prebuilt
    doc = widget.prebuilt_warm_up() if widget is not None else None
    if doc is None:
        return False
    from .bokehjs import publish, warm_up_script

    return publish(warm_up_script(doc), keep=False)  # not carried into the saved notebook


__all__ = ["dashboard", "prewarm", "wait_for_prewarm", "warm_page"]

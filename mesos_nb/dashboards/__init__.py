"""Live utilization dashboards (Bokeh), shared by ``%mesos dashboard`` and the master's web UI.

``dashboard(master)`` returns a started :class:`DashboardWidget` (display it in a notebook).
See README.md in this folder for the job and the data flow.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import threading
from typing import Any


def dashboard(master: Any, alive: Any = None, load_js: bool = True, role: str | None = None) -> Any:
    """The started widget (``role``: also plot that role's quota headroom). Bokeh is imported
    only when a dashboard is asked for."""
    if load_js:  # BokehJS first: the page evaluates it while the kernel builds the figures
        from .bokehjs import load_bokehjs

        load_bokehjs()
    from .widget import dashboard as _dashboard

    return _dashboard(master, alive=alive, load_js=False, role=role)


def prewarm() -> threading.Thread | None:
    """Import Bokeh, jupyter_bokeh and the dashboard's modules and build one dashboard's figures
    on a daemon thread, so that a later ``%mesos dashboard`` publishes BokehJS and draws at once
    instead of first spending a second or more in imports (the extension calls this when it loads in a kernel). Returns
    the thread, or None where Bokeh or jupyter_bokeh is not installed."""
    if importlib.util.find_spec("bokeh") is None or importlib.util.find_spec("jupyter_bokeh") is None:
        return None

    def load() -> None:
        with contextlib.suppress(Exception):
            for name in (f"{__name__}.bokehjs", "bokeh.io.notebook", "bokeh.resources", "jupyter_bokeh"):
                importlib.import_module(name)
            importlib.import_module(f"{__name__}.widget").prebuild()

    t = threading.Thread(target=load, name="mesos-nb-dashboard-prewarm", daemon=True)
    t.start()
    return t


__all__ = ["dashboard", "prewarm"]

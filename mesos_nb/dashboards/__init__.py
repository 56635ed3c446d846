"""Live utilization dashboards (Bokeh), shared by ``%mesos dashboard`` and the master's web UI.

``dashboard(master)`` returns a started :class:`DashboardWidget` (display it in a notebook).
See README.md in this folder for the job and the data flow.
"""

from __future__ import annotations

from typing import Any


def dashboard(master: Any, alive: Any = None, load_js: bool = True, role: str | None = None) -> Any:
    """The started widget (``role``: also plot that role's quota headroom). Bokeh is imported
    only when a dashboard is asked for."""
    from .widget import dashboard as _dashboard

    return _dashboard(master, alive=alive, load_js=load_js, role=role)


__all__ = ["dashboard"]

"""Bokeh components: each has a ``root`` (the figure), a ``source`` and ``update(snapshot)``.

The column transforms live in :mod:`.data` (no Bokeh there) so the master's web UI sends the
very same updates to the browser. Models are named ``<component>-source`` / ``<component>-range``
so the browser (and tests) can find them in the document.
"""

from __future__ import annotations

from typing import Any

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Legend, Range1d
from bokeh.plotting import figure
from bokeh.transform import dodge

from . import data as d


def _legend_below(p) -> None:
    """Put the legend under the plot, not over the data (legend_label glyphs then use it)."""
    p.add_layout(Legend(orientation="horizontal", location="center", border_line_alpha=0,
                        padding=2, margin=2, spacing=12), "below")


def _plot(title: str, height: int, **kw: Any):
    """A figure as every component draws it: full width, no toolbar."""
    return figure(title=title, height=height, sizing_mode="stretch_width", toolbar_location=None, **kw)


class Component:
    name = ""

    def __init__(self) -> None:
        self.source = ColumnDataSource(data=self._empty(), name=f"{self.name}-source")
        self.root = self._figure()
        # the categorical axis, found once: select_one() walks the figure's ~50 models (97 % of
        # an update's time when it ran on every update)
        self.range = next((r for r in (self.root.x_range, self.root.y_range) if r.name == f"{self.name}-range"), None)

    def _empty(self) -> dict[str, list[Any]]:
        """The component's columns, with no rows: what its updater makes of an empty snapshot."""
        return {k: [] for k in d.UPDATERS[self.name](_EMPTY)["data"]}

    def _figure(self):
        raise NotImplementedError

    def update(self, snapshot: dict[str, Any]) -> None:
        self.apply(d.UPDATERS[self.name](snapshot))

    def apply(self, upd: dict[str, Any]) -> None:
        if upd["mode"] == "stream":
            if upd["data"] and any(upd["data"].values()):
                self.source.stream(upd["data"], rollover=upd.get("rollover"))
            return
        factors = upd.get("factors")
        rng = self.range
        if factors is not None and rng is not None and list(rng.factors) != factors:
            rng.factors = factors
        if dict(self.source.data) != upd["data"]:  # skip identical data, as Dask does
            self.source.data = upd["data"]


class AgentsBars(Component):
    """Per agent: CPU and memory allocated vs used, as fractions of the agent's total."""

    name = "agents"


    def _figure(self):
        p = _plot(f"Agents (in groups above {d.GROUP_ABOVE}): allocated vs used (fraction of total)", 260,
                  x_range=FactorRange(name="agents-range"),
                  y_range=Range1d(0, 1.05))
        _legend_below(p)
        for i, (col, color, label) in enumerate((
            ("cpus_allocated_frac", "#9ecae1", "CPU allocated"),
            ("cpus_used_frac", "#08519c", "CPU used"),
            ("mem_allocated_frac", "#fdd0a2", "memory allocated"),
            ("mem_used_frac", "#d94801", "memory used"),
        )):
            p.vbar(x=dodge("agent", -0.3 + 0.2 * i, range=p.x_range), top=col, width=0.18,
                   source=self.source, color=color, legend_label=label)
        p.add_tools(HoverTool(tooltips=[("agent", "@agent"), ("agents", "@agents"), ("busiest", "@busiest"), ("cpus", "@cpus_used{0.00} used / @cpus_allocated allocated / @cpus_total"),
                                        ("mem MB", "@mem_used{0} used / @mem_allocated allocated / @mem_total")]))
        p.xaxis.major_label_orientation = 0.8
        return p


class BusiestAgents(Component):
    """The agents with the most CPU allocated: CPU allocated and used, fractions of their total."""

    name = "busiest"

    def _figure(self):
        p = _plot(f"Busiest agents (top {d.TOP_AGENTS}, CPU)", 260, y_range=FactorRange(name="busiest-range"),
                  x_range=Range1d(0, 1.05))
        _legend_below(p)
        p.hbar(y=dodge("agent", 0.17, range=p.y_range), right="cpus_allocated_frac", height=0.3,
               source=self.source, color="#9ecae1", legend_label="CPU allocated")
        p.hbar(y=dodge("agent", -0.17, range=p.y_range), right="cpus_used_frac", height=0.3,
               source=self.source, color="#08519c", legend_label="CPU used")
        p.add_tools(HoverTool(tooltips=[("agent", "@agent"),
                                        ("cpus", "@cpus_used{0.00} used / @cpus_allocated allocated / @cpus_total")]))
        return p


class ClusterTimeseries(Component):
    """Cluster-wide allocated and used fractions over time (streamed, with rollover)."""

    name = "timeseries"


    def _figure(self):
        p = _plot("Cluster utilization", 240, x_axis_type="datetime", y_range=Range1d(0, 1.05))
        _legend_below(p)
        for col, color, dash, label in (
            ("cpus_allocated", "#6baed6", "dashed", "CPU allocated"),
            ("cpus_used", "#08519c", "solid", "CPU used"),
            ("mem_allocated", "#fd8d3c", "dashed", "memory allocated"),
            ("mem_used", "#d94801", "solid", "memory used"),
        ):
            p.line("time", col, source=self.source, color=color, line_dash=dash, line_width=2,
                   legend_label=label)
        return p


class Shares(Component):
    """DRF dominant share per framework and per role."""

    name = "shares"


    def _figure(self):
        p = _plot("Dominant share (DRF)", 240, y_range=FactorRange(name="shares-range"), x_range=Range1d(0, 1.0))
        p.hbar(y="label", right="share", height=0.7, source=self.source, color="color")
        p.add_tools(HoverTool(tooltips=[("", "@label"), ("share", "@share{0.000}")]))
        return p


class TaskTimeline(Component):
    """Recent tasks, one row each, segments coloured by state."""

    name = "timeline"


    def _figure(self):
        p = _plot("Task timeline (recent state changes)", 300, y_range=FactorRange(name="timeline-range"),
                  x_axis_type="datetime")
        p.hbar(y="task", left="left", right="right", height=0.7, source=self.source, color="color")
        p.add_tools(HoverTool(tooltips=[("task", "@task_id"), ("state", "@state")]))
        return p


class OffersOutstanding(Component):
    """Outstanding offers over time: how many, and how many CPUs they hold."""

    name = "offers"


    def _figure(self):
        p = _plot("Outstanding offers", 240, x_axis_type="datetime")
        _legend_below(p)
        p.step("time", "count", source=self.source, color="#31a354", line_width=2, legend_label="offers",
               mode="after")
        p.line("time", "cpus", source=self.source, color="#756bb1", line_width=2, legend_label="offered CPUs")
        return p


_EMPTY: dict[str, Any] = {
    "time": 0.0,
    "cluster": {k: {} for k in ("total", "allocated", "used", "offered")},
    "offers": {"count": 0, "resources": {}},
    "agents": [],
}

COMPONENTS = (AgentsBars, BusiestAgents, ClusterTimeseries, Shares, TaskTimeline, OffersOutstanding)


class Dashboard:
    """All components in one layout; ``update(snapshot)`` feeds each of them."""

    def __init__(self, extra: tuple[Component, ...] = ()) -> None:
        self.components = {c.name: c() for c in COMPONENTS}
        c = self.components
        self.root = column(
            row(c["timeseries"].root, c["offers"].root, sizing_mode="stretch_width"),
            row(c["agents"].root, c["busiest"].root, sizing_mode="stretch_width"),
            row(c["shares"].root, c["timeline"].root, sizing_mode="stretch_width"),
            sizing_mode="stretch_width", name="mesos-dashboard",
        )
        for comp in extra:
            self.add(comp)

    def add(self, comp: Component) -> None:
        """One more plot below the rest (e.g. the notebook's quota headroom, dashboards/quota.py)."""
        self.components[comp.name] = comp
        self.root.children.append(comp.root)

    def __getitem__(self, name: str) -> Component:
        return self.components[name]

    def update(self, snapshot: dict[str, Any]) -> None:
        for comp in self.components.values():
            comp.update(snapshot)

    def apply(self, updates: list[dict[str, Any]]) -> None:
        for upd in updates:
            comp = self.components.get(upd["name"])
            if comp is not None:
                comp.apply(upd)

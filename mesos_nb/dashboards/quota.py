"""The quota headroom plot of the notebook dashboard: for the user's role (or the ancestor whose
quota bounds it), each limited resource as a bar of what is consumed against the limit, with
the guarantee marked; the title says the headroom left. Its columns come from
:func:`.data.quota_update`."""

from __future__ import annotations

from typing import Any

from bokeh.models import FactorRange, HoverTool, Range1d
from bokeh.plotting import figure

from . import data as d
from .components import Component


class QuotaHeadroom(Component):
    name = "quota"

    def __init__(self, role: str) -> None:
        self.role = role
        super().__init__()

    def _empty(self) -> dict[str, list[Any]]:
        return {k: [] for k in d.quota_update({}, self.role)["data"]}

    def retarget(self, role: str) -> None:
        """Plot ``role`` instead (the warm-up thread builds the plot before the role is known)."""
        self.role = role
        self.root.title.text = self._no_quota()

    def _no_quota(self) -> str:
        return f"Quota headroom of role '{self.role}': no quota"

    def _figure(self):
        p = figure(y_range=FactorRange(name="quota-range"), x_range=Range1d(0, 1.05), height=200,
                   title=self._no_quota(), sizing_mode="stretch_width",
                   toolbar_location=None)
        p.hbar(y="resource", right="consumed_frac", height=0.6, source=self.source, color="#e6550d",
               legend_label="consumed / limit")
        p.scatter(x="guarantee_frac", y="resource", source=self.source, marker="diamond", size=12,
                  color="#31a354", legend_label="guarantee")
        p.legend.location = "bottom_right"
        p.add_tools(HoverTool(tooltips=[("", "@resource"), ("consumed", "@consumed{0.[000]}"),
                                        ("guarantee", "@guarantee{0.[000]}"), ("limit", "@limit{0.[000]}"),
                                        ("headroom", "@headroom{0.[000]}")]))
        return p

    def update(self, snapshot: dict[str, Any]) -> None:
        upd = d.quota_update(snapshot, self.role)
        self.apply(upd)
        cols = upd["data"]
        if upd["role"] is None:
            title = self._no_quota()
        else:
            left = ", ".join(f"{n} {h:g}" for n, h in zip(cols["resource"], cols["headroom"], strict=True)
                             if h is not None) or "no limit"
            title = f"Quota headroom of role '{upd['role']}': {left}"
        if self.root.title.text != title:
            self.root.title.text = title


__all__ = ["QuotaHeadroom"]

"""What makes ``%mesos dashboard`` draw sooner: the warm-up thread's prebuilt dashboard, and
BokehJS published as its core only (no widgets, tables, WebGL or MathJax bundles)."""

from __future__ import annotations

import types

import bokeh.io.notebook as bokeh_notebook
import IPython

from mesos_nb.dashboards import bokehjs, prewarm, widget


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
        assert first.dashboard is prebuilt and "quota" in first.dashboard.components  # the role's plot added
        assert second.dashboard is not prebuilt and "quota" not in second.dashboard.components
    finally:
        first.close()
        second.close()


def test_bokehjs_is_published_as_its_core_only(monkeypatch):
    published: list[dict] = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.setattr(bokeh_notebook, "publish_display_data", lambda data, *a, **kw: published.append(data))
    assert bokehjs.load_bokehjs()
    scripts = {k: v for d in published for k, v in d.items() if k != "text/html"}
    assert bokeh_notebook.LOAD_MIME_TYPE in scripts  # what JupyterLab's jupyter_bokeh evaluates
    for mime, script in scripts.items():
        assert 1_000_000 < len(script) < 2_000_000, (mime, len(script))  # the full INLINE set: ≈ 3.9 MB

"""Publish BokehJS into the notebook page, before the dashboard's widget.

jupyter_bokeh's view does not bundle BokehJS: without this output rendered *before* the widget,
JupyterLab shows "Failed to create view for 'BokehView'" (``window.Bokeh`` is undefined). This
module imports only ``bokeh.io`` / ``bokeh.resources`` (not ``bokeh.plotting``), so the dashboard
can publish the script first and build its figures while the page evaluates it.
"""

from __future__ import annotations

BOKEHJS_COMPONENTS = ("bokeh",)


def load_bokehjs() -> bool:
    """Publish the installed BokehJS core (inline: no CDN, versions always match); only inside
    a kernel (a display publisher with a comm/session). Returns whether it was published."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or getattr(ip, "kernel", None) is None:
        return False
    from bokeh.io.notebook import load_notebook
    from bokeh.resources import Resources

    # Only BokehJS's core: the dashboard uses no widgets, tables, WebGL or MathJax, and the
    # page evaluates 1.3 MB of script instead of 3.9 MB before it can draw.
    load_notebook(resources=Resources(mode="inline", components=list(BOKEHJS_COMPONENTS)), hide_banner=True)
    return True

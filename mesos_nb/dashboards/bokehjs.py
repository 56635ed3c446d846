"""Publish BokehJS into the notebook page, before the dashboard's widget.

jupyter_bokeh's view does not bundle BokehJS: without this output rendered *before* the widget,
JupyterLab shows "Failed to create view for 'BokehView'" (``window.Bokeh`` is undefined).

The script is the installed ``bokeh.min.js`` (BokehJS's core: the dashboard uses no widgets,
tables, WebGL or MathJax), read from the package's files without importing Bokeh (an import
of ``bokeh.io`` costs half a second), and guarded: a page that already has BokehJS skips it.
``%load_ext mesos_nb`` publishes it *deferred* (the page evaluates it when idle, so the
extension's cell is not held up by half a second of script), and the dashboard cell publishes
it again, guarded: after a page reload (the kernel kept, the extension's output gone) the page
still gets BokehJS, and otherwise it costs the page one skipped parse.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

# jupyter_bokeh's lab extension evaluates this MIME type (a <script> with its text);
# the classic notebook evaluates application/javascript. Bokeh publishes both.
LOAD_MIME_TYPE = "application/vnd.bokehjs_load.v0+json"
JS_MIME_TYPE = "application/javascript"
BOKEHJS_FILE = ("server", "static", "js", "bokeh.min.js")


def bokehjs_path() -> Path | None:
    """The installed BokehJS core, or None where Bokeh is not installed."""
    spec = importlib.util.find_spec("bokeh")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*BOKEHJS_FILE)
    return path if path.is_file() else None


@functools.lru_cache(maxsize=2)
def bokehjs_script(deferred: bool = False) -> str | None:
    """The guarded loader script (``deferred``: evaluated when the page is idle), or None."""
    path = bokehjs_path()
    if path is None:
        return None
    # The file starts with 'use strict' and registers itself on `this`: its text becomes the
    # body of a function called with `this` = window (the classic notebook evals in a cell).
    load = ("function () { if (window.Bokeh === undefined) { (function () {\n"
            + path.read_text(encoding="utf-8")
            + "\n}).call(window); window.Bokeh.set_log_level('info'); } }")
    if deferred:
        return (f"(function () {{ const load = {load};\n"
                "if (window.requestIdleCallback) window.requestIdleCallback(load, {timeout: 2000});"
                " else window.setTimeout(load, 0); })();")
    return f"({load})();"


def _kernel_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    return ip if ip is not None and getattr(ip, "kernel", None) is not None else None


def load_bokehjs(deferred: bool = False) -> bool:
    """Publish BokehJS's core into the page (inline: no CDN, versions always match); only inside
    a kernel (a display publisher with a frontend). Returns whether it was published."""
    if _kernel_shell() is None:
        return False
    script = bokehjs_script(deferred)
    if script is None:
        return False
    from IPython.display import publish_display_data

    publish_display_data({LOAD_MIME_TYPE: script, JS_MIME_TYPE: script}, metadata={})
    return True


__all__ = ["JS_MIME_TYPE", "LOAD_MIME_TYPE", "bokehjs_path", "bokehjs_script", "load_bokehjs"]

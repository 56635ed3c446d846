"""Publish BokehJS into the notebook page, before the dashboard's widget.

jupyter_bokeh's view does not bundle BokehJS: without this output rendered *before* the widget,
JupyterLab shows "Failed to create view for 'BokehView'" (``window.Bokeh`` is undefined).

The script carries the installed ``bokeh.min.js`` (BokehJS's core: the dashboard uses no widgets,
tables, WebGL or MathJax), read from the package's files without importing Bokeh (an import
of ``bokeh.io`` costs half a second), and guarded: a page that already has BokehJS skips it.
``%load_ext mesos_nb`` publishes it *deferred* (the page evaluates it once that cell shows
done, when idle, so the extension's cell is not held up by half a second of script), and the dashboard cell publishes
it again, guarded: after a page reload (the kernel kept, the extension's output gone) the page
still gets BokehJS, and otherwise it costs the page one skipped parse.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import uuid
import zlib
from pathlib import Path
from typing import Any

# jupyter_bokeh's lab extension evaluates this MIME type (a <script> with its text);
# the classic notebook evaluates application/javascript. Bokeh publishes both.
LOAD_MIME_TYPE = "application/vnd.bokehjs_load.v0+json"
JS_MIME_TYPE = "application/javascript"
MIME_TYPES = (LOAD_MIME_TYPE, JS_MIME_TYPE)
BOKEHJS_FILE = ("server", "static", "js", "bokeh.min.js")


def bokehjs_path() -> Path | None:
    """The installed BokehJS core, or None where Bokeh is not installed."""
    spec = importlib.util.find_spec("bokeh")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*BOKEHJS_FILE)
    return path if path.is_file() else None


@functools.lru_cache(maxsize=2)
def _bokehjs_base64(compressed: bool = False) -> str | None:
    path = bokehjs_path()
    if path is None:
        return None
    code = path.read_bytes()
    return base64.b64encode(zlib.compress(code, 1) if compressed else code).decode("ascii")


# The deferred copy is compressed (0.56 MB instead of 1.7 MB in base64; 12 ms to compress): the
# %load_ext cell's reply waits behind the message in the kernel, the server and the page. The
# page inflates it without blocking (DecompressionStream); a browser without it gets BokehJS from
# the dashboard cell's copy instead.
_INFLATE_AND_LOAD = """const load = () => {
    if (window.Bokeh !== undefined || typeof DecompressionStream === 'undefined') return;
    const bin = atob('%s'); const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'))).text().then((code) => {
      if (window.Bokeh === undefined) { new Function(code).call(window); window.Bokeh.set_log_level('info'); } });
  };"""


# Where the page runs the deferred copy: once the cell that published it shows done (JupyterLab
# and Notebook 7 mark a running cell's prompt with "*"), when the page is next idle; so that the
# half second of evaluation does not hold up that cell's reply. Elsewhere: when idle.
_AFTER_CELL = """const script = document.currentScript;
  const cell = script && script.closest ? script.closest('.jp-CodeCell') : null;
  const idle = () => window.requestIdleCallback ? window.requestIdleCallback(load, {timeout: 1000}) : window.setTimeout(load, 0);
  let waited = 0;
  const poll = () => { const p = cell && cell.querySelector('.jp-InputPrompt');
    if (p && p.textContent.includes('*') && (waited += 50) < 10000) window.setTimeout(poll, 50); else idle(); };
  poll();"""


@functools.lru_cache(maxsize=2)
def bokehjs_script(deferred: bool = False) -> str | None:
    """The guarded loader script (``deferred``: evaluated after its cell, when the page is
    idle), or None where Bokeh is not installed."""
    code = _bokehjs_base64(compressed=deferred)
    if code is None:
        return None
    if deferred:
        return "(function () {\n  " + _INFLATE_AND_LOAD % code + "\n  " + _AFTER_CELL + "\n})();"
    # The code travels as base64 until it runs: where the page has BokehJS it only scans a string,
    # not 1.3 MB of script, and the kernel encodes the message in milliseconds (a JS string
    # literal's escapes took 60-80 ms to JSON-encode). The file starts with 'use strict' and
    # registers itself on `this`.
    load = ("const load = () => { if (window.Bokeh === undefined) {\n"
            f"    const bin = atob('{code}'); const bytes = new Uint8Array(bin.length);\n"
            "    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);\n"
            "    new Function(new TextDecoder().decode(bytes)).call(window); window.Bokeh.set_log_level('info'); } };")
    # the dashboard cell's copy also tells a warm-up still waiting for its turn not to start: the
    # real drawing is next, and the page's main thread is better spent on it
    return "(function () {\n  " + load + "\n  window.mesos_nb_dashboard_drawn = true; load();\n})();"


# Renders a document offscreen once, then removes it: the first real drawing of the dashboard
# then runs BokehJS code the page has compiled already and style sheets it has built (about half
# of a cold first drawing's time in Chromium). Errors are the warm-up's own: it is dropped
# (``window.mesos_nb_warm_up`` says 'done' or why it failed).
_WARM_UP = """let tries = 0;
  const load = () => {
    if (window.mesos_nb_dashboard_drawn) { window.mesos_nb_warm_up = 'skipped: a dashboard came first'; return; }
    if (window.Bokeh === undefined) { if ((tries += 1) < 100) window.setTimeout(load, 100); return; }
    const el = document.createElement('div');
    el.style.cssText = 'position: fixed; left: -12000px; top: 0; width: 1200px;';
    document.body.appendChild(el);
    let doc = null;
    const done = (err) => {
      try { if (doc !== null) { doc.clear(); const i = (Bokeh.documents || []).indexOf(doc); if (i >= 0) Bokeh.documents.splice(i, 1); } }
      catch (e) {}
      el.remove();
      window.mesos_nb_warm_up = err === undefined ? 'done' : 'failed: ' + err; };
    try {
      const {Document} = Bokeh.require('document');
      const {add_document_standalone} = Bokeh.require('embed/standalone');
      doc = Document.from_json(doc_json);
      const roots = {};
      for (const r of doc_json.roots) roots[r.id] = el;
      add_document_standalone(doc, el, roots).then(() => window.requestAnimationFrame(() => window.setTimeout(done, 0)), done);
    } catch (e) { done(e); }
  };"""


def warm_up_script(doc_json: str) -> str:
    """The page-side warm-up for a document (JSON text): drawn offscreen after its cell, when idle."""
    return "(function () {\n  const doc_json = " + doc_json + ";\n  " + _WARM_UP + "\n  " + _AFTER_CELL + "\n})();"


def publish(script: str, mimes: tuple[str, ...] = MIME_TYPES, keep: bool = True) -> bool:
    """Publish ``script`` for the page to run (inside a kernel only). Returns whether it was.
    ``keep=False``: the output is replaced by an empty one right after (the page has run the
    script by then), so the saved notebook does not carry it."""
    if _kernel_shell() is None:
        return False
    from IPython.display import publish_display_data

    transient = {} if keep else {"display_id": f"mesos-nb-{uuid.uuid4().hex}"}
    publish_display_data(dict.fromkeys(mimes, script), metadata={}, transient=transient)
    if not keep:
        publish_display_data({"text/plain": ""}, metadata={}, transient=transient, update=True)
    return True


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
    # the early (deferred) copy only for jupyter_bokeh's renderer: half the message, and a
    # frontend without that renderer gets BokehJS from the dashboard cell's copy as before
    # (and not kept in the saved notebook: 0.56 MB in every notebook that loads the extension)
    return script is not None and publish(script, mimes=(LOAD_MIME_TYPE,) if deferred else MIME_TYPES,
                                          keep=not deferred)


__all__ = ["JS_MIME_TYPE", "LOAD_MIME_TYPE", "bokehjs_path", "bokehjs_script", "load_bokehjs", "publish",
           "warm_up_script"]

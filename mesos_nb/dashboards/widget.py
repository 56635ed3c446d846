"""The notebook side: the dashboard as one ``jupyter_bokeh`` BokehModel, fed from the master.

An asyncio task in the kernel reads the master's ``/master/utilization/stream`` (server-sent
events; the master emits one per sample, i.e. at least once a second, and soon after each
change) and calls :meth:`Dashboard.update`; jupyter_bokeh turns the Bokeh model changes into
small patch messages on the widget's comm. The task stops when the widget is closed, when
``alive()`` turns false (e.g. the notebook's framework disconnected) or on :meth:`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp

from mesos_nb.protocol.backoff import Backoff
from mesos_nb.protocol.queue_reader import QueueReader

from .bokehjs import load_bokehjs
from .components import Dashboard
from .quota import QuotaHeadroom

log = logging.getLogger("mesos_nb.dashboards")
PLOTTED_AGENTS = 40
PREBUILT_ROLE = "*"


def _master_url(master: Any) -> str:
    """Accept ``host:port``, a URL, or anything with ``master_url`` / ``url`` / ``master``."""
    for attr in ("master_url", "url"):
        v = getattr(master, attr, None)
        if isinstance(v, str):
            return v.rstrip("/")
    if not isinstance(master, str):
        v = getattr(master, "master", None) or getattr(master, "master_address", None)
        if isinstance(v, str):
            master = v
    if not isinstance(master, str):
        raise TypeError(f"cannot find a master address in {master!r}")
    return (master if "://" in master else f"http://{master}").rstrip("/")


_prebuilt: list[Dashboard] = []
_prebuilt_lock = threading.Lock()


def prebuild() -> None:
    """Build one Dashboard ahead and serialize it (on the extension's warm-up thread): building
    its figures and serializing them are most of the kernel's share of showing it. The next
    widget takes it (and the bundle, re-encoding only what changed since: ``prerender``)."""
    from .prerender import Prerendered

    dash = Dashboard(extra=(QuotaHeadroom(PREBUILT_ROLE),))  # the magic always plots its role's quota
    dash.prerendered = Prerendered(dash.root)
    dash.warm_up = dash.prerendered.warm_up_json()
    with _prebuilt_lock:
        if not _prebuilt:
            _prebuilt.append(dash)


def prebuilt_warm_up() -> str | None:
    """The prebuilt dashboard's document for the page's warm-up (``bokehjs.warm_up_script``),
    once the warm-up thread has built it; None before."""
    with _prebuilt_lock:
        return getattr(_prebuilt[0], "warm_up", None) if _prebuilt else None


PREBUILD_WAIT = 5.0  # seconds a dashboard waits for the prebuild under way before building its own


def take_prebuilt(wait: float = 0.0) -> Dashboard | None:
    """The prebuilt dashboard, if any; ``wait``: first wait (at most that long) for the warm-up
    thread still building it. Building a second dashboard meanwhile costs a whole build, made
    slower by the thread's own (one GIL): 0.7-2.1 s against 0.01-0.06 s for the prebuilt one,
    when a dashboard cell ran right after ``%mesos connect`` (``bench/dashboard_scale.py``)."""
    if wait > 0:
        from . import wait_for_prewarm

        wait_for_prewarm(wait)
    with _prebuilt_lock:
        return _prebuilt.pop() if _prebuilt else None


def _model_class():
    from jupyter_bokeh import BokehModel

    class DashboardModel(BokehModel):
        """BokehModel whose close() may run twice (again from ``__del__``) without a KeyError,
        and which takes its render bundle from a :class:`~.prerender.Prerendered` if given."""

        def __init__(self, model: Any, prerendered: Any = None, **kw: Any) -> None:
            self._prerendered = prerendered
            super().__init__(model, **kw)

        def update_from_model(self, model: Any) -> None:
            pre, self._prerendered = self._prerendered, None
            bundle = pre.take() if pre is not None and pre.root is model else None
            if bundle is None:
                super().update_from_model(model)
                return
            self._model = model
            self.render_bundle = bundle
            self._document.on_change_dispatch_to(self)

        def close(self) -> None:
            with contextlib.suppress(KeyError):
                super().close()

    return DashboardModel


class DashboardWidget:
    def __init__(self, master: Any, alive: Callable[[], bool] | None = None,
                 check_every: float = 0.25, role: str | None = None,
                 initial: dict[str, Any] | None = None) -> None:
        self.url = _master_url(master)
        self.alive = alive
        self.check_every = check_every
        prebuilt = take_prebuilt(PREBUILD_WAIT) if role is not None else None
        if prebuilt is not None:
            prebuilt["quota"].retarget(role)
            self.dashboard = prebuilt
        else:
            self.dashboard = Dashboard()
            if role is not None:
                self.dashboard.add(QuotaHeadroom(role))
        if initial is not None:  # drawn with data at once, not empty until the stream's first event
            self.dashboard.update(initial)
        self.widget = _model_class()(self.dashboard.root, combine_events=True,
                                     prerendered=getattr(self.dashboard, "prerendered", None))
        self.updates = 0
        self.last_snapshot: dict[str, Any] | None = initial
        self.task: asyncio.Task | None = None
        self._closed = False

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.widget._repr_mimebundle_(**kw)

    def __repr__(self) -> str:
        return f"<mesos-nb dashboard of {self.url}: {self.updates} updates{' (stopped)' if self.stopped else ''}>"

    # ------------------------------------------------------------------ lifecycle
    @property
    def stopped(self) -> bool:
        return self.task is None or self.task.done()

    def should_stop(self) -> bool:
        if self._closed or getattr(self.widget, "comm", None) is None:
            return True
        if self.alive is not None:
            try:
                return not self.alive()
            except Exception:
                return True
        return False

    def start(self) -> DashboardWidget:
        if self.stopped:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # e.g. plain terminal IPython: nothing would drive the task
                log.warning("no running asyncio loop: the dashboard will not update (call start() from async code)")
                return self
            self.task = loop.create_task(self.run())
        return self

    def close(self) -> None:
        self._closed = True
        if self.task is not None:
            self.task.cancel()
        if getattr(self.widget, "comm", None) is not None:
            self.widget.close()

    async def run(self) -> None:
        """Read snapshots until told to stop; reconnect (with backoff) if the stream breaks."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=8)
        snaps = QueueReader(queue)  # a snapshot taken as check_every passes is not lost
        reader = asyncio.get_running_loop().create_task(self._read(queue))
        try:
            while not self.should_stop():
                try:
                    snap = await snaps.get(self.check_every)
                except asyncio.TimeoutError:
                    continue
                if self.last_snapshot is not None and snap.get("time") == self.last_snapshot.get("time"):
                    continue  # the sample the widget was drawn with: nothing new to send the page
                while not queue.empty():  # late? show the newest, keep the series' rows
                    self.dashboard.update(snap)
                    snap = queue.get_nowait()
                self.dashboard.update(snap)
                self.last_snapshot = snap
                self.updates += 1
        finally:
            await snaps.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        backoff = Backoff(base=0.25, maximum=5.0)
        url = f"{self.url}/master/utilization/stream?agents={PLOTTED_AGENTS}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    async with session.get(url) as resp:
                        resp.raise_for_status()
                        backoff.reset()
                        event, data = "", []
                        async for raw in resp.content:
                            line = raw.decode().rstrip("\r\n")
                            if line.startswith("event:"):
                                event = line[6:].strip()
                            elif line.startswith("data:"):
                                data.append(line[5:].lstrip())
                            elif line == "" and data:
                                if event in ("", "utilization"):
                                    snap = json.loads("\n".join(data))
                                    if queue.full():
                                        queue.get_nowait()
                                    queue.put_nowait(snap)
                                event, data = "", []
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.debug("dashboard stream from %s broke: %r", self.url, e)
                await asyncio.sleep(backoff.next())


def dashboard(master: Any, alive: Callable[[], bool] | None = None,
              load_js: bool = True, role: str | None = None) -> DashboardWidget:
    """Build the live dashboard for ``master`` and start its update task on the running loop.

    In a kernel it first publishes BokehJS (``load_js``), so the widget's view can draw.
    ``role`` adds the quota headroom plot of that role (the notebook passes its own).
    """
    if load_js:
        load_bokehjs()
    url = _master_url(master)
    return DashboardWidget(url, alive=alive, role=role, initial=first_snapshot(url)).start()


def first_snapshot(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The master's current snapshot (``GET /master/utilization``), or None if it does not answer
    in ``timeout``: the stream then fills the plots."""
    try:
        with urllib.request.urlopen(f"{url}/master/utilization?agents={PLOTTED_AGENTS}", timeout=timeout) as r:
            return json.load(r)
    except (OSError, ValueError) as e:
        log.debug("no first snapshot from %s: %r", url, e)
        return None

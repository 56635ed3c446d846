"""``%mesos`` / ``%%mesos``: the notebook magics (dask/spark/ipyparallel live in mesos_nb.frameworks, the dashboard in mesos_nb.dashboards).

Every subcommand returns an object with ``_repr_html_`` and a text repr; every failure is a
:class:`MesosNotebookError` that IPython shows as one sentence.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import shlex
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Float, Int, Unicode, default

from . import views
from .display import Message, Table, num
from .errors import MagicParser, MesosNotebookError, constraints, role_arg
from .framework import NotebookFramework
from .saved import notebook_key
from .task import Task

USAGE = """%mesos SUBCOMMAND ...   (%mesos help for this list)
  connect [MASTER]            connect this notebook's framework (default: $MESOS_NB_MASTER, which
                              must answer; if none is set: the machine's embedded cluster, else
                              start one in this kernel)
  local [--agents N]          start the embedded cluster in this kernel and connect to it
  status | agents | frameworks | tasks [--all]
  offers [--wait S]           browse the offers held, Launch / Decline each
  run [--cpus C --mem M --gpus G --name N --attr K=V --image NAME --role R] -- CMD
                              (--role: through a framework of this notebook in role R)
  logs TASK [--follow] [--stderr]
  kill TASK
  roles                       roles: weight, frameworks, allocated, DRF share
  quota                       quota: guarantee, limit, allocated, headroom per role
  dask [--workers N --cpus C --mem M --adapt MIN:MAX --name NAME --attr K=V --role R]
  spark [--executors N --cpus C --mem M --role R]
  ipyparallel [--engines N --cpus C --mem M --role R]
  dashboard                   live Bokeh dashboard: allocated vs used, DRF shares, task timeline
  disconnect                  tear this notebook's framework down (its tasks are killed)
%%mesos task [--cpus C --mem M --gpus G --name N --attr K=V --timeout S --preload M1,M2 --fresh]
  run the cell's Python code as a task; returns its last expression's value (in the warm
  executor of this resource shape; --fresh: in a new Python process instead)"""


def _resource_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpus", type=float)
    p.add_argument("--mem", type=float)
    p.add_argument("--gpus", type=float, default=0.0)
    p.add_argument("--name")
    p.add_argument("--attr", action="append", default=[])


@magics_class
class MesosMagics(Magics):
    """Settings: ``%config MesosMagics.master = "host:5050"`` and so on."""

    master = Unicode("", help="Master HOST:PORT; empty: $MESOS_NB_MASTER, the machine's embedded "
                     "cluster, else start one").tag(config=True)
    role = Unicode("*", help="Role the notebook's framework registers with").tag(config=True)
    default_cpus = Float(1.0, help="CPUs of a task when --cpus is not given").tag(config=True)
    default_mem = Float(256.0, help="Memory (MB) of a task when --mem is not given").tag(config=True)
    refresh_interval = Float(0.25, help="Seconds between polls of task state and logs").tag(config=True)
    failover_timeout = Float(3600.0, help="Seconds the master keeps this notebook's framework and "
                             "tasks after the kernel goes away (reconnect window)").tag(config=True)
    framework_name = Unicode("", help="Framework name (default: 'notebook <notebook name>')").tag(config=True)
    local_agents = Int(2, help="Agents of the embedded cluster").tag(config=True)
    local_resources = Unicode("", help="Resources of each embedded agent (default: the machine "
                              "divided among them)").tag(config=True)
    local_port = Int(5050, help="Port of the embedded master (any free port when taken)").tag(config=True)
    warm = Bool(True, help="%%mesos task runs in a warm executor (one per resource shape); False: "
                "a new Python process per cell, as with --fresh").tag(config=True)
    preload = Unicode("", help="Modules the warm executors import before the first cell "
                      "(comma-separated; --preload overrides)").tag(config=True)
    warm_idle_timeout = Float(600.0, help="Seconds a warm executor waits for its next cell before "
                              "it ends and gives its resources back").tag(config=True)
    warm_executor_cpus = Float(0.5, help="CPUs of a warm executor itself (its tasks add theirs); its start "
                               "is CPU-bound inside the container's CPU quota").tag(config=True)
    warm_executor_mem = Float(128.0, help="Memory (MB) of a warm executor itself: the warm "
                              "interpreter and its preloaded modules").tag(config=True)

    @default("local_port")
    def _local_port_default(self) -> int:
        with contextlib.suppress(ValueError):
            return int(os.environ.get("MESOS_NB_LOCAL_PORT", "5050"))
        return 5050

    @default("local_resources")
    def _local_resources_default(self) -> str:
        return os.environ.get("MESOS_NB_LOCAL_RESOURCES", "")

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.framework: NotebookFramework | None = None
        # %mesos run --role R / --gpus G: more frameworks of this notebook, by (role, GPU-aware)
        self.role_frameworks: dict[tuple[str, bool], NotebookFramework] = {}
        self.cluster: Cluster | None = None
        self.browsers: list[Any] = []

    # ------------------------------------------------------------------ dispatch
    @line_cell_magic
    def mesos(self, line: str, cell: str | None = None) -> Any:
        words = line.strip().split(None, 1)
        sub = words[0] if words else "help"
        rest = words[1] if len(words) > 1 else ""
        if cell is not None:
            if sub != "task":
                raise MesosNotebookError(f"%%mesos {sub} is not a cell magic: use %%mesos task (see %mesos help)")
            return self.task(rest, cell)
        fn = {
            "help": self.help, "connect": self.connect, "local": self.local, "status": self.status,
            "agents": self.agents, "frameworks": self.frameworks, "tasks": self.tasks,
            "offers": self.offers, "run": self.run, "logs": self.logs, "kill": self.kill,
            "disconnect": self.disconnect, "dashboard": self.dashboard,
            "roles": self.roles, "quota": self.quota,
        }.get(sub)
        if fn is None:
            if sub in ("dask", "spark", "ipyparallel"):
                from .launchers import run_subcommand

                return run_subcommand(self, sub, rest)
            if sub in ("app", "apps", "job", "jobs"):  # the built-in services and jobs (apps_magics.py)
                from .apps_magics import run_subcommand as run_apps

                return run_apps(self, sub, rest)
            if sub == "task":
                raise MesosNotebookError("task is a cell magic: put %%mesos task on the first line of a cell")
            raise MesosNotebookError(f"unknown subcommand {sub!r} (see %mesos help)")
        return fn(rest)

    def help(self, rest: str = "") -> Message:
        return Message(USAGE)

    # ------------------------------------------------------------------ connection
    def _master_candidates(self) -> list[tuple[str, str]]:
        from mesos_nb.scheduler.stream import normalize_master

        from .embedded import running_local

        out = []
        for src, value in (("MesosMagics.master", self.master),
                           ("$MESOS_NB_MASTER", os.environ.get("MESOS_NB_MASTER", ""))):
            if value:
                out.append((src, value))
        info = running_local()
        if info:
            out.append(("the embedded cluster of ~/.mesos-nb/local.json", info["url"]))
        out.append(("the default port", f"127.0.0.1:{self.local_port}"))
        res = []
        for src, value in out:
            try:
                res.append((src, normalize_master(value)))
            except ValueError as e:
                raise MesosNotebookError(f"bad master address {value!r} in {src}: {e}") from None
        return res

    def _framework_name(self) -> str:
        if self.framework_name:
            return self.framework_name
        nb = os.environ.get("JPY_SESSION_NAME")
        return f"notebook {os.path.basename(nb)}" if nb else "notebook"

    def _connect_to(self, url: str, embedded: bool, started: bool, notes: list[str]) -> Cluster:
        if self.framework is not None:
            if self.framework.master_url == url and self.framework.driver is not None:
                self.cluster = Cluster(self, url, embedded, started, notes)
                return self.cluster
            self.framework.close(teardown=False)
            self.framework = None
        fw = NotebookFramework(url, name=self._framework_name(), role=self.role,
                               failover_timeout=self.failover_timeout, key=notebook_key())
        fw.start()
        self.framework = fw
        if fw.reconnected:
            notes.append(f"reconnected to framework {fw.framework_id} started before the kernel restarted")
        self.cluster = Cluster(self, url, embedded, started, notes)
        from ..dashboards import warm_page

        warm_page()  # a dashboard cell usually follows: the page draws it once offscreen first
        return self.cluster

    def connect(self, rest: str = "") -> Cluster:
        from mesos_nb.scheduler.stream import normalize_master

        from .embedded import current, healthy

        args = shlex.split(rest)
        if len(args) > 1:
            raise MesosNotebookError("usage: %mesos connect [MASTER]")
        if args:
            try:
                url = normalize_master(args[0])
            except ValueError as e:
                raise MesosNotebookError(f"bad master address {args[0]!r}: {e}") from None
            if not healthy(url):
                raise MesosNotebookError(f"the master at {url} is unreachable (is it running?)")
            return self._connect_to(url, embedded=False, started=False, notes=[])
        notes: list[str] = []
        here = current()
        for src, url in self._master_candidates():
            if healthy(url):
                mine = here is not None and here.master_url == url
                return self._connect_to(url, embedded=mine or "embedded" in src, started=False, notes=notes)
            if src.startswith(("MesosMagics", "$")):
                # a configured master is what the user asked for: a typo must not send their
                # work to an embedded cluster on this machine
                raise MesosNotebookError(
                    f"the master at {url} (from {src}) is unreachable: start it, fix {src}, or "
                    "unset it to use an embedded local cluster")
        return self._start_local(self.local_agents, notes)

    def _start_local(self, agents: int, notes: list[str]) -> Cluster:
        from .embedded import start_embedded

        try:
            url, started = start_embedded(agents=agents, resources=self.local_resources or None,
                                          port=self.local_port)
        except (OSError, TimeoutError, ValueError) as e:
            raise MesosNotebookError(f"could not start the embedded cluster ({e})") from None
        if started:
            notes.append(f"no master was reachable: started an embedded local cluster in this kernel "
                         f"({agents} agents) at {url}")
        else:
            notes.append(f"connected to the embedded local cluster already running at {url}")
        return self._connect_to(url, embedded=True, started=started, notes=notes)

    def local(self, rest: str = "") -> Cluster:
        p = MagicParser(prog="%mesos local", add_help=False)
        p.add_argument("--agents", type=int, default=self.local_agents)
        a = p.parse_args(shlex.split(rest))
        if a.agents < 1:
            raise MesosNotebookError("--agents must be at least 1")
        notes: list[str] = []
        cluster = self._start_local(a.agents, notes)
        if not cluster.started:
            cluster.notes = [f"an embedded cluster is already running at {cluster.master_url}; connected to it"]
        return cluster

    def _fw(self) -> NotebookFramework:
        if self.framework is None or self.framework.driver is None:
            self.connect("")
        assert self.framework is not None
        return self.framework

    def _fw_for(self, role: str | None, gpus: float = 0.0) -> NotebookFramework:
        """This notebook's framework, or for another role (or a task that needs GPUs) a second
        framework of this notebook subscribed in that role (started once, torn down by
        %mesos disconnect). GPUs need their own: as in Mesos, only a framework that declares
        GPU_RESOURCES is offered GPU agents, and the notebook's own framework does not, so that
        its CPU tasks never take a GPU machine's cpus from the GPU users."""
        base = self._fw()
        role = base.role if role is None else role
        gpu = gpus > 0
        if role == base.role and not gpu:
            return base
        fw = self.role_frameworks.get((role, gpu))
        if fw is None or fw.driver is None or fw.master_url != base.master_url:
            label = ", ".join(x for x in ((role if role != base.role else ""), ("gpus" if gpu else "")) if x)
            fw = NotebookFramework(base.master_url, name=f"{self._framework_name()} ({label})", role=role,
                                   failover_timeout=self.failover_timeout, gpus=gpu)
            fw.start()
            self.role_frameworks[(role, gpu)] = fw
        return fw

    def _master_url(self) -> str:
        if self.framework is not None and self.framework.driver is not None:
            return self.framework.master_url
        return self._fw().master_url

    def dashboard(self, rest: str = "") -> Any:
        """A live Bokeh widget (mesos_nb.dashboards); it stops when this framework disconnects."""
        try:
            import bokeh  # noqa: F401
            import jupyter_bokeh  # noqa: F401
        except ImportError as e:
            raise MesosNotebookError(
                f"%mesos dashboard needs bokeh and jupyter_bokeh ({e.name} is not installed): "
                "pip install 'mesos-nb[notebook]'") from None
        from ..dashboards import dashboard

        fw = self._fw()
        return dashboard(views.leader_of(fw.master_url), alive=lambda: self.framework is fw and fw.driver is not None,
                         role=fw.role)

    def disconnect(self, rest: str = "") -> Message:
        if self.framework is None:
            return Message("not connected: nothing to disconnect")
        for b in self.browsers:
            with contextlib.suppress(Exception):
                b.close()
        self.browsers.clear()
        from .launchers import stop_all

        stop_all(self)  # what %mesos dask / spark / ipyparallel started
        for other in self.role_frameworks.values():
            with contextlib.suppress(Exception):
                other.close(teardown=True)
        self.role_frameworks.clear()
        fw, self.framework = self.framework, None
        running = sum(1 for t in fw.tasks.values() if not t.done)
        fw.close(teardown=True)
        self.cluster = None
        killed = f"; {running} running task(s) killed" if running else ""
        return Message(f"disconnected: framework {fw.framework_id} torn down on {fw.master_url}{killed}")

    # ------------------------------------------------------------------ operator views
    # Each is ``views.NAME(magics, rest)``: a function of the magics, bound here as a method.
    status, agents, frameworks = views.status, views.agents, views.frameworks
    tasks, logs, kill = views.tasks, views.logs, views.kill

    def roles(self, rest: str = "") -> Table:
        from . import roles_magics

        return roles_magics.roles(self, rest)

    def quota(self, rest: str = "") -> Table:
        from . import roles_magics

        return roles_magics.quota(self, rest)

    # ------------------------------------------------------------------ offers
    def offers(self, rest: str = "") -> Any:
        from .offers import OfferBrowser

        p = MagicParser(prog="%mesos offers", add_help=False)
        p.add_argument("--wait", type=float, default=0.0)
        p.add_argument("--command", default="hostname")
        a = p.parse_args(shlex.split(rest))
        fw = self._fw()
        for b in self.browsers:
            b.close()
        self.browsers.clear()
        browser = OfferBrowser(fw, command=a.command, cpus=min(0.1, self.default_cpus), mem=32.0)
        self.browsers.append(browser)
        if a.wait:
            browser.wait(a.wait)
        return browser

    # ------------------------------------------------------------------ tasks
    def _split_command(self, rest: str) -> tuple[list[str], str]:
        if rest.startswith("-- ") or rest == "--":
            return [], rest[3:].strip()
        if " -- " in rest or rest.endswith(" --"):
            opts, cmd = (rest + " ").split(" -- ", 1)
            return shlex.split(opts), cmd.strip()
        toks = shlex.split(rest)
        i = 0
        while i < len(toks) and toks[i].startswith("--"):
            i += 1 if "=" in toks[i] else 2
        return toks[:i], shlex.join(toks[i:])

    def run(self, rest: str = "") -> Task:
        opts, cmd = self._split_command(rest)
        p = MagicParser(prog="%mesos run", add_help=False)
        _resource_args(p)
        p.add_argument("--image")
        p.add_argument("--role", type=role_arg)
        a = p.parse_args(opts)
        if not cmd:
            raise MesosNotebookError("no command given: use %mesos run [--cpus C --mem M] -- CMD")
        fw = self._fw_for(a.role, a.gpus)
        return fw.submit(cmd, cpus=self.default_cpus if a.cpus is None else a.cpus,
                         mem=self.default_mem if a.mem is None else a.mem, gpus=a.gpus, name=a.name,
                         constraints=constraints(a.attr), image=a.image)

    def task(self, rest: str, cell: str) -> Any:
        from .remote import run_cell

        p = MagicParser(prog="%%mesos task", add_help=False)
        _resource_args(p)
        p.add_argument("--timeout", type=float)
        p.add_argument("--preload")
        p.add_argument("--fresh", action="store_true")
        a = p.parse_args(shlex.split(rest))
        fw = self._fw_for(None, a.gpus)
        cpus = self.default_cpus if a.cpus is None else a.cpus
        mem = self.default_mem if a.mem is None else a.mem
        if a.fresh or not self.warm:
            if a.preload:
                raise MesosNotebookError("--preload is for warm executors: drop --fresh (or set MesosMagics.warm)")
            return run_cell(fw, cell, cpus=cpus, mem=mem, gpus=a.gpus, name=a.name,
                            constraints=constraints(a.attr), timeout=a.timeout, poll=self.refresh_interval)
        from .remote import run_warm_cell

        return run_warm_cell(fw, cell, cpus=cpus, mem=mem, gpus=a.gpus, name=a.name,
                             constraints=constraints(a.attr), preload=self._preload(a.preload),
                             idle_timeout=self.warm_idle_timeout, executor_cpus=self.warm_executor_cpus,
                             executor_mem=self.warm_executor_mem, timeout=a.timeout, poll=self.refresh_interval)

    def _preload(self, given: str | None) -> list[str]:
        text = self.preload if given is None else given
        mods = [m.strip() for m in text.split(",") if m.strip()]
        bad = [m for m in mods if not all(part.isidentifier() for part in m.split("."))]
        if bad:
            raise MesosNotebookError(f"--preload takes module names separated by commas; {bad[0]!r} is not one")
        return mods

class Cluster:
    """What ``%mesos connect`` returns: the master, whether it is embedded, this notebook's framework."""

    def __init__(self, magics: MesosMagics, master_url: str, embedded: bool, started: bool,
                 notes: list[str]) -> None:
        self.magics = magics
        self.master_url = master_url
        self.embedded = embedded
        self.started = started
        self.notes = list(notes)
        fw = magics.framework
        self.framework_id = fw.framework_id if fw else None
        self.reconnected = bool(fw and fw.reconnected)
        try:
            slaves = [s for s in views.master_state(master_url).slaves if s.active]
        except MesosNotebookError:
            slaves = []
        self.agents = len(slaves)
        self.resources = {k: sum(s.scalar(k) for s in slaves) for k in views.SCALARS}

    # Python API mirroring the magics
    def run(self, cmd: str, **kw: Any) -> Task:
        return self.magics._fw().submit(cmd, **{"cpus": self.magics.default_cpus, "mem": self.magics.default_mem, **kw})

    def submit(self, fn: Any, *args: Any, cpus: float | None = None, mem: float | None = None,
               preload: str | None = None, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a warm executor; a ``concurrent.futures.Future`` of its
        value (an exception in ``fn`` is raised by ``result()``, with the remote traceback).
        ``cpus``, ``mem`` and ``preload`` are the task's, not ``fn``'s, keyword arguments."""
        from .remote import submit_call

        m = self.magics
        return submit_call(m._fw(), fn, args, kwargs, cpus=m.default_cpus if cpus is None else cpus,
                           mem=m.default_mem if mem is None else mem, preload=m._preload(preload),
                           idle_timeout=m.warm_idle_timeout, executor_cpus=m.warm_executor_cpus,
                           executor_mem=m.warm_executor_mem)

    def tasks(self, all: bool = False) -> Table:
        return self.magics.tasks("--all" if all else "")

    def agents_table(self) -> Table:
        return self.magics.agents("")

    def disconnect(self) -> Message:
        return self.magics.disconnect("")

    def _summary(self) -> str:
        kind = ("embedded local cluster (started in this kernel)" if self.started else
                "embedded local cluster" if self.embedded else "cluster")
        res = ", ".join(f"{k} {num(v)}" for k, v in self.resources.items() if v)
        return (f"{kind} at {self.master_url}: {self.agents} agent(s), {res or 'no resources'}; "
                f"framework {self.framework_id}")

    def __repr__(self) -> str:
        return "\n".join([f"Connected to the {self._summary()}", *self.notes])

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<div><b>Connected</b> to the {html.escape(self._summary())}"
                + (f"<ul>{notes}</ul>" if notes else "") + "</div>")


__all__ = ["Cluster", "MesosMagics", "USAGE"]

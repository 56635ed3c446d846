"""``%mesos status | agents | frameworks | tasks | logs | kill``: the operator views, read
through :mod:`mesos_nb.client` (typed ``/master/state``, the one sandbox lookup chain) and
shown as notebook tables. Tasks of this notebook still waiting for an offer are unknown to
the master; they come from the notebook's own framework."""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from typing import Any

from mesos_nb.client import (
    MasterClient,
    MesosClientError,
    all_frameworks,
    all_tasks,
    cluster_totals,
    find_task,
    locate,
)
from mesos_nb.client import master_url as resolve_master
from mesos_nb.client.maintenance import maintenance_or_none
from mesos_nb.client.tables import AGENT_HEADERS, SCALARS, agent_rows, used_total
from mesos_nb.protocol.state import FrameworkView, MasterState, TaskView
from mesos_nb.scheduler.pool import PENDING

from .display import Logs, Message, Table, num
from .errors import MagicParser, MesosNotebookError
from .task import Task


def master_state(url: str) -> MasterState:
    try:
        return MasterClient(url).state()
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None


def leader_of(url: str) -> str:
    """The HTTP URL of the master leading now (``url`` itself unless it is ``zk://``)."""
    try:
        return resolve_master(url)
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None


def status(magics: Any, rest: str = "") -> Table:
    url = magics._master_url()
    state = master_state(url)
    tot, used, counts = cluster_totals(state)
    rows = [
        ("master", url),
        *([("leader", leader_of(url))] if url.startswith("zk://") else []),
        ("version", state.version),
        ("agents", f"{sum(1 for s in state.slaves if s.active)} active / {len(state.slaves)}"),
        ("frameworks", f"{sum(1 for f in state.frameworks if f.active)} active / {len(state.frameworks)}"),
        ("tasks", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"),
    ] + [(f"{k} used/total", used_total(tot, used, k)) for k in SCALARS]
    if magics.framework is not None:
        rows.append(("this notebook", f"framework {magics.framework.framework_id}"))
    return Table(f"Mesos cluster at {url}", ["FIELD", "VALUE"], rows)


def agents(magics: Any, rest: str = "") -> Table:
    url = magics._master_url()
    state = master_state(url)
    try:
        maintenance = maintenance_or_none(MasterClient(url))
    except MesosClientError:  # a zk:// URL whose leader is gone since the read above
        maintenance = None
    rows = agent_rows(state, maintenance)
    return Table(f"{len(rows)} agent(s) of {url} (used/total)", AGENT_HEADERS, rows)


def _all_flag(prog: str, rest: str) -> bool:
    p = MagicParser(prog=prog, add_help=False)
    p.add_argument("--all", action="store_true")
    return p.parse_args(shlex.split(rest)).all


def frameworks(magics: Any, rest: str = "") -> Table:
    show_all = _all_flag("%mesos frameworks", rest)
    url = magics._master_url()
    state = master_state(url)
    mine = magics.framework.framework_id if magics.framework else None
    rows = [(f.id, f.name + (" (this notebook)" if f.id == mine else ""),
             "completed" if not live else ("yes" if f.active else "no"),
             ",".join(f.role_list) or "*", len(f.tasks),
             num(f.used_resources.get("cpus", 0)), num(f.used_resources.get("mem", 0)))
            for f, live in all_frameworks(state, completed=show_all)]
    return Table(f"{len(rows)} framework(s) on {url}",
                 ["ID", "NAME", "ACTIVE", "ROLES", "TASKS", "CPUS", "MEM"], rows)


def tasks(magics: Any, rest: str = "") -> Table:
    show_all = _all_flag("%mesos tasks", rest)
    url = magics._master_url()
    state = master_state(url)
    hosts = {s.id: s.hostname for s in state.slaves}
    mine = magics.framework.framework_id if magics.framework else None
    rows = [(t.id, t.name, t.state, "this notebook" if f.id == mine else (f.name or f.id),
             hosts.get(t.slave_id, "?"), num(t.resources.get("cpus", 0)), num(t.resources.get("mem", 0)))
            for t, f in all_tasks(state, completed=show_all)]
    if magics.framework is not None:  # ours still waiting for an offer (the master does not know them)
        for t in magics.framework.tasks.values():
            if t.state == PENDING:
                rows.append((t.id, t.name, PENDING, "this notebook", "-",
                             num(t.requested.get("cpus", 0)), num(t.requested.get("mem", 0))))
    what = "task(s), finished included," if show_all else "live task(s)"
    return Table(f"{len(rows)} {what} on {url}", ["ID", "NAME", "STATE", "FRAMEWORK", "AGENT", "CPUS", "MEM"],
                 rows, note=None if show_all else "(--all includes finished tasks)", state_column=2)


def _find(magics: Any, ident: str) -> tuple[Task | None, TaskView, FrameworkView]:
    """(our Task or None, the master's view of the task, its framework)."""
    fw = magics.framework
    mine = fw.find(ident) if fw is not None else None
    if mine is not None and mine.state == PENDING:
        return mine, TaskView(id=mine.id, state=PENDING), FrameworkView()
    try:
        t, f = find_task(master_state(magics._master_url()), mine.id if mine is not None else ident)
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None
    if mine is None and fw is not None and f.id == fw.framework_id:
        mine = fw.tasks.get(t.id)
    return mine, t, f


def logs(magics: Any, rest: str = "") -> Any:
    p = MagicParser(prog="%mesos logs", add_help=False)
    p.add_argument("task")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--stderr", action="store_true")
    a = p.parse_args(shlex.split(rest))
    mine, t, f = _find(magics, a.task)
    if t.state == PENDING:
        raise MesosNotebookError(f"task {t.id} has not been launched yet ({mine.waiting if mine else ''})")
    client = MasterClient(magics._master_url())
    try:
        box = locate(client, t.id, framework_id=f.id or None, agent_id=t.slave_id,
                     executor_id=t.executor_id or None, wait=10)
        if not a.follow:
            out, err = box.read("stdout"), box.read("stderr")
            return Logs(t.id, err, "") if a.stderr else Logs(t.id, out, err)
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None
    follower = box.follower("stderr" if a.stderr else "stdout", sys.stdout)
    try:
        while True:
            with contextlib.suppress(MesosClientError):
                follower.poll()
            if mine is not None:
                done = mine.done
            else:
                with contextlib.suppress(MesosClientError):
                    t = client.find_task(t.id)[0]
                done = t.terminal
            if done:
                from mesos_nb.client import drain

                drain([follower], pause=0.1)
                return None
            time.sleep(magics.refresh_interval)
    except KeyboardInterrupt:
        return None


def kill(magics: Any, rest: str = "") -> Any:
    args = shlex.split(rest)
    if len(args) != 1:
        raise MesosNotebookError("usage: %mesos kill TASK")
    mine, t, _f = _find(magics, args[0])
    if mine is not None:
        if mine.done:
            return Message(f"task {mine.id} already ended ({mine.state})")
        mine.kill(wait=15)
        return mine
    if t.terminal:
        return Message(f"task {t.id} already ended ({t.state})")
    try:
        MasterClient(magics._master_url()).kill(t.id)
    except MesosClientError as e:
        raise MesosNotebookError(str(e)) from None
    return Message(f"killing task {t.id} (another framework's task, through the operator API)")


__all__ = ["agents", "frameworks", "kill", "logs", "master_state", "status", "tasks"]

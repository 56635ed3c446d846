"""``%mesos app …``, ``%mesos apps``, ``%mesos job …``, ``%mesos jobs``: the built-in services
and jobs framework from a notebook, through :mod:`mesos_nb.frameworks.apps.client`.

The framework is found by ``--apps URL`` / ``$MESOS_NB_APPS``, else by the ``webui_url`` it
registered with the master this notebook is connected to (else ``%config MesosMagics.master``,
``$MESOS_NB_MASTER``). Every result is a table or a sentence with an HTML and a text form;
``%mesos jobs`` links each executed notebook to the framework's page for it.
"""

from __future__ import annotations

import argparse
import html
import shlex
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from mesos_nb.frameworks.apps import client, definitions

from .display import Message, Table
from .errors import MagicParser, MesosNotebookError

USAGE = """%mesos app deploy FILE.json | --id ID --cmd CMD [--instances N --cpus C --mem M --port P
                    --env K=V --constraint FIELD:OP[:VALUE]]
%mesos app list | show ID | scale ID N | restart ID | suspend ID | delete ID      (%mesos apps: list)
%mesos job schedule NOTEBOOK.ipynb|FILE.json|--id ID --cmd CMD [--cron "0 * * * *" | --every 5m]
                    [-p NAME=VALUE ...] [--retries N --cpus C --mem M]
%mesos job list | run ID | history ID | delete ID        (%mesos jobs: the last runs of every job)
every one takes --apps URL (default: $MESOS_NB_APPS, else asked of the connected master)"""


def _when(t: float | None) -> str:
    return "-" if not t else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class RunsTable(Table):
    """Job runs; the HTML form links each executed notebook (open and download)."""

    def __init__(self, title: str, runs: list[dict[str, Any]], base_url: str, note: str | None = None) -> None:
        self.runs = runs
        self.base_url = base_url
        rows = []
        for r in runs:
            d = r.get("duration")
            rows.append([r.get("jobId", ""), r["id"], r.get("trigger", ""), r.get("status", ""),
                         _when(r.get("startedAt")), "-" if d is None else f"{d:.1f} s",
                         "-" if r.get("exitCode") is None else str(r["exitCode"]),
                         "yes" if r.get("outputNotebook") else "-"])
        super().__init__(title, ["JOB", "RUN", "TRIGGER", "STATUS", "STARTED", "DURATION", "EXIT", "NOTEBOOK"],
                         rows, note)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<div><b>{html.escape(self.title)}</b><p><i>none</i></p></div>"
        colour = {"SUCCESS": "#2a9d3a", "FAILED": "#dc322f"}
        head = "".join(f'<th style="text-align:left">{html.escape(h)}</th>' for h in self.headers)
        body = []
        for r, run in zip(self.rows, self.runs, strict=True):
            cells = [html.escape(c) for c in r]
            cells[3] = f'<span style="color:{colour.get(r[3], "#b58900")}">{cells[3]}</span>'
            if run.get("outputNotebook"):
                path = f"/jobs/{quote(run['jobId'], safe='')}/runs/{quote(run['id'], safe='')}"
                open_url = html.escape(f"{self.base_url}/ui{path}")
                dl_url = html.escape(f"{self.base_url}/v2{path}/notebook?download=1")
                cells[7] = f'<a href="{open_url}" target="_blank">open</a> · <a href="{dl_url}">download</a>'
            body.append("<tr>" + "".join(f'<td style="text-align:left">{c}</td>' for c in cells) + "</tr>")
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return (f"<div><b>{html.escape(self.title)}</b><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>{note}</div>")


def _master(magics: Any) -> str | None:
    cluster = getattr(magics, "cluster", None)
    return getattr(cluster, "master_url", None) or getattr(magics, "master", "") or None


def _parser(name: str) -> MagicParser:
    p = MagicParser(prog=f"%mesos {name}", add_help=False)
    p.add_argument("--apps", default=None)
    return p


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except client.AppsError as e:
        raise MesosNotebookError(str(e)) from None
    except ValueError as e:
        raise MesosNotebookError(str(e)) from None


def _app_table(apps: list[dict[str, Any]]) -> Table:
    rows = []
    for a in apps:
        w = a.get("waiting")
        status = ("suspended" if a.get("instances") == 0 else "deploying" if a.get("deploying")
                  else "waiting: " + ("; ".join(w.get("reasons") or []) or "placing") if w else "running")
        rows.append([a["id"], a.get("instances", 0), a.get("tasksRunning", 0), a.get("tasksHealthy", 0),
                     a.get("version") or "-", status])
    return Table("Apps", ["ID", "INSTANCES", "RUNNING", "HEALTHY", "VERSION", "STATUS"], rows)


def _parse(magics: Any, kind: str, rest: str,
           actions: dict[str, Callable[[MagicParser], Any]]) -> tuple[str, argparse.Namespace, str]:
    """(action, its options, the framework's URL) of ``%mesos KIND ACTION …``; ``actions`` maps
    each action to what adds its options."""
    words = shlex.split(rest)
    action = words[0] if words else "list"
    if action not in actions:
        names = list(actions)
        raise MesosNotebookError(f"unknown {kind} action {action!r}: {', '.join(names[:-1])} or {names[-1]} "
                                 "(see %mesos help)")
    p = _parser(f"{kind} {action}")
    actions[action](p)
    args = p.parse_args(words[1:])
    return action, args, _call(lambda: client.resolve(args.apps, _master(magics)))


def _no_options(p: MagicParser) -> None:
    pass


def _id(p: MagicParser) -> None:
    p.add_argument("id")


def _id_and_count(p: MagicParser) -> None:
    p.add_argument("id")
    p.add_argument("instances", type=int)


_APP_ACTIONS = {"deploy": lambda p: definitions.add_arguments(p, "app"), "list": _no_options, "show": _id,
                "scale": _id_and_count, "restart": _id, "suspend": _id, "delete": _id}
_JOB_ACTIONS = {"schedule": lambda p: definitions.add_arguments(p, "job"), "list": _no_options, "run": _id,
                "history": _id, "delete": _id}


def app_command(magics: Any, rest: str) -> Any:
    action, args, url = _parse(magics, "app", rest, _APP_ACTIONS)
    if action == "list":
        return _app_table(_call(lambda: client.list_apps(url)))
    if action == "deploy":
        app = _call(lambda: definitions.app_from_args(args))
        out = _call(lambda: client.deploy(app, url))
        return Message(f"Deployed {out.get('id')} version {out.get('version')} ({out.get('instances')} instances).")
    if action == "show":
        a = _call(lambda: client.get_app(args.id, url))
        rows = [[t.get("taskId"), t.get("hostname") or "-", t.get("state"),
                 {True: "yes", False: "no"}.get(t.get("healthy"), "-"), t.get("version") or "-"]
                for t in a.get("tasks", [])]
        return Table(f"App {a['id']}: {a.get('instances')} instances, version {a.get('version')}",
                     ["TASK", "HOST", "STATE", "HEALTHY", "VERSION"], rows, state_column=2)
    if action == "scale":
        if args.instances < 0:
            raise MesosNotebookError(f"instances must be >= 0 (got {args.instances})")
        _call(lambda: client.scale(args.id, args.instances, url))
        return Message(f"Scaled {args.id} to {args.instances} instances.")
    if action == "suspend":
        _call(lambda: client.scale(args.id, 0, url))
        return Message(f"Suspended {args.id} (0 instances).")
    if action == "restart":
        out = _call(lambda: client.restart(args.id, url))
        return Message(f"Restarting {args.id}: version {out.get('version')}.")
    _call(lambda: client.delete_app(args.id, url))
    return Message(f"Deleted {args.id}.")


def job_command(magics: Any, rest: str) -> Any:
    action, args, url = _parse(magics, "job", rest, _JOB_ACTIONS)
    if action == "list":
        return _jobs_table(url)
    if action == "schedule":
        return _schedule(args, url)
    if action == "run":
        r = _call(lambda: client.run_job(args.id, url))
        return Message(f"Started run {r['id']} of {args.id}.")
    if action == "history":
        runs = sorted(_call(lambda: client.list_runs(args.id, url)), key=lambda r: r.get("createdAt") or 0,
                      reverse=True)
        return RunsTable(f"Runs of {args.id}", runs, url)
    _call(lambda: client.delete_job(args.id, url))
    return Message(f"Deleted {args.id}.")


def _schedule(args: argparse.Namespace, url: str) -> Message:
    job, notebook = _call(lambda: definitions.job_from_args(args, time.time()))
    out = _call(lambda: definitions.submit_job(job, notebook, args.params, url))
    return Message(f"Scheduled {out.get('id')}: {out.get('schedule') or 'manual runs only'}.")


def _jobs_table(url: str) -> Table:
    rows = []
    for j in sorted(_call(lambda: client.list_jobs(url)), key=lambda j: j["id"]):
        h = j.get("history", {})
        rows.append([j["id"], "notebook" if j.get("notebook") else "cmd", j.get("schedule") or "manual",
                     _when(j.get("nextRunAt")), h.get("successCount", 0), h.get("failureCount", 0)])
    return Table("Jobs", ["ID", "KIND", "SCHEDULE", "NEXT RUN", "SUCCEEDED", "FAILED"], rows)


def jobs_history(magics: Any, rest: str, last: int = 10) -> RunsTable:
    """``%mesos jobs``: the last runs of every job, newest first."""
    p = _parser("jobs")
    p.add_argument("--last", type=int, default=last)
    args = p.parse_args(shlex.split(rest))
    url = _call(lambda: client.resolve(args.apps, _master(magics)))
    runs: list[dict[str, Any]] = []
    for j in _call(lambda: client.list_jobs(url)):
        runs += _call(lambda j=j: client.list_runs(j["id"], url))
    runs.sort(key=lambda r: r.get("createdAt") or 0, reverse=True)
    return RunsTable("Job runs", runs[:args.last], url, note=f"{url}/ui")


def run_subcommand(magics: Any, sub: str, rest: str) -> Any:
    """The hook ``%mesos`` calls for ``app``, ``apps``, ``job`` and ``jobs``."""
    if rest.strip() in ("help", "--help", "-h"):
        return Message(USAGE)
    if sub == "apps":
        return app_command(magics, "list " + rest)
    if sub == "app":
        return app_command(magics, rest)
    if sub == "jobs":
        return jobs_history(magics, rest)
    return job_command(magics, rest)


__all__ = ["RunsTable", "USAGE", "run_subcommand"]

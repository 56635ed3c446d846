"""``mesos-nb apps …`` and ``mesos-nb jobs …``: the built-in services and jobs framework.

Every command talks to the framework's REST API through :mod:`mesos_nb.frameworks.apps.client`;
the framework is found by ``--apps URL`` / ``$MESOS_NB_APPS``, else by the ``webui_url`` it
registered with the master (``--master``, a ``zk://`` URL is followed), so ``mesos-nb apps list``
works against a cluster without configuration. ``apps serve`` runs the framework itself.
Refusals of the framework (an unknown app, a bad definition) are one sentence with exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from mesos_nb.frameworks.apps import client, definitions

from .errors import CLIError
from .options import Parser
from .tables import print_table

Cmd = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


# ------------------------------------------------------------------ helpers (pure)
def when(t: float | None) -> str:
    return "-" if not t else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def app_status(a: dict[str, Any]) -> str:
    if a.get("instances") == 0:
        return "suspended"
    if a.get("deploying"):
        return "deploying"
    w = a.get("waiting")
    if w:
        return "waiting: " + ("; ".join(w.get("reasons") or []) or f"{w.get('instances')} to place")
    return "running"


def app_rows(apps: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(a["id"], a.get("instances", 0), a.get("tasksRunning", 0), a.get("tasksHealthy", 0),
             a.get("version") or "-", app_status(a)) for a in apps]


APP_HEADERS = ("ID", "INSTANCES", "RUNNING", "HEALTHY", "VERSION", "STATUS")
RUN_HEADERS = ("RUN", "TRIGGER", "STATUS", "STARTED", "DURATION", "EXIT", "NOTEBOOK")


def run_rows(runs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for r in sorted(runs, key=lambda r: r.get("createdAt") or 0, reverse=True):
        d = r.get("duration")
        rows.append((r["id"], r.get("trigger", ""), r.get("status", ""), when(r.get("startedAt")),
                     "-" if d is None else f"{d:.1f} s", "-" if r.get("exitCode") is None else r["exitCode"],
                     "yes" if r.get("outputNotebook") else "-"))
    return rows


def job_kind(j: dict[str, Any]) -> str:
    return "notebook" if j.get("notebook") else "cmd"


# ------------------------------------------------------------------ commands
def _url(args: argparse.Namespace) -> str:
    return client.resolve(args.apps, getattr(args, "master", None))


def _call(fn: Callable[..., Any], *a: Any, **k: Any) -> Any:
    """``fn``'s result; the framework's refusal or a bad definition (ValueError) as a CLIError."""
    try:
        return fn(*a, **k)
    except (client.AppsError, ValueError) as e:
        raise CLIError(str(e)) from None


def cmd_apps_list(args: argparse.Namespace) -> int:
    apps = _call(lambda: client.list_apps(_url(args)))
    print_table(APP_HEADERS, app_rows(apps))
    return 0


def cmd_apps_show(args: argparse.Namespace) -> int:
    a = _call(lambda: client.get_app(args.id, _url(args)))
    if args.json:
        print(json.dumps(a, indent=2))
        return 0
    print_table(APP_HEADERS, app_rows([a]))
    print()
    print_table(("TASK", "HOST", "STATE", "HEALTHY", "VERSION", "PORTS"),
                [(t.get("taskId"), t.get("hostname") or "-", t.get("state"),
                  {True: "yes", False: "no"}.get(t.get("healthy"), "-"), t.get("version") or "-",
                  ",".join(map(str, t.get("ports") or [])) or "-") for t in a.get("tasks", [])])
    return 0


def cmd_apps_deploy(args: argparse.Namespace) -> int:
    app = _call(definitions.app_from_args, args)
    out = _call(lambda: client.deploy(app, _url(args)))
    print(f"deployed {out.get('id', app['id'])} version {out.get('version', '?')} "
          f"({out.get('instances', app.get('instances', 1))} instances)")
    return 0


def cmd_apps_scale(args: argparse.Namespace) -> int:
    if args.instances < 0:
        raise CLIError(f"instances must be >= 0 (got {args.instances})")
    _call(lambda: client.scale(args.id, args.instances, _url(args)))
    print(f"scaled {args.id} to {args.instances} instances")
    return 0


def _one_line(request: Callable[[argparse.Namespace, str], Any],
              say: Callable[[argparse.Namespace, Any], str]) -> Callable[[argparse.Namespace], int]:
    """A command that makes one request about ``args.id`` and prints one line about it."""
    def command(args: argparse.Namespace) -> int:
        print(say(args, _call(lambda: request(args, _url(args)))))
        return 0
    return command


cmd_apps_suspend = _one_line(lambda a, url: client.scale(a.id, 0, url),
                             lambda a, _: f"suspended {a.id} (0 instances; 'mesos-nb apps scale {a.id} N' resumes)")
cmd_apps_restart = _one_line(lambda a, url: client.restart(a.id, url),
                             lambda a, out: f"restarting {a.id}: version {out.get('version', '?')}")
cmd_apps_delete = _one_line(lambda a, url: client.delete_app(a.id, url), lambda a, _: f"deleted {a.id}")
cmd_jobs_run = _one_line(lambda a, url: client.run_job(a.id, url), lambda a, r: f"started run {r['id']} of {a.id}")
cmd_jobs_delete = _one_line(lambda a, url: client.delete_job(a.id, url), lambda a, _: f"deleted {a.id}")


def cmd_apps_serve(args: argparse.Namespace) -> int:
    """Run the framework in the foreground; ``--state`` defaults to ``~/.mesos-nb/apps``."""
    from mesos_nb.frameworks.apps.__main__ import serve

    if not args.state:
        args.state = os.path.expanduser("~/.mesos-nb/apps")
    return serve(args)


# jobs
def cmd_jobs_list(args: argparse.Namespace) -> int:
    url = _url(args)
    jobs = _call(lambda: client.list_jobs(url))
    rows = []
    for j in sorted(jobs, key=lambda j: j["id"]):
        runs = _call(lambda j=j: client.list_runs(j["id"], url))
        last = max(runs, key=lambda r: r.get("createdAt") or 0) if runs else None
        rows.append((j["id"], job_kind(j), j.get("schedule") or ("after " + ",".join(j["parents"]) if j.get("parents")
                                                                 else "manual"),
                     "yes" if j.get("enabled", True) else "no", last["status"] if last else "-",
                     when(last.get("startedAt")) if last else "-"))
    print_table(("ID", "KIND", "SCHEDULE", "ENABLED", "LAST RUN", "STARTED"), rows)
    return 0


def cmd_jobs_show(args: argparse.Namespace) -> int:
    j = _call(lambda: client.get_job(args.id, _url(args)))
    if j.get("notebook"):
        j = {**j, "notebook": {**j["notebook"], "notebook": "<notebook JSON>"}}
    print(json.dumps(j, indent=2))
    return 0


def cmd_jobs_schedule(args: argparse.Namespace) -> int:
    job, notebook = _call(definitions.job_from_args, args, time.time())
    out = _call(lambda: definitions.submit_job(job, notebook, args.params, _url(args)))
    print(f"scheduled {out.get('id', job['id'])}: {out.get('schedule') or 'manual runs only'}")
    return 0


def cmd_jobs_history(args: argparse.Namespace) -> int:
    runs = _call(lambda: client.list_runs(args.id, _url(args)))
    print_table(RUN_HEADERS, run_rows(runs))
    return 0


def cmd_jobs_notebook(args: argparse.Namespace) -> int:
    nb = _call(lambda: client.run_notebook(args.id, args.run, _url(args)))
    text = json.dumps(nb, indent=1)
    if args.output in (None, "-"):
        sys.stdout.write(text + "\n")
    else:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {args.output}")
    return 0


# ------------------------------------------------------------------ parser
def add_commands(cmd: Cmd) -> None:
    """Register ``apps`` and ``jobs`` (each with sub-commands) through the parser's ``cmd``."""
    for group, helptext, subs in (("apps", "services (long-running apps) of the built-in framework", _apps_subs),
                                  ("jobs", "scheduled jobs and notebooks of the built-in framework", _jobs_subs)):
        top = cmd(group, helptext, _missing)
        sub = top.add_subparsers(dest=group + "_command", metavar="SUBCOMMAND", parser_class=Parser)
        sub.required = True

        def add(name: str, h: str, func: Callable[[argparse.Namespace], int], sub: Any = sub,
                parents: tuple[Any, ...] = ()) -> Any:
            sp = sub.add_parser(name, help=h, description=h, parents=list(parents))
            sp.set_defaults(func=func)
            if parents:  # serve: the framework's own options (--master, --state, --zk, --port …)
                return sp
            sp.add_argument("--master", default=argparse.SUPPRESS, help="the master, HOST:PORT or zk://H:P,…/PATH")
            sp.add_argument("--apps", default=None, metavar="URL",
                            help="the apps framework's REST URL [$MESOS_NB_APPS; default: asked of the master]")
            return sp

        subs(add)


def _missing(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires a sub-command
    raise CLIError("a sub-command is required")


def _apps_subs(add: Callable[..., Any]) -> None:
    add("list", "list apps", cmd_apps_list)
    s = add("show", "an app and its instances", cmd_apps_show)
    s.add_argument("id", metavar="ID")
    s.add_argument("--json", action="store_true", help="the full definition and state as JSON")
    definitions.add_arguments(add("deploy", "create or change an app from a JSON FILE or --id/--cmd",
                                  cmd_apps_deploy), "app")
    s = add("scale", "set an app's number of instances", cmd_apps_scale)
    s.add_argument("id", metavar="ID")
    s.add_argument("instances", type=int, metavar="N")
    for name, h, f in (("restart", "replace every instance (rolling, by the upgrade strategy)", cmd_apps_restart),
                       ("delete", "kill every instance and forget the app", cmd_apps_delete),
                       ("suspend", "scale to 0 instances, keeping the definition", cmd_apps_suspend)):
        add(name, h, f).add_argument("id", metavar="ID")
    from mesos_nb.frameworks.apps.__main__ import parser as framework_options

    add("serve", "run the services-and-jobs framework in the foreground (state in --state DIR, default "
        "~/.mesos-nb/apps, or in ZooKeeper with --zk)", cmd_apps_serve, parents=(framework_options(add_help=False),))


def _jobs_subs(add: Callable[..., Any]) -> None:
    add("list", "list jobs and their last run", cmd_jobs_list)
    add("show", "a job's definition", cmd_jobs_show).add_argument("id", metavar="ID")
    definitions.add_arguments(add("schedule", "create or replace a job: a notebook (.ipynb), a JSON FILE, or "
                                  "--id/--cmd", cmd_jobs_schedule), "job")
    add("run", "start a run now", cmd_jobs_run).add_argument("id", metavar="ID")
    add("history", "a job's runs, newest first", cmd_jobs_history).add_argument("id", metavar="ID")
    add("delete", "delete a job and its history", cmd_jobs_delete).add_argument("id", metavar="ID")
    n = add("notebook", "the executed notebook of a run (JSON)", cmd_jobs_notebook)
    n.add_argument("id", metavar="ID")
    n.add_argument("run", metavar="RUN")
    n.add_argument("-o", "--output", help="write it to this file (default: stdout)")


__all__ = ["add_commands"]

"""An app or job definition from what a user typed: a JSON file, a notebook, or ``--id``/``--cmd``
and options. ``mesos-nb apps deploy|jobs schedule`` and ``%mesos app deploy|job schedule`` both
declare their options (:func:`add_arguments`) and build the definition here, so the two
interfaces accept the same input and refuse it with the same sentence (a ``ValueError`` each
interface shows as its own error); :func:`submit_job` sends a job either way it was given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from . import client


def add_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    """The options :func:`app_from_args` (``kind`` "app") or :func:`job_from_args` ("job") read."""
    if kind == "app":
        p.add_argument("file", nargs="?", metavar="FILE", help="a Marathon-style app definition (JSON)")
        p.add_argument("--id", help="the app's id (overrides the file's)")
        p.add_argument("--cmd", help="the command each instance runs")
        p.add_argument("--instances", type=int)
    else:
        p.add_argument("file", nargs="?", metavar="FILE")
        p.add_argument("--id", help="the job's id (default for a notebook: its file name)")
        p.add_argument("--cmd", help="the command each run executes")
        p.add_argument("--cron", help='a cron expression, as "0 * * * *"')
        p.add_argument("--every", help="a period from now: 30s, 5m, 2h, 1d")
        p.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                       help="a notebook parameter (papermill), repeatable")
        p.add_argument("--retries", type=int)
    p.add_argument("--cpus", type=float)
    p.add_argument("--mem", type=float, help="MB")
    if kind == "app":
        p.add_argument("--port", type=int, action="append", default=[], help="a port (0: any), repeatable")
        p.add_argument("--env", action="append", default=[], metavar="K=V", help="repeatable")
        p.add_argument("--constraint", action="append", default=[], metavar="FIELD:OP[:VALUE]",
                       help="as hostname:UNIQUE, repeatable")


def parse_env(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--env {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def load_definition(path: str) -> dict[str, Any]:
    """The JSON object in ``path`` (an app or job definition)."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} must hold a JSON object (an app or job definition)")
    return obj


# The sentences each kind is refused with: FILE and --cmd both, --cmd without --id, neither.
_REFUSALS = {
    "app": ("give either a definition FILE or --cmd, not both", "--cmd needs --id (the app's id, as /web)",
            "give a definition FILE (JSON) or --id ID --cmd CMD"),
    "job": ("give a FILE (a .json definition or a .ipynb notebook) or --cmd, not both",
            "--cmd needs --id (the job's id)",
            "give a notebook (.ipynb), a definition FILE (.json) or --id ID --cmd CMD"),
}


def _base(kind: str, file: str | None, def_id: str | None, cmd: str | None) -> dict[str, Any]:
    """``file``'s definition (its id replaced by ``def_id`` when given), or ``{id, cmd}``."""
    both, needs_id, neither = _REFUSALS[kind]
    if file and cmd:
        raise ValueError(both)
    if file:
        d = load_definition(file)
    elif cmd:
        if not def_id:
            raise ValueError(needs_id)
        d = {"cmd": cmd}
    else:
        raise ValueError(neither)
    if def_id:
        d["id"] = def_id
    return d


def _with(d: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``d`` with each field that was given (not None)."""
    return {**d, **{k: v for k, v in fields.items() if v is not None}}


def _named(d: dict[str, Any]) -> dict[str, Any]:
    if not d.get("id"):
        raise ValueError("the definition has no id: add \"id\" to the file or pass --id")
    return d


def app_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """A Marathon-style app from :func:`add_arguments`' options."""
    app = _with(_base("app", args.file, args.id, args.cmd), instances=args.instances, cpus=args.cpus,
                mem=args.mem)
    if args.port:
        app["ports"] = args.port
    if args.env:
        app["env"] = {**app.get("env", {}), **parse_env(args.env)}
    if args.constraint:
        app["constraints"] = [c.split(":") for c in args.constraint]
    return _named(app)


def job_from_args(args: argparse.Namespace, now: float) -> tuple[dict[str, Any], str | None]:
    """The job and, for a notebook job (a FILE ending ``.ipynb``), the notebook file to send;
    a notebook job's id defaults to its file name."""
    file, job_id, cmd = args.file, args.id, args.cmd
    if args.cron and args.every:
        raise ValueError("give --cron or --every, not both")
    notebook = None
    if file and file.endswith(".ipynb") and not cmd:
        if not os.path.isfile(file):
            raise ValueError(f"no such notebook: {file}")
        notebook = file
        job: dict[str, Any] = {"id": job_id or re.sub(r"[^a-z0-9-]+", "-", os.path.basename(file)[:-6].lower())
                               .strip("-")}
    else:
        job = _base("job", file, job_id, cmd)
    if args.params and notebook is None:
        raise ValueError("-p NAME=VALUE is for notebook jobs (give a .ipynb file)")
    schedule = args.cron or (client.every_schedule(args.every, now) if args.every else None)
    return _named(_with(job, schedule=schedule, retries=args.retries, cpus=args.cpus, mem=args.mem)), notebook


def submit_job(job: dict[str, Any], notebook: str | None, params: list[str], url: str) -> dict[str, Any]:
    """Create or replace ``job``; a notebook job sends the notebook and its ``-p`` parameters."""
    if notebook is None:
        return client.schedule_job(job, url)
    fields = {k: v for k, v in job.items() if k not in ("id", "schedule")}
    return client.schedule_notebook(job["id"], notebook, client.parse_params(params), job.get("schedule"), url,
                                    **fields)


__all__ = ["add_arguments", "app_from_args", "job_from_args", "load_definition", "parse_env", "submit_job"]

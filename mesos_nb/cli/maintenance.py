"""``mesos-nb maintenance …``: the maintenance schedule, machine modes and agent draining.

Every command is one typed call of :class:`mesos_nb.client.maintenance.MaintenanceClient`
(``schedule set`` reads the schedule and posts it back with one window more: the master
replaces the whole schedule on each post). Bad input (a machine, a time, a duration) and the
master's refusals are one sentence with exit 2.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from mesos_nb.client import MasterClient
from mesos_nb.client.maintenance import Machine, MaintenanceClient, Window, duration_text

from .apps import _missing
from .errors import CLIError
from .options import Parser
from .tables import print_table

Cmd = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


# ------------------------------------------------------------------ values (pure)
def seconds(text: str) -> float:
    """``90``, ``90s``, ``1h30m``, ``2d`` -> seconds; ArgumentTypeError (one sentence) otherwise."""
    t = text.strip().lower()
    try:
        v = float(t)
    except ValueError:
        parts = _PART.findall(t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise argparse.ArgumentTypeError(
                f"bad duration {text!r}: give seconds or e.g. 90s, 30m, 1h30m, 2d") from None
        v = sum(float(n) * _UNITS[u] for n, u in parts)
    if v < 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: it must be a finite number >= 0")
    return v


def start_time(text: str, now: float) -> float:
    """``+DURATION`` (from now) or an ISO 8601 time (UTC unless it carries an offset) -> epoch s."""
    t = text.strip()
    if t.startswith("+"):
        return now + seconds(t[1:])
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00") if t.endswith("Z") else t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad start {text!r}: give +DURATION (e.g. +1h) or an ISO time (e.g. 2026-12-01T02:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def machine(text: str) -> Machine:
    try:
        return Machine.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def agent_id(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an agent id cannot be empty")
    return text.strip()


def schedule_rows(windows: tuple[Window, ...] | list[Window], down: set[Machine]) -> list[tuple[Any, ...]]:
    """One row per machine of each window: the window number, start, duration, mode."""
    rows = []
    for i, w in enumerate(windows, 1):
        start = datetime.fromtimestamp(w.start, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        dur = "open" if w.duration is None else duration_text(w.duration)
        rows += [(i, str(m), start, dur, "DOWN" if m in down else "DRAINING") for m in w.machines]
    return rows


# ------------------------------------------------------------------ commands
def _client(args: argparse.Namespace) -> MaintenanceClient:
    return MaintenanceClient(MasterClient(args.master))


def cmd_schedule(args: argparse.Namespace) -> int:
    state = _client(args).read()
    print_table(("WINDOW", "MACHINE", "START", "DURATION", "MODE"), schedule_rows(state.windows, set(state.down)))
    return 0


def cmd_schedule_set(args: argparse.Namespace) -> int:
    if len(set(args.machine)) != len(args.machine):
        raise CLIError("a machine is given more than once")
    try:
        start = start_time(args.start, time.time())
    except argparse.ArgumentTypeError as e:
        raise CLIError(str(e)) from None
    window = Window(tuple(args.machine), start, args.duration)
    windows = _client(args).add_window(window)
    print(f"scheduled {', '.join(map(str, window.machines))}: {window.text()} "
          f"(window {len(windows)} of {len(windows)})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = _client(args).read()
    rows: list[tuple[Any, ...]] = []
    for d in state.draining:
        answers = ", ".join(f"{fid}={a}" for fid, a in sorted(d.answers.items())) or "-"
        rows.append((str(d.machine), "DRAINING", answers))
    rows += [(str(m), "DOWN", "-") for m in state.down]
    print_table(("MACHINE", "MODE", "INVERSE OFFER ANSWERS"), rows)
    return 0


def _one_call(request: Callable[[MaintenanceClient, argparse.Namespace], None],
              say: Callable[[argparse.Namespace], str]) -> Callable[[argparse.Namespace], int]:
    """A command that makes one maintenance call and prints one line about it."""
    def command(args: argparse.Namespace) -> int:
        request(_client(args), args)
        print(say(args))
        return 0
    return command


def _machines(args: argparse.Namespace) -> str:
    return ", ".join(map(str, args.machines))


def _draining(args: argparse.Namespace) -> str:
    grace = "" if args.grace is None else f", grace at most {duration_text(args.grace)}"
    return f"draining agent {args.agent_id}{grace}{', then marked gone' if args.mark_gone else ''}"


cmd_down = _one_call(lambda c, a: c.down(a.machines), lambda a: f"down: {_machines(a)} (its agents are shut down)")
cmd_up = _one_call(lambda c, a: c.up(a.machines), lambda a: f"up: {_machines(a)} (out of the schedule)")
cmd_drain = _one_call(lambda c, a: c.drain(a.agent_id, a.grace, a.mark_gone), _draining)
cmd_deactivate = _one_call(lambda c, a: c.deactivate(a.agent_id),
                           lambda a: f"deactivated agent {a.agent_id} (no more offers from it)")
cmd_reactivate = _one_call(lambda c, a: c.reactivate(a.agent_id), lambda a: f"reactivated agent {a.agent_id}")


# ------------------------------------------------------------------ parser
def add_commands(cmd: Cmd) -> None:
    """Register ``maintenance`` and its sub-commands through the parser's ``cmd``."""
    top = cmd("maintenance", "maintenance schedule, machines down/up, agent drain and deactivation", _missing)
    sub = top.add_subparsers(dest="maintenance_command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.required = True

    def add(name: str, h: str, func: Callable[[argparse.Namespace], int], into: Any = sub) -> Any:
        sp = into.add_parser(name, help=h, description=h)
        sp.set_defaults(func=func)
        sp.add_argument("--master", default=argparse.SUPPRESS, help="the master, HOST:PORT or zk://H:P,…/PATH")
        return sp

    sched = add("schedule", "show the maintenance schedule ('schedule set' adds a window)", cmd_schedule)
    inner = sched.add_subparsers(dest="schedule_command", metavar="[set]", parser_class=Parser)
    s = add("set", "add one maintenance window to the schedule", cmd_schedule_set, into=inner)
    s.add_argument("--machine", type=machine, action="append", required=True, metavar="HOST[,IP]",
                   help="a machine of the window (repeatable); Mesos matches an agent on both when both are given")
    s.add_argument("--start", required=True, metavar="ISO|+DURATION",
                   help="when it starts: +1h (from now) or an ISO time, UTC unless it has an offset")
    s.add_argument("--duration", type=seconds, metavar="D", help="how long: seconds, or 30m, 1h30m, 2d (default: open)")
    add("status", "draining and down machines, with each framework's answer to its inverse offer", cmd_status)
    for name, h, f in (("down", "start maintenance: the machines' agents are shut down (DOWN)", cmd_down),
                       ("up", "stop maintenance: the machines are UP and leave the schedule", cmd_up)):
        add(name, h, f).add_argument("machines", type=machine, nargs="+", metavar="HOST[,IP]")
    d = add("drain", "drain an agent: kill its tasks, no more offers; DRAINED when they are done", cmd_drain)
    d.add_argument("agent_id", type=agent_id, metavar="AGENT_ID")
    d.add_argument("--grace", type=seconds, metavar="SECONDS", help="cap of each task's kill grace period")
    d.add_argument("--mark-gone", action="store_true", help="mark the agent gone once it is drained")
    for name, h, f in (("deactivate", "stop offers from an agent (its tasks keep running)", cmd_deactivate),
                       ("reactivate", "offer a deactivated or drained agent again", cmd_reactivate)):
        add(name, h, f).add_argument("agent_id", type=agent_id, metavar="AGENT_ID")


__all__ = ["add_commands", "seconds", "start_time"]

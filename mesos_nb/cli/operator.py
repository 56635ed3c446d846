"""The operator commands (``status``, ``agents``, ``frameworks``, ``tasks``, ``logs``,
``kill``): typed reads through :mod:`mesos_nb.client`, printed as tables."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from mesos_nb.client import (
    MasterClient,
    MesosClientError,
    all_frameworks,
    all_tasks,
    cluster_totals,
    locate,
)
from mesos_nb.client.maintenance import maintenance_or_none
from mesos_nb.client.tables import AGENT_HEADERS, SCALARS, agent_rows, num

from .tables import print_table


def cmd_status(args: argparse.Namespace) -> int:
    client = MasterClient(args.master)
    state = client.state()
    slaves = state.slaves
    tot, used, counts = cluster_totals(state)
    uptime = f"{time.time() - float(state.start_time):.0f} s" if state.start_time else "?"
    fws = state.frameworks
    leader = (state.leader_info.hostname if state.leader_info else "") or state.leader or "?"
    rows = [
        ("master", client.url),
        ("version", state.version),
        ("id", state.id),
        ("leader", leader),
        ("uptime", uptime),
        ("agents", f"{sum(1 for s in slaves if s.active)} active / {len(slaves)}"),
        ("frameworks", f"{sum(1 for f in fws if f.active)} active / {len(fws)}"),
        ("tasks", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"),
    ] + [(f"{k} used/total", f"{num(used.get(k, 0))}/{num(tot.get(k, 0))}") for k in SCALARS]
    print_table(["FIELD", "VALUE"], rows)
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    client = MasterClient(args.master)
    state = client.state()
    print_table(AGENT_HEADERS, agent_rows(state, maintenance_or_none(client)))
    return 0


def cmd_frameworks(args: argparse.Namespace) -> int:
    state = MasterClient(args.master).state()
    rows = []
    for fw, live in all_frameworks(state, completed=args.all):
        active = "completed" if not live else ("yes" if fw.active else "no")
        connected = fw.connected if fw.connected is not None else live
        rows.append((fw.id, fw.name, active, "yes" if connected else "no",
                     ",".join(fw.role_list) or "*", len(fw.tasks),
                     num(fw.used_resources.get("cpus", 0)), num(fw.used_resources.get("mem", 0))))
    print_table(["ID", "NAME", "ACTIVE", "CONNECTED", "ROLES", "TASKS", "CPUS", "MEM"], rows)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    state = MasterClient(args.master).state()
    hosts = {s.id: s.hostname for s in state.slaves}
    rows = [(t.id, t.name, t.state, fw.name or fw.id,
             f"{hosts.get(t.slave_id, '?')} ({t.slave_id})" if t.slave_id else "",
             num(t.resources.get("cpus", 0)), num(t.resources.get("mem", 0)))
            for t, fw in all_tasks(state, completed=args.all)]
    print_table(["ID", "NAME", "STATE", "FRAMEWORK", "AGENT", "CPUS", "MEM"], rows)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    client = MasterClient(args.master)
    task, _fw = client.find_task(args.task)
    client.kill(task.id)
    print(f"killing task {task.id}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = MasterClient(args.master)
    task, _fw = client.find_task(args.task)
    box = locate(client, task.id, wait=30 if args.follow else 0, poll=0.2)
    follower = box.follower("stderr" if args.stderr else "stdout", sys.stdout)
    follower.poll()
    if not args.follow:
        return 0
    last_check = 0.0
    while True:
        time.sleep(0.2)
        follower.poll()
        if time.monotonic() - last_check >= 1.0:
            last_check = time.monotonic()
            with contextlib.suppress(MesosClientError):
                if client.find_task(task.id)[0].terminal:
                    time.sleep(0.2)
                    follower.poll()
                    return 0


__all__ = ["cmd_agents", "cmd_frameworks", "cmd_kill", "cmd_logs", "cmd_status", "cmd_tasks"]

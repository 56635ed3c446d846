"""Pure snapshot -> column transforms shared by the notebook widget and the master's web UI.

No Bokeh import here: the master computes the same column updates for the browser (which
applies them with a few lines of JS) that the Bokeh components apply in the kernel.

An *update* is ``{"name", "mode": "replace" | "stream", "data": {column: [...]}, ...}``;
``stream`` updates carry ``rollover`` and ``replace`` updates may carry ``factors`` (the new
categorical axis of the plot).
"""

from __future__ import annotations

import re
from typing import Any

from mesos_nb.protocol.messages import TERMINAL_STATES

RESOURCES = ("cpus", "mem", "disk", "gpus")
TIMESERIES_ROLLOVER = 600
OFFERS_ROLLOVER = 600
MAX_PLOTTED_AGENTS = 40
MAX_TIMELINE_TASKS = 40
# More agents than this: the agents plot shows groups of agents (per rack, else per bucket of
# hostnames) with their counts, and the busiest plot names the top agents.
GROUP_ABOVE = MAX_PLOTTED_AGENTS
MAX_GROUPS = 20
GROUP_ATTRIBUTES = ("rack", "rack_id", "zone")
TOP_AGENTS = 10

STATE_COLORS = {
    "TASK_STAGING": "#bdbdbd",
    "TASK_STARTING": "#9ecae1",
    "TASK_RUNNING": "#3182bd",
    "TASK_KILLING": "#fdae6b",
    "TASK_FINISHED": "#31a354",
    "TASK_FAILED": "#de2d26",
    "TASK_KILLED": "#e6550d",
    "TASK_LOST": "#756bb1",
    "TASK_ERROR": "#a50f15",
    "TASK_DROPPED": "#9e9ac8",
    "TASK_GONE": "#636363",
    "TASK_UNREACHABLE": "#bcbddc",
    "TASK_UNKNOWN": "#d9d9d9",
}


def _frac(part: float | None, total: float) -> float:
    return (part or 0.0) / total if total else 0.0


def agent_label(a: dict[str, Any]) -> str:
    return f"{a['hostname']}:{a['port']}"


def group_key(attributes: dict[str, Any]) -> str | None:
    """The group an agent is plotted in: its first rack-like attribute (``rack:r1`` → ``rack r1``)."""
    for k in GROUP_ATTRIBUTES:
        if k in attributes:
            return f"{k} {attributes[k]}"
    return None


def _natural(text: str) -> list[Any]:
    """Sort key putting ``10.0.2.1`` before ``10.0.10.1`` (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _sum(members: list[dict[str, Any]], kind: str) -> dict[str, float]:
    return {r: sum(a[kind].get(r) or 0.0 for a in members) for r in ("cpus", "mem")}


def _range_label(first: str, last: str) -> str:
    """A short label for the hostnames first..last: ``10.0.0.1``, ``10.0.49.1`` → ``10.0.0…49.1``;
    ``n01.dc``, ``n50.dc`` → ``n01…n50.dc`` (the dotted parts both share are written once)."""
    if first == last:
        return first
    a, b = first.split("."), last.split(".")
    n = min(len(a), len(b))
    pre = 0
    while pre < n - 1 and a[pre] == b[pre]:
        pre += 1
    post = 0
    while post < n - pre - 1 and a[-1 - post] == b[-1 - post]:
        post += 1
    suffix = "".join("." + p for p in a[len(a) - post:]) if post else ""
    return f"{'.'.join(a[:len(a) - post])}…{'.'.join(b[pre:len(b) - post])}{suffix}"


def agent_groups(agents: list[dict[str, Any]], keys: list[str | None]) -> list[dict[str, Any]]:
    """Agents summed per group, so that thousands of agents plot as a few dozen bars: per rack
    (``keys[i]``, from :func:`group_key`), and agents without one in buckets of consecutive
    hostnames (at most :data:`MAX_GROUPS` groups in all). Each group names its busiest agent."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    loose: list[dict[str, Any]] = []
    for a, k in zip(agents, keys, strict=True):
        if k is None:
            loose.append(a)
        else:
            by_key.setdefault(k, []).append(a)
    groups = sorted(by_key.items(), key=lambda kv: _natural(kv[0]))
    if loose:
        loose.sort(key=lambda a: (_natural(a["hostname"]), a["port"]))
        size = -(-len(loose) // max(1, MAX_GROUPS - len(groups)))
        for i in range(0, len(loose), size):
            chunk = loose[i:i + size]
            groups.append((_range_label(chunk[0]["hostname"], chunk[-1]["hostname"]), chunk))
    return [{"group": label, "agents": len(members), "total": _sum(members, "total"),
             "allocated": _sum(members, "allocated"), "used": _sum(members, "used"),
             "busiest": agent_label(max(members, key=lambda a: _frac(a["allocated"].get("cpus"),
                                                                     a["total"].get("cpus", 0.0))))}
            for label, members in groups]


AGENT_COLUMNS = ("agent", "id", "agents", "busiest", "cpus_total", "cpus_allocated", "cpus_used", "mem_total",
                 "mem_allocated", "mem_used", "cpus_allocated_frac", "cpus_used_frac", "mem_allocated_frac",
                 "mem_used_frac")


def _agent_columns(rows: list[tuple[str, str, int, str, dict[str, Any]]]) -> dict[str, list[Any]]:
    """Columns of (label, id, agent count, busiest agent, record with total/allocated/used) rows;
    equal labels are disambiguated (Bokeh refuses duplicate factors)."""
    cols: dict[str, list[Any]] = {k: [] for k in AGENT_COLUMNS}
    seen: dict[str, int] = {}
    for label, ident, n, busiest, rec in rows:
        if label in seen:
            seen[label] += 1
            label = f"{label} #{seen[label]}"
        else:
            seen[label] = 0
        cols["agent"].append(label)
        cols["id"].append(ident)
        cols["agents"].append(n)
        cols["busiest"].append(busiest)
        for r in ("cpus", "mem"):
            total = rec["total"].get(r, 0.0)
            alloc = rec["allocated"].get(r, 0.0)
            used = rec["used"].get(r) or 0.0
            cols[f"{r}_total"].append(total)
            cols[f"{r}_allocated"].append(alloc)
            cols[f"{r}_used"].append(used)
            cols[f"{r}_allocated_frac"].append(_frac(alloc, total))
            cols[f"{r}_used_frac"].append(_frac(used, total))
    return cols


def agents_update(snap: dict[str, Any]) -> dict[str, Any]:
    """Allocated vs used CPU and memory as fractions of the total: per agent, or per group of
    agents (label ``"<group> (<agents>)"``) when there are more than :data:`GROUP_ABOVE`."""
    groups = snap.get("groups")
    if groups and snap.get("agents_total", 0) > GROUP_ABOVE:
        rows = [(f"{g['group']} ({g['agents']})", "", g["agents"], g["busiest"], g) for g in groups]
    else:
        rows = [(agent_label(a), a["id"], 1, agent_label(a), a) for a in snap.get("agents", [])[:MAX_PLOTTED_AGENTS]]
    cols = _agent_columns(rows)
    return {"name": "agents", "mode": "replace", "data": cols, "factors": list(cols["agent"])}


def busiest_update(snap: dict[str, Any]) -> dict[str, Any]:
    """The :data:`TOP_AGENTS` agents with the most CPU allocated (the snapshot lists them first)."""
    top = snap.get("agents", [])[:TOP_AGENTS]
    cols = _agent_columns([(agent_label(a), a["id"], 1, agent_label(a), a) for a in top])
    return {"name": "busiest", "mode": "replace", "data": cols, "factors": list(reversed(cols["agent"]))}


def timeseries_update(snap: dict[str, Any]) -> dict[str, Any]:
    """One row: cluster-wide allocated and used fractions of CPU and memory at snapshot time."""
    c = snap["cluster"]
    row = {"time": [snap["time"] * 1000.0]}
    for r in ("cpus", "mem"):
        total = c["total"].get(r, 0.0)
        row[f"{r}_allocated"] = [_frac(c["allocated"].get(r), total)]
        row[f"{r}_used"] = [_frac(c["used"].get(r), total)]
    return {"name": "timeseries", "mode": "stream", "data": row, "rollover": TIMESERIES_ROLLOVER}


def shares_update(snap: dict[str, Any]) -> dict[str, Any]:
    """Dominant (DRF) share per framework and per role."""
    labels: list[str] = []
    shares: list[float] = []
    kinds: list[str] = []
    colors: list[str] = []
    for fw in snap.get("frameworks", []):
        labels.append(f"framework {fw['name']} ({fw['id'][-4:]})")
        shares.append(fw["share"])
        kinds.append("framework")
        colors.append("#3182bd")
    for role, share in sorted(snap.get("roles", {}).items()):
        labels.append(f"role {role}")
        shares.append(share)
        kinds.append("role")
        colors.append("#e6550d")
    return {"name": "shares", "mode": "replace", "factors": list(labels),
            "data": {"label": labels, "share": shares, "kind": kinds, "color": colors}}


def quota_role(role: str, quotas: dict[str, Any]) -> str | None:
    """The role whose quota bounds ``role``: itself, else its nearest ancestor with quota."""
    parts = role.split("/")
    for i in range(len(parts), 0, -1):
        name = "/".join(parts[:i])
        if name in quotas:
            return name
    return None


def quota_update(snap: dict[str, Any], role: str) -> dict[str, Any]:
    """Quota headroom of ``role`` (or the ancestor whose quota bounds it): per limited or
    guaranteed resource, what is consumed, the guarantee, the limit and the headroom left
    (limit − consumed), and the consumed and guarantee fractions of the limit."""
    quotas = snap.get("quota") or {}
    q = quota_role(role, quotas)
    cols: dict[str, list[Any]] = {k: [] for k in (
        "resource", "consumed", "guarantee", "limit", "headroom", "consumed_frac", "guarantee_frac")}
    if q is not None:
        info = quotas[q]
        limit, guarantee, consumed = info.get("limit", {}), info.get("guarantee", {}), info.get("consumed", {})
        for n in sorted(set(limit) | set(guarantee)):
            lim = limit.get(n)
            used = consumed.get(n, 0.0)
            top = lim if lim else max(guarantee.get(n, 0.0), used) or 1.0
            cols["resource"].append(n)
            cols["consumed"].append(used)
            cols["guarantee"].append(guarantee.get(n, 0.0))
            cols["limit"].append(lim)
            cols["headroom"].append(max(0.0, lim - used) if lim is not None else None)
            cols["consumed_frac"].append(_frac(used, top))
            cols["guarantee_frac"].append(_frac(guarantee.get(n, 0.0), top))
    return {"name": "quota", "mode": "replace", "data": cols, "factors": list(cols["resource"]),
            "role": q}


def offers_update(snap: dict[str, Any]) -> dict[str, Any]:
    o = snap["offers"]
    return {"name": "offers", "mode": "stream", "rollover": OFFERS_ROLLOVER, "data": {
        "time": [snap["time"] * 1000.0], "count": [o["count"]],
        "cpus": [o["resources"].get("cpus", 0.0)], "mem": [o["resources"].get("mem", 0.0)]}}


def timeline_update(snap: dict[str, Any]) -> dict[str, Any]:
    """Segments (task, from, to, state) built from the snapshot's recent state changes."""
    now = snap["time"]
    per_task: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for ch in snap.get("recent", []):
        per_task.setdefault((ch["framework_id"], ch["task_id"]), []).append(ch)
    keys = sorted(per_task, key=lambda k: per_task[k][-1]["time"])[-MAX_TIMELINE_TASKS:]
    cols: dict[str, list[Any]] = {k: [] for k in ("task", "task_id", "left", "right", "state", "color")}
    labels: list[str] = []
    for key in keys:
        changes = sorted(per_task[key], key=lambda c: c["time"])
        name = changes[-1].get("name") or ""
        label = f"{name} ({key[1][:12]})" if name and name != key[1] else key[1]
        if label in labels:
            label = f"{label} [{key[0][-4:]}]"
        labels.append(label)
        for i, ch in enumerate(changes):
            end = changes[i + 1]["time"] if i + 1 < len(changes) else (
                ch["time"] + max(0.2, 0.01 * (now - changes[0]["time"])) if ch["state"] in TERMINAL_STATES else now)
            cols["task"].append(label)
            cols["task_id"].append(key[1])
            cols["left"].append(ch["time"] * 1000.0)
            cols["right"].append(max(end, ch["time"]) * 1000.0)
            cols["state"].append(ch["state"])
            cols["color"].append(STATE_COLORS.get(ch["state"], "#969696"))
    return {"name": "timeline", "mode": "replace", "data": cols, "factors": labels}


UPDATERS = {
    "agents": agents_update,
    "timeseries": timeseries_update,
    "shares": shares_update,
    "timeline": timeline_update,
    "offers": offers_update,
    "busiest": busiest_update,
}


def plot_updates(snap: dict[str, Any]) -> list[dict[str, Any]]:
    return [fn(snap) for fn in UPDATERS.values()]


def history_updates(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stream updates replaying a list of light snapshots (``time``, ``cluster``, ``offers``)."""
    out = []
    for name, fn in (("timeseries", timeseries_update), ("offers", offers_update)):
        rows: dict[str, list[Any]] = {}
        for snap in history:
            for k, v in fn(snap)["data"].items():
                rows.setdefault(k, []).extend(v)
        rollover = TIMESERIES_ROLLOVER if name == "timeseries" else OFFERS_ROLLOVER
        out.append({"name": name, "mode": "stream", "data": rows, "rollover": rollover})
    return out

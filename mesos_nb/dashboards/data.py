"""Pure snapshot -> column transforms shared by the notebook widget and the master's web UI.

No Bokeh import here: the master computes the same column updates for the browser (which
applies them with a few lines of JS) that the Bokeh components apply in the kernel.

An *update* is ``{"name", "mode": "replace" | "stream", "data": {column: [...]}, ...}``;
``stream`` updates carry ``rollover`` and ``replace`` updates may carry ``factors`` (the new
categorical axis of the plot).
"""

from __future__ import annotations

from typing import Any

from mesos_nb.protocol.messages import TERMINAL_STATES

RESOURCES = ("cpus", "mem", "disk", "gpus")
TIMESERIES_ROLLOVER = 600
OFFERS_ROLLOVER = 600
MAX_PLOTTED_AGENTS = 40
MAX_TIMELINE_TASKS = 40

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


def agents_update(snap: dict[str, Any]) -> dict[str, Any]:
    """Allocated vs used CPU and memory per agent, as fractions of the agent's total."""
    agents = snap.get("agents", [])[:MAX_PLOTTED_AGENTS]
    cols: dict[str, list[Any]] = {k: [] for k in (
        "agent", "id", "cpus_total", "cpus_allocated", "cpus_used", "mem_total", "mem_allocated",
        "mem_used", "cpus_allocated_frac", "cpus_used_frac", "mem_allocated_frac", "mem_used_frac")}
    for a in agents:
        cols["agent"].append(agent_label(a))
        cols["id"].append(a["id"])
        for r in ("cpus", "mem"):
            total = a["total"].get(r, 0.0)
            alloc = a["allocated"].get(r, 0.0)
            used = a["used"].get(r) or 0.0
            cols[f"{r}_total"].append(total)
            cols[f"{r}_allocated"].append(alloc)
            cols[f"{r}_used"].append(used)
            cols[f"{r}_allocated_frac"].append(_frac(alloc, total))
            cols[f"{r}_used_frac"].append(_frac(used, total))
    # Bokeh refuses duplicate factors: disambiguate equal host:port labels.
    seen: dict[str, int] = {}
    for i, lab in enumerate(cols["agent"]):
        if lab in seen:
            seen[lab] += 1
            cols["agent"][i] = f"{lab} #{seen[lab]}"
        else:
            seen[lab] = 0
    return {"name": "agents", "mode": "replace", "data": cols, "factors": list(cols["agent"])}


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

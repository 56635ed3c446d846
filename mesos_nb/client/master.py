"""The master's operator endpoints as typed calls, and the pure questions asked of a
``/master/state`` snapshot (every task, find a task by id or prefix, an agent's URL,
cluster totals). The CLI, the notebook and the framework launchers all read through here.
"""

from __future__ import annotations

import json
from typing import Any

from mesos_nb.protocol.state import (
    AgentsView,
    AgentView,
    FrameworksView,
    FrameworkView,
    MasterState,
    TasksView,
    TaskView,
)

from .http import DEFAULT, HttpClient, MesosClientError

SCALARS = ("cpus", "mem", "disk", "gpus")


def master_url(master: str, zk_timeout: float = 10.0) -> str:
    """``host:port`` (and the other accepted spellings) -> ``http://host:port``; a
    ``zk://…`` URL -> the URL of the master leading now (asked of ZooKeeper once)."""
    from mesos_nb.scheduler.stream import normalize_master

    try:
        url = normalize_master(master)
    except ValueError as e:
        raise MesosClientError(str(e)) from None
    if url.startswith("zk://"):
        import logging

        from mesos_nb.protocol.zk_detector import DetectorError, detect_leader

        kazoo_log = logging.getLogger("kazoo")
        level = kazoo_log.level
        kazoo_log.setLevel(logging.CRITICAL)  # its retry chatter is not for a one-shot lookup
        try:
            return normalize_master(detect_leader(url, timeout=zk_timeout))
        except DetectorError as e:
            raise MesosClientError(str(e)) from None
        finally:
            kazoo_log.setLevel(level)
    return url


class MasterClient:
    def __init__(self, master: str, http: HttpClient | None = None) -> None:
        self.url = master_url(master)
        self.http = http or DEFAULT

    def state(self) -> MasterState:
        return self.http.get_view(self.url + "/master/state", MasterState)

    def frameworks(self) -> FrameworksView:
        return self.http.get_view(self.url + "/master/frameworks", FrameworksView)

    def agents(self) -> AgentsView:
        return self.http.get_view(self.url + "/master/slaves", AgentsView)

    def tasks(self) -> TasksView:
        return self.http.get_view(self.url + "/master/tasks", TasksView)

    def health(self, timeout: float = 5.0) -> None:
        """Raises a one-sentence error when the master cannot be reached."""
        self.http.request(self.url + "/health", timeout=timeout)

    def find_task(self, ident: str) -> tuple[TaskView, FrameworkView]:
        return find_task(self.state(), ident)

    def call(self, body: dict[str, Any], doing: str) -> Any:
        """One operator call (``POST /api/v1``); its JSON answer, or None for an empty one.
        A refusal is one sentence: ``the master refused to <doing> (400: <its reason>)``."""
        status, raw = self.http.request(self.url + "/api/v1", method="POST", body=body)
        if status // 100 != 2:
            msg = raw.decode(errors="replace").strip().splitlines()
            raise MesosClientError(f"the master refused to {doing} ({status}: {msg[0] if msg else 'no message'})")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise MesosClientError(f"the master's answer to {body.get('type')} is not JSON") from None

    def kill(self, task_id: str) -> None:
        self.call({"type": "KILL_TASK", "kill_task": {"task_id": {"value": task_id}}}, f"kill {task_id}")


# ============================================================================ snapshot questions
def all_frameworks(state: MasterState, completed: bool = True) -> list[tuple[FrameworkView, bool]]:
    """``(framework, live)`` pairs; completed frameworks too unless ``completed`` is false."""
    out = [(f, True) for f in state.frameworks]
    if completed:
        out += [(f, False) for f in state.completed_frameworks]
    return out


def all_tasks(state: MasterState, completed: bool) -> list[tuple[TaskView, FrameworkView]]:
    """Every task once (by framework and id); terminal ones only when ``completed``."""
    out = []
    seen = set()
    for fw, _live in all_frameworks(state, completed):
        groups = [fw.tasks, fw.unreachable_tasks] + ([fw.completed_tasks] if completed else [])
        for group in groups:
            for t in group:
                ident = (fw.id, t.id)
                if ident in seen:
                    continue
                seen.add(ident)
                if not completed and t.terminal:
                    continue
                out.append((t, fw))
    return out


def find_task(state: MasterState, ident: str) -> tuple[TaskView, FrameworkView]:
    """The task whose id is ``ident`` (a live one wins over a completed one with the same id),
    else the only task whose id starts with ``ident``."""
    every = all_tasks(state, completed=True)
    exact = [x for x in every if x[0].id == ident]
    if exact:
        return sorted(exact, key=lambda x: x[0].terminal)[0]
    pref = [x for x in every if x[0].id.startswith(ident)]
    ids = {x[0].id for x in pref}
    if len(ids) == 1:
        return pref[0]
    if not ids:
        raise MesosClientError(f"no task '{ident}' is known to the master")
    raise MesosClientError(
        f"'{ident}' matches {len(ids)} tasks ({', '.join(sorted(ids)[:3])}, ...); give more of the id")


def agent_for(state: MasterState, agent_id: str) -> AgentView:
    for s in state.slaves + state.recovered_slaves:
        if s.id == agent_id:
            return s
    raise MesosClientError(f"agent {agent_id} is not known to the master (it may have been removed)")


def agent_url_for(state: MasterState, agent_id: str) -> str:
    return agent_for(state, agent_id).url


def cluster_totals(state: MasterState) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Total and used cpus/mem/disk/gpus over the agents, and the number of tasks in each
    state (completed ones included). Shared by ``mesos-nb status`` and ``%mesos status``."""
    tot: dict[str, float] = {}
    used: dict[str, float] = {}
    for s in state.slaves:
        for k in SCALARS:
            tot[k] = tot.get(k, 0) + s.scalar(k)
            used[k] = used.get(k, 0) + s.scalar(k, used=True)
    counts: dict[str, int] = {}
    for t, _fw in all_tasks(state, completed=True):
        key = t.state or "?"
        counts[key] = counts.get(key, 0) + 1
    return tot, used, counts


__all__ = ["MasterClient", "agent_for", "agent_url_for", "all_frameworks", "all_tasks",
           "cluster_totals", "find_task", "master_url"]

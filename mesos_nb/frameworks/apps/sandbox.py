"""Finding a task's sandbox on its agent and reading files out of it (agent ``/files``).

Used for run records (a browsable link to the sandbox) and to copy a notebook run's executed
notebook back into the framework's results directory after the task ended.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=10)


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=TIMEOUT) as r:
        r.raise_for_status()
        return await r.json(content_type=None)


def agent_url(state: dict[str, Any], agent_id: str) -> str | None:
    for s in state.get("slaves", []) + state.get("recovered_slaves", []):
        if s.get("id") == agent_id:
            pid = s.get("pid") or ""
            if s.get("hostname") and s.get("port"):
                return f"http://{s['hostname']}:{s['port']}"
            if "@" in pid:
                return "http://" + pid.split("@", 1)[1]
    return None


async def locate(session: aiohttp.ClientSession, master_url: str, agent_id: str, framework_id: str,
                 task_id: str) -> tuple[str, str] | None:
    """``(agent URL, sandbox directory)`` of ``task_id``, or None when it cannot be found."""
    state = await _json(session, master_url + "/master/state")
    url = agent_url(state, agent_id)
    if url is None:
        return None
    agent = await _json(session, url + "/state")
    for fw in agent.get("frameworks", []) + agent.get("completed_frameworks", []):
        if fw.get("id") != framework_id:
            continue
        for ex in fw.get("executors", []) + fw.get("completed_executors", []):
            ids = {t.get("id") for k in ("tasks", "queued_tasks", "completed_tasks") for t in ex.get(k, []) or []}
            if (ex.get("id") == task_id or task_id in ids) and ex.get("directory"):
                return url, ex["directory"]
    return None


def browse_link(agent: str, directory: str) -> str:
    return f"{agent}/files/browse?path={quote(directory)}"


async def download(session: aiohttp.ClientSession, agent: str, path: str) -> bytes | None:
    async with session.get(f"{agent}/files/download", params={"path": path}, timeout=TIMEOUT) as r:
        if r.status != 200:
            return None
        return await r.read()


__all__ = ["agent_url", "browse_link", "download", "locate"]

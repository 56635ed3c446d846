"""Task sandboxes: which agent ran a task, where its sandbox is, and reading or following
its files through the agent's ``/files/read`` — the one lookup chain behind
``mesos-nb logs``, ``%mesos logs``, ``Task.logs()`` and the launchers' ``logs()``::

    master /master/state ─ find_task ─► agent id ─ agent_url_for ─► agent /state
        ─ sandbox_dir (executor whose id or tasks match) ─► directory ─► /files/read
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable
from typing import IO

import msgspec

from mesos_nb.protocol.state import AgentState, FileChunk, decode

from .http import DEFAULT, HttpClient, MesosClientError
from .master import MasterClient, agent_url_for, find_task

READ_CHUNK = 16384


def sandbox_dir(agent_url: str, framework_id: str | None, task_id: str,
                executor_id: str | None = None, http: HttpClient | None = None) -> str | None:
    """The sandbox of ``task_id`` on that agent (live or completed executor), or None."""
    state: AgentState = (http or DEFAULT).get_view(agent_url + "/state", AgentState, what="the agent")
    exec_ids = {x for x in (executor_id, task_id) if x}
    for fw in state.frameworks + state.completed_frameworks:
        if framework_id and fw.id and fw.id != framework_id:
            continue
        for ex in fw.executors + fw.completed_executors:
            if (ex.id in exec_ids or task_id in ex.task_ids()) and ex.directory:
                return ex.directory
    return None


class Sandbox:
    """Where a task's files are: ``agent_url`` and ``directory``."""

    def __init__(self, agent_url: str, directory: str, http: HttpClient | None = None) -> None:
        self.agent_url = agent_url
        self.directory = directory
        self.http = http or DEFAULT

    def path(self, name: str) -> str:
        return f"{self.directory}/{name}"

    def follower(self, name: str, out: IO[str]) -> FileFollower:
        return FileFollower(self.agent_url, self.path(name), out, self.http)

    def read(self, name: str) -> str:
        return read_file(self.agent_url, self.path(name), self.http)


def locate(master: MasterClient, task_id: str, *, framework_id: str | None = None,
           agent_id: str | None = None, executor_id: str | None = None, wait: float = 0.0,
           gone: Callable[[], bool] | None = None, poll: float = 0.1) -> Sandbox:
    """The task's sandbox. ``agent_id`` skips the task lookup; ``wait`` seconds lets the agent
    catch up with a task that was just launched; ``gone()`` true stops the wait early."""
    state = master.state()
    if agent_id is None:
        task, fw = find_task(state, task_id)
        task_id, agent_id = task.id, task.slave_id
        framework_id = framework_id or fw.id
        executor_id = executor_id or task.executor_id or None
    agent = agent_url_for(state, agent_id)
    deadline = time.monotonic() + wait
    while True:
        directory = sandbox_dir(agent, framework_id, task_id, executor_id, master.http)
        if directory:
            return Sandbox(agent, directory, master.http)
        if time.monotonic() >= deadline or (gone is not None and gone()):
            raise MesosClientError(f"the agent at {agent} has no sandbox for task {task_id}")
        time.sleep(poll)


class FileFollower:
    """Tails one sandbox file through ``/files/read`` (the size first, then the new bytes)."""

    def __init__(self, agent_url: str, path: str, out: IO[str], http: HttpClient | None = None) -> None:
        self.agent_url = agent_url
        self.path = path
        self.out = out
        self.offset = 0
        self.http = http or DEFAULT

    def _read(self, offset: int, length: int) -> FileChunk | None:
        """None when the file is not there (yet), or gone with its sandbox."""
        q = urllib.parse.urlencode({"path": self.path, "offset": offset, "length": length})
        status, raw = self.http.request(f"{self.agent_url}/files/read?{q}", what="the agent")
        if status != 200:
            return None
        try:
            return decode(raw, FileChunk)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    def poll(self) -> int:
        """Write whatever is new; returns the number of bytes consumed."""
        info = self._read(-1, -1)
        if info is None:
            return 0
        size = info.offset
        got = 0
        while self.offset < size:
            n = min(READ_CHUNK, size - self.offset)
            chunk = self._read(self.offset, n)
            if chunk is None or not chunk.data:
                break
            self.out.write(chunk.data)
            self.out.flush()
            self.offset += n
            got += n
        return got


def drain(followers: list[FileFollower], pause: float = 0.05) -> None:
    """Poll until two quiet rounds in a row: a task's terminal status can overtake its last
    writes, so a follower keeps reading briefly after the task ended."""
    quiet = 0
    while followers and quiet < 2:
        got = 0
        for f in followers:
            with contextlib.suppress(MesosClientError):
                got += f.poll()
        quiet = quiet + 1 if got == 0 else 0
        if quiet < 2:
            time.sleep(pause)


def read_file(agent_url: str, path: str, http: HttpClient | None = None) -> str:
    """The whole text of one sandbox file ("" when it does not exist)."""
    import io

    buf = io.StringIO()
    FileFollower(agent_url, path, buf, http).poll()
    return buf.getvalue()


__all__ = ["FileFollower", "Sandbox", "drain", "locate", "read_file", "sandbox_dir"]

"""The notebook's task handle: the SDK's :class:`~mesos_nb.scheduler.pool.TaskHandle` (state,
history, the pool's sentence saying why it still waits) plus a live display of it, blocking
waits and sandbox files."""

from __future__ import annotations

import contextlib
import html
import time
from typing import Any

from mesos_nb.client import MasterClient, MesosClientError, Sandbox, locate
from mesos_nb.scheduler.pool import PENDING, TaskHandle, TaskSpec

from .display import Logs, amounts_text, badge, in_kernel, num
from .errors import MesosNotebookError


class Task(TaskHandle):
    """A task this notebook started: ``.state``, ``.wait()``, ``.logs()``, ``.kill()``.

    Its display updates live in a notebook (state, agent, why it is still waiting).
    """

    def __init__(self, framework: Any, task_id: str, name: str, command: str,
                 spec: TaskSpec | None) -> None:
        super().__init__(task_id, spec)
        self.framework = framework
        self.name = name
        self.command = command
        self.requested = dict(spec.amounts) if spec else {}
        self.constraints = dict(spec.constraints) if spec else {}
        self._sandbox: Sandbox | None = None
        self._handles: list[Any] = []

    # ------------------------------------------------------------------ state
    def _changed(self) -> None:
        self._refresh_displays()

    def wait(self, timeout: float | None = None) -> Task:
        """Block until the task is finished (any terminal state); returns the task.

        Raises a one-sentence error if ``timeout`` seconds pass first (the task keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last_why = time.monotonic()
        while not self.done:
            if self.state == PENDING and time.monotonic() - last_why >= 1.0:
                last_why = time.monotonic()
                self.framework.refresh_waiting()
            with self.cond:
                if self.done:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    why = f" ({self.waiting})" if self.state == PENDING and self.waiting else ""
                    raise MesosNotebookError(
                        f"task {self.id} is still {self.state} after {num(timeout)} s{why}")
                self.cond.wait(0.5 if left is None else min(left, 0.5))
        return self

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the task runs or ends; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.phase in ("requested", "launching") and self.state != "TASK_STARTING":
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(0.5 if left is None else min(left, 0.5))
        return True

    def kill(self, wait: float | None = 15.0) -> Task:
        """Kill the task (a pending one is just dropped); waits up to ``wait`` s for the end."""
        self.framework.kill(self)
        if wait:
            with contextlib.suppress(MesosNotebookError):
                self.wait(wait)
        return self

    # ------------------------------------------------------------------ sandbox
    def sandbox(self, timeout: float = 10.0) -> Sandbox:
        """Where the task's files are; waits up to ``timeout`` s for the agent to know it."""
        if not self.agent_id:
            raise MesosNotebookError(f"task {self.id} has not been launched yet ({self.state})")
        if self._sandbox is None:
            try:
                self._sandbox = locate(MasterClient(self.framework.master_url), self.id,
                                       framework_id=self.framework.framework_id,
                                       agent_id=self.agent_id, wait=timeout)
            except MesosClientError as e:
                raise MesosNotebookError(str(e)) from None
        return self._sandbox

    def agent_url(self) -> str:
        return self.sandbox().agent_url

    @property
    def sandbox_dir(self) -> str:
        return self.sandbox().directory

    def read_file(self, name: str) -> str:
        """The whole text of a file in the task's sandbox (``stdout``, ``stderr``, ...)."""
        try:
            return self.sandbox().read(name)
        except MesosClientError as e:
            raise MesosNotebookError(str(e)) from None

    def logs(self) -> Logs:
        """The task's stdout and stderr as they are now."""
        return Logs(self.id, self.read_file("stdout"), self.read_file("stderr"))

    # ------------------------------------------------------------------ display
    def _lines(self) -> list[str]:
        where = f" on {self.hostname} ({self.agent_id})" if self.agent_id else ""
        lines = [f"Task {self.id}  {self.state}{where}",
                 f"  command: {self.command}",
                 f"  requested: {amounts_text(self.requested)}"
                 + (f"  where {', '.join(f'{k}={v}' for k, v in self.constraints.items())}"
                    if self.constraints else "")]
        if self.state == PENDING and self.waiting:
            lines.append(f"  waiting: {self.waiting}")
        if self.message or self.reason:
            lines.append(f"  message: {self.message or ''}{f' ({self.reason})' if self.reason else ''}")
        if len(self.history) > 1:
            t0 = self.history[0][0]
            lines.append("  history: " + " -> ".join(
                f"{s.replace('TASK_', '')} +{t - t0:.1f}s" if i else s.replace("TASK_", "")
                for i, (t, s) in enumerate(self.history)))
        return lines

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        rows = [("state", badge(self.state)),
                ("agent", html.escape(f"{self.hostname} ({self.agent_id})") if self.agent_id else "-"),
                ("command", f"<code>{html.escape(self.command)}</code>"),
                ("requested", html.escape(amounts_text(self.requested)))]
        if self.constraints:
            rows.append(("on agents with", html.escape(", ".join(f"{k}={v}" for k, v in self.constraints.items()))))
        if self.state == PENDING and self.waiting:
            rows.append(("waiting", html.escape(self.waiting)))
        if self.message or self.reason:
            rows.append(("message", html.escape(f"{self.message or ''} {self.reason or ''}".strip())))
        if len(self.history) > 1:
            t0 = self.history[0][0]
            rows.append(("history", " &rarr; ".join(
                html.escape(s.replace("TASK_", "") + (f" +{t - t0:.1f}s" if i else ""))
                for i, (t, s) in enumerate(self.history))))
        body = "".join(f'<tr><th style="text-align:left">{k}</th><td style="text-align:left">{v}</td></tr>'
                       for k, v in rows)
        return f"<div><b>Task <code>{html.escape(self.id)}</code></b><table>{body}</table></div>"

    def _bundle(self) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if in_kernel() and not self.done:
            self._handles.append(display(self._bundle(), raw=True, display_id=True))
        else:
            display(self._bundle(), raw=True)

    def _refresh_displays(self) -> None:
        for h in list(self._handles):
            with contextlib.suppress(Exception):
                h.update(self._bundle(), raw=True)
        if self.done:
            self._handles.clear()


__all__ = ["Task"]

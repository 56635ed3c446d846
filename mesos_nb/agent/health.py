"""Task health checks (``TaskInfo.health_check``: COMMAND, HTTP, TCP), run by the agent.

Defaults as Mesos (reference §1.8): ``delay_seconds`` 15, ``interval_seconds`` 10,
``timeout_seconds`` 20, ``consecutive_failures`` 3, ``grace_period_seconds`` 10. Failures
inside the grace period (counted from the start) are ignored until the first success.
Each change of health calls ``on_change(healthy)`` (the agent sends a TASK_RUNNING update with
``healthy`` and REASON_TASK_HEALTH_CHECK_STATUS_UPDATED); ``consecutive_failures`` failures in a
row after the grace period call ``on_change(False)`` and then ``on_kill(message)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

logger = logging.getLogger("mesos_nb.agent")

DEFAULTS = {"delay_seconds": 15.0, "interval_seconds": 10.0, "timeout_seconds": 20.0,
            "consecutive_failures": 3, "grace_period_seconds": 10.0}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class HealthChecker:
    def __init__(self, spec: Any, *, cwd: str, env: dict[str, str], on_change: Callable[[bool], None],
                 on_kill: Callable[[str], None], user: Any = None) -> None:
        self.spec = spec
        self.cwd = cwd
        self.env = env
        # COMMAND checks run as the task's user (users.User), as the task itself does.
        self._identity: dict[str, Any] = ({} if user is None else
                                          {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)})
        self.on_change = on_change
        self.on_kill = on_kill
        self.healthy: bool | None = None
        self.failures = 0
        self._task: asyncio.Task | None = None
        g = lambda k: _get(spec, k, None)  # noqa: E731
        self.delay = float(g("delay_seconds") if g("delay_seconds") is not None else DEFAULTS["delay_seconds"])
        self.interval = float(g("interval_seconds") if g("interval_seconds") is not None else DEFAULTS["interval_seconds"])
        self.timeout = float(g("timeout_seconds") if g("timeout_seconds") is not None else DEFAULTS["timeout_seconds"])
        self.max_failures = int(g("consecutive_failures") if g("consecutive_failures") is not None
                                else DEFAULTS["consecutive_failures"])
        self.grace = float(g("grace_period_seconds") if g("grace_period_seconds") is not None
                           else DEFAULTS["grace_period_seconds"])
        kind = g("type")
        if kind is None:
            kind = "COMMAND" if g("command") else "HTTP" if g("http") else "TCP" if g("tcp") else "COMMAND"
        self.kind = kind

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        started = time.monotonic()
        await asyncio.sleep(self.delay)
        ever_healthy = False
        while True:
            try:
                ok, why = await asyncio.wait_for(self._check(), self.timeout)
            except asyncio.TimeoutError:
                ok, why = False, f"health check timed out after {self.timeout:g}s"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a broken check is a failed check
                ok, why = False, str(e)
            if ok:
                ever_healthy = True
                self.failures = 0
                if self.healthy is not True:
                    self.healthy = True
                    self.on_change(True)
            elif ever_healthy or time.monotonic() - started >= self.grace:
                self.failures += 1
                if self.healthy is not False:
                    self.healthy = False
                    self.on_change(False)
                if self.failures >= self.max_failures:
                    self.on_kill(f"Task failed {self.failures} consecutive health checks: {why}")
                    return
            await asyncio.sleep(self.interval)

    async def _check(self) -> tuple[bool, str]:
        if self.kind == "HTTP":
            http = _get(self.spec, "http", {}) or {}
            scheme = _get(http, "scheme", "http") or "http"
            port = int(_get(http, "port"))
            path = _get(http, "path", "/") or "/"
            statuses = _get(http, "statuses") or []
            url = f"{scheme}://127.0.0.1:{port}{path if path.startswith('/') else '/' + path}"
            async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                ok = r.status in statuses if statuses else 200 <= r.status < 400
                return ok, f"HTTP {r.status} from {url}"
        if self.kind == "TCP":
            port = int(_get(_get(self.spec, "tcp", {}) or {}, "port"))
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError as e:
                return False, f"TCP connection to port {port} failed: {e}"
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
            return True, ""
        cmd = _get(self.spec, "command", {}) or {}
        value = _get(cmd, "value")
        if not value:
            return False, "COMMAND health check without a command"
        shell = _get(cmd, "shell", True)
        if shell is False:
            args = _get(cmd, "arguments") or [value]
            proc = await asyncio.create_subprocess_exec(value, *args[1:], cwd=self.cwd, env=self.env,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
                                                        **self._identity)
        else:
            proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", value, cwd=self.cwd, env=self.env,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
                                                        **self._identity)
        try:
            rc = await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        return rc == 0, f"command exited with status {rc}"


__all__ = ["HealthChecker", "DEFAULTS"]

"""Containerizers: start a task's process tree isolated, wait for it, destroy it.

``Containerizer`` is the small interface the agent uses; ``PosixContainerizer`` is the
``--isolation posix`` implementation: each container is one process in its own session
(so its process group is the container), with cwd = sandbox and stdout/stderr redirected to
the sandbox files. Exit is awaited without threads or polling: a pidfd registered with the
event loop (``os.pidfd_open``, Linux >= 5.3) wakes us when the process exits; platforms
without pidfds fall back to asyncio's subprocess machinery.

Destroy = SIGTERM to the process group, wait the grace period, SIGKILL the group. When the
leader exits on its own, leftover group members are SIGKILLed too (as Mesos' posix
launcher destroys the whole container).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from .isolation import Isolator, Limits, PosixIsolator, make_isolator, tree_stats
from .users import User, chain, switch_to


@dataclass
class LaunchSpec:
    container_id: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdout_path: str
    stderr_path: str
    executable: str | None = None  # exec this file with ``argv`` (argv[0] may differ)
    limits: Limits = field(default_factory=Limits)
    status_path: str | None = None  # supervised: the supervisor writes the task's wait status here
    user: User | None = None  # run as this user (users.py); None = as the agent


@dataclass
class Container:
    container_id: str
    pid: int
    directory: str
    exit_future: asyncio.Future = field(repr=False)  # -> raw wait status (int)
    destroying: bool = False
    limits: Limits = field(default_factory=Limits)
    limitation: str | None = None  # set when the isolator found the container over a limit
    status_path: str | None = None
    recovered: bool = False  # not our child: adopted after an agent restart

    @property
    def exited(self) -> bool:
        return self.exit_future.done()

    async def wait(self) -> int:
        """Raw wait status (as ``os.waitpid``)."""
        return await asyncio.shield(self.exit_future)


class LaunchError(Exception):
    """The container could not be started; ``str()`` says why."""


class Containerizer:
    """Interface: ``launch`` returns a running :class:`Container`; ``destroy`` stops it."""

    async def launch(self, spec: LaunchSpec) -> Container:  # pragma: no cover - interface
        raise NotImplementedError

    async def destroy(self, container: Container, grace: float) -> int:  # pragma: no cover
        raise NotImplementedError

    def recover(self, container_id: str, pid: int, directory: str, *, limits: Limits | None = None,
                status_path: str | None = None) -> Container | None:  # pragma: no cover - interface
        """Adopt a still-running container after an agent restart (None if ``pid`` is gone)."""
        return None

    def usage(self, container: Container) -> dict[str, float] | None:
        return None

    def close(self) -> None:
        """Release the containerizer's own resources (not the containers)."""


_HAS_PIDFD = hasattr(os, "pidfd_open")
CLEANUP_DELAY = 0.2  # kernel isolation state (cgroups) is removed in batches, this long after exits
CLEANUP_ATTEMPTS = 50


def _open_out(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _status_from_returncode(rc: int) -> int:
    """Re-encode a ``Popen.returncode`` as a raw wait status."""
    if rc < 0:
        return -rc & 0x7F
    return (rc & 0xFF) << 8


def read_status_file(path: str | None) -> int | None:
    if not path:
        return None
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class PosixContainerizer(Containerizer):
    """Launches each container in its own session, under the given :class:`Isolator`
    (``PosixIsolator`` by default), and polls the isolator for limitations: a container
    over its memory limit is destroyed and keeps ``limitation`` (the message)."""

    def __init__(self, isolator: Isolator | None = None, *, poll_interval: float = 0.25) -> None:
        self._use_pidfd = _HAS_PIDFD
        self._devnull = -1  # one shared read-only /dev/null for every task's stdin
        self.isolator = isolator or PosixIsolator()
        self.poll_interval = poll_interval
        self._live: dict[str, Container] = {}
        self._poller: asyncio.TimerHandle | None = None
        self._cleanup_pending: set[str] = set()
        self._cleanup_queue: dict[str, int] = {}  # container id -> attempts so far
        self._cleanup_timer: asyncio.TimerHandle | None = None
        self._cleanup_task: asyncio.Task | None = None

    def _stdin(self) -> int:
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    def close(self) -> None:
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._cleanup_timer is not None:
            self._cleanup_timer.cancel()
            self._cleanup_timer = None
        queued, self._cleanup_queue = self._cleanup_queue, {}
        deadline = time.monotonic() + 2.0
        while queued:  # the agent stops: remove what is left now (killed processes take a moment to go)
            for cid in list(queued):
                try:
                    if self.isolator.cleanup(cid):
                        del queued[cid]
                except OSError:
                    pass
            if not queued or time.monotonic() > deadline:
                break
            time.sleep(0.02)

    # ------------------------------------------------------------------ limitation polling
    def _track(self, c: Container) -> None:
        self._live[c.container_id] = c
        c.exit_future.add_done_callback(lambda _f, c=c: self._finished(c))
        if self._poller is None and (c.limits.mem_bytes > 0):
            self._poller = asyncio.get_running_loop().call_later(self.poll_interval, self._poll)

    def _poll(self) -> None:
        self._poller = None
        live = [c for c in self._live.values() if not c.exited and c.limits.mem_bytes > 0]
        pending = [c.container_id for c in live if c.limitation is None]
        over = self.isolator.limitations(pending) if pending else {}
        for c in live:
            msg = over.get(c.container_id)
            if msg is None:
                continue
            c.limitation = msg
            logging.getLogger("mesos_nb.agent").warning(
                "container over its limit container=%s: %s", c.container_id, msg)
            _killpg(c.pid, signal.SIGKILL)
            for pid in self.isolator.pids(c.container_id):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if live:
            self._poller = asyncio.get_running_loop().call_later(self.poll_interval, self._poll)

    def _finished(self, c: Container) -> None:
        if c.limitation is None and not isinstance(self.isolator, PosixIsolator):
            with contextlib.suppress(OSError):
                c.limitation = self.isolator.limitation(c.container_id)
        self._live.pop(c.container_id, None)
        if isinstance(self.isolator, PosixIsolator):
            self._cleanup(c.container_id)  # bookkeeping only
        else:
            self._queue_cleanup(c.container_id, 0)

    # Removing cgroups is off the task's exit path: the final status update does not wait for
    # it. Exited containers are queued and removed in batches in a worker thread.
    def _queue_cleanup(self, container_id: str, attempt: int) -> None:
        self._cleanup_pending.add(container_id)
        self._cleanup_queue[container_id] = attempt
        if self._cleanup_timer is None and (self._cleanup_task is None or self._cleanup_task.done()):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._cleanup_timer = loop.call_later(CLEANUP_DELAY * (1 + min(attempt, 10)), self._start_cleanup)

    def _start_cleanup(self) -> None:
        self._cleanup_timer = None
        batch, self._cleanup_queue = self._cleanup_queue, {}
        if batch:
            self._cleanup_task = asyncio.get_running_loop().create_task(self._run_cleanup(batch))

    def _cleanup_batch(self, ids: list[str]) -> list[bool]:
        out = []
        for cid in ids:
            try:
                out.append(self.isolator.cleanup(cid))
            except OSError:
                out.append(False)
        return out

    async def _run_cleanup(self, batch: dict[str, int]) -> None:
        ids = list(batch)
        try:
            done = await asyncio.to_thread(self._cleanup_batch, ids)
        except RuntimeError:  # no more threads: the loop is closing
            done = self._cleanup_batch(ids)
        for cid, ok in zip(ids, done, strict=True):
            if ok:
                self._cleanup_pending.discard(cid)
            elif batch[cid] + 1 < CLEANUP_ATTEMPTS:
                self._cleanup_queue[cid] = batch[cid] + 1
            else:
                logging.getLogger("mesos_nb.agent").warning("cannot remove the isolation of container=%s", cid)
        self._cleanup_task = None
        if self._cleanup_queue:
            attempt = min(self._cleanup_queue.values())
            self._cleanup_timer = asyncio.get_running_loop().call_later(
                CLEANUP_DELAY * (1 + min(attempt, 10)), self._start_cleanup)

    def _cleanup(self, container_id: str, attempt: int = 0) -> None:
        try:
            done = self.isolator.cleanup(container_id)
        except OSError:
            done = False
        if done:
            self._cleanup_pending.discard(container_id)
            return
        self._cleanup_pending.add(container_id)
        if attempt < 50:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(0.1 * (attempt + 1), self._cleanup, container_id, attempt + 1)

    def usage(self, container: Container) -> dict[str, float] | None:
        stats = self.isolator.usage(container.container_id)
        if stats is None:
            stats = tree_stats(container.pid)
        if stats is not None:
            if container.limits.cpus > 0:
                stats["cpus_limit"] = container.limits.cpus
            if container.limits.mem_bytes > 0:
                stats.setdefault("mem_limit_bytes", container.limits.mem_bytes)
        return stats

    # ------------------------------------------------------------------ launch / recover
    async def launch(self, spec: LaunchSpec) -> Container:
        loop = asyncio.get_running_loop()
        out = err = -1
        try:
            self.isolator.prepare(spec.container_id, spec.limits)
        except OSError as e:
            self._cleanup(spec.container_id)
            raise LaunchError(f"Failed to prepare isolation ({self.isolator.name}): {e}") from None
        argv = spec.argv
        preexec = chain(self.isolator.preexec(spec.container_id), switch_to(spec.user))
        try:
            out = _open_out(spec.stdout_path)
            err = _open_out(spec.stderr_path)
            if spec.user is not None:
                os.fchown(out, spec.user.uid, spec.user.gid)
                os.fchown(err, spec.user.uid, spec.user.gid)
            if self._use_pidfd:
                proc = subprocess.Popen(
                    argv, executable=spec.executable, stdin=self._stdin(), stdout=out, stderr=err,
                    cwd=spec.cwd, env=spec.env, start_new_session=True, close_fds=True, preexec_fn=preexec,
                )
            else:
                aproc = await asyncio.create_subprocess_exec(
                    *argv, executable=spec.executable, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, cwd=spec.cwd, env=spec.env, start_new_session=True,
                    preexec_fn=preexec,
                )
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            self._cleanup(spec.container_id)
            raise LaunchError(f"Failed to launch container: {e}") from None
        finally:
            if out >= 0:
                os.close(out)
            if err >= 0:
                os.close(err)
        fut: asyncio.Future = loop.create_future()
        if self._use_pidfd:
            pid = proc.pid
            # Popen's own bookkeeping must not reap the child behind our back.
            proc.returncode = 0
            self.isolator.isolate(spec.container_id, pid, spec.limits)
            self._watch_pidfd(loop, pid, fut, spec.status_path)
            c = Container(container_id=spec.container_id, pid=pid, directory=spec.cwd, exit_future=fut,
                          limits=spec.limits, status_path=spec.status_path)
            self._track(c)
            return c
        else:
            pid = aproc.pid

            async def _wait() -> None:
                rc = await aproc.wait()
                _killpg(pid, signal.SIGKILL)
                if not fut.done():
                    fut.set_result(_status_from_returncode(rc))

            fut._waiter_task = loop.create_task(_wait())  # type: ignore[attr-defined]
        self.isolator.isolate(spec.container_id, pid, spec.limits)
        c = Container(container_id=spec.container_id, pid=pid, directory=spec.cwd, exit_future=fut,
                      limits=spec.limits, status_path=spec.status_path)
        self._track(c)
        return c

    def recover(self, container_id: str, pid: int, directory: str, *, limits: Limits | None = None,
                status_path: str | None = None) -> Container | None:
        loop = asyncio.get_running_loop()
        limits = limits or Limits()
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            return None
        fut: asyncio.Future = loop.create_future()
        self.isolator.isolate(container_id, pid, limits)

        def _on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            _killpg(pid, signal.SIGKILL)
            status = read_status_file(status_path)
            if not fut.done():
                fut.set_result(status if status is not None else UNKNOWN_STATUS)

        loop.add_reader(pidfd, _on_exit)
        c = Container(container_id=container_id, pid=pid, directory=directory, exit_future=fut,
                      limits=limits, status_path=status_path, recovered=True)
        self._track(c)
        return c

    @staticmethod
    def _watch_pidfd(loop: asyncio.AbstractEventLoop, pid: int, fut: asyncio.Future,
                     status_path: str | None = None) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            # Already gone and reaped? Reap now (cannot normally happen: we are the parent).
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            fut.set_result(status)
            return

        def _on_exit() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            # The leader is a zombie now, so its pgid cannot be reused: clean up the group.
            _killpg(pid, signal.SIGKILL)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            task_status = read_status_file(status_path)
            if task_status is not None:
                status = task_status
            if not fut.done():
                fut.set_result(status)

        loop.add_reader(pidfd, _on_exit)

    async def destroy(self, container: Container, grace: float) -> int:
        container.destroying = True
        if not container.exited:
            _killpg(container.pid, signal.SIGTERM)
            if grace > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(container.exit_future), grace)
                except asyncio.TimeoutError:
                    pass
            if not container.exited:
                _killpg(container.pid, signal.SIGKILL)
        return await container.wait()


UNKNOWN_STATUS = -1  # a recovered container whose exit status nobody recorded


def describe_status(status: int) -> tuple[bool, str]:
    """(succeeded, Mesos message) for a raw wait status."""
    if status == UNKNOWN_STATUS:
        return False, "Executor terminated while the agent was down (exit status unknown)"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return code == 0, f"Command exited with status {code}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.strsignal(sig) or f"signal {sig}"
        return False, f"Command terminated with signal {name}"
    return False, f"Command exited with unknown status {status}"


def make_containerizer(isolation: str) -> Containerizer:
    """A containerizer with the isolator ``isolation`` names (see :func:`make_isolator`)."""
    return PosixContainerizer(make_isolator(isolation))


__all__ = [
    "Container", "Containerizer", "LaunchError", "LaunchSpec", "PosixContainerizer",
    "describe_status", "make_containerizer", "read_status_file", "UNKNOWN_STATUS", "Limits",
]

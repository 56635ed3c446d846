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
import logging
import os
import signal
import subprocess
from dataclasses import dataclass, field


@dataclass
class LaunchSpec:
    container_id: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdout_path: str
    stderr_path: str
    executable: str | None = None  # exec this file with ``argv`` (argv[0] may differ)


@dataclass
class Container:
    container_id: str
    pid: int
    directory: str
    exit_future: asyncio.Future = field(repr=False)  # -> raw wait status (int)
    destroying: bool = False

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

    def close(self) -> None:
        """Release the containerizer's own resources (not the containers)."""


_HAS_PIDFD = hasattr(os, "pidfd_open")


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


class PosixContainerizer(Containerizer):
    def __init__(self) -> None:
        self._use_pidfd = _HAS_PIDFD
        self._devnull = -1  # one shared read-only /dev/null for every task's stdin

    def _stdin(self) -> int:
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    def close(self) -> None:
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1

    async def launch(self, spec: LaunchSpec) -> Container:
        loop = asyncio.get_running_loop()
        out = err = -1
        try:
            out = _open_out(spec.stdout_path)
            err = _open_out(spec.stderr_path)
            if self._use_pidfd:
                proc = subprocess.Popen(
                    spec.argv, executable=spec.executable, stdin=self._stdin(), stdout=out, stderr=err,
                    cwd=spec.cwd, env=spec.env, start_new_session=True, close_fds=True,
                )
            else:
                aproc = await asyncio.create_subprocess_exec(
                    *spec.argv, executable=spec.executable, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, cwd=spec.cwd, env=spec.env, start_new_session=True,
                )
        except (OSError, ValueError, subprocess.SubprocessError) as e:
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
            self._watch_pidfd(loop, pid, fut)
        else:
            pid = aproc.pid

            async def _wait() -> None:
                rc = await aproc.wait()
                _killpg(pid, signal.SIGKILL)
                if not fut.done():
                    fut.set_result(_status_from_returncode(rc))

            fut._waiter_task = loop.create_task(_wait())  # type: ignore[attr-defined]
        return Container(container_id=spec.container_id, pid=pid, directory=spec.cwd, exit_future=fut)

    @staticmethod
    def _watch_pidfd(loop: asyncio.AbstractEventLoop, pid: int, fut: asyncio.Future) -> None:
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


def describe_status(status: int) -> tuple[bool, str]:
    """(succeeded, Mesos message) for a raw wait status."""
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return code == 0, f"Command exited with status {code}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.strsignal(sig) or f"signal {sig}"
        return False, f"Command terminated with signal {name}"
    return False, f"Command exited with unknown status {status}"


def make_containerizer(isolation: str) -> Containerizer:
    """``posix`` (and its ``posix/*`` isolators); ``cgroups*`` falls back to posix for now."""
    kinds = {k.strip() for k in isolation.split(",") if k.strip()} or {"posix"}
    known = {"posix", "posix/cpu", "posix/mem", "posix/disk", "filesystem/posix"}
    cgroups = {k for k in kinds if k == "cgroups" or k.startswith("cgroups/")}
    unknown = kinds - known - cgroups
    if unknown:
        raise ValueError(
            f"Unsupported isolation '{', '.join(sorted(unknown))}': use 'posix' or 'cgroups'."
        )
    if cgroups:
        logging.getLogger("mesos_nb.agent").warning(
            "cgroups isolation is not implemented yet; using posix isolation=%s", isolation
        )
    return PosixContainerizer()


__all__ = [
    "Container", "Containerizer", "LaunchError", "LaunchSpec", "PosixContainerizer",
    "describe_status", "make_containerizer",
]

"""Containerizers: start a task's process tree isolated, wait for it, destroy it.

``Containerizer`` is the small interface the agent uses; ``PosixContainerizer`` is the
``--isolation posix`` implementation: each container is one process in its own session
(so its process group is the container), with cwd = sandbox and stdout/stderr redirected to
the sandbox files. Plain containers (no image, no namespaces, no user switch; posix or cgroups)
are started by the launcher helper (launcher.py), the others here, awaited with a pidfd on the
event loop (no pidfds: asyncio's subprocesses).

Destroy = SIGTERM to the process group, wait the grace period, SIGKILL the group. When the
leader exits on its own, leftover group members are SIGKILLed too (as Mesos' posix
launcher destroys the whole container).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from . import disk_usage
from .container_spec import ImageSpec, VolumeSpec, binds
from .exit_status import (
    UNKNOWN_STATUS,
    _killpg,
    _open_out,
    _status_from_returncode,
    describe_status,
    read_status_file,
)
from .isolation import (
    IsolationSpec,
    Isolator,
    Limits,
    PosixIsolator,
    make_isolator,
    namespaces_unavailable,
    parse_isolation,
    tree_stats,
)
from .isolation_removal import RemovalQueue
from .isolator import NESTED, CgroupJoin
from .launcher import Launcher, LauncherUnavailable, SetupFailed, prefer_recorded, watch_exit
from .namespaces import container_preexec, host_mounts
from .users import User, chain, supervisor_user_arg, switch_to

SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")


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
    status_path: str | None = None  # supervised: the task's wait status is recorded here
    image: ImageSpec | None = None  # a MESOS container with a Docker image
    volumes: list[VolumeSpec] = field(default_factory=list)
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
    limitation_reason: str = "REASON_CONTAINER_LIMITATION_MEMORY"
    prepared: Any = field(default=None, repr=False)  # images.PreparedContainer, released at the end
    disk_paths: tuple[str, ...] = ()  # what disk/du measures
    disk_used: int | None = None
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

    def remove_stale(self, container_id: str) -> None:
        """A container of a previous agent process that is not adopted (it ended, or was
        killed, while no agent watched): kill what its isolation still holds (a daemon its
        task left) and remove the isolation."""

    def update(self, container: Container, limits: Limits) -> None:
        """New limits for a running container (Mesos' containerizer ``update``: an executor's
        container grows and shrinks with its tasks). Raises OSError."""
        container.limits = limits

    def close(self) -> None:
        """Release the containerizer's own resources (not the containers)."""


_HAS_PIDFD = hasattr(os, "pidfd_open")


class PosixContainerizer(Containerizer):
    """Launches each container in its own session, under the given :class:`Isolator`
    (``PosixIsolator`` by default), and polls the isolator for limitations: a container
    over its memory limit is destroyed and keeps ``limitation`` (the message)."""

    def __init__(self, isolator: Isolator | None = None, *, poll_interval: float = 0.25,
                 isolation: IsolationSpec | None = None, images: Any = None, work_dir: str | None = None,
                 disk_watch_interval: float = 15.0, enforce_disk_quota: bool = False,
                 launcher: bool | None = None) -> None:
        self._use_pidfd = _HAS_PIDFD
        launcher = os.environ.get("MESOS_NB_AGENT_LAUNCHER", "1") != "0" if launcher is None else launcher
        # Plain containers are forked by a small helper process (launcher.py), not by the agent.
        self._launcher = Launcher(self._adopt) if launcher and _HAS_PIDFD else None
        self._devnull = -1  # one shared read-only /dev/null for every task's stdin
        self.isolator = isolator or PosixIsolator()
        self.poll_interval = poll_interval
        self.isolation = isolation or IsolationSpec(frozenset({"posix"}))
        self.images = images  # container_images.ContainerImages
        self.work_dir = work_dir or "/tmp/mesos-nb/agent"
        self.disk_watch_interval = disk_watch_interval
        self.enforce_disk_quota = enforce_disk_quota
        self._disk_timer: asyncio.TimerHandle | None = None
        self._disk_task: asyncio.Task | None = None
        self._live: dict[str, Container] = {}
        self._poller: asyncio.TimerHandle | None = None
        self._removal = RemovalQueue(self.isolator, self._launcher)  # ended containers' cgroups

    def _stdin(self) -> int:
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._devnull

    def close(self) -> None:
        if self._launcher is not None:
            self._launcher.close()
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._disk_timer is not None:
            self._disk_timer.cancel()
            self._disk_timer = None
        self._removal.drain()

    def update(self, container: Container, limits: Limits) -> None:
        if container.exited:
            return
        container.limits = self.isolator.update(container.container_id, limits)
        if self._poller is None and limits.mem_bytes > 0:
            self._poller = asyncio.get_running_loop().call_later(self.poll_interval, self._poll)

    # ------------------------------------------------------------------ limitation polling
    def _track(self, c: Container) -> None:
        self._live[c.container_id] = c
        c.exit_future.add_done_callback(lambda _f, c=c: self._finished(c))
        if self._poller is None and (c.limits.mem_bytes > 0):
            self._poller = asyncio.get_running_loop().call_later(self.poll_interval, self._poll)
        if self.isolation.disk_du and c.disk_paths and self._disk_timer is None and self._disk_task is None:
            self._disk_timer = asyncio.get_running_loop().call_later(self.disk_watch_interval, self._disk_poll)

    # ------------------------------------------------------------------ disk/du
    def _disk_poll(self) -> None:
        self._disk_timer = None
        live = [c for c in self._live.values() if not c.exited and c.disk_paths]
        if live:
            self._disk_task = asyncio.get_running_loop().create_task(self._disk_measure(live))

    async def _disk_measure(self, live: list[Container]) -> None:
        try:
            used = await asyncio.to_thread(lambda: [disk_usage.measure(c.disk_paths) for c in live])
        except RuntimeError:  # the loop is closing
            return
        finally:
            self._disk_task = None
        for c, n in zip(live, used, strict=True):
            c.disk_used = n
            quota = c.limits.disk_bytes
            if self.enforce_disk_quota and quota > 0 and n > quota and not c.exited and c.limitation is None:
                c.limitation = disk_usage.disk_message(n, quota)
                c.limitation_reason = "REASON_CONTAINER_LIMITATION_DISK"
                logging.getLogger("mesos_nb.agent").warning(
                    "container over its disk quota container=%s: %s", c.container_id, c.limitation)
                self._kill_all(c)
        if any(not c.exited and c.disk_paths for c in self._live.values()) and self._disk_timer is None:
            self._disk_timer = asyncio.get_running_loop().call_later(self.disk_watch_interval, self._disk_poll)

    def _kill_all(self, c: Container) -> None:
        _killpg(c.pid, signal.SIGKILL)
        self.isolator.kill(c.container_id)

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
            self._kill_all(c)
        if live:
            self._poller = asyncio.get_running_loop().call_later(self.poll_interval, self._poll)

    def _finished(self, c: Container) -> None:
        if c.limitation is None and not isinstance(self.isolator, PosixIsolator):
            with contextlib.suppress(OSError):
                c.limitation = self.isolator.limitation(c.container_id)
        self._live.pop(c.container_id, None)
        if c.prepared is not None and self.images is not None:
            prepared, c.prepared = c.prepared, None
            self.images.release(prepared)
        if isinstance(self.isolator, PosixIsolator):
            self._cleanup(c.container_id)  # bookkeeping only
        else:
            self._removal.add(c.container_id)

    def remove_stale(self, container_id: str) -> None:
        if not isinstance(self.isolator, PosixIsolator):
            self._removal.add(container_id)

    def _cleanup(self, container_id: str, attempt: int = 0) -> None:
        try:
            done = self.isolator.cleanup(container_id)
        except OSError:
            done = False
        if done:
            self._removal.pending.discard(container_id)
            return
        self._removal.pending.add(container_id)
        if attempt < 50:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(0.1 * (attempt + 1), self._cleanup, container_id, attempt + 1)

    def usage(self, container: Container) -> dict[str, Any] | None:
        stats = self.isolator.usage(container.container_id)
        if stats is None:
            stats = tree_stats(container.pid)
        if stats is not None and self.isolation.disk_du:
            if container.disk_used is not None:
                stats["disk_used_bytes"] = container.disk_used
            if container.limits.disk_bytes > 0:
                stats["disk_limit_bytes"] = container.limits.disk_bytes
        if stats is not None:
            if container.limits.cpus > 0:
                stats["cpus_limit"] = container.limits.cpus
            if container.limits.mem_bytes > 0:
                stats.setdefault("mem_limit_bytes", container.limits.mem_bytes)
        return stats

    # ------------------------------------------------------------------ launch / recover
    async def _prepare_image(self, spec: LaunchSpec) -> Any:
        """Pull/reuse the image, assemble the rootfs, chown the sandbox to the task user."""
        if self.images is None:
            raise LaunchError("Container images are not enabled on this agent")
        assert spec.image is not None
        try:
            mounts = binds(spec.volumes, spec.cwd, image=True)
            return await self.images.prepare(spec, os.path.join(self.work_dir, "provisioner", spec.container_id),
                                             [(b.source, b.target, b.readonly) for b in mounts])
        except LaunchError:
            raise
        except Exception as e:  # ImageError, ImageReferenceError, RegistryError, ValueError, OSError
            raise LaunchError(f"Failed to prepare the image '{spec.image.name}': {e}") from None

    async def launch(self, spec: LaunchSpec) -> Container:
        loop = asyncio.get_running_loop()
        out = err = -1
        iso = self.isolation
        prepared = None
        argv, executable, env = spec.argv, spec.executable, spec.env
        setup = None
        if spec.image is not None:
            prepared = await self._prepare_image(spec)
            argv, executable, env = prepared.launch.argv, prepared.launch.executable, prepared.launch.env
            setup = prepared.preexec
        elif iso.namespaces or spec.volumes:
            if not iso.filesystem_linux and spec.volumes:
                raise LaunchError("Volumes need the filesystem/linux isolator (--isolation)")
            try:
                mounts = binds(spec.volumes, spec.cwd, image=False)
                if iso.filesystem_linux:
                    os.makedirs(os.path.join(spec.cwd, "tmp"), exist_ok=True)
                    os.chmod(os.path.join(spec.cwd, "tmp"), 0o1777)
            except (OSError, ValueError) as e:
                raise LaunchError(f"Failed to prepare the container's mounts: {e}") from None
            setup = host_mounts(spec.cwd, private_tmp=iso.filesystem_linux, proc=iso.pid_namespace, volumes=mounts)
        waiter = iso.pid_namespace or (spec.status_path is not None and prepared is not None)
        # The user drop (--switch-user) comes last, after the root-only steps (cgroup join, mounts);
        # a supervised task's supervisor stays root to record the status and drops in its child;
        # an image task runs as the image's user (its own setup switches).
        user_step = None
        if spec.status_path is not None and not waiter:
            argv = [sys.executable, "-S", SUPERVISOR, *supervisor_user_arg(spec.user), spec.status_path,
                    executable or "", *argv]
            executable = None
        elif prepared is None:
            user_step = switch_to(spec.user)
        # Plain containers are started by the helper: the agent's loop never waits for an exec.
        helper = self._launcher is not None and prepared is None and setup is None and not waiter and not user_step
        # With the helper, the isolator's setup (cgroups: mkdir, limits) is a plan of file steps
        # the helper carries out in the same round as the spawn: no thread hop here.
        plan = self.isolator.prepare_plan(spec.container_id, spec.limits) if helper else None
        if plan is None:
            await self._prepare(spec, prepared, off_loop=helper)
        join = self.isolator.preexec(spec.container_id)
        if helper and (join is None or isinstance(join, CgroupJoin)):
            files = join.files if join is not None else []
            if (c := await self._launch_helper(spec, argv, executable, env, files, plan)) is not None:
                return c
        if plan:  # the helper is gone: the setup is ours again (its steps are idempotent)
            await self._prepare(spec, prepared, off_loop=True)
        preexec = chain(container_preexec(join=join, setup=setup,
                                          pid_namespace=iso.pid_namespace,
                                          status_path=spec.status_path if waiter else None),
                        user_step)
        try:
            out = _open_out(spec.stdout_path)
            err = _open_out(spec.stderr_path)
            if spec.user is not None:
                os.fchown(out, spec.user.uid, spec.user.gid)
                os.fchown(err, spec.user.uid, spec.user.gid)
            if self._use_pidfd:
                popen = functools.partial(
                    subprocess.Popen, argv, executable=executable, stdin=self._stdin(), stdout=out, stderr=err,
                    cwd=spec.cwd, env=env, start_new_session=True, close_fds=True, preexec_fn=preexec,
                )
                # Namespaces and mounts take the child milliseconds before it execs, and Popen
                # waits for the exec: off the loop then. The plain path stays inline, after one
                # loop turn (a task's queued TASK_STARTING is written before the vfork blocks).
                if setup is not None or waiter:
                    proc = await asyncio.to_thread(popen)
                else:
                    await asyncio.sleep(0)
                    proc = popen()
            else:
                aproc = await asyncio.create_subprocess_exec(
                    *argv, executable=executable, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, cwd=spec.cwd, env=env, start_new_session=True,
                    preexec_fn=preexec,
                )
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            self._cleanup(spec.container_id)
            if prepared is not None and self.images is not None:
                self.images.release(prepared)
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
            self._watch_pidfd(loop, pid, fut, None if waiter else spec.status_path)
        else:
            pid = aproc.pid

            async def _wait() -> None:
                rc = await aproc.wait()
                _killpg(pid, signal.SIGKILL)
                if not fut.done():
                    fut.set_result(_status_from_returncode(rc))

            fut._waiter_task = loop.create_task(_wait())  # type: ignore[attr-defined]
        if waiter:
            self.isolator.wrapped(spec.container_id, 2 if iso.pid_namespace else 1)
        self.isolator.isolate(spec.container_id, pid, spec.limits)
        c = Container(container_id=spec.container_id, pid=pid, directory=spec.cwd, exit_future=fut,
                      limits=spec.limits, status_path=spec.status_path, prepared=prepared,
                      disk_paths=self._disk_paths(spec, prepared))
        self._track(c)
        return c

    async def _prepare(self, spec: LaunchSpec, prepared: Any, *, off_loop: bool) -> None:
        """The isolator's ``prepare`` here (cgroups off the event loop when ``off_loop``)."""
        try:
            (await asyncio.to_thread(self.isolator.prepare, spec.container_id, spec.limits)) \
                if off_loop and not isinstance(self.isolator, PosixIsolator) else self.isolator.prepare(
                    spec.container_id, spec.limits)
        except OSError as e:
            self._cleanup(spec.container_id)
            if prepared is not None and self.images is not None:
                self.images.release(prepared)
            raise LaunchError(f"Failed to prepare isolation ({self.isolator.name}): {e}") from None

    async def _launch_helper(self, spec: LaunchSpec, argv: list[str], executable: str | None, env: dict[str, str],
                             join: list[str], plan: list | None) -> Container | None:
        """The helper carries out the isolator's ``plan`` and starts the child (inside the
        cgroups whose ``cgroup.procs`` files ``join`` names, if any); None: helper unavailable."""
        assert self._launcher is not None
        try:
            pid, fut = await self._launcher.launch(
                argv=argv, executable=executable, env=env, cwd=spec.cwd, stdout=spec.stdout_path,
                stderr=spec.stderr_path, join=join, setup=plan)
        except LauncherUnavailable:
            return None
        except SetupFailed as e:
            self._cleanup(spec.container_id)
            raise LaunchError(f"Failed to prepare isolation ({self.isolator.name}): {e}") from None
        except OSError as e:
            self._cleanup(spec.container_id)
            raise LaunchError(f"Failed to launch container: {e}") from None
        if spec.status_path is not None:  # supervisor.py recorded the task's own status
            fut = prefer_recorded(fut, functools.partial(read_status_file, spec.status_path))
        self.isolator.isolate(spec.container_id, pid, spec.limits)  # (a joined cgroup: nothing to do)
        c = Container(container_id=spec.container_id, pid=pid, directory=spec.cwd, exit_future=fut,
                      limits=spec.limits, status_path=spec.status_path, disk_paths=self._disk_paths(spec, None))
        self._track(c)
        return c

    def _adopt(self, pid: int, fut: asyncio.Future) -> None:
        """The helper that started ``pid`` died: watch the process with a pidfd instead."""
        path = next((c.status_path for c in self._live.values() if c.pid == pid), None)
        watch_exit(pid, fut, lambda: s if (s := read_status_file(path)) is not None else UNKNOWN_STATUS)

    def _disk_paths(self, spec: LaunchSpec, prepared: Any) -> tuple[str, ...]:
        if not self.isolation.disk_du:
            return ()
        if prepared is not None:
            return (spec.cwd, prepared.rootfs.container_dir)
        return (spec.cwd,)

    def recover(self, container_id: str, pid: int, directory: str, *, limits: Limits | None = None,
                status_path: str | None = None) -> Container | None:
        limits = limits or Limits()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        if not _HAS_PIDFD or not watch_exit(
                pid, fut, lambda: s if (s := read_status_file(status_path)) is not None else UNKNOWN_STATUS):
            return None
        self.isolator.isolate(container_id, pid, limits)
        c = Container(container_id=container_id, pid=pid, directory=directory, exit_future=fut,
                      limits=limits, status_path=status_path, recovered=True,
                      disk_paths=(directory,) if self.isolation.disk_du else ())
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
                self._kill_all(container)
        return await container.wait()


def make_containerizer(isolation: str, *, images: Any = None, work_dir: str | None = None,
                       disk_watch_interval: float = 15.0, enforce_disk_quota: bool = False,
                       cgroups_root: str = NESTED) -> Containerizer:
    """A containerizer with the isolators ``isolation`` names (see :func:`parse_isolation`).
    Raises ValueError with a sentence when one cannot work on this machine."""
    spec = parse_isolation(isolation)
    if spec.namespaces:
        why = namespaces_unavailable()
        if why is not None:
            names = ", ".join(n for n in ("filesystem/linux", "namespaces/pid") if n in spec.kinds)
            raise ValueError(f"{names} isolation is unavailable: {why}")
    return PosixContainerizer(make_isolator(isolation, cgroups_root), isolation=spec, images=images, work_dir=work_dir,
                              disk_watch_interval=disk_watch_interval, enforce_disk_quota=enforce_disk_quota)


__all__ = [
    "Container", "Containerizer", "LaunchError", "LaunchSpec", "PosixContainerizer",
    "describe_status", "make_containerizer", "read_status_file", "UNKNOWN_STATUS", "Limits",
]

"""``filesystem/linux`` and ``namespaces/pid``: what runs in a container's child process
between fork and exec (a ``preexec_fn`` for ``subprocess.Popen``).

Without a PID namespace and without a status to record, the child simply joins its cgroups,
sets up its mounts and execs. Otherwise the child ``W`` (the *waiter*, on the host side)
stays behind and never execs:

```
agent ─Popen─► W  (session leader; ignores SIGTERM/INT/HUP; records the status file)
               │ unshare(CLONE_NEWPID)      (namespaces/pid)
               └─fork─► I  PID 1 of the new namespace: joins the cgroups, mounts (private
                        │   /proc, /tmp, rootfs),
                        │   then forks the task and reaps every orphan until the task ends;
                        │   when I exits the kernel kills whatever is left in the namespace.
                        └─fork─► T  the task: returns to Popen, which execs the command
```

``W`` tells ``Popen`` the launch succeeded only once ``I`` has set up the mounts (a failure
is raised in ``W``'s preexec, so the launch fails); it then closes every inherited
descriptor (so ``Popen``'s exec-status pipe closes when ``T`` execs), waits for ``I``, reads
the task's raw wait status that ``I`` sends through a pipe, writes it to the status file
(checkpointed tasks: the restarted agent reads it) and ends the same way the task did, so
the agent's pidfd on ``W`` sees the task's own status. Signals to the container's process
group reach the task directly; SIGKILL of the group kills ``I`` and so the whole namespace.

All of it is plain ``os`` calls and the ``linux`` ctypes seam: it runs in a forked child.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .exit_status import record_status, wait_status
from .images import linux

_IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_NOSUID = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


@dataclass(frozen=True)
class Bind:
    """A volume: ``source`` (host) bind-mounted at ``target`` (a path in the container's view)."""
    source: str
    target: str
    readonly: bool = False


def host_mounts(sandbox: str, *, private_tmp: bool, proc: bool,
                volumes: Sequence[Bind] = ()) -> Callable[[], None]:
    """``filesystem/linux`` for a container without an image: its own mount namespace (slave
    of the host's, so nothing it mounts leaks out), ``/tmp`` backed by ``<sandbox>/tmp``,
    the requested volumes, and (with a PID namespace) a ``/proc`` of its own."""
    sandbox = os.path.abspath(sandbox)

    def setup() -> None:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
        # Sources are opened first: a new /tmp may hide them (the sandbox often lives under /tmp).
        sources = [(os.open(v.source, os.O_PATH | os.O_CLOEXEC), os.path.isdir(v.source), v) for v in volumes]
        if private_tmp:
            box = os.open(sandbox, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            linux.mount(os.path.join(sandbox, "tmp"), "/tmp", None, linux.MS_BIND)
            if sandbox.startswith("/tmp/"):
                # The sandbox itself lived under the old /tmp: make it visible again at its path.
                os.makedirs(sandbox, 0o755, exist_ok=True)
                linux.mount(f"/proc/self/fd/{box}", sandbox, None, linux.MS_BIND | linux.MS_REC)
            os.close(box)
        for fd, is_dir, v in sources:
            _bind(f"/proc/self/fd/{fd}", v.target, v.readonly, is_dir)
            os.close(fd)
        if proc:
            linux.mount("proc", "/proc", "proc", _NOSUID)
        os.chdir(sandbox)  # the working directory in the new view (with its volumes)

    return setup


def _bind(source: str, target: str, readonly: bool, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, 0o755, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    if readonly:
        linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_REC)


def container_preexec(*, join: Callable[[], None] | None, setup: Callable[[], None] | None,
                      pid_namespace: bool, status_path: str | None) -> Callable[[], None] | None:
    """The container's ``preexec_fn`` (see the module doc); None when there is nothing to do."""
    if not pid_namespace and status_path is None:
        if setup is None:
            return join

        def direct() -> None:
            if join is not None:
                join()
            try:
                setup()
            except BaseException as e:
                with contextlib.suppress(OSError):
                    os.write(2, f"mesos-nb: cannot set up the container: {e}\n".encode())
                raise

        return direct

    def waiter() -> None:
        if pid_namespace:
            linux.unshare(linux.CLONE_NEWPID)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the namespace's init (or, without one, the task itself)
            os.close(r)
            try:
                if join is not None:  # the waiter stays out of the container's cgroups
                    join()
                if setup is not None:
                    setup()
            except BaseException as e:
                with contextlib.suppress(OSError):
                    os.write(2, f"mesos-nb: cannot set up the container: {e}\n".encode())
                    os.write(w, b"E")
                os._exit(127)
            if not pid_namespace:
                os.write(w, b"R")
                os.close(w)
                return  # exec the task
            _init(w)  # returns only in the task
            return
        os.close(w)
        first = _read_all(r, 1)
        if first != b"R":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise OSError("the container's namespaces or mounts could not be set up (see its stderr)")
        _wait_and_mirror(pid, r, status_path, pid_namespace)

    return waiter


def _read_all(fd: int, limit: int = 64) -> bytes:
    out = b""
    while len(out) < limit:
        try:
            chunk = os.read(fd, limit - len(out))
        except InterruptedError:
            continue
        if not chunk:
            break
        out += chunk
    return out


def _close_inherited(keep: int) -> None:
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536
    os.closerange(3, keep)
    os.closerange(keep + 1, max(top, keep + 2))


def _init(w: int) -> None:
    """PID 1: fork the task, reap everything, send the task's status up, exit."""
    task = os.fork()
    if task == 0:
        os.close(w)
        return
    os.write(w, b"R")
    _close_inherited(w)
    status = 0
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if pid == task:
            status = st
            break
    with contextlib.suppress(OSError):
        os.write(w, b"%d" % status)
    os._exit(0)  # the kernel kills the rest of the namespace


def _wait_and_mirror(child: int, r: int, status_path: str | None, pid_namespace: bool) -> None:
    for s in _IGNORED:
        signal.signal(s, signal.SIG_IGN)
    _close_inherited(r)
    status = wait_status(child)
    if pid_namespace:
        text = _read_all(r, 32)
        if text.isdigit():
            status = int(text)
    if status_path is not None:
        with contextlib.suppress(OSError):
            record_status(status_path, status)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core dump of the waiter
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)  # (refused for SIGKILL/SIGSTOP: already default)
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 127)



__all__ = ["Bind", "container_preexec", "host_mounts"]

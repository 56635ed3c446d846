"""Enter a container's root file system in the child, between fork and exec.

:func:`make_enter_rootfs` returns a ``preexec_fn`` for ``subprocess.Popen``. In the child it:
opens the sandbox and the host devices (``O_PATH``) while the host's tree is still visible;
``unshare(CLONE_NEWNS)`` and makes ``/`` rprivate (nothing propagates back to the host);
bind-mounts the rootfs onto itself and ``pivot_root(".", ".")`` then detaches the old root
(falling back to ``chroot`` where pivot_root is refused). Only then does it create mount
points, so every path, symlinks included, resolves inside the container: an image cannot
aim a mount or a mkdir at the host. It mounts ``/proc``, a tmpfs ``/dev`` with
null/zero/random/urandom/tty/full bound in from the saved fds plus the usual fd symlinks and
a ``/dev/shm``, binds the sandbox at ``/mnt/mesos/sandbox`` (through ``/proc/self/fd``),
``chdir``s to the working directory and drops to the image user (setgroups, setgid, setuid).
A failure is written to the child's stderr (the sandbox's ``stderr``) and fails the launch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

from . import linux
from .launch import SANDBOX_TARGET

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_NOSUID = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def make_enter_rootfs(rootfs: str, sandbox: str, *, workdir: str = SANDBOX_TARGET, uid: int = 0,
                      gid: int = 0, groups: Sequence[int] = (), sandbox_target: str = SANDBOX_TARGET,
                      then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into ``rootfs`` (see the module doc).

    ``then`` runs first (e.g. the cgroup joiner of the isolator), while the host tree is visible.
    """
    rootfs, sandbox = os.path.abspath(rootfs), os.path.abspath(sandbox)
    groups = list(groups)

    def enter() -> None:
        try:
            if then is not None:
                then()
            _enter(rootfs, sandbox, workdir, sandbox_target, uid, gid, groups)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.write(2, f"mesos-nb: cannot enter the container's root file system: {e}\n".encode())
            raise

    return enter


def _enter(rootfs: str, sandbox: str, workdir: str, sandbox_target: str, uid: int, gid: int,
           groups: list[int]) -> None:
    sandbox_fd = os.open(sandbox, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    dev_fds = {}
    for name in DEVICES:
        with contextlib.suppress(OSError):
            dev_fds[name] = os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC)
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    os.chdir(rootfs)
    try:
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)
    except OSError:
        os.chroot(".")
    os.chdir("/")
    _mkdirs("/proc")
    linux.mount("proc", "/proc", "proc", _NOSUID)
    _mkdirs("/dev")
    linux.mount("tmpfs", "/dev", "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=755")
    for name, fd in dev_fds.items():
        target = f"/dev/{name}"
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o666))
        linux.mount(f"/proc/self/fd/{fd}", target, None, linux.MS_BIND)
        os.close(fd)
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{link}")
    os.mkdir("/dev/shm", 0o1777)
    linux.mount("shm", "/dev/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=1777")
    _mkdirs(sandbox_target)
    linux.mount(f"/proc/self/fd/{sandbox_fd}", sandbox_target, None, linux.MS_BIND | linux.MS_REC)
    os.close(sandbox_fd)
    _mkdirs(workdir)
    os.chdir(workdir)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def _mkdirs(path: str) -> None:
    os.makedirs(path, 0o755, exist_ok=True)

"""Enter a container's root file system in the child, between fork and exec.

:func:`make_enter_rootfs` returns a ``preexec_fn`` for ``subprocess.Popen``. In the child it:
``unshare(CLONE_NEWNS)`` and makes ``/`` rprivate (nothing propagates back to the host);
bind-mounts the rootfs onto itself; mounts a tmpfs ``/dev`` with null/zero/full/random/
urandom/tty bound in from the host plus the usual fd symlinks, and binds the sandbox at
``/mnt/mesos/sandbox``. Those mounts take their source from the host, so they are made
before ``pivot_root``, onto targets opened one component at a time with ``O_NOFOLLOW``
(through ``/proc/self/fd``): a symlink in the image cannot aim them at the host. Then
``pivot_root(".", ".")`` and a lazy unmount of the old root (``chroot`` where pivot_root is
refused); from there every path resolves inside the container: ``/proc`` and ``/dev/shm``
are mounted, the working directory made and entered, and the process drops to the image
user (setgroups, setgid, setuid).
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
                      then: Callable[[], None] | None = None,
                      volumes: Sequence[tuple[str, str, bool]] = ()) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into ``rootfs`` (see the module doc).

    ``then`` runs first (e.g. the cgroup joiner of the isolator), while the host tree is visible.
    ``volumes``: (host path, path in the container, read-only) bind mounts, made like the
    sandbox's (onto targets opened without following symlinks).
    """
    rootfs, sandbox = os.path.abspath(rootfs), os.path.abspath(sandbox)
    groups = list(groups)
    volumes = [(os.path.abspath(src), dst, ro) for src, dst, ro in volumes]

    def enter() -> None:
        try:
            if then is not None:
                then()
            _enter(rootfs, sandbox, workdir, sandbox_target, uid, gid, groups, volumes)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.write(2, f"mesos-nb: cannot enter the container's root file system: {e}\n".encode())
            raise

    return enter


def _enter(rootfs: str, sandbox: str, workdir: str, sandbox_target: str, uid: int, gid: int,
           groups: list[int], volumes: Sequence[tuple[str, str, bool]] = ()) -> None:
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the bind, opened after it
    # Mounts that take a source from the host are made before pivot_root, onto targets opened
    # component by component without following symlinks: an image cannot redirect them.
    dev = _open_dirs(root_fd, "dev")
    linux.mount("tmpfs", _fd_path(dev), "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=755")
    os.close(dev)
    dev = _open_dirs(root_fd, "dev")  # now the fresh tmpfs
    for name in DEVICES:
        if not os.path.exists(f"/dev/{name}"):
            continue
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dev))
        target = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
        linux.mount(f"/dev/{name}", _fd_path(target), None, linux.MS_BIND)
        os.close(target)
    for link, dest in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(dest, link, dir_fd=dev)
    os.mkdir("shm", 0o1777, dir_fd=dev)
    os.close(dev)
    box = _open_dirs(root_fd, sandbox_target)
    linux.mount(sandbox, _fd_path(box), None, linux.MS_BIND | linux.MS_REC)
    os.close(box)
    for src, dst, readonly in volumes:
        _bind_volume(root_fd, src, dst, readonly)
    os.close(root_fd)
    os.chdir(rootfs)
    try:
        linux.pivot_root(".", ".")
        linux.umount2(".", linux.MNT_DETACH)
    except OSError:
        os.chroot(".")
    os.chdir("/")
    # From here on every path resolves inside the container.
    os.makedirs("/proc", 0o755, exist_ok=True)
    linux.mount("proc", "/proc", "proc", _NOSUID)
    linux.mount("shm", "/dev/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=1777")
    os.makedirs(workdir, 0o755, exist_ok=True)
    os.chdir(workdir)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def _bind_volume(root_fd: int, src: str, dst: str, readonly: bool) -> None:
    """Bind ``src`` (host) at ``dst`` inside the root; the target is created and opened without
    following symlinks, and re-opened after the bind (so a read-only remount hits the mount)."""
    rel = dst.strip("/")
    if not rel:
        raise OSError(22, "a volume cannot be mounted at /")
    parent = _open_dirs(root_fd, os.path.dirname(rel))
    name = os.path.basename(rel)
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        if os.path.isdir(src):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
            flags |= os.O_DIRECTORY
        else:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=parent))
        target = os.open(name, flags, dir_fd=parent)
        try:
            linux.mount(src, _fd_path(target), None, linux.MS_BIND | linux.MS_REC)
        finally:
            os.close(target)
        if readonly:
            mounted = os.open(name, flags, dir_fd=parent)
            try:
                linux.mount(None, _fd_path(mounted), None,
                            linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_REC)
            finally:
                os.close(mounted)
    finally:
        os.close(parent)


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _open_dirs(root_fd: int, rel: str) -> int:
    """An O_PATH fd for ``rel`` under ``root_fd``, creating missing directories; refuses a
    component that is a symlink or not a directory (ELOOP/ENOTDIR) instead of following it."""
    fd = os.dup(root_fd)
    try:
        for comp in [c for c in rel.split("/") if c not in ("", ".")]:
            if comp == "..":
                raise OSError(22, f"mount target {rel!r} contains '..'")
            try:
                os.mkdir(comp, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                nfd = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except (NotADirectoryError, OSError) as e:
                raise OSError(e.errno, f"/{rel.strip('/')} in the image is a symlink or not a directory "
                                       f"(at {comp!r}); refusing to mount over it") from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd

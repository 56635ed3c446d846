"""Open a path *beneath* a sandbox directory with no window between checking and opening.

Why: a task owns its sandbox and can swap any directory in it for a symlink to ``/`` at any
moment (``renameat2(RENAME_EXCHANGE)`` in a loop). Resolving with ``realpath`` and then
opening the result leaves a window in which the kernel follows the new symlink, and
``/files`` would serve host files. Here the kernel resolves the whole path relative to an
open directory fd and refuses every symlink on the way:

- ``openat2(dirfd, path, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)``
  where the kernel has it (Linux >= 5.6, called through ``ctypes``);
- otherwise a walk of the components, each opened relative to its parent's fd with
  ``O_NOFOLLOW`` (and ``O_DIRECTORY`` for every component but the last).

Both refuse symlinks anywhere below the sandbox root (including ones that stay inside it):
``/files`` serves what the task wrote, never where a link points. The final open is
``O_NONBLOCK`` so a FIFO in the sandbox cannot hang the agent. Errors are :class:`PathError`
with the HTTP status ``/files`` answers (403 or 404) and a sentence; never anything else.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat

from ..protocol.http_calls import StatusError

_SYS_OPENAT2 = 437  # the same number on x86_64, aarch64, arm, riscv, ppc64, s390x
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_O_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class PathError(StatusError):
    """A path ``/files`` refuses: ``status`` is 403 or 404, ``str()`` the sentence to answer."""


def _load_syscall() -> object | None:
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syscall
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_long
    return fn


_syscall = _load_syscall()
_openat2_works: bool | None = None  # None: not tried yet; False: ENOSYS (old kernel, seccomp)


def _openat2(dirfd: int, rel: str) -> int | None:
    """The fd, or None when the kernel has no openat2 (then the caller walks)."""
    global _openat2_works
    if _syscall is None or _openat2_works is False:
        return None
    how = _OpenHow(_O_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    while True:
        fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), os.fsencode(rel),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))  # type: ignore[operator]
        if fd >= 0:
            _openat2_works = True
            return int(fd)
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:
            _openat2_works = False  # EPERM: a seccomp filter that denies unknown syscalls
            return None
        if err in (errno.EAGAIN, errno.EINTR):
            continue  # a concurrent rename: the kernel asks us to retry
        raise OSError(err, os.strerror(err))


def _walk(dirfd: int, parts: list[str]) -> int:
    fd = os.dup(dirfd)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            flags = _O_FLAGS if last else (_O_FLAGS | os.O_DIRECTORY)
            nxt = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _refusal(e: OSError, shown: str) -> PathError:
    if e.errno in (errno.ELOOP, errno.EXDEV, errno.EMLINK):
        return PathError(403, f"Path '{shown}' goes through a symbolic link; /files does not follow links.")
    if e.errno in (errno.EACCES, errno.EPERM):
        return PathError(403, f"Access to '{shown}' is not allowed.")
    if e.errno == errno.ENOTDIR:
        # O_NOFOLLOW|O_DIRECTORY on a symlink also says ENOTDIR on some kernels.
        return PathError(404, f"Path '{shown}' was not found (a component is not a directory).")
    return PathError(404, f"Path '{shown}' was not found.")


def open_beneath(root: str, parts: list[str], shown: str) -> int:
    """An ``O_RDONLY`` fd of ``root/parts...`` resolved inside ``root`` without following any
    symlink. ``root`` is an agent-made sandbox directory (its last component must not be a
    link either). Components must be plain names (no ``/``, no ``.``/``..``): the caller
    normalised the request. Raises :class:`PathError`."""
    for p in parts:
        if not p or p in (".", "..") or "/" in p or "\x00" in p:
            raise PathError(404, f"Path '{shown}' was not found.")
    try:
        rootfd = os.open(root, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise _refusal(e, shown) from None
    try:
        if not parts:
            return os.dup(rootfd)
        rel = "/".join(parts)
        try:
            fd = _openat2(rootfd, rel)
            if fd is None:
                fd = _walk(rootfd, parts)
        except OSError as e:
            raise _refusal(e, shown) from None
        return fd
    finally:
        os.close(rootfd)


def kind(fd: int) -> tuple[str, os.stat_result]:
    """("dir" | "file" | "other", stat) of an open fd."""
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        return "dir", st
    if stat.S_ISREG(st.st_mode):
        return "file", st
    return "other", st


def list_dir(fd: int) -> list[tuple[str, os.stat_result]]:
    """The entries of the directory ``fd`` with their ``lstat`` (links are shown, not followed),
    sorted by name; entries that vanish while listing are skipped."""
    out = []
    for name in sorted(os.listdir(fd)):
        try:
            out.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except OSError:
            continue
    return out


def openat2_available() -> bool:
    """Whether this kernel resolves with openat2 (tests report which path was exercised)."""
    if _openat2_works is None:
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = _openat2(root, "tmp")
            if fd is not None:
                os.close(fd)
        except OSError:
            pass
        finally:
            os.close(root)
    return bool(_openat2_works)


__all__ = ["PathError", "open_beneath", "kind", "list_dir", "openat2_available"]

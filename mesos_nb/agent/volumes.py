"""Persistent volumes on the agent: their directories and their place in a task's sandbox.

A volume's data lives outside every sandbox, at ``<work_dir>/volumes/roles/<role>/<id>``
(the most refined role, ``/`` written as a space, as Mesos does), so it outlives the task
that wrote it and the agent process. The master's ``CHECKPOINT_RESOURCES`` says which
volumes exist: :func:`sync` makes the directory of a new volume before the total is
checkpointed and deletes the directory of a destroyed one after (the master refuses DESTROY
while a task uses the volume). A task or executor whose resources hold a volume gets it at
``<sandbox>/<container_path>``: bind-mounted by the containerizer when the container has a
mount namespace (``filesystem/linux`` or an image), else a symlink (Mesos'
``filesystem/posix``). The path inside the sandbox is walked one component at a time with
``O_NOFOLLOW`` relative to directory fds, so a task that swapped a directory for a symlink
cannot make the agent create anything outside its sandbox.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil

from mesos_nb.protocol.resources import Resources
from mesos_nb.protocol.volumes import container_path_problem, volume_info

from .container_spec import VolumeSpec
from .users import User

logger = logging.getLogger("mesos_nb.agent")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class VolumeError(Exception):
    """A volume that cannot be put into a sandbox; the message says why."""


def _role_dir(role: str) -> str:
    return role.replace("/", " ")


def volume_path(work_dir: str, role: str, persistence_id: str) -> str:
    return os.path.join(work_dir, "volumes", "roles", _role_dir(role), persistence_id)


def volumes_in(res: Resources) -> dict[tuple[str, str], str]:
    """(role, persistence id) -> container_path of every persistent volume in ``res``."""
    out = {}
    for tag in res.tags():
        info = volume_info(tag)
        if info is not None:
            out[info[:2]] = info[2]
    return out


def _valid(role: str, pid: str) -> bool:
    """The master validated both; a checkpoint edited by hand must still not escape."""
    bad = ("", ".", "..")
    return pid not in bad and "/" not in pid and all(p not in bad for p in role.split("/"))


def _remove(work_dir: str, role: str, pid: str) -> None:
    """Delete a volume's directory, resolving its parents without following links."""
    fd = os.open(work_dir, _DIR_FLAGS)
    try:
        for part in ("volumes", "roles", _role_dir(role)):
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        shutil.rmtree(pid, dir_fd=fd)
    finally:
        os.close(fd)


def sync(work_dir: str, old: Resources, new: Resources) -> None:
    """Make the directories of the volumes in ``new`` and delete those only in ``old``."""
    before, after = volumes_in(old), volumes_in(new)
    for role, pid in after:
        if _valid(role, pid):
            path = volume_path(work_dir, role, pid)
            if not os.path.isdir(path):
                os.makedirs(path, 0o755, exist_ok=True)
                logger.info("persistent volume created role=%s id=%s path=%s", role, pid, path)
    for role, pid in before.keys() - after.keys():
        if not _valid(role, pid):
            continue
        try:
            _remove(work_dir, role, pid)
        except FileNotFoundError:
            continue
        except OSError as e:
            logger.error("cannot delete persistent volume role=%s id=%s: %s", role, pid, e)
            continue
        logger.info("persistent volume destroyed role=%s id=%s", role, pid)


def _place(sandbox: str, container_path: str, source: str, *, bind: bool, user: User | None) -> None:
    """Make ``<sandbox>/<container_path>``: a symlink to ``source``, or (``bind``) an empty
    directory the containerizer mounts it on."""
    parts = [p for p in container_path.split("/") if p]
    fd = os.open(sandbox, _DIR_FLAGS)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and not bind:
                try:
                    os.symlink(source, part, dir_fd=fd)
                except FileExistsError:
                    if not _links_to(fd, part, source):
                        raise VolumeError(f"'{container_path}' already exists in the sandbox") from None
                return
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise VolumeError(f"'{container_path}' passes through something that is not a "
                                      "directory of the sandbox") from None
                raise
            if user is not None:
                os.fchown(nfd, user.uid, user.gid)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)


def _links_to(fd: int, name: str, source: str) -> bool:
    try:
        return os.readlink(name, dir_fd=fd) == source
    except OSError:
        return False


def attach(work_dir: str, sandbox: str, resources: Resources, *, bind: bool,
           user: User | None) -> list[VolumeSpec]:
    """Put every persistent volume of ``resources`` into ``sandbox``; the bind mounts the
    containerizer must make (none when linking). Raises VolumeError with a sentence."""
    mounts = []
    for (role, pid), container_path in sorted(volumes_in(resources).items()):
        problem = container_path_problem(container_path)
        if problem or not _valid(role, pid):
            raise VolumeError(f"Persistent volume '{pid}': {problem or 'bad role or id'}")
        source = volume_path(work_dir, role, pid)
        os.makedirs(source, 0o755, exist_ok=True)
        if user is not None:
            os.lchown(source, user.uid, user.gid)  # the volume root only, as Mesos (not recursive)
        try:
            _place(sandbox, container_path, source, bind=bind, user=user)
        except OSError as e:
            raise VolumeError(f"Persistent volume '{pid}': cannot make '{container_path}' in the sandbox: {e}") from None
        if bind:
            mounts.append(VolumeSpec(container_path=container_path, host_path=source))
        logger.info("persistent volume attached role=%s id=%s sandbox=%s path=%s how=%s", role, pid, sandbox,
                    container_path, "bind" if bind else "symlink")
    return mounts


__all__ = ["VolumeError", "attach", "sync", "volume_path", "volumes_in"]

"""Which Unix user a container runs as, and the switch to it.

Mesos (``--switch_user``, on by default) runs a task as ``CommandInfo.user``, else the
executor's command user, else ``FrameworkInfo.user``, whenever the agent runs as root; a user
that does not exist on the agent fails the launch. The sandbox is handed to that user before
the process starts.

One small seam for every launch path (posix containers, image containers): the agent calls
:func:`user_for` and :func:`resolve_user` when it builds the ``LaunchSpec``;
:func:`chown_sandbox` before launching; the containerizer chains :func:`switch_to` after the
isolator's pre-exec step (joining a cgroup needs root, so the identity changes last, just
before ``exec``).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups (initgroups), resolved in the agent
    home: str


class UnknownUser(LookupError):
    """The named user does not exist on this agent; ``str()`` is the task's message."""


def user_for(switch_user: bool, *names: str | None) -> str | None:
    """The first non-empty of ``names`` (command user, executor user, framework user) when the
    agent switches users (``--switch-user`` and running as root); None to run as the agent."""
    if not switch_user or os.geteuid() != 0:
        return None
    for n in names:
        if n:
            return n
    return None


def resolve_user(name: str) -> User:
    """The user's ids and groups (like ``initgroups``). Raises :class:`UnknownUser`."""
    try:
        pw = pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise UnknownUser(f"Failed to launch container: the user '{name}' does not exist on this agent "
                          "(tasks run as CommandInfo.user, else FrameworkInfo.user)") from None
    try:
        groups = tuple(os.getgrouplist(name, pw.pw_gid))
    except OSError:
        groups = (pw.pw_gid,)
    return User(name=name, uid=pw.pw_uid, gid=pw.pw_gid, groups=groups, home=pw.pw_dir)


def switch_to(user: User | None) -> Callable[[], None] | None:
    """A pre-exec step that drops to ``user`` for good (groups, then gid, then uid)."""
    if user is None:
        return None

    def _drop() -> None:
        os.setgroups(list(user.groups))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)

    return _drop


def chain(*steps: Callable[[], None] | None) -> Callable[[], None] | None:
    """Pre-exec steps run in order (None entries skipped); None when there are none."""
    real = [s for s in steps if s is not None]
    if not real:
        return None
    if len(real) == 1:
        return real[0]

    def _all() -> None:
        for s in real:
            s()

    return _all


def supervisor_user_arg(user: User | None) -> list[str]:
    """``supervisor.py``'s ``--user=UID:GID:G1,G2`` (it stays root, its child drops)."""
    if user is None:
        return []
    return [f"--user={user.uid}:{user.gid}:{','.join(map(str, user.groups))}"]


def chown_sandbox(path: str, user: User | None) -> None:
    """Give the sandbox (and what the fetcher put in it) to ``user``; links are not followed.
    Runs before the container starts, so nothing in the sandbox is the task's yet."""
    if user is None:
        return
    os.lchown(path, user.uid, user.gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.uid, user.gid)


__all__ = ["User", "UnknownUser", "user_for", "resolve_user", "switch_to", "chain", "chown_sandbox",
           "supervisor_user_arg"]

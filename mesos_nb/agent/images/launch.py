"""What to run in an image container: argv, environment, working directory and user.

Pure functions. The command follows Mesos' ``docker/runtime`` rules (first match wins):
``shell`` without ``value`` is an error; ``shell`` runs ``/bin/sh -c value``; a ``value`` runs
as given (``arguments`` is the whole argv, Mesos style); else the image ``Entrypoint`` plus
the user's arguments, with ``Cmd`` appended only when there are none; else ``Cmd[0]`` plus the
user's arguments, ``Cmd[1:]`` only when there are none; else "No executable is found".
Environment, last wins: agent env → ``MESOS_SANDBOX`` → image ``Env`` → the task's
environment. The working directory is the image's ``WorkingDir``, else the sandbox.

User: an explicit user (``CommandInfo.user`` / ``FrameworkInfo.user``) wins; otherwise the
image's ``User`` (Mesos ignores it and runs as the agent's user; here it is honoured, as
Docker does, so an image built to run unprivileged does). Names are resolved through the
IMAGE's ``/etc/passwd`` and ``/etc/group``, never the host's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .manifest import ImageConfig, ImageError

SANDBOX_TARGET = "/mnt/mesos/sandbox"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class ImageLaunch:
    argv: list[str]
    env: dict[str, str]
    cwd: str                    # inside the container
    user: str                   # "" = root; else a spec for resolve_user
    executable: str | None = None  # exec this (argv[0] may differ); None = argv[0]


@dataclass
class User:
    uid: int
    gid: int
    groups: list[int] = field(default_factory=list)


def image_launch(config: ImageConfig, *, shell: bool = False, value: str | None = None,
                 arguments: Sequence[str] = (), task_env: Mapping[str, str] | None = None,
                 agent_env: Mapping[str, str] | None = None, user: str | None = None,
                 sandbox_target: str = SANDBOX_TARGET) -> ImageLaunch:
    """Combine a task's CommandInfo fields with the image config (rules in the module doc)."""
    args = list(arguments)
    executable = None
    if shell:
        if not value:
            raise ImageError("Shell specified but no command value provided")
        argv = ["/bin/sh", "-c", value]
    elif value:
        executable, argv = value, args or [value]
    elif config.entrypoint:
        argv = list(config.entrypoint) + (args or list(config.cmd))
    elif config.cmd:
        argv = [config.cmd[0]] + (args or list(config.cmd[1:]))
    else:
        raise ImageError("No executable is found: the task has no command and the image no Entrypoint or Cmd")
    env = dict(agent_env or {})
    env["MESOS_SANDBOX"] = sandbox_target
    for item in config.env:
        k, sep, v = item.partition("=")
        if sep and k:
            env[k] = v
    env.update(task_env or {})
    env.setdefault("PATH", DEFAULT_PATH)
    return ImageLaunch(argv, env, config.working_dir or sandbox_target,
                       user if user is not None else config.user, executable)


def _table(text: str, width: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            f = line.split(":")
            if len(f) >= width:
                rows.append(f)
    return rows


def _int(s: str) -> int | None:
    return int(s) if s.isdigit() else None


def resolve_user(spec: str, passwd: str, group: str) -> User:
    """Docker ``User`` forms (``user``, ``uid``, ``user:group``, ``uid:gid``, mixes) → ids, using
    the image's ``/etc/passwd`` and ``/etc/group`` texts. Without a group the primary gid and
    supplementary groups come from those files; with one, supplementary groups are dropped."""
    spec = spec.strip()
    if not spec:
        return User(0, 0, [])
    name, sep, grp = spec.partition(":")
    users = _table(passwd, 4)
    entry = next((r for r in users if r[0] == name), None)
    uid = _int(name)
    if entry is None and uid is not None:
        entry = next((r for r in users if _int(r[2]) == uid), None)
    if uid is None:
        if entry is None:
            raise ImageError(f"user {name!r} is not in the image's /etc/passwd")
        uid = _int(entry[2])
        if uid is None:
            raise ImageError(f"user {name!r} has a malformed uid in the image's /etc/passwd")
    groups = _table(group, 3)
    if sep:
        gid = _int(grp)
        if gid is None:
            g = next((r for r in groups if r[0] == grp), None)
            if g is None or _int(g[2]) is None:
                raise ImageError(f"group {grp!r} is not in the image's /etc/group")
            gid = _int(g[2])
        return User(uid, gid, [])  # type: ignore[arg-type]
    gid = _int(entry[3]) if entry is not None and _int(entry[3]) is not None else 0
    login = entry[0] if entry is not None else None
    extra = sorted({_int(g[2]) for g in groups if login and len(g) > 3 and login in g[3].split(",")
                    and _int(g[2]) is not None} - {gid})
    return User(uid, gid, [gid, *extra])  # type: ignore[list-item]

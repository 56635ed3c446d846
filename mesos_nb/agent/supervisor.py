"""Per-task supervisor for command tasks of checkpointing frameworks.

Run as a *script* (``python -S supervisor.py [--user=UID:GID:GROUPS] STATUS_PATH EXECUTABLE ARGV...``, stdlib and
its sibling ``exit_status.py`` only, no package import, so it starts in a few milliseconds). It is the container's session leader;
it forks the task command into the same process group, waits for it, and records the
task's raw wait status in ``STATUS_PATH`` (write, fsync, atomic rename) before exiting.
So the task survives a SIGKILL of the agent (the supervisor is re-parented and keeps
waiting), and a restarted agent learns how the task ended even if it ended while the agent
was down (it reads ``STATUS_PATH`` once the supervisor's pid is gone).

The supervisor ignores SIGTERM/SIGINT/SIGHUP (the group signal reaches the task; the
supervisor must outlive it to record its status); SIGKILL of the group kills both.
"""

import os
import signal
import sys

if __package__:
    from .exit_status import record_status, wait_status
else:  # run as a script: this file's folder is sys.path[0]
    from exit_status import record_status, wait_status

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)



def _drop(spec: str) -> None:
    """``UID:GID:G1,G2``: become that user for good (the task's identity, users.py)."""
    uid, gid, groups = spec.split(":")
    os.setgroups([int(g) for g in groups.split(",") if g])
    os.setresgid(int(gid), int(gid), int(gid))
    os.setresuid(int(uid), int(uid), int(uid))


def main(argv: list) -> int:
    user = None
    if len(argv) > 1 and argv[1].startswith("--user="):
        user, argv = argv[1][len("--user="):], [argv[0], *argv[2:]]
    if len(argv) < 4:
        sys.stderr.write("usage: supervisor.py [--user=UID:GID:GROUPS] STATUS_PATH EXECUTABLE|'' ARGV...\n")
        return 2
    status_path, executable, args = argv[1], argv[2] or None, argv[3:]
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        for s in (*_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(s, signal.SIG_DFL)
        try:
            if user is not None:
                _drop(user)
            os.execvp(executable or args[0], args)
        except OSError as e:
            os.write(2, f"Failed to execute '{executable or args[0]}': {e.strerror}\n".encode())
        os._exit(127)
    status = wait_status(pid)
    try:
        record_status(status_path, status)
    except OSError as e:
        sys.stderr.write(f"supervisor: cannot record the exit status in {status_path}: {e}\n")
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + (os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The agent's launcher helper: a small process (``python -S``, stdlib only) started once per
containerizer, that starts every plain container so the agent itself never forks nor waits
for an exec (posix containers too: a vfork'd child waiting for a CPU held the agent's loop).

Why: a fork of the agent copies its page tables (a large Python heap), and with cgroups the
child's join (a write to each ``cgroup.procs``) waits in the kernel for milliseconds; done by
``subprocess.Popen`` on the agent's event loop, that wait serialised every launch. Here a
fork of a tiny process is cheap and the helper never waits for a child's exec: each child's
exec-status pipe is watched with the others, so many children join their cgroups and exec
at once.

Protocol on the inherited stream socket (``argv[1]`` = its fd): 4-byte big-endian length +
JSON object, both ways.

    agent → helper  {"id", "argv", "exe"?, "env", "cwd", "stdout", "stderr", "join": [procs files]}
    helper → agent  {"id", "pid", "how"?}    the child exec'd (already inside its cgroups;
                                             "how": "vfork" when a thread in them started it)
                    {"id", "error"}          it could not (the child exited 127, not reported)
                    {"exit": pid, "status"}  the raw wait status of a launched child

The child: default signal dispositions, joins its cgroups, ``setsid`` (its process group is
the container), stdin ``/dev/null``, stdout/stderr appended to the sandbox files, ``chdir``,
``execve`` (a bare name searched in the task environment's ``PATH``, as Popen does).

With nothing to join (posix) the child is vforked here directly (``subprocess.Popen`` without a
pre-exec step). Under cgroups v1 the child is not a fork of this Python process but a vfork from a short-lived
thread that first moves itself (its thread id, into each hierarchy's ``tasks`` file) into the
container's cgroups: a vfork'd child is born there, and costs no page-table copy and no
copy-on-write faults (a Python fork + exec took 1.8 ms of CPU here, a vfork + exec 0.7 ms).
cgroups v2 keeps a process's threads together, so there the child is forked and joins. When a
child exits its process group is SIGKILLed before it is reaped (the zombie keeps the pgid
from being reused), as the agent's own path does. EOF on the socket (the agent is gone): the
helper exits; running children keep running (reparented), as with the agent's own path.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading

_HDR = struct.Struct(">I")
_RESET = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGCHLD, signal.SIGTERM)


def _send(fd: int, obj: dict) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode()
    view = memoryview(_HDR.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _exec(req: dict) -> None:
    argv = req["argv"]
    env = req["env"]
    exe = req.get("exe") or argv[0]
    if os.path.dirname(exe):
        os.execve(exe, argv, env)
    err: OSError | None = None
    for d in os.get_exec_path(env):
        try:
            os.execve(os.path.join(d, exe), argv, env)
        except OSError as e:  # keep the first error that is not "not here"
            if err is None or (err.errno == 2 and e.errno != 2):
                err = e
    raise err or FileNotFoundError(2, "No such file or directory", exe)


def _child(req: dict, w: int) -> None:
    try:
        for sig in _RESET:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for path in req.get("join", ()):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        os.setsid()
        fds = [os.open(os.devnull, os.O_RDONLY)]
        for key in ("stdout", "stderr"):
            fds.append(os.open(req[key], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(req["cwd"])
        _exec(req)
    except BaseException as e:  # noqa: BLE001 - everything goes back to the agent
        try:
            os.write(w, str(e).encode(errors="replace")[:4000] or type(e).__name__.encode())
        finally:
            os._exit(127)


_HOMES: dict[str, str | None] = {}  # a container's parent cgroup dir -> this helper's own tasks file there


def _home_tasks(container_dir: str) -> str | None:
    """This helper's own ``tasks`` file in the v1 hierarchy holding ``container_dir``: where a
    launching thread goes back to (a thread left in a container's cgroup would be killed with
    it). The hierarchy is matched by its mount's name (``memory``, ``cpu,cpuacct``)."""
    parent = os.path.dirname(container_dir)
    if parent in _HOMES:
        return _HOMES[parent]
    mnt = os.path.realpath(parent)  # co-mounted hierarchies: cpu -> cpu,cpuacct
    while mnt != "/" and not os.path.ismount(mnt):
        mnt = os.path.dirname(mnt)
    name = os.path.basename(mnt)
    home = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == name:
                home = os.path.join(mnt, path.lstrip("/"), "tasks")
    _HOMES[parent] = home if home is not None and os.path.exists(home) else None
    return _HOMES[parent]


def _v1_tasks(join: list[str]) -> list[tuple[str, str]] | None:
    """(container, home) ``tasks`` files for cgroup v1 ``cgroup.procs`` files; None when not
    every one is v1 with a known home (or there are none): then the child is forked."""
    if not join:
        return None
    out = []
    for procs in join:
        d = os.path.dirname(procs)
        tasks = os.path.join(d, "tasks")
        home = _home_tasks(d) if os.path.exists(tasks) else None
        if home is None:
            return None
        out.append((tasks, home))
    return out


def _write_tid(paths: list[str], tid: bytes) -> None:
    for path in paths:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, tid)
        finally:
            os.close(fd)


def _popen(req: dict) -> int:
    """Start the child with ``subprocess.Popen``'s vfork (no pre-exec step, so CPython vforks):
    it returns once the child has exec'd; its pid, or ``OSError`` / ``SubprocessError``."""
    fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)]
    try:
        for key in ("stdout", "stderr"):
            fds.append(os.open(req[key], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644))
        proc = subprocess.Popen(req["argv"], executable=req.get("exe"), stdin=fds[0], stdout=fds[1],
                                stderr=fds[2], cwd=req["cwd"], env=req["env"], start_new_session=True,
                                close_fds=True, restore_signals=True)
    finally:
        for fd in fds:
            os.close(fd)
    proc.returncode = 0  # reaped by Helper._reap, never by Popen's own bookkeeping
    return proc.pid


def _vfork_in(req: dict, tasks: list[tuple[str, str]]) -> int:
    """Start the child from a thread moved into the container's v1 cgroups (and back); its
    pid, or ``OSError`` / ``SubprocessError`` (the child could not exec)."""
    out: dict = {}

    def body() -> None:
        tid = str(threading.get_native_id()).encode()
        try:
            _write_tid([t for t, _ in tasks], tid)
            out["pid"] = _popen(req)
        except BaseException as e:  # noqa: BLE001 - everything goes back to the agent
            out["error"] = e
        finally:
            try:
                _write_tid([h for _, h in tasks], tid)
            except OSError:
                pass  # it ends in a moment anyway

    th = threading.Thread(target=body)
    th.start()
    th.join()
    if "error" in out:
        raise out["error"]
    return out["pid"]


class Helper:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sel = selectors.DefaultSelector()
        self.inbuf = bytearray()
        self.starting: dict[int, tuple[int, int]] = {}  # exec pipe -> (request id, pid)
        self.pipe_of: dict[int, int] = {}  # pid -> exec pipe, until the exec is confirmed
        self.failed: set[int] = set()  # children that never exec'd: reaped silently
        self.sig_r, sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # A terminal's ^C is the agent's to handle. A handler, not SIG_IGN: an ignored signal
        # would stay ignored in a vfork'd task (exec resets handlers, not ignored signals).
        signal.signal(signal.SIGINT, lambda *_: None)
        self.sel.register(fd, selectors.EVENT_READ, "cmd")
        self.sel.register(self.sig_r, selectors.EVENT_READ, "chld")

    def run(self) -> None:
        while True:
            for key, _ in self.sel.select():
                if key.data == "cmd":
                    if not self._read_commands():
                        return
                elif key.data == "chld":
                    try:
                        while os.read(self.sig_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    self._reap()
                elif self.starting.get(key.fd, (0, 0))[1] == key.data:
                    self._confirm(key.fd)  # (not already confirmed by _reap in this same round)

    def _read_commands(self) -> bool:
        data = os.read(self.fd, 1 << 20)
        if not data:
            return False
        self.inbuf += data
        while len(self.inbuf) >= 4:
            (n,) = _HDR.unpack_from(self.inbuf)
            if len(self.inbuf) < 4 + n:
                break
            req = json.loads(bytes(self.inbuf[4:4 + n]))
            del self.inbuf[:4 + n]
            self._launch(req)
        return True

    def _launch(self, req: dict) -> None:
        join = req.get("join") or []
        tasks = _v1_tasks(join)
        if tasks is not None or not join:
            try:
                pid = _vfork_in(req, tasks) if tasks is not None else _popen(req)
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                _send(self.fd, {"id": req["id"], "error": str(e) or type(e).__name__})
                return
            _send(self.fd, {"id": req["id"], "pid": pid, "how": "vfork"})
            return
        try:
            r, w = os.pipe()  # both close-on-exec (PEP 446): EOF on r = the child exec'd
            pid = os.fork()
        except OSError as e:
            _send(self.fd, {"id": req["id"], "error": str(e)})
            return
        if pid == 0:
            os.close(r)
            _child(req, w)
        os.close(w)
        self.starting[r] = (req["id"], pid)
        self.pipe_of[pid] = r
        self.sel.register(r, selectors.EVENT_READ, pid)

    def _confirm(self, r: int) -> None:
        rid, pid = self.starting.pop(r)
        del self.pipe_of[pid]
        self.sel.unregister(r)
        err = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            err += chunk
        os.close(r)
        if err:
            self.failed.add(pid)
            _send(self.fd, {"id": rid, "error": err.decode(errors="replace")})
        else:
            _send(self.fd, {"id": rid, "pid": pid})

    def _reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            if pid in self.pipe_of:  # exited before its exec was confirmed: confirm first
                self._confirm(self.pipe_of[pid])
            if pid not in self.failed:
                try:  # the leader is a zombie: its pgid cannot be reused yet
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            _, status = os.waitpid(pid, 0)
            if pid in self.failed:
                self.failed.discard(pid)
            else:
                _send(self.fd, {"exit": pid, "status": status})


def main() -> None:
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)
    try:
        Helper(fd).run()
    except (BrokenPipeError, ConnectionResetError):
        pass


if __name__ == "__main__":
    main()

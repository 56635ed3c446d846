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

    agent → helper  {"id", "argv", "exe"?, "env", "cwd", "stdout", "stderr", "join": [procs files],
                     "setup"?: [steps]}       the isolator's setup (``cgroupfs.apply_plan``:
                                             mkdir the cgroups, write their limits) done first,
                                             in the same round (no thread hop in the agent); a
                                             last step ["pool", container id, spec]: when the child has
                                             exited, keep its cgroups for a later container
                                             (``cgroupfs.recycle_cgroups``, ``cgroup_pool``)
    helper → agent  {"id", "pid", "how"?}    the child exec'd (already inside its cgroups;
                                             "how": "vfork" when it was spawned from inside them)
                    {"id", "error", "stage"?} it could not ("stage": "setup": the setup failed,
                                             nothing was started; else the exec's reason)
                    {"exit": pid, "status"}  the raw wait status of a launched child
    agent → helper  {"id", "remove": [[container id, [cgroup dirs]], ...]}   ended containers'
                                             cgroups (cgroups v1), a batch; carried out when no
                                             launch waits (``cgroupfs.remove_cgroups``)
    helper → agent  {"id", "left": [container ids]}  the ones still busy (their processes were
                                             SIGKILLed; the agent retries)
                    {"pooled": [container id, baseline | null]}  a "pool" step's outcome,
                                             carried out after the exit when no launch waits

The child: default signal dispositions, joins its cgroups, ``setsid`` (its process group is
the container), stdin ``/dev/null``, stdout/stderr appended to the sandbox files, ``chdir``,
``execve`` (a bare name searched in the task environment's ``PATH``, as Popen does).

With nothing to join (posix) the child is started here with ``os.posix_spawn`` (libc's
``clone(CLONE_VM|CLONE_VFORK)``: no page-table copy, and the call returns the exec's error
itself; cheaper than ``subprocess.Popen``, whose Python bookkeeping and error pipe cost about
as much as the spawn). Under cgroups v1 this single-threaded helper first moves itself (``0``
into each hierarchy's ``tasks`` file: the writing thread, no thread-group lock) into the
container's cgroups, spawns, and moves back whatever happens (a thread per launch used to do
this: its start and join cost more than the moves), so the child is born inside them before
its first instruction. cgroups v2 keeps a process's threads together, so there the child is
forked and joins. When a
child exits its process group is SIGKILLed before it is reaped (the zombie keeps the pgid
from being reused), as the agent's own path does. EOF on the socket (the agent is gone): the
helper exits; running children keep running (reparented), as with the agent's own path.
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import signal
import struct
import sys

try:
    from .cgroupfs import apply_plan, recycle_cgroups, remove_cgroups
except ImportError:  # run as a script (always, but for tests): its directory is sys.path[0]
    from cgroupfs import apply_plan, recycle_cgroups, remove_cgroups  # type: ignore[no-redef]

_HDR = struct.Struct(">I")
_RESET = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGCHLD, signal.SIGTERM)


_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder (json.dumps makes one a call)
_decode = json.JSONDecoder().decode


def _frame(obj: dict) -> bytes:
    data = _encode(obj).encode()
    return _HDR.pack(len(data)) + data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
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


_HOMES: dict[str, int | None] = {}  # a container's parent cgroup dir -> fd of this helper's own tasks file there


def _home_tasks(container_dir: str) -> int | None:
    """An fd (write-only, opened once) of this helper's own ``tasks`` file in the v1 hierarchy
    holding ``container_dir``: where a launching thread goes back to (a thread left in a
    container's cgroup would be killed with it); None under cgroup v2 (no ``tasks`` file).
    The hierarchy is matched by its mount's name (``memory``, ``cpu,cpuacct``); the answer is
    kept per parent directory, so going home is one ``write`` per hierarchy."""
    parent = os.path.dirname(container_dir)
    if parent in _HOMES:
        return _HOMES[parent]
    if not os.path.exists(os.path.join(container_dir, "tasks")):  # v2: no per-thread moves
        if os.path.isdir(container_dir):
            _HOMES[parent] = None
        return None
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
    try:
        _HOMES[parent] = os.open(home, os.O_WRONLY | os.O_CLOEXEC) if home is not None else None
    except OSError:
        _HOMES[parent] = None
    return _HOMES[parent]


def _v1_tasks(join: list[str]) -> list[tuple[str, int]] | None:
    """(container ``tasks`` file, home ``tasks`` fd) for cgroup v1 ``cgroup.procs`` files; None
    when not every one is v1 with a known home (or there are none): then the child is forked."""
    if not join:
        return None
    out = []
    for procs in join:
        d = os.path.dirname(procs)
        home = _home_tasks(d)
        if home is None:
            return None
        out.append((d + "/tasks", home))
    return out


def _write_self(paths: list[str]) -> None:
    """Move this thread into each cgroup whose v1 ``tasks`` file ``paths`` names: ``0`` is
    the writer itself (for a single thread the kernel then takes no thread-group lock)."""
    for path in paths:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _go_home(tasks: list[tuple[str, int]]) -> None:
    """Back to this helper's own cgroups (a helper left in a container's cgroup would be
    killed with it); if a home is gone, the hierarchy's root."""
    for container, home in reversed(tasks):  # cpu (the quota) first
        try:
            os.write(home, b"0")
        except OSError:
            root = os.path.dirname(os.path.dirname(container))
            while not os.path.ismount(root) and os.path.dirname(root) != "/":
                root = os.path.dirname(root)
            try:
                _write_self([os.path.join(root, "tasks")])
            except OSError:
                pass  # then a destroy of that container kills the helper: the agent adopts its children


class Spawner:
    """Starts children with ``os.posix_spawn`` (a ``clone(CLONE_VM|CLONE_VFORK)`` in libc,
    returning once the child has exec'd, with the exec's error if it could not): no Python
    ``Popen`` object, no error pipe of its own. Its stdout/stderr are opened here (an
    unopenable file is named in the error), ``/dev/null`` once for all; the cwd is entered
    here just for the spawn (``posix_spawn`` has no chdir) and left again."""

    def __init__(self) -> None:
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.home = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def spawn(self, req: dict, tasks: list[tuple[str, int]] | None = None) -> int:
        """The child's pid, or ``OSError`` (why it could not exec). With ``tasks`` (cgroup v1:
        container ``tasks`` file, home ``tasks`` fd) it is spawned from inside the container's
        cgroups: this single-threaded helper moves itself in, so the child is born there
        before its first instruction, and back whatever happens. The executable is found and
        the output files opened before the move: their inodes and dentries are charged to the
        helper's memory cgroup, not kept by the container's after it is removed."""
        argv = req["argv"]
        env = req["env"]
        exe = _resolve(req.get("exe") or argv[0], env)
        fds: list[int] = []
        try:
            for key in ("stdout", "stderr"):
                fds.append(os.open(req[key], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644))
            os.chdir(req["cwd"])
            try:
                if tasks is not None:
                    _write_self([t for t, _ in tasks])
                return os.posix_spawn(exe, argv, env, setsid=True, setsigdef=_RESET, file_actions=(
                    (os.POSIX_SPAWN_DUP2, self.devnull, 0), (os.POSIX_SPAWN_DUP2, fds[0], 1),
                    (os.POSIX_SPAWN_DUP2, fds[1], 2)))
            finally:
                if tasks is not None:
                    _go_home(tasks)
                os.fchdir(self.home)
        finally:
            for fd in fds:
                os.close(fd)


def _resolve(exe: str, env: dict) -> str:
    """A bare name searched in the task environment's ``PATH`` (as ``Popen`` does)."""
    if os.path.dirname(exe):
        return exe
    for d in os.get_exec_path(env):
        path = os.path.join(d, exe)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    raise FileNotFoundError(2, "No such file or directory", exe)


class Helper:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sel = selectors.DefaultSelector()
        self.inbuf = bytearray()
        # One reused read buffer: a fresh 1 MiB bytes per read was an mmap, mremap and munmap.
        self.rbuf = bytearray(1 << 16)
        self.rview = memoryview(self.rbuf)
        self.out = bytearray()  # replies of this round
        self.starting: dict[int, tuple[int, int]] = {}  # exec pipe -> (request id, pid)
        self.pipe_of: dict[int, int] = {}  # pid -> exec pipe, until the exec is confirmed
        self.failed: set[int] = set()  # children that never exec'd: reaped silently
        self.removing: collections.deque = collections.deque()  # (request id, [container, dirs] to do, left)
        self.pool_at_exit: dict[int, list] = {}  # pid -> its launch's "pool" step
        self.recycling: collections.deque = collections.deque()  # "pool" steps of exited children
        self.sig_r, sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # A terminal's ^C is the agent's to handle. A handler, not SIG_IGN: an ignored signal
        # would stay ignored in a vfork'd task (exec resets handlers, not ignored signals).
        signal.signal(signal.SIGINT, lambda *_: None)
        self.spawner = Spawner()
        self.sel.register(fd, selectors.EVENT_READ, "cmd")
        self.sel.register(self.sig_r, selectors.EVENT_READ, "chld")

    def _send(self, obj: dict) -> None:
        """Queued: a launch's reply leaves at once (``_flush`` after each), the exits reaped in
        one round of the loop leave together in one write at its end."""
        self.out += _frame(obj)

    def _flush(self) -> None:
        if self.out:
            out, self.out = self.out, bytearray()
            _write_all(self.fd, out)

    def run(self) -> None:
        while True:
            self._flush()
            events = self.sel.select(0 if self.removing or self.recycling else None)
            if self.recycling:  # after this turn's launches, every exited child's (it spares a
                # later launch its mkdirs, so it must keep up with the launches), then removals
                self._recycle_all()
            elif self.removing:
                self._remove_some(1 if events else 4)
            for key, _ in events:
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
        got = os.readv(self.fd, [self.rbuf])
        if not got:
            return False
        self.inbuf += self.rview[:got]
        while len(self.inbuf) >= 4:
            (n,) = _HDR.unpack_from(self.inbuf)
            if len(self.inbuf) < 4 + n:
                break
            req = _decode(self.inbuf[4:4 + n].decode())
            del self.inbuf[:4 + n]
            if "remove" in req:
                self._remove(req)
            else:
                self._launch(req)
                self._flush()
        return True

    def _remove(self, req: dict) -> None:
        """Queue the removal of ended containers' cgroups (``[[container id, [dirs]], ...]``);
        its reply names the ones left (busy: their processes were SIGKILLed, the agent retries).
        Carried out by ``_remove_some`` when no launch waits: a batch of removals (≈ 0.1 ms a
        container) never delays a launch by more than a few containers' worth."""
        self.removing.append((req["id"], list(reversed(req["remove"])), []))

    def _remove_some(self, n: int) -> None:
        while n > 0 and self.removing:
            rid, todo, left = self.removing[0]
            while n > 0 and todo:
                cid, dirs = todo.pop()
                n -= 1
                if not remove_cgroups(dirs):
                    left.append(cid)
            if not todo:
                self.removing.popleft()
                self._send({"id": rid, "left": left})

    def _recycle_all(self) -> None:
        while self.recycling:
            _, cid, spec = self.recycling.popleft()
            try:
                base = recycle_cgroups(spec["from"], spec)
            except (OSError, ValueError):  # a counter that is not a number: not kept, removed as usual
                base = None
            self._send({"pooled": [cid, base]})

    def _launch(self, req: dict) -> None:
        setup = req.get("setup") or []
        pool = setup.pop() if setup and setup[-1][0] == "pool" else None
        try:
            apply_plan(setup)
        except (OSError, ValueError, IndexError) as e:
            self._send({"id": req["id"], "error": str(e) or type(e).__name__, "stage": "setup"})
            return
        join = req.get("join") or []
        tasks = _v1_tasks(join)
        if tasks is not None or not join:
            try:
                pid = self.spawner.spawn(req, tasks)
            except (OSError, ValueError, TypeError) as e:
                self._send({"id": req["id"], "error": str(e) or type(e).__name__})
                return
            if pool is not None:
                self.pool_at_exit[pid] = pool
            self._send({"id": req["id"], "pid": pid, "how": "vfork"})
            return
        try:
            r, w = os.pipe()  # both close-on-exec (PEP 446): EOF on r = the child exec'd
            pid = os.fork()
        except OSError as e:
            self._send({"id": req["id"], "error": str(e)})
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
            self._send({"id": rid, "error": err.decode(errors="replace")})
        else:
            self._send({"id": rid, "pid": pid})

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
            if (pool := self.pool_at_exit.pop(pid, None)) is not None:
                self.recycling.append(pool)
            if pid in self.failed:
                self.failed.discard(pid)
            else:
                self._send({"exit": pid, "status": status})


def main() -> None:
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)
    try:
        Helper(fd).run()
    except (BrokenPipeError, ConnectionResetError):
        pass


if __name__ == "__main__":
    main()

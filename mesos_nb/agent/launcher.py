"""The agent's side of its launcher helper (``launch_helper.py``): one small pre-started
process per containerizer that starts plain containers (no image, no namespaces), each child
inside its cgroups (if any) before it execs, so the agent never forks and never waits for an exec.

``Launcher.launch`` sends one request and resolves with ``(pid, exit_future)`` once the child
has exec'd; the exit future gets the raw wait status the helper reaped. The helper is started
on first use; when it cannot be started or dies, ``LauncherUnavailable`` tells the
containerizer to use its own ``Popen`` path, and the containers the helper had started are
watched with pidfds instead (their exit status is then unknown unless a supervisor recorded it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable

import msgspec

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch_helper.py")
_HDR = struct.Struct(">I")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

logger = logging.getLogger("mesos_nb.agent")


class LauncherUnavailable(Exception):
    """The helper is not running: launch the container another way."""


class SetupFailed(OSError):
    """The isolator's setup steps failed in the helper (nothing was started)."""


class Launcher:
    def __init__(self, on_lost: Callable[[int, asyncio.Future], None] | None = None) -> None:
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._rbuf = bytearray(1 << 16)  # reused: a fresh 1 MiB bytes per read was an mmap + munmap
        self._rview = memoryview(self._rbuf)
        self._next = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._exits: dict[int, asyncio.Future] = {}
        self._broken = False
        self._on_lost = on_lost  # (pid, exit future) of a child whose helper died
        # (container id, baseline or None): the helper kept an ended container's cgroups for a
        # later one, or could not (a setup plan's ``pool`` step; ``cgroup_pool``)
        self.on_pooled: Callable[[str, dict | None], None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", HELPER, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, close_fds=True,
            )
        except OSError:
            ours.close()
            self._broken = True
            raise LauncherUnavailable("the launcher helper could not be started") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock, self._loop = ours, loop
        loop.add_reader(ours.fileno(), self._on_readable)

    async def launch(self, *, argv: list[str], executable: str | None, env: dict[str, str], cwd: str,
                     stdout: str, stderr: str, join: list[str], setup: list | None = None) -> tuple[int, asyncio.Future]:
        """Start one container, after the isolator's ``setup`` steps (``cgroupfs.apply_plan``);
        raises ``SetupFailed``, ``OSError`` (the child's reason) or ``LauncherUnavailable``."""
        if self._broken:
            raise LauncherUnavailable("the launcher helper is gone")
        if self._sock is None:
            self._start()
        req = {"argv": argv, "exe": executable, "env": env, "cwd": cwd, "stdout": stdout, "stderr": stderr,
               "join": join}
        if setup:
            req["setup"] = setup
        return await self._call(req)

    async def _call(self, req: dict):  # noqa: ANN202 - the reply's value (launch: a pair, remove: a list)
        """Send one request (numbered here) and wait for its reply."""
        assert self._sock is not None and self._loop is not None
        self._next += 1
        rid = req["id"] = self._next
        data = _encode(req)
        fut = self._loop.create_future()
        self._pending[rid] = fut
        try:
            await self._loop.sock_sendall(self._sock, _HDR.pack(len(data)) + data)
        except OSError:
            self._pending.pop(rid, None)
            self._lost()
            raise LauncherUnavailable("the launcher helper is gone") from None
        return await fut

    async def remove(self, groups: list[tuple[str, list[str]]]) -> list[str]:
        """Remove ended containers' cgroup directories (``(container id, dirs)``) in the helper,
        a batch in one message: neither the agent's loop nor a worker thread of its own (and
        the GIL) does the ``rmdir``s. Returns the container ids still busy (retry later);
        raises ``LauncherUnavailable`` when no helper runs (then the agent removes them)."""
        if self._broken or self._sock is None:
            raise LauncherUnavailable("the launcher helper is not running")
        return await self._call({"remove": groups})

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            n = self._sock.recv_into(self._rbuf)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if not n:
            self._lost()
            return
        buf = self._buf
        buf += self._rview[:n]
        while len(buf) >= 4:
            (n,) = _HDR.unpack_from(buf)
            if len(buf) < 4 + n:
                break
            msg = _decode(bytes(buf[4:4 + n]))
            del buf[:4 + n]
            self._dispatch(msg)

    def _dispatch(self, msg: dict) -> None:
        if "pooled" in msg:
            if self.on_pooled is not None:
                self.on_pooled(*msg["pooled"])
            return
        if "exit" in msg:
            fut = self._exits.pop(msg["exit"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg["status"])
            return
        fut = self._pending.pop(msg["id"], None)
        if fut is None or fut.done():
            return
        if "left" in msg:
            fut.set_result(msg["left"])
            return
        if "error" in msg:
            fut.set_exception((SetupFailed if msg.get("stage") == "setup" else OSError)(msg["error"]))
            return
        assert self._loop is not None
        exit_fut = self._loop.create_future()
        self._exits[msg["pid"]] = exit_fut
        fut.set_result((msg["pid"], exit_fut))

    def _lost(self) -> None:
        """The helper died: pending launches fall back, running children are handed over."""
        if self._broken:
            return
        self._broken = True
        logger.warning("launcher helper exited; launching from the agent process from now on")
        self._detach()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(LauncherUnavailable("the launcher helper is gone"))
        self._pending.clear()
        exits, self._exits = self._exits, {}
        for pid, fut in exits.items():
            if self._on_lost is not None:
                self._on_lost(pid, fut)

    def _detach(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Stop the helper (the containers it started keep running, as the agent's own)."""
        self._broken = True
        self._detach()
        pending, self._pending = self._pending, {}
        for fut in pending.values():  # a launch or removal waiting for its reply: no reply will come
            if not fut.done():
                with contextlib.suppress(RuntimeError):  # its loop is closed
                    fut.set_exception(LauncherUnavailable("the launcher helper is stopped"))
        exits, self._exits = self._exits, {}
        for pid, fut in exits.items():
            if self._on_lost is not None and not fut.done():
                with contextlib.suppress(RuntimeError):  # no running loop: nobody waits any more
                    self._on_lost(pid, fut)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(2)  # EOF on its socket ends it
            if self._proc.returncode is None:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def watch_exit(pid: int, fut: asyncio.Future, final_status: Callable[[], int]) -> bool:
    """Resolve ``fut`` with ``final_status()`` when ``pid`` (not our child) exits; its process
    group is SIGKILLed first, as for the containers the agent reaps itself. False: ``pid`` was
    already gone (``fut`` is resolved now)."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        if not fut.done():
            fut.set_result(final_status())
        return False

    def _on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        if not fut.done():
            fut.set_result(final_status())

    loop.add_reader(pidfd, _on_exit)
    return True


def prefer_recorded(fut: asyncio.Future, read: Callable[[], int | None]) -> asyncio.Future:
    """A future with the status ``read()`` finds recorded (supervisor.py's) once ``fut`` is
    done, else ``fut``'s own."""
    out = asyncio.get_running_loop().create_future()

    def _done(f: asyncio.Future) -> None:
        if not out.done():
            recorded = read()
            out.set_result(recorded if recorded is not None else f.result())

    fut.add_done_callback(_done)
    return out


__all__ = ["Launcher", "LauncherUnavailable", "SetupFailed", "HELPER", "prefer_recorded", "watch_exit"]

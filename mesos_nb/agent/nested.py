"""Nested container sessions: ``task exec`` / ``task attach`` of the Mesos CLI.

A LAUNCH_NESTED_CONTAINER_SESSION starts a command next to a running task (in its sandbox,
with its environment), optionally on a pseudo-terminal (``os.openpty``; the child gets the
slave side as its controlling terminal), and streams its output back as RecordIO ProcessIO
records (``{"type":"DATA","data":{"type":"STDOUT","data":<b64>}}``), exactly the framing
Mesos' I/O switchboard uses. ATTACH_CONTAINER_INPUT feeds stdin (and window sizes) into it,
ATTACH_CONTAINER_OUTPUT adds another reader, WAIT returns the raw ``wait(2)`` status and KILL
signals the session's process group. The session is destroyed when the launching
connection goes away, as in Mesos. Every output reader is a bounded stream: one that stops
reading is disconnected instead of growing the agent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import signal
import socket
import struct
import termios
from collections import OrderedDict
from typing import Any

import msgspec

from ..protocol import recordio
from ..protocol.bounded_stream import BoundedStream
from ..protocol.http_calls import StatusError

log = logging.getLogger("mesos_nb.agent.nested")
_enc = msgspec.json.Encoder()
HEARTBEAT_NS = 30_000_000_000
MAX_EXITED = 256
OUTPUT_LIMIT = 4 * 1024 * 1024
SWITCHBOARD_START_SECONDS = 5.0


def data_record(kind: str, data: bytes) -> bytes:
    return recordio.encode(_enc.encode({"type": "DATA", "data": {"type": kind, "data": base64.b64encode(data).decode()}}))


HEARTBEAT_RECORD = recordio.encode(_enc.encode(
    {"type": "CONTROL", "control": {"type": "HEARTBEAT", "heartbeat": {"interval": {"nanoseconds": HEARTBEAT_NS}}}}))


def _raw_status(returncode: int) -> int:
    """asyncio's returncode (negative = signal) back to the raw ``wait(2)`` status Mesos reports."""
    return -returncode if returncode < 0 else (returncode & 0xFF) << 8


class NestedError(StatusError):
    """A nested-container call refused (the operator API answers ``status`` with ``message``)."""


class Session:
    """One nested container: its process, its output readers and its stdin."""

    def __init__(self, key: str, tty: bool) -> None:
        self.key = key
        self.tty = tty
        self.proc: asyncio.subprocess.Process | None = None
        self.master_fd: int | None = None
        self.outputs: list[BoundedStream] = []
        self.input_attached = False
        self.exit_status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.output_done = asyncio.Event()
        self.runner: asyncio.Task | None = None

    # -------------------------------------------------------------- output
    def broadcast(self, record: bytes) -> None:
        for s in list(self.outputs):
            if not s.push(record):
                self.outputs.remove(s)

    def add_output(self) -> BoundedStream:
        s = BoundedStream(OUTPUT_LIMIT)
        if self.output_done.is_set():
            s.close()
        else:
            self.outputs.append(s)
        return s

    async def _pump_stream(self, reader: asyncio.StreamReader, kind: str) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            self.broadcast(data_record(kind, chunk))

    async def _pump_pty(self) -> None:
        assert self.master_fd is not None
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[bytes] = asyncio.Queue()
        fd = self.master_fd

        def readable() -> None:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO once the terminal's last user is gone
                data = b""
            if not data:
                loop.remove_reader(fd)
            q.put_nowait(data)

        loop.add_reader(fd, readable)
        while True:
            data = await q.get()
            if not data:
                return
            self.broadcast(data_record("STDOUT", data))

    async def run_output(self) -> None:
        assert self.proc is not None
        try:
            if self.tty:
                await self._pump_pty()
            else:
                assert self.proc.stdout is not None and self.proc.stderr is not None
                await asyncio.gather(self._pump_stream(self.proc.stdout, "STDOUT"),
                                     self._pump_stream(self.proc.stderr, "STDERR"))
            rc = await self.proc.wait()
        finally:
            if not self.exit_status.done() and self.proc.returncode is not None:
                self.exit_status.set_result(_raw_status(self.proc.returncode))
            self.output_done.set()
            for s in self.outputs:
                s.close()
            self.outputs.clear()
            if self.master_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self.master_fd)
                self.master_fd = None
        log.info("nested container exited container=%s status=%d", self.key, rc)

    # -------------------------------------------------------------- input
    def write_stdin(self, data: bytes) -> None:
        if self.tty:
            if self.master_fd is not None:
                os.write(self.master_fd, data)
        elif self.proc is not None and self.proc.stdin is not None:
            if data:
                self.proc.stdin.write(data)
            else:
                self.proc.stdin.close()

    def resize(self, rows: int, columns: int) -> None:
        if self.tty and self.master_fd is not None:
            fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)


class SwitchboardSession:
    """A running TTY command task, reached through its switchboard (:mod:`.switchboard`).

    Offers the part of :class:`Session` the API uses: output readers, stdin and window size.
    """

    tty = True

    def __init__(self, key: str) -> None:
        self.key = key
        self.input_attached = False
        self.output_done = asyncio.Event()
        self._input: asyncio.StreamWriter | None = None
        self._relays: set[asyncio.Task] = set()

    async def _connect(self, role: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        from .switchboard import socket_name

        # The task is RUNNING as soon as its switchboard process exists; the switchboard binds its
        # socket a few milliseconds later, so an early attach retries briefly.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SWITCHBOARD_START_SECONDS
        delay = 0.01
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:  # connected here: uvloop cuts an abstract name (leading NUL) given as a path
                    await loop.sock_connect(sock, socket_name(self.key))
                except BaseException:
                    sock.close()
                    raise
                reader, writer = await asyncio.open_unix_connection(sock=sock)
                break
            except OSError as e:
                if loop.time() >= deadline:
                    raise NestedError(404, f"The I/O switchboard of container '{self.key}' is gone: {e}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
        writer.write(role)
        return reader, writer

    async def connect_output(self) -> BoundedStream:
        """A reader of the task's terminal, connected (so nothing typed after this is missed)."""
        reader, writer = await self._connect(b"O")
        await writer.drain()
        s = BoundedStream(OUTPUT_LIMIT)
        task = asyncio.get_running_loop().create_task(self._relay(s, reader, writer))
        self._relays.add(task)  # the loop holds tasks weakly: an unreferenced relay would be collected
        task.add_done_callback(self._relays.discard)
        return s

    async def _relay(self, s: BoundedStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not s.closed:
                data = await reader.read(65536)
                if not data:
                    break
                s.push(data_record("STDOUT", data))
        finally:
            writer.close()
            s.close()

    async def open_input(self) -> None:
        _, self._input = await self._connect(b"I")

    def close_input(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None

    def write_stdin(self, data: bytes) -> None:
        if data and self._input is not None:
            self._input.write(b"D" + struct.pack(">I", len(data)) + data)

    def resize(self, rows: int, columns: int) -> None:
        if self._input is not None:
            self._input.write(b"W" + struct.pack(">HH", rows, columns))


def container_key(container_id: Any) -> str | None:
    """``parent.value/.../value`` for a ContainerID JSON object (None if malformed)."""
    parts = []
    cid = container_id
    depth = 0
    while isinstance(cid, dict) and depth < 16:
        value = cid.get("value")
        if not isinstance(value, str) or not value or len(value) > 242 or "." in value or " " in value \
                or "/" in value:
            return None
        parts.append(value)
        cid = cid.get("parent")
        depth += 1
    if cid is not None or not parts:
        return None
    return "/".join(reversed(parts))


class NestedContainers:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.sessions: dict[str, Session] = {}
        self.exited: OrderedDict[str, int] = OrderedDict()
        self.tty_tasks: dict[str, SwitchboardSession] = {}

    def parent_executor(self, parent_key: str) -> Any:
        for fw in self.agent.frameworks.values():
            for ex in fw.executors.values():
                if ex.container_id == parent_key and ex.container is not None and not ex.container.exited:
                    return ex
        return None

    async def launch(self, container_id: Any, command: Any, tty: bool) -> Session:
        key = container_key(container_id)
        if key is None or "/" not in key:
            raise NestedError(400, "Expecting 'container_id' with a 'parent' (ids: no '.', '/' or spaces, "
                                   "at most 242 characters)")
        if key in self.sessions or key in self.exited:
            raise NestedError(400, f"Container '{key}' already exists")
        parent_key = key.rsplit("/", 1)[0]
        ex = self.parent_executor(parent_key.split("/")[0])
        if ex is None:
            raise NestedError(404, f"Parent container '{parent_key}' cannot be found")
        if not isinstance(command, dict) or not isinstance(command.get("value"), str):
            raise NestedError(400, "Expecting 'command.value' to be present")
        args = command.get("arguments") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise NestedError(400, "Expecting 'command.arguments' to be a list of strings")
        if command.get("shell", True):
            argv, executable = ["/bin/sh", "-c", command["value"]], "/bin/sh"
        else:
            argv, executable = (args or [command["value"]]), command["value"]
        try:
            import psutil

            env = psutil.Process(ex.container.pid).environ()  # the debug container shares the task's env
        except Exception:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        session = Session(key, tty)
        try:
            if tty:
                master, slave = os.openpty()
                session.master_fd = master
                env.setdefault("TERM", "xterm")

                def make_controlling() -> None:
                    fcntl.ioctl(0, termios.TIOCSCTTY, 0)

                try:
                    session.proc = await asyncio.create_subprocess_exec(
                        *argv, executable=executable, stdin=slave, stdout=slave, stderr=slave, cwd=ex.directory,
                        env=env, start_new_session=True, preexec_fn=make_controlling)
                finally:
                    os.close(slave)
            else:
                session.proc = await asyncio.create_subprocess_exec(
                    *argv, executable=executable, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, cwd=ex.directory, env=env, start_new_session=True)
        except (OSError, ValueError) as e:
            if session.master_fd is not None:
                os.close(session.master_fd)
            raise NestedError(500, f"Failed to launch nested container: {e}") from None
        self.sessions[key] = session
        log.info("nested container launched container=%s parent=%s tty=%s argv=%s", key, parent_key, tty, argv[:1])
        session.runner = asyncio.get_running_loop().create_task(session.run_output())  # held: see _relays
        session.runner.add_done_callback(lambda _t: self._exited(session))
        return session

    def _exited(self, session: Session) -> None:
        self.sessions.pop(session.key, None)
        if session.exit_status.done() and not session.exit_status.cancelled():
            self.exited[session.key] = session.exit_status.result()
            while len(self.exited) > MAX_EXITED:
                self.exited.popitem(last=False)

    def find(self, container_id: Any) -> Session | SwitchboardSession | None:
        """A nested session, or a TTY command task's switchboard (by the task's container id)."""
        key = container_key(container_id)
        if key is None:
            return None
        session = self.sessions.get(key)
        if session is None and "/" not in key:
            ex = self.parent_executor(key)
            if ex is None or not _has_tty(ex):
                self.tty_tasks.pop(key, None)
                return None
            return self.tty_tasks.setdefault(key, SwitchboardSession(key))
        return session

    def without_tty(self, container_id: Any) -> bool:
        """A running task container that has no I/O switchboard (no TTY): attach is refused."""
        key = container_key(container_id)
        ex = self.parent_executor(key) if key and "/" not in key else None
        return ex is not None and not _has_tty(ex)

    async def wait(self, container_id: Any) -> int:
        key = container_key(container_id)
        if key is None:
            raise NestedError(400, "Expecting a valid 'container_id'")
        s = self.sessions.get(key)
        if s is not None:
            return await asyncio.shield(s.exit_status)
        if key in self.exited:
            return self.exited[key]
        raise NestedError(404, f"Container '{key}' cannot be found")

    def kill(self, container_id: Any, sig: int) -> None:
        s = self.find(container_id)
        if s is None:
            key = container_key(container_id)
            if key in self.exited:
                return
            raise NestedError(404, f"Container '{key}' cannot be found")
        s.kill(sig)

    def destroy_all(self) -> None:
        for s in list(self.sessions.values()):
            s.kill()


def _has_tty(ex: Any) -> bool:
    for t in ex.tasks.values():
        c = t.info.container
        if isinstance(c, dict) and isinstance(c.get("tty_info"), dict):
            return True
    return False

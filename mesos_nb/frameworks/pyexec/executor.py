"""The warm executor's shell: the v1 executor HTTP API (``agent_http``), one forked child per task.

Data flow::

    agent ──SUBSCRIBE stream: SUBSCRIBED, LAUNCH, KILL, ACKNOWLEDGED, SHUTDOWN──► PyExecutor.handle
    LAUNCH ─► parse_payload(TaskInfo.data) ─► fork_cell ─► child runs the cell / call
    child's stdout/stderr pipes ─► executor's own stdout/stderr (the sandbox files)
                                └► MESSAGE {task, stream, offset, text} (batched per 20 ms) ─► kernel
    child's result pipe + exit ─► UPDATE TASK_FINISHED | TASK_FAILED (data = the result)
    MemoryWatch every 5 ms ─►  over --mem: SIGKILL the cell's group,
                               UPDATE TASK_FAILED REASON_CONTAINER_LIMITATION_MEMORY
    no cell for idle_timeout s, SHUTDOWN, or the stream ends ─► cells killed, exit

Calls to the agent go out one at a time in order (updates of a task must not overtake each
other). TASK_RUNNING is sent only for a cell still running after ``RUNNING_AFTER`` s: a
quick cell goes straight to its terminal state (one update instead of two acknowledged ones).
The executor runs no threads, so forking it is safe.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import gc
import importlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from mesos_nb.protocol import recordio

from .agent_http import AgentConnection, AgentHttpError
from .child import MemoryWatch, Spare, descendants, fork_spare, kill_cell, rss
from .wire import (
    INLINE_RESULT_MAX,
    MESSAGE_CHUNK,
    limitation_message,
    output_message,
    parse_payload,
    task_mem_mb,
)

log = logging.getLogger("mesos_nb.pyexec")

RUNNING_AFTER = 0.1
FLUSH_EVERY = 0.02
WATCH_EVERY = 0.005
KILL_GRACE = 3.0
PIPE_LINGER = 0.5  # after the cell's process ended, wait this long for pipes its children hold


class Cell:
    """One running task: its process, pipes, output counters and how it is ending."""

    def __init__(self, task_id: str, pid: int, fds: dict[str, int], res_fd: int, watch: MemoryWatch) -> None:
        self.task_id = task_id
        self.pid = pid
        self.fds = dict(fds)
        self.res_fd: int | None = res_fd
        self.result = bytearray()
        self.watch = watch
        self.decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in fds}
        self.pending = {s: "" for s in fds}
        self.sent = {s: 0 for s in fds}
        self.status: int | None = None
        self.memory: str | None = None
        self.kill_requested = False
        self.running_sent = False
        self.ended_at: float | None = None
        self.finished = False
        self.started = time.monotonic()
        self.last_tree = self.started  # a quick cell is never scanned for processes it started
        self.others: list[int] = []

    @property
    def pipes_open(self) -> bool:
        return bool(self.fds) or self.res_fd is not None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class PyExecutor:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self.endpoint = env["MESOS_AGENT_ENDPOINT"]
        self.framework_id = env["MESOS_FRAMEWORK_ID"]
        self.executor_id = env["MESOS_EXECUTOR_ID"]
        self.directory = env.get("MESOS_SANDBOX") or env.get("MESOS_DIRECTORY") or os.getcwd()
        self.idle_timeout = float(env.get("MESOS_NB_IDLE_TIMEOUT") or 600)
        self.preload = [m.strip() for m in (env.get("MESOS_NB_PRELOAD") or "").split(",") if m.strip()]
        host, _, port = self.endpoint.rpartition(":")
        token = env.get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN")
        self.auth = [("Authorization", f"Bearer {token}")] if token else []
        self.agent = (host.strip("[]") or "127.0.0.1", int(port or 5051))
        self.cells: dict[str, Cell] = {}
        self.unacked: dict[str, dict[str, Any]] = {}  # uuid -> status
        self.outbox: asyncio.Queue[dict[str, Any]] | None = None
        self.calls: AgentConnection | None = None  # created in run(), on its loop
        self.last_busy = time.monotonic()
        self.preload_errors: list[str] = []
        self.spare: Spare | None = None
        self.done: asyncio.Event | None = None  # created in run(), on its loop
        self._watching = False

    # ------------------------------------------------------------------ start
    def load_preloads(self) -> None:
        for name in self.preload:
            try:
                importlib.import_module(name)
            except Exception as e:  # a missing module must not stop the executor
                msg = f"preloading {name} failed: {type(e).__name__}: {e}"
                self.preload_errors.append(msg)
                print(f"mesos-nb warm executor: {msg}", file=sys.stderr, flush=True)

    def _call(self, type_: str, **body: Any) -> dict[str, Any]:
        return {"type": type_, "executor_id": {"value": self.executor_id},
                "framework_id": {"value": self.framework_id}, **body}

    async def run(self) -> int:
        self.done = asyncio.Event()
        self.outbox = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutdown, f"signal {sig.name}")
        self.calls = self._connection()
        sender = asyncio.ensure_future(self._sender())
        idle = asyncio.ensure_future(self._idle())
        stream = asyncio.ensure_future(self._stream())
        await self.done.wait()
        stream.cancel()
        idle.cancel()
        await self._drain_outbox(5.0)
        sender.cancel()
        self.calls.close()
        return 0

    def _connection(self) -> AgentConnection:
        return AgentConnection(*self.agent, "/api/v1/executor", self.auth)

    async def _stream(self) -> None:
        assert self.done is not None
        conn = self._connection()
        try:
            status, body = await conn.stream(json.dumps(self._call("SUBSCRIBE", subscribe={})).encode())
            if status != 200:
                text = b"".join([chunk async for chunk in body]).decode("utf-8", "replace")
                log.error("subscribe refused: %s %s", status, text)
                self.shutdown("subscription refused")
                return
            decoder = recordio.Decoder()
            async for chunk in body:
                for rec in decoder.feed(chunk):
                    self.handle(json.loads(rec))
        except (AgentHttpError, recordio.RecordIOError) as e:
            log.error("executor stream failed: %s", e)
        finally:
            conn.close()
        if not self.done.is_set():
            # the notebook's framework does not checkpoint: a broken stream ends the executor
            self.shutdown("the agent's stream ended")

    # ------------------------------------------------------------------ events
    def handle(self, ev: dict[str, Any]) -> None:
        t = ev.get("type")
        if t == "SUBSCRIBED":
            asyncio.get_running_loop().call_soon(self._make_spare)
            log.info("subscribed executor=%s framework=%s", self.executor_id, self.framework_id)
        elif t == "LAUNCH":
            self.launch(ev["launch"]["task"])
        elif t == "LAUNCH_GROUP":
            for task in ev["launch_group"]["task_group"]["tasks"]:
                self.launch(task)
        elif t == "KILL":
            self.kill(ev["kill"]["task_id"]["value"])
        elif t == "ACKNOWLEDGED":
            with contextlib.suppress(KeyError, ValueError):
                self.unacked.pop(base64.b64decode(ev["acknowledged"]["uuid"]).hex(), None)
        elif t == "SHUTDOWN":
            self.shutdown("SHUTDOWN from the agent")
        elif t == "ERROR":
            log.error("agent error: %s", ev.get("error", {}).get("message"))

    def launch(self, task: dict[str, Any]) -> None:
        tid = task["task_id"]["value"]
        self.last_busy = time.monotonic()
        if tid in self.cells:
            return
        data = task.get("data")
        payload = parse_payload(base64.b64decode(data) if data else None)
        if isinstance(payload, str):
            self.update(tid, "TASK_FAILED", message=payload, reason="REASON_TASK_INVALID")
            return
        if payload["kind"] == "call" and "cloudpickle" not in sys.modules:
            with contextlib.suppress(ImportError):
                import cloudpickle  # noqa: F401 - once here, not in every forked call
        spare, self.spare = self.spare, None
        try:
            try:
                if spare is None:
                    spare = self._fork()
                spare.start(tid, payload)
            except OSError:  # the spare died while it waited: fork one now
                if spare is not None:
                    spare.discard()
                spare = self._fork()
                spare.start(tid, payload)
        except OSError as e:
            self.update(tid, "TASK_FAILED", message=f"could not start the cell's process: {e}",
                        reason="REASON_EXECUTOR_TERMINATED")
            return
        pid, fds, res_fd = spare.pid, spare.fds, spare.res_fd
        cell = Cell(tid, pid, fds, res_fd, MemoryWatch(task_mem_mb(task), spare.base))
        self.cells[tid] = cell
        loop = asyncio.get_running_loop()
        for stream, fd in fds.items():
            loop.add_reader(fd, self._read_output, cell, stream)
        loop.add_reader(res_fd, self._read_result, cell)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        if pidfd is not None:
            loop.add_reader(pidfd, self._exited, cell, pidfd)
        loop.call_later(RUNNING_AFTER, self._maybe_running, cell)
        if not self._watching:
            self._watching = True
            loop.call_later(WATCH_EVERY, self._watch)

    def _fork(self) -> Spare:
        gc.freeze()  # the child's collector then leaves the warm objects (and their pages) alone
        return fork_spare(self.directory)

    def _make_spare(self) -> None:
        if self.spare is None and not self.done.is_set():  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                self.spare = self._fork()

    def _maybe_running(self, cell: Cell) -> None:
        if not cell.finished and cell.status is None and not cell.running_sent:
            cell.running_sent = True
            self.update(cell.task_id, "TASK_RUNNING")

    # ------------------------------------------------------------------ the cell's pipes
    def _read_output(self, cell: Cell, stream: str) -> None:
        fd = cell.fds.get(stream)
        if fd is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_fd(cell, stream)
            cell.pending[stream] += cell.decoders[stream].decode(b"", final=True)
            self._flush(cell)
            self._maybe_finish(cell)
            return
        with contextlib.suppress(OSError):
            os.write(1 if stream == "stdout" else 2, data)  # the sandbox's stdout / stderr
        first = not any(cell.pending.values())
        cell.pending[stream] += cell.decoders[stream].decode(data)
        if first:
            asyncio.get_running_loop().call_later(FLUSH_EVERY, self._flush, cell)

    def _close_fd(self, cell: Cell, stream: str) -> None:
        fd = cell.fds.pop(stream, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _read_result(self, cell: Cell) -> None:
        fd = cell.res_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            cell.result += data
            return
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        cell.res_fd = None
        self._maybe_finish(cell)

    def _flush(self, cell: Cell) -> None:
        for stream, text in cell.pending.items():
            while text:
                chunk, text = text[:MESSAGE_CHUNK], text[MESSAGE_CHUNK:]
                msg = output_message(cell.task_id, stream, cell.sent[stream], chunk)
                cell.sent[stream] += len(chunk)
                self._enqueue(self._call("MESSAGE", message={"data": _b64(msg)}))
            cell.pending[stream] = ""

    def _exited(self, cell: Cell, pidfd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        os.close(pidfd)
        self._reap(cell)

    def _reap(self, cell: Cell) -> None:
        if cell.status is not None:
            return
        try:
            pid, status = os.waitpid(cell.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = cell.pid, 0
        if pid == 0:
            return
        cell.status = status
        cell.ended_at = time.monotonic()
        asyncio.get_running_loop().call_later(PIPE_LINGER, self._linger_over, cell)
        self._maybe_finish(cell)

    def _linger_over(self, cell: Cell) -> None:
        """The cell ended but something it started still holds its pipes: stop waiting."""
        if cell.finished:
            return
        kill_cell(cell.pid)
        for stream in list(cell.fds):
            self._close_fd(cell, stream)
        if cell.res_fd is not None:
            asyncio.get_running_loop().remove_reader(cell.res_fd)
            os.close(cell.res_fd)
            cell.res_fd = None
        self._maybe_finish(cell)

    # ------------------------------------------------------------------ the end of a cell
    def _maybe_finish(self, cell: Cell) -> None:
        """The cell is over once its pipes are closed and either it left a result (closing
        them was its last act) or its process ended (it died without one)."""
        if cell.finished or cell.pipes_open:
            return
        if cell.status is None and not (cell.result and cell.memory is None and not cell.kill_requested):
            return
        cell.finished = True
        self._flush(cell)
        kill_cell(cell.pid)  # anything the cell left behind in its group
        self.cells.pop(cell.task_id, None)
        asyncio.get_running_loop().call_later(0.005, self._make_spare)  # after the update is on its way
        self.last_busy = time.monotonic()
        out = {"stdout": cell.sent.get("stdout", 0), "stderr": cell.sent.get("stderr", 0)}
        if cell.memory is not None:
            self.update(cell.task_id, "TASK_FAILED", message=cell.memory,
                        reason="REASON_CONTAINER_LIMITATION_MEMORY", data=json.dumps({"output": out}).encode())
            return
        if cell.kill_requested:
            self.update(cell.task_id, "TASK_KILLED", message="the cell was killed",
                        data=json.dumps({"output": out}).encode())
            return
        try:
            res = json.loads(cell.result) if cell.result else None
        except ValueError:
            res = None
        if not isinstance(res, dict):
            st = cell.status
            why = (f"was killed by signal {os.WTERMSIG(st)}" if os.WIFSIGNALED(st)
                   else f"exited with status {os.WEXITSTATUS(st)}")
            self.update(cell.task_id, "TASK_FAILED", message=f"the cell's process {why} without a result",
                        reason="REASON_COMMAND_EXECUTOR_FAILED", data=json.dumps({"output": out}).encode())
            return
        res["output"] = out
        if self.preload_errors:
            res["warnings"] = self.preload_errors
        data = json.dumps(res).encode()
        if len(data) > INLINE_RESULT_MAX:
            data = self._spill(cell.task_id, data, res)
        if res.get("ok"):
            self.update(cell.task_id, "TASK_FINISHED", data=data)
        else:
            self.update(cell.task_id, "TASK_FAILED", data=data,
                        message=f"the cell raised {res.get('ename')}: {res.get('evalue')}"[:1000])

    def _spill(self, task_id: str, data: bytes, res: dict[str, Any]) -> bytes:
        rel = os.path.join("cells", f"{task_id}.result.json")
        path = os.path.join(self.directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return json.dumps({"ok": res.get("ok"), "file": rel, "output": res["output"]}).encode()

    # ------------------------------------------------------------------ memory
    def _watch(self) -> None:
        now = time.monotonic()
        for cell in list(self.cells.values()):
            if cell.status is not None or cell.memory is not None or cell.watch.limit <= 0:
                continue
            if now - cell.last_tree > 0.2:  # scanning for the cell's own children costs more
                cell.last_tree = now
                cell.others = descendants(cell.pid)
            if cell.watch.over(rss(cell.pid), (rss(p) for p in cell.others)):
                cell.memory = limitation_message(cell.watch.limit_mb, cell.watch.peak)
                log.info("cell over its memory limit executor=%s task=%s: %s", self.executor_id,
                         cell.task_id, cell.memory)
                kill_cell(cell.pid)
        if self.cells:
            asyncio.get_running_loop().call_later(WATCH_EVERY, self._watch)
        else:
            self._watching = False

    # ------------------------------------------------------------------ kill / shutdown / idle
    def kill(self, task_id: str) -> None:
        cell = self.cells.get(task_id)
        if cell is None or cell.status is not None:
            return
        cell.kill_requested = True
        kill_cell(cell.pid, signal.SIGTERM)
        asyncio.get_running_loop().call_later(KILL_GRACE, kill_cell, cell.pid, signal.SIGKILL)

    def shutdown(self, why: str) -> None:
        if self.done is None or self.done.is_set():
            return
        log.info("executor shutting down executor=%s: %s", self.executor_id, why)
        for cell in list(self.cells.values()):
            cell.kill_requested = True
            kill_cell(cell.pid)
            if not cell.finished:
                cell.finished = True
                self.update(cell.task_id, "TASK_KILLED", message=f"the warm executor shut down ({why})")
        self.cells.clear()
        if self.spare is not None:
            self.spare.discard()
            self.spare = None
        self.done.set()

    async def _idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout))
            if not self.cells and time.monotonic() - self.last_busy >= self.idle_timeout:
                self.shutdown(f"idle for {self.idle_timeout:g} s")
                return

    # ------------------------------------------------------------------ calls to the agent
    def update(self, task_id: str, state: str, *, message: str | None = None, reason: str | None = None,
               data: bytes | None = None) -> None:
        status: dict[str, Any] = {"task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
                                  "executor_id": {"value": self.executor_id}, "timestamp": time.time(),
                                  "uuid": _b64(os.urandom(16))}  # random, as a uuid4
        if message:
            status["message"] = message
        if reason:
            status["reason"] = reason
        if data is not None:
            status["data"] = _b64(data)
        self.unacked[base64.b64decode(status["uuid"]).hex()] = status
        self._enqueue(self._call("UPDATE", update={"status": status}))

    def _enqueue(self, call: dict[str, Any]) -> None:
        assert self.outbox is not None
        self.outbox.put_nowait(call)

    async def _sender(self) -> None:
        assert self.outbox is not None and self.calls is not None
        while True:
            call = await self.outbox.get()
            for attempt in range(5):
                try:
                    status, text = await self.calls.post(json.dumps(call).encode())
                    if status >= 400:
                        log.warning("%s refused: %s %s", call["type"], status, text.decode("utf-8", "replace"))
                    break
                except AgentHttpError as e:
                    log.warning("%s failed (attempt %d): %s", call["type"], attempt + 1, e)
                    await asyncio.sleep(0.1 * (attempt + 1))
            self.outbox.task_done()

    async def _drain_outbox(self, timeout: float) -> None:
        assert self.outbox is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.outbox.join(), timeout)


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for var in ("MESOS_AGENT_ENDPOINT", "MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID"):
        if not os.environ.get(var):
            print(f"mesos-nb warm executor: ${var} is not set (the agent starts this program)", file=sys.stderr)
            return 2
    ex = PyExecutor()
    ex.load_preloads()
    return asyncio.run(ex.run())


__all__ = ["PyExecutor", "main"]

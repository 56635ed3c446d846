"""The master's ``--zk`` mode: contend for leadership, follow the leader, lead, or stop dead.

Why apart from :mod:`.server`: the shell serves HTTP and carries out effects whatever the
mode; this module decides *whether* this master may act. Data flow::

    start ── MasterContender (election.py, kazoo thread) ── callbacks through the asyncio loop
      on_leader_change(addr) ─► leader  (followers answer 307 to it; /master/redirect)
      on_elected ─► ZkRegistry.start + recover (worker thread; claims the epoch, fencing the
                    old leader) ─► server.become_leader(registry, state): a fresh core rebuilt
                    from the registry; agents get --agent-reregister-timeout to come back
      on_lost / a fenced or unavailable registry write ─► server.fail_stop(reason): exit
                    non-zero at once (Mesos aborts; a supervisor restarts the process, which
                    then contends again as a follower)

Until it has recovered the registry a newly elected master answers 503 (retry) rather than
acting on an empty state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from .election import ElectionError, MasterContender
from .registry_zk import RegistryError, RegistryFencedError, RegistryUnavailableError, ZkRegistry

log = logging.getLogger("mesos_nb.master.ha")

# Answered by every master, leading or not (Mesos: health and redirect; metrics say "elected").
_LOCAL_PATHS = frozenset({"/health", "/master/health", "/redirect", "/master/redirect", "/version",
                          "/metrics/snapshot"})

FATAL_REGISTRY_ERRORS: tuple[type[BaseException], ...] = (RegistryFencedError, RegistryUnavailableError)


class Leadership:
    """One master's standing in the ZooKeeper group (``leader`` is the current leader's host:port)."""

    def __init__(self, server: Any) -> None:
        """``server`` is the :class:`~mesos_nb.master.server.MasterServer` (not imported: it
        imports this module)."""
        self.server = server
        c = server.config
        assert c.zk is not None
        self.url = c.zk
        self.session_timeout = c.zk_session_timeout
        self.quorum = c.quorum
        self.leader: str | None = None
        self.elected = False  # elected in ZooKeeper (leading once the registry is recovered)
        self.elected_time: float | None = None
        self.contender: MasterContender | None = None
        self.registry: ZkRegistry | None = None
        # registry calls block (network): one worker thread keeps them in order
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="registry")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recovering: asyncio.Task | None = None

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        contender = MasterContender(
            self.url, self.server.master_info(), session_timeout=self.session_timeout, quorum=self.quorum,
            on_elected=self._on_elected, on_lost=self._on_lost, on_leader_change=self._on_leader_change, loop=loop)
        try:
            await loop.run_in_executor(None, contender.start)
        except ElectionError as e:
            raise RuntimeError(str(e)) from None
        self.contender = contender

    async def stop(self) -> None:
        contender, self.contender = self.contender, None
        if self._recovering is not None:
            self._recovering.cancel()
        if contender is not None:
            await asyncio.get_running_loop().run_in_executor(None, contender.stop)
        self.executor.shutdown(wait=False)

    def flags(self) -> dict[str, str]:
        return {"zk": redact_zk(self.url), "quorum": str(self.quorum or ""),
                "zk_session_timeout": f"{self.session_timeout}secs"}

    # ---------------------------------------------------------------- callbacks (loop thread)
    def _on_leader_change(self, leader: str | None) -> None:
        self.leader = leader
        log.info("event=leader_changed leader=%s self=%s", leader, self.server.address)

    def _on_lost(self, reason: str) -> None:
        self.server.fail_stop(f"lost leadership: {reason}")

    def _on_elected(self) -> None:
        self.elected = True
        assert self._loop is not None
        self.elected_time = self._loop.time()
        self._recovering = self._loop.create_task(self._recover())

    async def _recover(self) -> None:
        srv = self.server
        reg = ZkRegistry(self.url, session_timeout=self.session_timeout,
                         store_timeout=max(self.session_timeout, 1.0), fetch_timeout=max(self.session_timeout, 1.0))
        reg.master_id = srv.master_id
        reg.master_info = srv.master_info()

        def claim() -> Any:
            reg.start(connect_timeout=self.session_timeout)
            return reg.recover()

        try:
            state = await asyncio.get_running_loop().run_in_executor(self.executor, claim)
        except (RegistryError, Exception) as e:  # any failure to take over: stop, let another master lead
            srv.fail_stop(f"could not recover the registry: {type(e).__name__}: {e}")
            return
        self.registry = reg
        srv.become_leader(reg, state)

    def lead(self, registry: Any, state: Any) -> None:
        """Rebuild the server's core from the recovered registry and start leading."""
        from .outbox import Outbox

        srv = self.server
        old = srv.core
        core = srv._new_core()
        core.master_info = srv.master_info()
        core.recover(state, time.time())
        core.version = old.version + 1  # the read side caches by version
        srv.core = core
        srv.registry = registry
        srv.outbox = Outbox(registry, srv._deliver, submit=self.submit, fatal=FATAL_REGISTRY_ERRORS,
                            on_fatal=lambda e: srv.fail_stop(f"registry write failed: {type(e).__name__}: {e}"))
        srv.leading = True
        log.info("event=leading master_id=%s frameworks=%d agents=%d unreachable=%d gone=%d", srv.master_id,
                 len(core.frameworks), len(core.agents), len(core.unreachable), len(core.gone))
        srv.flush()

    # ---------------------------------------------------------------- registry writes
    def submit(self, write: Any, done: Any) -> None:
        """Run one registry write on the worker thread; report back on the loop thread."""
        loop = self._loop
        assert loop is not None
        fut = loop.run_in_executor(self.executor, write)

        def _finished(f: asyncio.Future) -> None:
            exc = None if f.cancelled() else f.exception()
            self.server.write_finished(done, exc)

        fut.add_done_callback(_finished)

    # ---------------------------------------------------------------- HTTP
    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.server.leading or request.path in _LOCAL_PATHS:
            return await handler(request)
        if self.elected:
            return web.Response(status=503, text="This master was just elected and is recovering its registry; "
                                                 "retry shortly")
        leader = self.leader
        if leader is None or leader == self.server.address:
            return web.Response(status=503, text="No master is currently leading; retry shortly")
        return web.Response(status=307, headers={"Location": f"//{leader}{request.path_qs}"})


EXIT_FAIL_STOP = 1


def redact_zk(url: str) -> str:
    """The zk:// URL without its digest credentials (flags are public in /master/state)."""
    head, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{head}://***@{rest.split('@', 1)[1]}"
    return url


def fail_stop(server: Any, reason: str) -> None:
    """Stop acting as leader at once. A master process exits non-zero (Mesos aborts; a
    supervisor restarts it, and it contends again as a follower). An embedded master
    (``exit_on_fail_stop`` False, for tests) stops leading and drops its connections."""
    log.critical("event=fail_stop master_id=%s reason=%s", server.master_id, reason)
    if server.exit_on_fail_stop:
        logging.shutdown()
        os._exit(EXIT_FAIL_STOP)
    server.leading = False
    if server.leadership is not None:
        server.leadership.elected = False
    loop = asyncio.get_running_loop()
    for chan in list(server.channels):
        loop.create_task(chan.ws.close())
    for st in list(server.streams.values()):
        st.closed = True
        st.wake.set()


__all__ = ["EXIT_FAIL_STOP", "FATAL_REGISTRY_ERRORS", "Leadership", "fail_stop"]

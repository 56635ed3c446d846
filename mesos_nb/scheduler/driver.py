"""The asyncio scheduler driver: one framework's connection to the master.

Data flow: ``start()`` spawns ``_run()``, which POSTs SUBSCRIBE and reads the chunked
RecordIO response for as long as it lives, decoding events and calling the user's
:class:`Scheduler` callbacks in order. Every other call (ACCEPT, KILL, ...) is a separate
POST carrying ``Mesos-Stream-Id``. When the stream breaks, the heartbeat watchdog fires or the
master is unreachable, ``_run()`` waits a jittered exponential backoff and re-subscribes with
the framework id it was given (a *failover* re-subscription: the master keeps the tasks for
``failover_timeout`` seconds). 307 answers move the driver to the leader named in ``Location``.
Given ``zk://…`` the driver follows the leading master in ZooKeeper
(:class:`~mesos_nb.protocol.zk_detector.MasterDetector`): a new leader cuts the backoff short
and the framework re-subscribes to it with its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import operator
from typing import Any

import aiohttp
import msgspec

from mesos_nb.protocol.client_auth import access_for
from mesos_nb.protocol.messages import (
    ID,
    Call,
    Event,
    FrameworkInfo,
    InverseOffer,
    Offer,
    ProtocolError,
    Subscribe,
    TaskStatus,
    encode,
)
from mesos_nb.protocol.messages import Filters as Filters
from mesos_nb.protocol.recordio import RecordIOError

from .calls import API_PATH, MAX_REDIRECTS, MesosError, SchedulerCalls
from .leader import LeaderFollower
from .sender import CallSender
from .stream import (
    Backoff,
    EventStream,
    StreamWatch,
    Watchdog,
    _first_line,
    describe_net_error,
    normalize_master,
    redirect_target,
)

log = logging.getLogger("mesos_nb.scheduler")


def _read_only(attr: str, doc: str) -> Any:
    """A public view of state that only the driver's own loop may change."""
    return property(operator.attrgetter(attr), doc=doc)


async def _read_chunk(content: aiohttp.StreamReader) -> bytes:
    """The stream's next chunk (``b""`` at its end): a plain await, no task or timer per chunk.

    The heartbeat watchdog is a timer of its own (:class:`~.stream.StreamWatch`) that ends a
    silent stream by setting an exception on it. Not ``asyncio.wait_for``: before Python 3.12 it swallows a
    cancellation that comes in the same loop step as the data (it returns the chunk instead),
    and ``stop()``, which cancels the read loop, then waited for ever on a stream that keeps
    sending events; a plain await of the reader keeps the cancellation."""
    return await content.readany()


class Scheduler:
    """Framework callbacks. Override what you need; each may be a plain or an ``async`` method.

    Callbacks run one at a time, in event order, on the driver's event loop; a long ``await``
    in one delays the next event (and the implicit acknowledgement of an update).
    """

    def subscribed(self, driver: Any, framework_id: str, master_info: Any) -> Any: ...

    def offers(self, driver: Any, offers: list[Offer]) -> Any: ...

    def rescind(self, driver: Any, offer_id: str) -> Any: ...

    def inverse_offers(self, driver: Any, inverse_offers: list[InverseOffer]) -> Any:
        """The master asks for agents back: each names the agent and its maintenance window.
        Answer with ``driver.accept_inverse_offers`` / ``decline_inverse_offers`` (advisory)."""

    def rescind_inverse_offer(self, driver: Any, inverse_offer_id: str) -> Any: ...

    def update(self, driver: Any, status: TaskStatus) -> Any: ...

    def message(self, driver: Any, agent_id: str, executor_id: str, data: bytes) -> Any: ...

    def failure(self, driver: Any, agent_id: str | None, executor_id: str | None, status: int | None) -> Any: ...

    def error(self, driver: Any, message: str) -> Any: ...

    def disconnected(self, driver: Any) -> Any: ...

    def heartbeat(self, driver: Any) -> Any: ...


class _Fatal(Exception):
    """The master refused the subscription for good (4xx, ERROR event): stop re-subscribing."""


class _StreamLost(Exception):
    pass


class SchedulerDriver(SchedulerCalls):
    """asyncio-native Mesos v1 scheduler driver.

    ``master`` is ``host:port``, ``http(s)://host:port`` or ``zk://``. ``principal``/``secret``
    (HTTP Basic on every request; else those of the environment or of a local cluster, see
    :mod:`mesos_nb.protocol.client_auth`) and ``ca_file`` (the CA of an https master) are optional.
    """

    stop_timeout = 10.0  # stop(): how long the event loop may take to end before it is cut off

    def __init__(
        self,
        scheduler: Scheduler,
        framework: FrameworkInfo,
        master: str,
        *,
        implicit_acknowledgements: bool = True,
        principal: str | None = None,
        secret: str | None = None,
        ca_file: str | None = None,
        heartbeat_misses: int = 5,
        backoff_max: float = 15.0,
        backoff_base: float = 0.25,
        start_timeout: float = 10.0,
        call_timeout: float = 30.0,
        reconcile_on_subscribe: bool = False,
        zk_session_timeout: float = 10.0,
    ) -> None:
        self.scheduler = scheduler
        self._master = normalize_master(master)
        access = access_for(self._master, principal, secret, ca_file)
        self._ssl = access.ssl_context("https://")  # verifying, for https:// masters (a zk:// leader too)
        if access.credential is not None and not framework.principal:
            framework = msgspec.structs.replace(framework, principal=access.credential.principal)
        self._framework = framework
        # zk://: the leader's URL is filled in by the detector; until then there is nowhere to go
        self.zk_url: str | None = self._master if self._master.startswith("zk://") else None
        self._detector: Any = None
        self.implicit_acknowledgements = implicit_acknowledgements
        self._auth = access.headers() or None  # HTTP Basic
        self.heartbeat_misses = heartbeat_misses
        self.backoff = Backoff(base=backoff_base, maximum=backoff_max)
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.reconcile_on_subscribe = reconcile_on_subscribe
        self.zk_session_timeout = zk_session_timeout
        self.watchdog = Watchdog(misses=heartbeat_misses)

        self._framework_id: str | None = framework.id.value if framework.id else None
        self._stream_id: str | None = None
        self._connected = False
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None  # the SUBSCRIBE stream
        self._sender: CallSender | None = None  # every other call, on a few kept-alive connections
        self._task: asyncio.Task | None = None
        self._subscribed_evt: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._fatal: BaseException | None = None
        self._last_error: str | None = None
        self._background: set[asyncio.Task] = set()
        self.master_info: Any = None
        self.subscriptions = 0  # how many SUBSCRIBED events this driver has seen
        # the object handed to callbacks (the blocking facade substitutes itself)
        self._callback_driver: Any = self

    # ------------------------------------------------------------------ properties
    framework_id = _read_only("_framework_id", "str | None: the framework's id, the master's once SUBSCRIBED.")
    framework = _read_only("_framework", "FrameworkInfo: as subscribed, with the id the master gave.")
    stream_id = _read_only("_stream_id", "str | None: ``Mesos-Stream-Id`` of the live subscription.")
    connected = _read_only("_connected", "bool: whether a subscription is live (SUBSCRIBED, stream up).")
    master = _read_only("_master", "str: the master's URL now (the leader, after a redirect or election).")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Subscribe; return the framework id once SUBSCRIBED.

        Raises ``ConnectionError`` (one sentence) if no subscription succeeds within
        ``start_timeout`` seconds, or :class:`MesosError` if the master refuses it.
        """
        if self._task is not None:
            raise RuntimeError("the driver is already started")
        self._stopping = False
        self._subscribed_evt = asyncio.Event()
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(headers=self._auth, connector=aiohttp.TCPConnector(ssl=self._ssl))
        self._sender = CallSender(self._auth, self._ssl, self.call_timeout)
        if self.zk_url is not None and self._detector is None:
            try:
                await self._start_detector()
            except Exception as e:
                await self._shutdown_loop()
                raise ConnectionError(f"cannot follow the masters at {self.zk_url}: {e}") from None
        self._task = asyncio.create_task(self._run(), name=f"mesos-driver-{self._framework.name}")
        waiter = asyncio.create_task(self._subscribed_evt.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, self._task}, timeout=self.start_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if self._subscribed_evt.is_set() and self._framework_id:
            return self._framework_id
        fatal, why = self._fatal, self._last_error
        await self._shutdown_loop()
        if isinstance(fatal, MesosError):
            raise fatal
        if fatal is not None:
            raise ConnectionError(f"the master at {self._master} refused the subscription: {fatal}")
        reason = f" ({why})" if why else ""
        raise ConnectionError(f"could not subscribe to the Mesos master at {self._master} within "
                              f"{self.start_timeout:g} s{reason}")

    async def stop(self, failover: bool = False) -> None:
        """Stop the driver. Unless ``failover``, TEARDOWN the framework (its tasks are killed);
        with ``failover`` just close the stream: the master keeps the framework and its tasks for
        ``failover_timeout`` seconds so that another driver can re-subscribe with its id.
        Bounded: the TEARDOWN by ``call_timeout``, the event loop's end by ``stop_timeout``
        (past it an ERROR line says so and the connection is closed under the loop)."""
        if not failover and self._connected and self._framework_id:
            self._stopping = True  # the stream ending now is expected, not an error
            try:
                await self._call(Call(type="TEARDOWN"))
            except (MesosError, ConnectionError) as e:
                log.info("teardown failed: %s", e)
        await self._shutdown_loop()

    async def join(self) -> None:
        """Wait until the driver stops (``stop()``, ``teardown()``, or a fatal ERROR)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def _start_detector(self) -> None:
        det = LeaderFollower(self.zk_url or "", self.zk_session_timeout, self._on_leader)
        await det.start()
        self._detector = det

    def _on_leader(self, leader: str | None) -> None:
        """A new leading master: send the next (re-)subscription there, now."""
        if leader is None:
            return
        url = normalize_master(leader)
        if url == self._master:
            return
        log.info("leading master detected master=%s zk=%s", url, self.zk_url)
        self._master = url
        self.backoff.reset()
        if self._wake is not None:
            self._wake.set()

    async def _shutdown_loop(self) -> None:
        self._stopping = True
        det, self._detector = self._detector, None
        if det is not None:
            await det.stop()
        if self._wake is not None:
            self._wake.set()
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=self.stop_timeout)
            if not done:  # a callback that ignores cancellation: close the connection under it
                log.error("framework_id=%s: the driver's event loop did not end within %g s of stop() "
                          "(a scheduler callback ignores cancellation); closing its connection anyway",
                          self._framework_id, self.stop_timeout)
            elif not task.cancelled():
                task.exception()  # retrieved: how the loop ended is not the stopper's concern
        for t in list(self._background):
            t.cancel()
        self._connected = False
        self._stream_id = None
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ subscription loop
    async def _run(self) -> None:
        while not self._stopping:
            fatal = False
            det = self._detector
            if det is not None and det.leader is not None:
                self._master = normalize_master(det.leader)  # ZooKeeper is the authority, not a 307
            if self._master.startswith("zk://"):  # no leader detected yet
                assert self._wake is not None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                self._wake.clear()
                continue
            try:
                await self._subscribe_once()
                self._last_error = "the master closed the event stream"
            except _Fatal as e:
                self._fatal = e.__cause__ or e
                log.log(logging.DEBUG if self._stopping else logging.WARNING,
                        "subscription ended: %s", self._fatal)
                fatal = True
            except asyncio.CancelledError:
                self._connected = False
                self._stream_id = None
                raise
            except _StreamLost as e:
                self._last_error = str(e)
                if not self._stopping:
                    log.warning("%s; re-subscribing", e)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                self._last_error = describe_net_error(e, self._master)
                log.info("master unreachable: %s", self._last_error)
            except (RecordIOError, ProtocolError) as e:
                self._last_error = f"bad event stream: {e}"
                log.warning("%s; re-subscribing", self._last_error)
            was_subscribed = self._connected
            self._connected = False
            self._stream_id = None
            if was_subscribed:
                await self._callback("disconnected")
                self.backoff.reset()  # a working subscription broke: retry quickly
            if fatal or self._stopping:
                break
            delay = self.backoff.next()
            log.debug("re-subscribing in %.2f s", delay)
            assert self._wake is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if not self._stopping:
                self._wake.clear()
        self._connected = False

    async def _subscribe_once(self) -> bool:
        """One SUBSCRIBE stream, read until it ends. Returns whether SUBSCRIBED arrived."""
        assert self._session is not None
        fw = self._framework
        fid = ID(value=self._framework_id) if self._framework_id else None
        if fid is not None and (fw.id is None or fw.id.value != fid.value):
            fw = self._framework = msgspec.structs.replace(fw, id=fid)
        call = Call(type="SUBSCRIBE", framework_id=fid, subscribe=Subscribe(framework_info=fw))
        body = encode(call)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.start_timeout, sock_read=None)
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._session.post(
                self._master + API_PATH,
                data=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                allow_redirects=False,
                timeout=timeout,
            )
            if resp.status == 307 and resp.headers.get("Location"):
                new = redirect_target(self._master, resp.headers["Location"])
                resp.release()
                log.info("master %s redirected to leader %s", self._master, new)
                self._master = new
                continue
            break
        else:
            raise _StreamLost("too many redirects")
        try:
            if resp.status != 200:
                text = _first_line(await resp.text())
                if 400 <= resp.status < 500 and resp.status != 408:
                    raise _Fatal() from MesosError(resp.status, text)
                raise _StreamLost(f"SUBSCRIBE answered {resp.status} {text}".strip())
            stream_id = resp.headers.get("Mesos-Stream-Id")
            return await self._read_stream(resp, stream_id)
        finally:
            resp.close()

    async def _read_stream(self, resp: aiohttp.ClientResponse, stream_id: str | None) -> bool:
        events = EventStream()
        self.watchdog = Watchdog(misses=self.heartbeat_misses, interval=self.watchdog.interval)
        self.watchdog.beat()
        watch = StreamWatch(self.watchdog, resp.content, self.heartbeat_misses, _StreamLost)
        subscribed = False
        try:
            while True:
                chunk = await _read_chunk(resp.content)
                if not chunk:
                    return subscribed
                for event in events.feed(chunk):
                    self.watchdog.beat()
                    if event.type == "SUBSCRIBED":
                        subscribed = True
                        self._stream_id = stream_id
                    await self._dispatch(event)
                    if subscribed and event.type == "SUBSCRIBED":
                        watch.rearm()  # the master's heartbeat interval is known now
                    if self._stopping:  # stop() even when its cancel was swallowed (by a callback)
                        return subscribed
        finally:
            watch.cancel()

    # ------------------------------------------------------------------ events
    async def _dispatch(self, event: Event) -> None:
        t = event.type
        if t == "SUBSCRIBED" and event.subscribed is not None:
            sub = event.subscribed
            self._framework_id = sub.framework_id.value
            self._framework = msgspec.structs.replace(self._framework, id=ID(value=self._framework_id))
            self.watchdog.set_interval(sub.heartbeat_interval_seconds)
            self.master_info = sub.master_info
            self._connected = True
            self.subscriptions += 1
            self._last_error = None
            if self._subscribed_evt is not None:
                self._subscribed_evt.set()
            log.info("subscribed framework_id=%s master=%s", self._framework_id, self._master)
            await self._callback("subscribed", self._framework_id, sub.master_info)
            if self.reconcile_on_subscribe:
                self._spawn(self.reconcile())
        elif t == "OFFERS" and event.offers is not None:
            await self._callback("offers", list(event.offers.offers))
        elif t == "RESCIND" and event.rescind is not None:
            await self._callback("rescind", event.rescind.offer_id.value)
        elif t == "INVERSE_OFFERS" and event.inverse_offers is not None:
            raw = event.inverse_offers.get("inverse_offers") if isinstance(event.inverse_offers, dict) else None
            try:
                inverse = msgspec.convert(raw or [], list[InverseOffer])
            except msgspec.ValidationError as e:
                raise ProtocolError(f"bad INVERSE_OFFERS event: {e}") from None
            await self._callback("inverse_offers", inverse)
        elif t == "RESCIND_INVERSE_OFFER" and isinstance(event.rescind_inverse_offer, dict):
            oid = (event.rescind_inverse_offer.get("inverse_offer_id") or {}).get("value")
            await self._callback("rescind_inverse_offer", oid)
        elif t == "UPDATE" and event.update is not None:
            status = event.update.status
            await self._callback("update", status)
            if self.implicit_acknowledgements and status.uuid and status.agent_id is not None:
                # Not awaited: the next event need not wait for this round trip. The agent sends
                # a task's next update only after this one is acknowledged, so per-task order holds.
                self._implicit_ack(status)
        elif t == "MESSAGE" and event.message is not None:
            m = event.message
            await self._callback("message", m.agent_id.value, m.executor_id.value, m.data)
        elif t == "FAILURE" and event.failure is not None:
            f = event.failure
            await self._callback(
                "failure",
                f.agent_id.value if f.agent_id else None,
                f.executor_id.value if f.executor_id else None,
                f.status,
            )
        elif t == "ERROR":
            message = event.error.message if event.error is not None else "unknown error"
            if self._stopping:
                raise _Fatal() from MesosError(0, message)
            log.warning("master sent ERROR: %s", message)
            await self._callback("error", message)
            # Mesos sends ERROR when the framework is removed or failed over elsewhere: the
            # subscription is over for good.
            raise _Fatal() from MesosError(0, message)
        elif t == "HEARTBEAT":
            await self._callback("heartbeat")
        else:
            log.debug("ignoring event %s", t)

    async def _callback(self, name: str, *args: Any) -> None:
        fn = getattr(self.scheduler, name, None)
        if fn is None:
            return
        try:
            res = fn(self._callback_driver, *args)
            if inspect.isawaitable(res):
                await res
        except asyncio.CancelledError:
            raise
        except (MesosError, ConnectionError) as e:
            if not self._stopping:
                log.exception("scheduler callback %s raised", name)
            else:  # e.g. a DECLINE answered "Framework cannot be found" after our own TEARDOWN
                log.info("framework_id=%s: a call of the %s callback was refused after stop(): %s",
                         self._framework_id, name, e)
        except Exception:
            log.exception("scheduler callback %s raised", name)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)

        def _done(task: asyncio.Task) -> None:
            self._background.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.warning("background call failed: %s", task.exception())

        t.add_done_callback(_done)


__all__ = ["Filters", "MesosError", "Scheduler", "SchedulerDriver"]

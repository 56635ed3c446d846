"""A synchronous facade over :class:`SchedulerDriver` for scripts and notebooks.

The asyncio driver runs on a private event-loop thread; each method submits the coroutine to
that loop and waits for its result. Callbacks run on the loop thread and receive the
*blocking* driver, so a callback may call ``driver.launch(...)`` directly: when called from the
loop thread itself the call is scheduled instead of waited for (waiting would deadlock) and
its failure, if any, is logged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any

from mesos_nb.protocol import event_loop
from mesos_nb.protocol.messages import Filters, FrameworkInfo, Operation, TaskInfo, TaskStatus

from .driver import Scheduler, SchedulerDriver

log = logging.getLogger("mesos_nb.scheduler")


class BlockingSchedulerDriver:
    def __init__(
        self,
        scheduler: Scheduler,
        framework: FrameworkInfo,
        master: str,
        **kwargs: Any,
    ) -> None:
        self._kwargs = kwargs
        self._scheduler = scheduler
        self._framework = framework
        self._master = master
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._driver: SchedulerDriver | None = None
        self._ready = threading.Event()

    # ------------------------------------------------------------------ plumbing
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        loop = event_loop.new_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="mesos-nb-driver", daemon=True)
        self._thread.start()
        self._ready.wait()
        self._loop = loop
        return loop

    def _on_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _submit(self, coro: Any, timeout: float | None = None) -> Any:
        loop = self._ensure_loop()
        if self._on_loop_thread():
            task = loop.create_task(coro)
            task.add_done_callback(_log_failure)
            return None
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        return fut.result(timeout)

    @property
    def driver(self) -> SchedulerDriver:
        if self._driver is None:
            raise RuntimeError("the driver is not started")
        return self._driver

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        loop = self._ensure_loop()

        async def make_and_start() -> str:
            self._driver = SchedulerDriver(self._scheduler, self._framework, self._master, **self._kwargs)
            self._driver._callback_driver = self
            return await self._driver.start()

        try:
            return asyncio.run_coroutine_threadsafe(make_and_start(), loop).result()
        except BaseException:
            self._close_loop()
            raise

    def stop(self, failover: bool = False) -> None:
        if self._driver is not None and self._loop is not None:
            if self._on_loop_thread():
                self._submit(self._driver.stop(failover))
                return
            try:
                self._submit(self._driver.stop(failover), timeout=60)
            finally:
                self._close_loop()

    def join(self, timeout: float | None = None) -> bool:
        """Block until the driver stops; returns False if ``timeout`` passed first."""
        if self._driver is None or self._loop is None:
            return True
        fut = asyncio.run_coroutine_threadsafe(self._driver.join(), self._loop)
        try:
            fut.result(timeout)
            return True
        except TimeoutError:
            fut.cancel()
            return False

    def _close_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        self._loop = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self._thread = None

    def __enter__(self) -> BlockingSchedulerDriver:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ properties
    @property
    def framework_id(self) -> str | None:
        return self._driver.framework_id if self._driver else None

    @property
    def stream_id(self) -> str | None:
        return self._driver.stream_id if self._driver else None

    @property
    def connected(self) -> bool:
        return bool(self._driver and self._driver.connected)

    @property
    def master(self) -> str:
        return self._driver.master if self._driver else self._master

    # ------------------------------------------------------------------ calls
    def accept(self, offer_ids: Any, operations: Iterable[Operation], filters: Filters | None = None) -> None:
        return self._submit(self.driver.accept(offer_ids, list(operations), filters))

    def launch(self, offer_ids: Any, tasks: Iterable[TaskInfo], filters: Filters | None = None) -> None:
        return self._submit(self.driver.launch(offer_ids, list(tasks), filters))

    def decline(self, offer_ids: Any, refuse_seconds: float | None = None) -> None:
        return self._submit(self.driver.decline(offer_ids, refuse_seconds))

    def accept_inverse_offers(self, inverse_offer_ids: Any, filters: Filters | None = None) -> None:
        return self._submit(self.driver.accept_inverse_offers(inverse_offer_ids, filters))

    def decline_inverse_offers(self, inverse_offer_ids: Any, filters: Filters | None = None) -> None:
        return self._submit(self.driver.decline_inverse_offers(inverse_offer_ids, filters))

    def revive(self, roles: Iterable[str] | None = None) -> None:
        return self._submit(self.driver.revive(roles))

    def suppress(self, roles: Iterable[str] | None = None) -> None:
        return self._submit(self.driver.suppress(roles))

    def kill(self, task_id: Any, agent_id: Any = None) -> None:
        return self._submit(self.driver.kill(task_id, agent_id))

    def shutdown(self, executor_id: Any, agent_id: Any) -> None:
        return self._submit(self.driver.shutdown(executor_id, agent_id))

    def acknowledge(self, status: TaskStatus) -> None:
        return self._submit(self.driver.acknowledge(status))

    def reconcile(self, tasks: Iterable[Any] | None = None) -> None:
        return self._submit(self.driver.reconcile(list(tasks) if tasks else None))

    def message(self, agent_id: Any, executor_id: Any, data: bytes) -> None:
        return self._submit(self.driver.message(agent_id, executor_id, data))

    def teardown(self) -> None:
        if self._on_loop_thread():
            self._submit(self.driver.teardown())
            return
        try:
            self._submit(self.driver.teardown(), timeout=60)
        finally:
            self._close_loop()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("driver call from a callback failed: %s", task.exception())


__all__ = ["BlockingSchedulerDriver"]

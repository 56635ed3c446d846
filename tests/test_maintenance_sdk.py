"""The SDK's side of maintenance against a real master and a real agent: a framework built
on ``SchedulerDriver`` gets typed inverse offers and their rescission through its callbacks,
and answers them with ``accept_inverse_offers`` / ``decline_inverse_offers`` (shown by
GET_MAINTENANCE_STATUS); DRAIN_AGENT with ``mark_gone`` over the operator API ends with the
agent GONE and a partition-aware framework's tasks TASK_GONE_BY_OPERATOR."""

from __future__ import annotations

import time

import pytest
from conftest import async_wait_for
from test_maintenance_http import HOUR_NS, call, start_agents

from mesos_nb.master.server import MasterConfig, MasterServer
from mesos_nb.protocol.messages import Capability, Filters, FrameworkInfo
from mesos_nb.scheduler import (
    BlockingSchedulerDriver,
    InverseOffer,
    Scheduler,
    SchedulerDriver,
    command_task,
)

pytest.importorskip("mesos_nb.agent.process")

M1 = {"hostname": "127.0.0.1", "ip": "127.0.0.1"}


@pytest.fixture
async def one_agent(tmp_path):
    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1, agent_secret="s3cret"))
    await master.start()
    agents = await start_agents(master, tmp_path, "127.0.0.1")
    try:
        yield master, agents
    finally:
        await agents.stop(kill_tasks=True)
        await master.stop()


class Maintained(Scheduler):
    """Runs one long task; records the inverse offers and rescissions it is given."""

    def __init__(self, *task_ids: str) -> None:
        self.task_ids = task_ids or ("long",)
        self.launched = False
        self.states: dict[str, str] = {}
        self.inverse: list[InverseOffer] = []
        self.rescinded: list[str] = []

    async def offers(self, driver, offers):
        for o in offers:
            if not self.launched:
                self.launched = True
                tasks = [command_task(o, "sleep 600", cpus=0.1, mem=16, task_id=t) for t in self.task_ids]
                await driver.launch([o.id], tasks)
            else:
                await driver.decline([o.id], refuse_seconds=1)

    def inverse_offers(self, driver, inverse_offers):
        self.inverse.extend(inverse_offers)

    def rescind_inverse_offer(self, driver, inverse_offer_id):
        self.rescinded.append(inverse_offer_id)

    def update(self, driver, status):
        self.states[status.task_id.value] = status.state


def window(start_ns: int) -> dict:
    return {"windows": [{"machine_ids": [M1], "unavailability": {"start": {"nanoseconds": start_ns},
                                                                 "duration": {"nanoseconds": HOUR_NS}}}]}


async def statuses(url: str) -> list[str]:
    st = (await call(url, {"type": "GET_MAINTENANCE_STATUS"}))["get_maintenance_status"]["status"]
    return [s["status"] for d in st.get("draining_machines", []) for s in d.get("statuses", [])]


async def test_sdk_framework_gets_typed_inverse_offers_rescinds_and_answers_them(one_agent):
    master, _ = one_agent
    url = master.url
    fw = Maintained()
    driver = SchedulerDriver(fw, FrameworkInfo(user="tester", name="maintained"), f"127.0.0.1:{master.port}")
    await driver.start()
    try:
        await async_wait_for(lambda: fw.states.get("long") == "TASK_RUNNING", timeout=30, message="the task running")
        aid = next(iter(master.core.agents))
        start_ns = int((time.time() + 3600) * 1e9)
        schedule = {"update_maintenance_schedule": {"schedule": window(start_ns)}}
        await call(url, {"type": "UPDATE_MAINTENANCE_SCHEDULE", **schedule})
        await async_wait_for(lambda: fw.inverse, timeout=20, message="an inverse offer")
        first = fw.inverse[0]
        assert isinstance(first, InverseOffer)
        assert first.agent_id is not None and first.agent_id.value == aid
        assert first.framework_id.value == driver.framework_id
        assert first.unavailability.start.nanoseconds == start_ns
        assert first.unavailability.duration is not None and first.unavailability.duration.nanoseconds == HOUR_NS
        # the machine leaves the schedule: the unanswered inverse offer is rescinded by id
        await call(url, {"type": "UPDATE_MAINTENANCE_SCHEDULE",
                         "update_maintenance_schedule": {"schedule": {"windows": []}}})
        await async_wait_for(lambda: fw.rescinded == [first.id.value], timeout=20, message="the rescission")
        # back in the schedule: a fresh inverse offer, declined through the SDK
        await call(url, {"type": "UPDATE_MAINTENANCE_SCHEDULE", **schedule})
        await async_wait_for(lambda: len(fw.inverse) == 2, timeout=20, message="a second inverse offer")
        second = fw.inverse[1]
        assert second.id != first.id
        await driver.decline_inverse_offers([second], Filters(refuse_seconds=0.5))
        await async_wait_for(lambda: answered(url, ["DECLINE"]), timeout=10, message="the DECLINE recorded")
        # the refusal filter (0.5 s) passes, the master asks again; this time the SDK accepts
        await async_wait_for(lambda: len(fw.inverse) == 3, timeout=20, message="a third inverse offer")
        await driver.accept_inverse_offers(fw.inverse[2].id.value)
        await async_wait_for(lambda: answered(url, ["ACCEPT"]), timeout=10, message="the ACCEPT recorded")
    finally:
        await driver.stop()


async def answered(url: str, want: list[str]) -> bool:
    return await statuses(url) == want


def test_blocking_driver_answers_inverse_offers_from_a_callback(one_agent_thread):
    """The blocking facade's calls, made from inside its callback (scheduled on the loop)."""
    master_port, schedule_it, status_of = one_agent_thread

    class Accepting(Maintained):
        def inverse_offers(self, driver, inverse_offers):
            super().inverse_offers(driver, inverse_offers)
            driver.accept_inverse_offers([io.id for io in inverse_offers])

    fw = Accepting()
    driver = BlockingSchedulerDriver(fw, FrameworkInfo(user="tester", name="blocking"), f"127.0.0.1:{master_port}")
    driver.start()
    try:
        from conftest import wait_for

        wait_for(lambda: fw.states.get("long") == "TASK_RUNNING", timeout=30, message="the task running")
        schedule_it()
        wait_for(lambda: status_of() == ["ACCEPT"], timeout=20, message="the ACCEPT recorded")
        assert len(fw.inverse) == 1
    finally:
        driver.stop()


@pytest.fixture
def one_agent_thread(tmp_path):
    """A master and one agent on a private loop thread, for the blocking driver's test."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    master = MasterServer(MasterConfig(port=0, allocation_interval=0.1, agent_secret="s3cret"))
    run(master.start())
    agents = run(start_agents(master, tmp_path, "127.0.0.1"))
    start_ns = int((time.time() + 3600) * 1e9)

    def schedule_it() -> None:
        run(call(master.url, {"type": "UPDATE_MAINTENANCE_SCHEDULE",
                              "update_maintenance_schedule": {"schedule": window(start_ns)}}))

    try:
        yield master.port, schedule_it, lambda: run(statuses(master.url))
    finally:
        run(agents.stop(kill_tasks=True))
        run(master.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


async def test_drain_agent_mark_gone_over_http_ends_gone_with_task_gone_by_operator(one_agent):
    master, _ = one_agent
    url = master.url
    fw = Maintained("a", "b")
    info = FrameworkInfo(user="tester", name="aware", capabilities=[Capability(type="PARTITION_AWARE")])
    driver = SchedulerDriver(fw, info, f"127.0.0.1:{master.port}")
    await driver.start()
    try:
        await async_wait_for(lambda: fw.states.get("a") == fw.states.get("b") == "TASK_RUNNING", timeout=30,
                             message="both tasks running")
        aid = next(iter(master.core.agents))
        await call(url, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": aid}, "mark_gone": True,
                                                                "max_grace_period": {"seconds": 1}}})
        await async_wait_for(lambda: fw.states.get("a") == fw.states.get("b") == "TASK_GONE_BY_OPERATOR",
                             timeout=30, message=lambda: f"both tasks gone by operator: {fw.states}")

        async def gone() -> bool:
            agents = (await call(url, {"type": "GET_AGENTS"}))["get_agents"]["agents"]
            return not agents

        await async_wait_for(gone, timeout=20, message="the agent removed from GET_AGENTS")
        assert aid in master.core.gone
        # a gone agent is no longer known to drain (as Mesos: neither registered nor unreachable)
        text = await call(url, {"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": aid}}}, 400)
        assert "No agent found" in text
        tasks = (await call(url, {"type": "GET_TASKS"}))["get_tasks"]
        done = {t["task_id"]["value"]: t["state"] for t in tasks.get("completed_tasks", [])}
        assert done == {"a": "TASK_GONE_BY_OPERATOR", "b": "TASK_GONE_BY_OPERATOR"}
    finally:
        await driver.stop()

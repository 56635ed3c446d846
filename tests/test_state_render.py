"""The state documents' task blocks: reused while unchanged, re-rendered where a task changed.

Driven with the master's real records (:class:`~mesos_nb.master.model.Task`); what is asserted
is what gets encoded again and that the result equals a render from scratch.
"""

from __future__ import annotations

import asyncio

from mesos_nb.master import task_blocks
from mesos_nb.master.model import Task
from mesos_nb.master.task_blocks import TaskBlocks, array, cut
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.resources import Resources


def _tasks(n: int, start: int = 0) -> list[Task]:
    res = Resources.parse("cpus:1;mem:8")
    return [Task(id=f"t{i}", framework_id="f", agent_id=f"a{i % 7}", name="t", role="*", resources=res,
                 info=m.TaskInfo(name="t", task_id=m.ID(value=f"t{i}"), agent_id=m.ID(value="a"), resources=[]))
            for i in range(start, start + n)]


async def _nothing() -> None:
    pass


def _render(blocks: TaskBlocks, tasks: list[Task], sums: bool = True) -> tuple[bytes, list]:
    async def go():
        blocks.begin()
        bs = await blocks.blocks(tasks, sums, _nothing)
        blocks.end()
        return bs

    bs = asyncio.run(go())
    out: list[bytes] = []
    array(out, bs)
    return b"[" + b"".join(out) + b"]", bs


def _fresh(tasks: list[Task]) -> bytes:
    return _render(TaskBlocks(_encode), tasks)[0]


def _encode(t: Task) -> bytes:
    return f'{{"id":"{t.id}","state":"{t.state}","n":{len(t.statuses)}}}'.encode()


def test_cut_edges_are_content_defined_one_task_removed_moves_no_other_edge():
    tasks = _tasks(5000)
    ends = cut(tasks)
    assert ends[-1] == 5000 and 5 < len(ends) < 100  # ~5000 / 256 blocks
    first = [tasks[e - 1].id for e in ends]
    # A task inside a middle block that is not itself an edge; str hashes change with each
    # process's PYTHONHASHSEED, so the block must be searched for, not assumed to be long.
    edges = set(ends)
    victim = next(e - 2 for e in ends[len(ends) // 2:] if e - 1 not in edges and e - 2 >= 0)
    assert victim + 1 not in edges
    rest = tasks[:victim] + tasks[victim + 1:]
    assert [rest[e - 1].id for e in cut(rest)] == first


def test_unchanged_blocks_are_reused_and_a_change_re_encodes_that_task_only():
    tasks = _tasks(3000)
    tb = TaskBlocks(_encode)
    body, blocks = _render(tb, tasks)
    assert tb.rendered == 3000 and body == _fresh(tasks)
    _render(tb, tasks)
    assert tb.rendered == 3000  # nothing changed: nothing encoded
    tasks[1234].state = "TASK_RUNNING"
    tasks[1234].statuses.append(("TASK_RUNNING", 1.0))
    body, _ = _render(tb, tasks)
    assert tb.rendered == 3001 and body == _fresh(tasks)
    del tasks[2000]  # a task completes: its block loses it, the fragments of the others are kept
    tasks.extend(_tasks(5, start=3000))  # new tasks at the end
    body, _ = _render(tb, tasks)
    assert tb.rendered == 3006 and body == _fresh(tasks)


def test_removing_a_blocks_first_task_or_its_edge_re_encodes_nothing():
    """Whatever the hash seed puts where: a block that lost its first task, or lost its edge
    and merged with the next block, keeps every other task's fragment."""
    tasks = _tasks(3000)
    tb = TaskBlocks(_encode)
    _render(tb, tasks)
    ends = cut(tasks)
    first_of_middle = tasks[ends[len(ends) // 2]]  # the task after an edge
    edge = tasks[ends[len(ends) // 3] - 1]
    tasks.remove(first_of_middle)
    body, _ = _render(tb, tasks)
    assert tb.rendered == 3000 and body == _fresh(tasks)
    tasks.remove(edge)
    body, _ = _render(tb, tasks)
    assert tb.rendered == 3000 and body == _fresh(tasks)


def test_block_sums_are_the_running_tasks_resources_per_agent():
    tasks = _tasks(1000)
    for t in tasks[:100]:
        t.state = "TASK_FINISHED"
    _, blocks = _render(TaskBlocks(_encode), tasks)
    assert task_blocks.used_of(blocks).scalar("cpus") == 900
    per_agent: dict[str, Resources] = {}
    task_blocks.add_by_agent(per_agent, blocks)
    expect: dict[str, float] = {}
    for t in tasks[100:]:
        expect[t.agent_id] = expect.get(t.agent_id, 0) + 1
    assert {a: r.scalar("cpus") for a, r in per_agent.items()} == expect


async def test_operator_state_calls_equal_the_one_step_views_and_reuse_task_fragments():
    """GET_STATE and the four calls it is made of, rendered incrementally, say what
    ``operator_views.StateView`` says (running, unreachable and completed tasks, offers)."""
    import json

    import msgspec

    from mesos_nb.master.harness import Harness
    from mesos_nb.master.operator_views import StateView
    from mesos_nb.master.server import MasterConfig, MasterServer
    from mesos_nb.master.state_render_v1 import CALLS, OperatorStateRenderer

    h = Harness.build(agents=6, frameworks=2, resources="cpus:4;mem:4096;ports:[31000-31010]")
    n = 0
    for fw in h.frameworks:
        for offer in h.allocate().get(fw.id, []):
            n += 1
            h.launch(fw, offer, f"t{n}", resources="cpus:1;mem:64;ports:[31000-31001]")
    h.update("t1", "TASK_RUNNING")
    h.update("t2", "TASK_FINISHED", message="done")
    h.acknowledge("t2")
    h.allocate()
    srv = MasterServer(MasterConfig(port=0))
    srv.core = h.core
    r = OperatorStateRenderer(srv)

    async def check() -> None:
        view = StateView(h.core)
        for call in CALLS:
            field = call.lower()
            got = json.loads(await r.body(call))
            assert got == {"type": call, field: msgspec.to_builtins(getattr(view, field)())}, call

    await check()
    doc = json.loads(await r.body("GET_STATE"))["get_state"]
    assert doc["get_tasks"]["tasks"] and doc["get_tasks"]["completed_tasks"]
    assert any(a["allocated_resources"] for a in doc["get_agents"]["agents"])
    assert any(a["offered_resources"] for a in doc["get_agents"]["agents"])
    before = r.active.rendered + r.completed.rendered
    h.core.version += 1
    await check()
    assert r.active.rendered + r.completed.rendered == before  # nothing changed in any task
    h.update("t1", "TASK_FAILED")
    await check()
    assert r.active.rendered + r.completed.rendered == before + 1


async def test_a_request_that_goes_away_does_not_cancel_the_render_others_wait_for():
    from mesos_nb.master.doc_render import SharedRender

    gate = asyncio.Event()
    renders = 0

    async def render() -> list[bytes]:
        nonlocal renders
        renders += 1
        await gate.wait()
        return [b"{}"]

    shared = SharedRender(lambda: 1, render)
    first = asyncio.ensure_future(shared.pieces())  # starts the render
    await asyncio.sleep(0)
    second = asyncio.ensure_future(shared.pieces())  # waits for it
    await asyncio.sleep(0)
    first.cancel()  # its client disconnected
    await asyncio.sleep(0)
    gate.set()
    assert await second == [b"{}"] and renders == 1 and first.cancelled()

"""The wire schema keeps what Mesos defines: every task state decodes, and the terminal ones are
exactly those a task never leaves (refactors of messages.py must not change either)."""

import pytest

from mesos_nb.protocol import messages as m

MESOS_STATES = [
    "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED", "TASK_FAILED",
    "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_UNREACHABLE", "TASK_GONE",
    "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN",
]


@pytest.mark.parametrize("state", MESOS_STATES)
def test_every_mesos_task_state_decodes(state):
    status = m.decode(b'{"task_id": {"value": "t1"}, "state": "%s"}' % state.encode(), m.TaskStatus)
    assert status.state == state


def test_unknown_task_state_is_refused_naming_the_field():
    with pytest.raises(m.ProtocolError, match="state"):
        m.decode(b'{"task_id": {"value": "t1"}, "state": "TASK_BORED"}', m.TaskStatus)


def test_terminal_states_are_the_ones_a_task_never_leaves():
    assert m.TERMINAL_STATES == {
        "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
        "TASK_GONE", "TASK_GONE_BY_OPERATOR",
    }
    assert not m.is_terminal("TASK_UNREACHABLE") and not m.is_terminal("TASK_RUNNING")


def test_executor_call_keeps_its_wire_form():
    """The executor API's Call (agent side) encodes and decodes as Mesos's v1/executor.proto."""
    wire = {
        "type": "SUBSCRIBE",
        "executor_id": {"value": "e1"},
        "framework_id": {"value": "f1"},
        "subscribe": {
            "unacknowledged_tasks": [{"name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "a1"}}],
            "unacknowledged_updates": [{"status": {"task_id": {"value": "t1"}, "state": "TASK_RUNNING",
                                                   "uuid": "AAEC"}}],
        },
    }
    call = m.convert(wire, m.ExecutorCall)
    assert call.subscribe.unacknowledged_updates[0].status.uuid == b"\x00\x01\x02"
    assert m.to_builtins(call) == wire
    message = m.decode(b'{"type": "MESSAGE", "message": {"data": "aGk="}}', m.ExecutorCall)
    assert message.message.data == b"hi" and m.to_builtins(message) == {"type": "MESSAGE", "message": {"data": "aGk="}}

"""bench.launch_hops' analysis: hop medians of the chains, and which of exec and ack came last."""

from __future__ import annotations

from bench.launch_hops import ACK, LAUNCH, RELAY, hops, states


def _task(exec_ms: float, ack_ms: float) -> dict[str, int]:
    """Synthetic events (ns): each chain's labels 0.1 ms apart, the exec and the ack at the given times."""
    t: dict[str, int] = {}
    for i, label in enumerate(LAUNCH):
        t[label] = int(i * 0.1e6)
    t["h.exec_done"] = int(exec_ms * 1e6)
    for label in LAUNCH[LAUNCH.index("h.exec_done") + 1:]:
        t[label] = t["h.exec_done"] + int(0.1e6)
    for i, label in enumerate(ACK[1:], 1):
        t[label] = t[ACK[0]] + int(i * 0.1e6)
    t["a.frame_in:AckUpdate"] = int(ack_ms * 1e6)
    start = max(t["a.update:TASK_RUNNING"], t["a.frame_in:AckUpdate"]) + int(0.05e6)
    for i, label in enumerate(RELAY):
        t[label] = start + int(i * 0.1e6)
    return t


def test_hops_name_each_step_and_count_the_launches_that_waited_for_the_ack():
    r = hops([_task(2.0, 1.0), _task(2.0, 3.0), _task(2.0, 1.5)])
    assert r["waits_for_ack"] == "1/3"
    launch = dict(r["launch"])
    assert launch["f.accept_send -> m.call_in:ACCEPT"] == 0.1
    assert launch["h.exec_done -> h.reply_out"] == 0.1
    assert dict(r["since_accept"])["a.frame_in:AckUpdate"] == 1.5
    assert dict(r["relay"])["m.event_out:TASK_RUNNING -> f.chunk_in:TASK_RUNNING"] == 0.1


def test_states_reads_the_task_states_a_frame_or_chunk_carries():
    assert states('[{"type":"STATUS_UPDATE","status":{"state":"TASK_STARTING"}}]') == "TASK_STARTING"
    assert states(b'{"state":"TASK_RUNNING"}{"state":"TASK_FINISHED"}') == "TASK_RUNNING+TASK_FINISHED"
    assert states(b'{"type":"PING"}') is None

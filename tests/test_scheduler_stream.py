"""Socket-free tests of the driver's building blocks: RecordIO events, watchdog, backoff."""

from __future__ import annotations

import base64
import json

import pytest

from mesos_nb.protocol import recordio
from mesos_nb.protocol.messages import ProtocolError
from mesos_nb.protocol.recordio import RecordIOError
from mesos_nb.scheduler.driver import MesosError
from mesos_nb.scheduler.stream import (
    Backoff,
    EventStream,
    Watchdog,
    _ids,
    normalize_master,
    redirect_target,
)

EVENTS = [
    {"type": "SUBSCRIBED", "subscribed": {"framework_id": {"value": "fw-1"}, "heartbeat_interval_seconds": 15}},
    {"type": "HEARTBEAT"},
    {"type": "OFFERS", "offers": {"offers": [{
        "id": {"value": "o1"}, "framework_id": {"value": "fw-1"}, "agent_id": {"value": "a1"},
        "hostname": "h\u00e9st",  # multi-byte UTF-8: lengths are bytes, not characters
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}, "role": "*"}],
    }]}},
    {"type": "UPDATE", "update": {"status": {
        "task_id": {"value": "t1"}, "state": "TASK_RUNNING", "agent_id": {"value": "a1"},
        "uuid": base64.b64encode(b"0123456789abcdef").decode(),
    }}},
    {"type": "ERROR", "error": {"message": "Framework has been removed"}},
]


def _wire() -> bytes:
    return b"".join(recordio.encode(json.dumps(e).encode()) for e in EVENTS)


def test_events_decode_the_same_whatever_the_chunking():
    wire = _wire()
    expected = [e.type for e in EventStream().feed(wire)]
    assert expected == ["SUBSCRIBED", "HEARTBEAT", "OFFERS", "UPDATE", "ERROR"]
    # every single split point, and byte-by-byte
    for cut in range(1, len(wire)):
        s = EventStream()
        got = s.feed(wire[:cut]) + s.feed(wire[cut:])
        assert [e.type for e in got] == expected, cut
    s = EventStream()
    got = [e for i in range(len(wire)) for e in s.feed(wire[i : i + 1])]
    assert [e.type for e in got] == expected
    offer = got[2].offers.offers[0]
    assert offer.hostname == "h\u00e9st" and offer.resources[0].scalar.value == 2
    assert got[3].update.status.uuid == b"0123456789abcdef"
    assert got[4].error.message == "Framework has been removed"


def test_bad_framing_is_an_error():
    with pytest.raises(RecordIOError):
        EventStream().feed(b"12x\n{}")
    with pytest.raises(ProtocolError, match="type"):
        EventStream().feed(recordio.encode(b'{"no_type": 1}'))


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_fires_after_misses_times_interval_and_resets_on_events():
    clock = FakeClock()
    w = Watchdog(misses=5, interval=15.0, clock=clock)
    assert w.window == 75.0
    clock.t += 74.9
    assert not w.expired()
    w.beat()
    clock.t += 74.9
    assert not w.expired()
    clock.t += 0.2
    assert w.expired()
    w.set_interval(1.0)  # the master told us its heartbeat interval
    w.beat()
    clock.t += 4.9
    assert not w.expired() and w.remaining() == pytest.approx(0.1)
    clock.t += 0.2
    assert w.expired()
    w.set_interval(None)  # absent: keep the previous one
    assert w.interval == 1.0
    with pytest.raises(ValueError):
        Watchdog(misses=0)


def test_backoff_doubles_with_jitter_up_to_the_max():
    hi = Backoff(base=0.25, maximum=15.0, rng=lambda: 1.0)
    assert [hi.next() for _ in range(9)] == [0.25, 0.5, 1, 2, 4, 8, 15, 15, 15]
    lo = Backoff(base=0.25, maximum=15.0, rng=lambda: 0.0)
    assert [lo.next() for _ in range(3)] == [0.125, 0.25, 0.5]
    lo.reset()
    assert lo.next() == 0.125
    rnd = Backoff(base=1, maximum=4)
    for _ in range(100):
        d = rnd.next()
        assert 0.5 <= d <= 4
    big = Backoff(base=1, maximum=15, rng=lambda: 1.0)
    big.attempt = 10_000  # no overflow
    assert big.next() == 15


def test_master_addresses_and_redirects():
    assert normalize_master("127.0.0.1:5050") == "http://127.0.0.1:5050"
    assert normalize_master("http://m:1/") == "http://m:1"
    assert normalize_master("m") == "http://m:5050"
    assert normalize_master("//m:7") == "http://m:7"
    with pytest.raises(ValueError):
        normalize_master("")
    # zk:// is checked and kept: the driver follows the leader it names
    assert normalize_master(" zk://h:2181,h2:2181/mesos ") == "zk://h:2181,h2:2181/mesos"
    with pytest.raises(ValueError):
        normalize_master("zk://")
    # Mesos sends a protocol-relative Location with the original path
    assert redirect_target("http://a:5050", "//leader:5051/api/v1/scheduler") == "http://leader:5051"
    assert redirect_target("https://a:5050", "//leader:5051/x") == "https://leader:5051"
    assert redirect_target("http://a:5050", "leader:5052") == "http://leader:5052"


def test_ids_and_errors():
    assert [i.value for i in _ids("o1")] == ["o1"]
    assert [i.value for i in _ids(["o1", {"value": "o2"}])] == ["o1", "o2"]
    with pytest.raises(TypeError):
        _ids([1])
    e = MesosError(400, "Framework cannot be found\n")
    assert e.status == 400 and e.message == "Framework cannot be found"
    assert str(e) == "400: Framework cannot be found"

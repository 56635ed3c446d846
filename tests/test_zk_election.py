"""Leader election and master detection against a real ZooKeeper server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for
from kazoo.client import KazooClient

from mesos_nb.master.election import ElectionError, MasterContender
from mesos_nb.master.registry_zk import ZkRegistry
from mesos_nb.protocol import messages as m
from mesos_nb.protocol.zk_detector import (
    DetectorError,
    MasterDetector,
    detect_leader,
    ip_to_uint32,
    master_address,
)
from mesos_nb.protocol.zk_url import parse_zk_url

pytest_plugins = ["zk_fixture"]

ROOT = Path(__file__).resolve().parent.parent
PYMESOS_PY = Path(os.environ.get("MESOS_NB_PYMESOS_PYTHON", ROOT / ".venv-pymesos" / "bin" / "python"))
SESSION = 2.0  # seconds; the test server allows 0.4 s to 40 s


def info(port: int, ip: str = "127.0.0.1", mid: str | None = None) -> m.MasterInfo:
    return m.MasterInfo(
        id=mid or f"master-{port}", ip=ip_to_uint32(ip), port=port, pid=f"master@{ip}:{port}",
        hostname="localhost", version="1.12.0",
        address=m.MasterAddress(hostname="localhost", ip=ip, port=port),
    )


class Recorder:
    """Callbacks of one contender, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def elected(self) -> None:
        with self.lock:
            self.events.append(("elected", None))

    def lost(self, reason: str) -> None:
        with self.lock:
            self.events.append(("lost", reason))

    def kinds(self) -> list[str]:
        with self.lock:
            return [k for k, _ in self.events]


def contender(url: str, port: int, rec: Recorder | None = None, **kw) -> MasterContender:
    rec = rec or Recorder()
    return MasterContender(url, info(port), session_timeout=SESSION, on_elected=rec.elected, on_lost=rec.lost,
                           **kw).start()


def expire_session(hosts: str, c: MasterContender) -> None:
    """Expire a live session the way ZooKeeper's own tests do: a second client attaches to
    the same session id and password, then closes it."""
    sid, passwd = c._zk.client_id
    other = KazooClient(hosts=hosts, client_id=(sid, passwd), timeout=SESSION)
    other.start(timeout=10)
    other.stop()
    other.close()


@pytest.fixture
def cleanup():
    items: list = []
    yield items
    for x in reversed(items):
        x.stop()


def test_member_znode_is_mesos_layout_and_json(zk_server, cleanup):
    url = zk_server.unique_url()
    path = parse_zk_url(url).path
    a = contender(url, 5050, quorum=1)
    cleanup.append(a)
    assert re.fullmatch(r"json\.info_\d{10}", a.znode)
    with zk_server.client() as kz:
        children = kz.get_children(path)
        data, stat = kz.get(f"{path}/{a.znode}")
    assert children == [a.znode]
    assert stat.ephemeralOwner == a.session_id  # ephemeral: goes with the session
    # byte-for-byte the shape Mesos writes: compact, sorted keys, port always present
    assert data == (b'{"address":{"hostname":"localhost","ip":"127.0.0.1","port":5050},"hostname":"localhost",'
                    b'"id":"master-5050","ip":16777343,"pid":"master@127.0.0.1:5050","port":5050,'
                    b'"version":"1.12.0"}')
    assert a.quorum == 1


def test_first_contender_leads_second_takes_over_and_detector_follows(zk_server, cleanup):
    url = zk_server.unique_url()
    ra, rb = Recorder(), Recorder()
    a = contender(url, 5051, ra)
    assert a.wait_elected(10)
    b = contender(url, 5052, rb)
    cleanup += [b, a]
    changes: list = []
    d = MasterDetector(url, session_timeout=SESSION, on_change=changes.append).start()
    cleanup.append(d)
    assert d.wait_for_leader(10) == "127.0.0.1:5051"
    wait_for(lambda: b.leader == "127.0.0.1:5051", 10, message="follower learns the leader (for redirects)")
    assert a.is_leader and not b.is_leader and rb.kinds() == []
    t0 = time.monotonic()
    a.stop()  # clean withdrawal: the session closes, the znode goes at once
    assert b.wait_elected(SESSION + 1), "second contender not elected within session timeout + 1 s"
    assert d.wait_for_leader(SESSION + 1, different_from="127.0.0.1:5051") == "127.0.0.1:5052"
    assert time.monotonic() - t0 < SESSION + 1
    assert changes == ["127.0.0.1:5051", "127.0.0.1:5052"]
    assert ra.kinds() == ["elected"]  # a withdrawal is not a loss


def test_a_waiter_for_the_leader_finds_the_change_callback_has_already_heard_it(zk_server, cleanup):
    """CI once saw wait_for_leader return the new leader while on_change had not run yet."""
    url = zk_server.unique_url()
    a = contender(url, 5053)
    cleanup.append(a)
    assert a.wait_elected(10)
    inside, release = threading.Event(), threading.Event()
    heard: list = []

    def slow_change(leader):  # the callback is still running when the leader is already known
        inside.set()
        release.wait(10)
        heard.append(leader)

    d = MasterDetector(url, session_timeout=SESSION, on_change=slow_change)
    cleanup.append(d)
    starter = threading.Thread(target=d.start)
    starter.start()
    assert inside.wait(10), "the detector never called on_change"
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(d.wait_for_leader(10)))
    waiter.start()
    waiter.join(0.3)  # a bounded look: the waiter must still be waiting, whatever the box's speed
    assert got == [] and waiter.is_alive(), "wait_for_leader returned before on_change had run"
    release.set()
    waiter.join(10)
    starter.join(10)
    assert got == ["127.0.0.1:5053"] and heard == ["127.0.0.1:5053"]


CRASHING_CONTENDER = textwrap.dedent("""
    import sys, threading
    from mesos_nb.master.election import MasterContender
    from mesos_nb.protocol import messages as m
    from mesos_nb.protocol.zk_detector import ip_to_uint32
    url, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    info = m.MasterInfo(id="crash", ip=ip_to_uint32("127.0.0.1"), port=port,
                        address=m.MasterAddress(hostname="localhost", ip="127.0.0.1", port=port))
    c = MasterContender(url, info, session_timeout=timeout,
                        on_elected=lambda: print("elected", flush=True)).start()
    threading.Event().wait()
""")


def test_crashed_leader_is_replaced_within_session_timeout(zk_server, cleanup):
    """SIGKILL: no clean close, the server expires the session after the session timeout."""
    url = zk_server.unique_url()
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_CONTENDER, url, "5061", str(SESSION)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "elected"
        b = contender(url, 5062)
        cleanup.append(b)
        d = MasterDetector(url, session_timeout=SESSION).start()
        cleanup.append(d)
        assert d.wait_for_leader(10) == "127.0.0.1:5061"
        assert not b.is_leader
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        assert b.wait_elected(SESSION + 1 + 1), "not elected after the crashed leader's session expired"
        took = time.monotonic() - t0
        assert took < SESSION + 1
        assert d.wait_for_leader(2, different_from="127.0.0.1:5061") == "127.0.0.1:5062"
    finally:
        proc.kill()
        proc.wait()


def test_leader_whose_session_expires_steps_down_fail_stop(zk_server, cleanup):
    url = zk_server.unique_url()
    ra, rb = Recorder(), Recorder()
    a = contender(url, 5071, ra)
    assert a.wait_elected(10)
    b = contender(url, 5072, rb)
    cleanup += [a, b]
    expire_session(zk_server.hosts, a)
    wait_for(lambda: "lost" in ra.kinds(), SESSION + 1, message="expired leader steps down")
    assert not a.is_leader and "session expired" in a.lost_reason
    assert b.wait_elected(SESSION + 1)
    # fail-stop: the old leader never comes back through this contender
    assert ra.kinds() == ["elected", "lost"] and not a.is_leader


def test_leader_whose_znode_is_deleted_steps_down(zk_server, cleanup):
    url = zk_server.unique_url()
    path = parse_zk_url(url).path
    ra = Recorder()
    a = contender(url, 5081, ra)
    cleanup.append(a)
    assert a.wait_elected(10)
    with zk_server.client() as kz:
        kz.delete(f"{path}/{a.znode}")
    wait_for(lambda: ra.kinds() == ["elected", "lost"], 5, message="leader steps down when its znode is deleted")
    assert "disappeared" in a.lost_reason


def test_follower_whose_session_expires_contends_again(zk_server, cleanup):
    url = zk_server.unique_url()
    a = contender(url, 5091)
    assert a.wait_elected(10)
    rb = Recorder()
    b = contender(url, 5092, rb)
    cleanup += [b, a]
    first = b.znode
    expire_session(zk_server.hosts, b)
    wait_for(lambda: b.znode != first, SESSION + 5, message="follower joins again with a new znode")
    assert rb.kinds() == [] and not b.is_leader
    a.stop()
    assert b.wait_elected(SESSION + 1)


def test_detector_waits_for_a_group_that_does_not_exist_yet(zk_server, cleanup):
    url = zk_server.unique_url()
    d = MasterDetector(url, session_timeout=SESSION).start()
    cleanup.append(d)
    assert d.leader is None
    a = contender(url, 5101)
    cleanup.append(a)
    assert d.wait_for_leader(5) == "127.0.0.1:5101"
    assert detect_leader(url, timeout=5) == "127.0.0.1:5101"
    a.stop()
    wait_for(lambda: d.leader is None, 5, message="detector reports no leader once the group is empty")


async def test_callbacks_arrive_on_the_event_loop(zk_server, cleanup):
    """With ``loop=``, the asyncio master gets on_elected / on_leader_change on its own thread."""
    import asyncio

    loop = asyncio.get_running_loop()
    got: list[tuple[str, object, int]] = []
    elected = asyncio.Event()

    def on_elected() -> None:
        got.append(("elected", None, threading.get_ident()))
        elected.set()

    c = MasterContender(zk_server.unique_url(), info(5141), session_timeout=SESSION, loop=loop,
                        on_elected=on_elected,
                        on_leader_change=lambda addr: got.append(("leader", addr, threading.get_ident())))
    await asyncio.to_thread(c.start)
    cleanup.append(c)
    await asyncio.wait_for(elected.wait(), 10)
    assert [(k, v) for k, v, _ in got] == [("leader", "127.0.0.1:5141"), ("elected", None)]
    assert {t for _, _, t in got} == {threading.get_ident()}


def test_registry_znodes_are_not_group_members(zk_server, cleanup):
    url = zk_server.unique_url()
    reg = ZkRegistry(url, session_timeout=SESSION).start()
    reg.recover("m")
    cleanup.append(type("R", (), {"stop": lambda self: reg.close()})())
    d = MasterDetector(url, session_timeout=SESSION).start()
    cleanup.append(d)
    assert d.leader is None  # only log_replicas/ exists: no leader, no error
    a = contender(url, 5151)
    cleanup.append(a)
    assert d.wait_for_leader(5) == "127.0.0.1:5151"


def test_unreachable_zookeeper_is_one_clear_error():
    with pytest.raises(DetectorError, match="Could not connect to ZooKeeper at zk://127.0.0.1:1/mesos"):
        MasterDetector("zk://127.0.0.1:1/mesos").start(connect_timeout=0.5)
    with pytest.raises(ElectionError, match="Could not connect"):
        MasterContender("zk://127.0.0.1:1/mesos", info(5050)).start(connect_timeout=0.5)
    with pytest.raises(ValueError, match="quorum"):
        MasterContender("zk://127.0.0.1:1/mesos", info(5050), quorum=0)


def test_leader_steps_down_when_zookeeper_is_gone_longer_than_session_timeout(zk):
    ra = Recorder()
    a = contender(zk.url("/mesos"), 5111, ra)
    try:
        assert a.wait_elected(10)
        zk.stop(kill=True)
        t0 = time.monotonic()
        wait_for(lambda: "lost" in ra.kinds(), SESSION + 2, message="leader steps down without ZooKeeper")
        assert SESSION - 0.5 <= time.monotonic() - t0  # not before the session timeout
        assert "disconnected" in a.lost_reason
    finally:
        a.stop()


def test_zookeeper_restart_leaves_exactly_one_leader(zk):
    """After a ZooKeeper restart there is again exactly one leader, found by the detector:
    either the old leader kept its session, or it stepped down (fail-stop) and the follower,
    whose own session was renewed or re-created, took over. Never two, never none for long."""
    ra, rb = Recorder(), Recorder()
    a = contender(zk.url("/mesos"), 5121, ra)
    assert a.wait_elected(10)
    b = contender(zk.url("/mesos"), 5122, rb)
    try:
        zk.restart()
        d = MasterDetector(zk.url("/mesos"), session_timeout=SESSION).start()
        try:
            def settled():
                leaders = [c for c in (a, b) if c.is_leader]
                return len(leaders) == 1 and d.leader == f"127.0.0.1:{leaders[0].info_port}" and leaders[0]
            winner = wait_for(settled, 3 * SESSION + 10, message="one leader after the ZooKeeper restart")
        finally:
            d.stop()
        if winner is b:
            assert ra.kinds() == ["elected", "lost"]  # the old leader stepped down first
        else:
            assert ra.kinds() == ["elected"] and rb.kinds() == []
    finally:
        a.stop()
        b.stop()


def test_master_address_parsing_rules():
    assert master_address("json.info_0000000001", b'{"address":{"ip":"10.1.2.3","port":5051},"hostname":"h"}') \
        == "10.1.2.3:5051"
    # no address: hostname, then the uint32 ip (network order read as little-endian)
    assert master_address("json.info_0000000001", b'{"hostname":"h1","port":5050}') == "h1:5050"
    assert master_address("json.info_0000000001", b'{"ip":169978048,"port":5050}') == "192.168.33.10:5050"
    assert master_address("0000000003", b"master@10.0.0.1:5050") == "10.0.0.1:5050"
    with pytest.raises(ValueError, match="label 'info'"):
        master_address("info_0000000001", b"\x08\x01")
    with pytest.raises(ValueError, match="JSON"):
        master_address("json.info_0000000001", b"not json")


@pytest.mark.pymesos
@pytest.mark.skipif(not PYMESOS_PY.exists() and not os.environ.get("CI"),
                    reason=f"no pymesos virtualenv at {PYMESOS_PY} (scripts/test.sh makes it)")
def test_pymesos_detector_reads_our_znodes(zk_server, cleanup):
    """pymesos 0.3.15's own MasterDetector (kazoo, chroot = our path) and its own znode parser
    follow our election: first leader, then the successor after the leader withdraws."""
    url = zk_server.unique_url()
    reg = ZkRegistry(url, session_timeout=SESSION).start()
    reg.recover("m")  # the registry's log_replicas/ sibling must not confuse pymesos
    cleanup.append(type("R", (), {"stop": lambda self: reg.close()})())
    a = contender(url, 5131)
    assert a.wait_elected(10)
    b = contender(url, 5132)
    cleanup += [b, a]
    proc = subprocess.Popen([str(PYMESOS_PY), str(ROOT / "tests" / "pymesos_apps" / "zk_detect.py"), url],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[dict] = []

    def reader() -> None:
        for line in proc.stdout:
            if line.startswith("{"):
                lines.append(json.loads(line))

    threading.Thread(target=reader, daemon=True).start()
    try:
        wait_for(lambda: {"leader": "127.0.0.1:5131"} in lines, 30, message="pymesos detects the first leader")
        a.stop()
        wait_for(lambda: {"leader": "127.0.0.1:5132"} in lines, 15, message="pymesos follows the new leader")
        b.stop()
        wait_for(lambda: {"leader": None} in lines, 15, message="pymesos sees no master")
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert [x for x in lines if "leader" in x] == [
        {"leader": "127.0.0.1:5131"}, {"leader": "127.0.0.1:5132"}, {"leader": None}]

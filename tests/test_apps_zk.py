"""The apps framework's ZooKeeper store and leadership (``--zk``), against a real ZooKeeper.

Store semantics match the SQLite store; a second replica's claim fences the first one (its
next write fails and it is told to step down); the Lock recipe lets one replica lead and hands
over when the leader releases or its session ends.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from apps_cluster import Framework, stop
from conftest import REPO, cli_env, wait_for

from mesos_nb.frameworks.apps.model import parse_app
from mesos_nb.frameworks.apps.store import State
from mesos_nb.frameworks.apps.zk_store import (
    StoreFencedError,
    ZkLeadership,
    ZkStore,
    connect,
    leader_endpoint,
)
from mesos_nb.protocol.zk_url import parse_zk_url

pytest_plugins = ["zk_fixture"]


def _store(url: str, lost: list[str] | None = None) -> tuple[object, ZkStore]:
    zk = connect(url, session_timeout=2.0)
    return zk, ZkStore(zk, parse_zk_url(url).path, on_lost=(lost.append if lost is not None else None))


def test_zk_store_round_trip_like_sqlite(zk_server):
    url = zk_server.unique_url("/apps")
    zk, store = _store(url)
    try:
        with pytest.raises(StoreFencedError):
            store.put("apps", "/a", b"{}")  # no write before the claim
        store.claim("test")
        state = State(store)
        app = parse_app({"id": "/group/web", "cmd": "sleep 100", "instances": 2})
        state.apps.save(app)
        state.apps.save(parse_app({"id": "/group/web", "cmd": "sleep 100", "instances": 3}))
        state.save_framework_id("fw-1")
        assert state.apps.all()["/group/web"].instances == 3
        assert state.framework_id() == "fw-1"
        store.put("runs", "job/b", b"2")
        store.put("runs", "job/a", b"1")
        assert list(store.items("runs")) == [("job/a", b"1"), ("job/b", b"2")]
        state.delete_app("/group/web")
        state.delete_app("/group/web")  # deleting what is gone is fine
        assert state.apps.all() == {}
        assert store.get("apps", "/nope") is None
        store.set_endpoint({"api": "http://x:1", "pid": 1})
        assert leader_endpoint(zk, parse_zk_url(url).path) == {"api": "http://x:1", "pid": 1}
    finally:
        zk.stop()
        zk.close()


def test_a_newer_claim_fences_the_old_leader(zk_server):
    url = zk_server.unique_url("/apps")
    lost: list[str] = []
    zk1, old = _store(url, lost)
    zk2, new = _store(url)
    try:
        old.claim("old")
        old.put("apps", "/a", b"old")
        new.claim("new")
        with pytest.raises(StoreFencedError):
            old.put("apps", "/a", b"stale")
        assert lost and "another replica" in lost[0]
        with pytest.raises(StoreFencedError):
            old.delete("apps", "/a")
        assert new.get("apps", "/a") == b"old"
        new.put("apps", "/a", b"new")
        assert new.get("apps", "/a") == b"new"
    finally:
        for zk in (zk1, zk2):
            zk.stop()
            zk.close()


def test_leadership_is_exclusive_and_passes_on(zk_server):
    url = zk_server.unique_url("/apps")
    base = parse_zk_url(url).path

    async def main() -> None:
        zk1, zk2 = connect(url, 2.0), connect(url, 2.0)
        try:
            a = ZkLeadership(zk1, base, "a")
            b = ZkLeadership(zk2, base, "b")
            await a.acquire()
            waiting = asyncio.ensure_future(b.acquire())
            await asyncio.sleep(0)
            deadline = asyncio.get_running_loop().time() + 10
            while b.contenders() != ["a", "b"]:
                assert asyncio.get_running_loop().time() < deadline, b.contenders()
                await asyncio.sleep(0.05)
            assert not waiting.done() and a.held and not b.held
            a.release()
            await asyncio.wait_for(waiting, 10)
            assert b.held
        finally:
            for zk in (zk1, zk2):
                zk.stop()
                zk.close()

    asyncio.run(main())


def test_cli_rejects_a_bad_zk_url():
    r = subprocess.run([sys.executable, "-m", "mesos_nb.frameworks.apps", "--zk", "zk://host:notaport/x",
                        "--state", "/tmp/x"], capture_output=True, text=True, env=cli_env(), cwd=str(REPO),
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("--zk: Invalid port") and "Traceback" not in r.stderr


def test_a_fenced_framework_process_answers_503_and_exits_3(zk_server, tmp_path):
    """A leader whose epoch another replica claimed refuses the write (503, one sentence), and
    steps down with exit status 3 instead of acting on stale leadership."""
    url = zk_server.unique_url("/apps")
    # no master needed for the API: the framework subscribes in the background (it keeps retrying)
    fw = Framework(tmp_path / "state", "127.0.0.1:1", zk=url)
    fw.spawn()
    ep = tmp_path / "state" / "endpoints.json"
    wait_for(lambda: ep.exists(), 60, message="the framework's API")
    api = json.loads(ep.read_text())["api"]
    try:
        zk, other = _store(url)
        try:
            other.claim("intruder")
        finally:
            zk.stop()
            zk.close()
        req = urllib.request.Request(api + "/v2/apps/web", data=json.dumps({"cmd": "sleep 1"}).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 503 and "no longer leads" in json.loads(e.value.read())["message"]
        assert fw.proc.wait(30) == 3
    finally:
        stop(fw.proc)

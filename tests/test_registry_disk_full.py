"""The single master's SQLite registry on a disk that fills up and is freed again.

A small tmpfs (mounted by the test; it skips when mounting is refused) holds the master's
``--work-dir``. While the disk is full the master reports unhealthy, refuses new
subscriptions with 503, and its timers keep working: a framework past its failover timeout is
removed and a killed agent is marked unreachable. Once space is freed the held writes go
through; a restarted master then knows all of it (nothing lost).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, async_wait_for, cli_env, free_port

from mesos_nb.scheduler import FrameworkInfo, Scheduler, SchedulerDriver


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({r.stderr.strip() or 'not root'})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path) -> Path:
    f = path / "filler"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return f


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def subscribe_status(master: str, fid: str | None = None) -> int:
    info = {"user": "u", "name": "late", "failover_timeout": 60}
    call = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
    if fid:
        info["id"] = {"value": fid}
        call["framework_id"] = {"value": fid}
    req = urllib.request.Request(master + "/api/v1/scheduler", data=json.dumps(call).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            first = r.read(200)
            return 403 if b"removed" in first else r.status
    except urllib.error.HTTPError as e:
        return e.code


class Master:
    def __init__(self, work: Path, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work, self.logs = work, logs
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.logs / "master.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mesos_nb", "master", "--port", str(self.port), "--work-dir", str(self.work),
             "--agent-ping-timeout", "0.5", "--max-agent-ping-timeouts", "4", "--allocation-interval", "0.2"],
            env=cli_env(), cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def state(self) -> dict:
        return json.loads(get(self.url + "/master/state")[1])


async def test_disk_full_then_freed_nothing_lost(small_disk, tmp_path):
    master = Master(small_disk, tmp_path)
    master.start()
    agent = None
    driver = SchedulerDriver(Scheduler(), FrameworkInfo(user="u", name="short", failover_timeout=3.0), "x:1")
    try:
        await async_wait_for(lambda: get(master.url + "/health")[0] == 200, 60, message="master up")
        agent = subprocess.Popen(
            [sys.executable, "-m", "mesos_nb", "agent", "--master", f"127.0.0.1:{master.port}", "--port", "0",
             "--resources", "cpus:1;mem:128", "--isolation", "posix", "--work-dir", str(tmp_path / "agent")],
            env=cli_env(), cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        await async_wait_for(lambda: len(master.state()["slaves"]) == 1, 60, message="agent registered")
        agent_id = master.state()["slaves"][0]["id"]
        driver = SchedulerDriver(Scheduler(), FrameworkInfo(user="u", name="short", failover_timeout=3.0),
                                 f"127.0.0.1:{master.port}")
        fid = await driver.start()

        filler = fill(small_disk)
        await driver.stop(failover=True)  # its failover deadline must be written: the write fails
        await async_wait_for(lambda: get(master.url + "/health")[0] == 503, 30, message="unhealthy while full")
        assert subscribe_status(master.url) == 503
        os.killpg(agent.pid, signal.SIGKILL)  # health checks still run: marked unreachable
        agent.wait(10)
        await async_wait_for(lambda: master.state()["slaves"] == [] and master.state()["unreachable_slaves"] == 1,
                             30, message="agent unreachable while the disk is full")
        await async_wait_for(lambda: fid in {f["id"] for f in master.state()["completed_frameworks"]}, 30,
                             message="framework expired while the disk is full")
        assert get(master.url + "/health")[0] == 503

        filler.unlink()
        await async_wait_for(lambda: get(master.url + "/health")[0] == 200, 30, message="healthy once freed")
        master.stop()
        master.start()  # recovers from what reached the disk
        await async_wait_for(lambda: get(master.url + "/health")[0] == 200, 60, message="master restarted")
        st = master.state()
        assert st["unreachable_slaves"] == 1 and st["slaves"] == [] and st["frameworks"] == []
        assert subscribe_status(master.url, fid) == 403  # the removal reached the disk
        assert subscribe_status(master.url) == 200
        _ = agent_id
    finally:
        with contextlib.suppress(Exception):
            await driver.stop(failover=True)
        if agent is not None and agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
        master.stop()

"""``--event-loop``: the daemons run on uvloop unless told otherwise, say so (log line and
``/flags``), fall back to the stdlib loop on request, refuse an unknown loop in one sentence;
the SDK's own background loops are uvloop too."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import REPO, cli_env, free_port, get_json, run_cli, stop_process_groups, wait_for

from mesos_nb.protocol import event_loop
from mesos_nb.protocol.messages import FrameworkInfo
from mesos_nb.scheduler import Scheduler
from mesos_nb.scheduler.blocking import BlockingSchedulerDriver

pytestmark = pytest.mark.skipif(not event_loop.uvloop_available(), reason="uvloop is not installed")


def _start(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "mesos_nb", *args], env=cli_env(**env), cwd=str(REPO),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _flags(url: str, proc: subprocess.Popen, log: Path) -> dict[str, str]:
    """The flags of a master's ``/master/state`` or an agent's ``/flags``, once it answers."""
    path = "/master/state" if "master" in log.name or "local" in log.name else "/flags"

    def up() -> dict | None:
        assert proc.poll() is None, log.read_text()
        try:
            return get_json(url + path, timeout=2)["flags"]
        except OSError:
            return None

    return wait_for(up, 30, message=lambda: f"{url}{path} answered:\n{log.read_text()}")


def test_master_and_agent_started_by_the_cli_run_on_uvloop_and_say_so(tmp_path):
    mport, aport = free_port(), free_port()
    mlog, alog = tmp_path / "master.log", tmp_path / "agent.log"
    procs = [_start(["master", "--port", str(mport), "--work-dir", str(tmp_path / "m")], mlog)]
    try:
        assert _flags(f"http://127.0.0.1:{mport}", procs[0], mlog)["event_loop"] == "uvloop"
        procs.append(_start(["agent", "--master", f"127.0.0.1:{mport}", "--port", str(aport),
                             "--work-dir", str(tmp_path / "a"), "--resources", "cpus:1;mem:64",
                             "--isolation", "posix"], alog))
        assert _flags(f"http://127.0.0.1:{aport}", procs[1], alog)["event_loop"] == "uvloop"
        for log in (mlog, alog):  # once the service is up (registered, for the agent)
            wait_for(lambda log=log: "INFO mesos_nb.cli event loop: uvloop" in log.read_text(), 30,
                     message=lambda log=log: log.read_text())
    finally:
        stop_process_groups(procs)


def test_event_loop_asyncio_is_the_fallback(tmp_path):
    port = free_port()
    log = tmp_path / "master.log"
    proc = _start(["master", "--port", str(port), "--event-loop", "asyncio"], log)
    try:
        assert _flags(f"http://127.0.0.1:{port}", proc, log)["event_loop"] == "asyncio"
        wait_for(lambda: "INFO mesos_nb.cli event loop: asyncio" in log.read_text(), 30, message=log.read_text)
    finally:
        stop_process_groups([proc])


def test_local_takes_the_event_loop_from_the_environment(tmp_path):
    port = free_port()
    log = tmp_path / "local.log"
    proc = _start(["local", "--agents", "1", "--port", str(port), "--no-authenticate", "--log-level", "info",
                   "--work-dir", str(tmp_path / "c"), "--resources", "cpus:1;mem:64"], log,
                  MESOS_NB_EVENT_LOOP="asyncio")
    try:
        assert _flags(f"http://127.0.0.1:{port}", proc, log)["event_loop"] == "asyncio"
    finally:
        stop_process_groups([proc])


@pytest.mark.parametrize("command", ["master", "agent", "local"])
def test_an_unknown_event_loop_is_one_sentence_and_exit_2(command):
    res = run_cli(command, "--event-loop", "foo")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "unknown event loop 'foo' (choose one of auto, uvloop, asyncio)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_bad_event_loop_in_the_environment_is_one_sentence_and_exit_2():
    res = run_cli("master", env=cli_env(MESOS_NB_EVENT_LOOP="tokio"))
    assert res.returncode == 2 and "$MESOS_NB_EVENT_LOOP" in res.stderr and "Traceback" not in res.stderr


def test_the_blocking_driver_runs_its_own_loop_on_uvloop():
    d = BlockingSchedulerDriver(Scheduler(), FrameworkInfo(user="u", name="t"), "127.0.0.1:1")
    loop = d._ensure_loop()
    try:
        assert event_loop.name_of(loop) == "uvloop"
    finally:
        d._close_loop()


def test_resolve_and_run():
    assert event_loop.resolve("auto") == "uvloop"
    with pytest.raises(ValueError, match="unknown event loop"):
        event_loop.resolve("trio")

    async def which() -> str:
        return event_loop.running()

    assert event_loop.run(which()) == "uvloop"
    assert event_loop.run(which(), "asyncio") == "asyncio"

    async def counting() -> tuple[int, bool, bool]:
        loop = asyncio.get_running_loop()
        counter = loop.count_scheduled()  # type: ignore[attr-defined]
        before = next(counter)
        loop.call_soon(lambda: None)
        await asyncio.sleep(0)  # this task's wake-up: one more
        n = next(counter) - before
        on = "call_soon" in vars(loop)
        loop.stop_counting()  # type: ignore[attr-defined]
        return n, on, "call_soon" in vars(loop)

    assert event_loop.run(counting()) == (3, True, False)  # counted only while asked: no cost otherwise
    assert event_loop.running() == "none"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_subprocesses_on_our_uvloop_keep_popen_semantics():
    """uvloop's own spawn ignores ``user=`` (a health check would run as root) and runs
    ``preexec_fn`` before the child's stdio is in place; ours is ``subprocess.Popen``'s."""

    async def main() -> tuple[bytes, int, int]:
        p = await asyncio.create_subprocess_exec("id", "-u", stdout=asyncio.subprocess.PIPE, user=65534)
        out, _ = await p.communicate()
        master, slave = os.openpty()
        try:
            q = await asyncio.create_subprocess_exec(
                "true", stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # fd 0 is the pty by then
            os.close(slave)
            tty_rc = await q.wait()
        finally:
            os.close(master)
        r = await asyncio.create_subprocess_shell("exit 7")
        return out, tty_rc, await r.wait()

    assert event_loop.run(main()) == (b"65534\n", 0, 7)

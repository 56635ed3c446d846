"""The Apache Mesos CLI (PyPI ``avmesos-cli``, command ``mesos-cli``) against an embedded cluster.

The CLI lives in its own virtualenv (``.venv-mesoscli``, made by scripts/test.sh) because its
pinned dependencies do not mix with the project's; the tests skip when it is absent.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest
from conftest import async_wait_for
from test_scheduler_integration import Framework, info, launch

from mesos_nb.scheduler import SchedulerDriver, command_task, fits

REPO = Path(__file__).resolve().parent.parent
MESOS_CLI = REPO / ".venv-mesoscli" / "bin" / "mesos-cli"
pytestmark = pytest.mark.skipif(not MESOS_CLI.exists(), reason="mesos-cli (avmesos-cli) is not installed; "
                                "run scripts/test.sh")


class TtyFramework(Framework):
    """Launches ``cli-tty`` on a terminal (``container.tty_info``), the others as plain command tasks."""

    async def offers(self, driver, offers):
        unused = []
        for offer in offers:
            if self.pending and fits(offer, {"cpus": 0.1, "mem": 32}):
                tid, cmd = self.pending.pop(0)
                self.agents[tid] = offer.agent_id.value
                task = command_task(offer, cmd, cpus=0.1, mem=32, task_id=tid)
                if tid == "cli-tty":
                    task.container = {"type": "MESOS", "tty_info": {}}
                await driver.launch([offer.id], [task])
            else:
                unused.append(offer.id)
        if unused:
            await driver.decline(unused, refuse_seconds=0.5)


@pytest.fixture
async def cli(local_cluster, tmp_path):
    config = tmp_path / "mesos-cli.toml"
    config.write_text(f'[master]\naddress = "{local_cluster.master_address}"\n')
    # Its launcher runs ``python -m avmesos.cli.mesos-cli``: that venv's python must come first.
    env = {**os.environ, "MESOS_CLI_CONFIG": str(config),
           "PATH": f"{MESOS_CLI.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    fw = TtyFramework()
    driver = SchedulerDriver(fw, info("cli-fw"), local_cluster.master_address)
    await driver.start()
    await launch(driver, fw, "cli-sleeper", "sleep 60")
    await launch(driver, fw, "cli-done", "true")
    await launch(driver, fw, "cli-tty", "sh")  # launched with ContainerInfo.tty_info (see TtyFramework)
    await async_wait_for(lambda: "TASK_RUNNING" in fw.states("cli-sleeper") and "TASK_RUNNING" in fw.states("cli-tty")
                         and "TASK_FINISHED" in fw.states("cli-done"), timeout=20)

    async def run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            str(MESOS_CLI), *args, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode(errors="replace")

    try:
        yield run, env, driver.framework_id
    finally:
        await driver.stop()


async def test_list_and_inspect_commands(cli):
    run, _, fid = cli
    rc, out = await run("agent", "list")
    assert rc == 0 and out.count("127.0.0.1") >= 2, out
    rc, out = await run("framework", "list")
    assert rc == 0 and fid in out, out
    rc, out = await run("framework", "list", "-a")
    assert rc == 0 and fid in out, out
    rc, out = await run("framework", "inspect", fid)
    assert rc == 0 and "cli-fw" in out, out
    rc, out = await run("task", "list")
    assert rc == 0 and "cli-sleeper" in out and "cli-done" not in out, out
    rc, out = await run("task", "list", "-a")
    assert rc == 0 and "cli-sleeper" in out and "cli-done" in out, out
    rc, out = await run("task", "inspect", "cli-sleeper")
    assert rc == 0 and "container_status" in out, out


async def test_task_exec_without_tty(cli):
    run, _, _ = cli
    rc, out = await run("task", "exec", "cli-sleeper", "echo", "hi")
    assert rc == 0 and out == "hi\n", out
    rc, out = await run("task", "exec", "cli-sleeper", "sh", "-c", "exit 7")
    assert rc == 7, out


def _on_pty(env: dict, args: list[str], keys: bytes, want: bytes, timeout: float = 30.0,
            line: bytes = b"", line_want: bytes = b"", detach: bytes = b"") -> tuple[int, bytes]:
    """Run mesos-cli with a terminal as its stdin/stdout (as a person would), typing ``keys``.

    For ``task attach``: type ``line`` (again, until ``line_want`` shows: the attach may not be
    live yet), then ``detach``.
    """
    if line:
        return _attach_on_pty(env, args, line, line_want, detach)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(MESOS_CLI), *args], env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out = b""
    typed = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not typed and keys and b"$ " in out or (not typed and keys and b"# " in out):
                os.write(master, keys)
                typed = True
            if proc.poll() is not None and not r:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert want in out, out
    return rc, out


def _attach_on_pty(env: dict, args: list[str], line: bytes, want: bytes, detach: bytes) -> tuple[int, bytes]:
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(MESOS_CLI), *args], env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    next_type = time.monotonic() + 0.5
    try:
        while want not in out and time.monotonic() < deadline and proc.poll() is None:
            if time.monotonic() >= next_type:  # retype until the attach is live and echoes
                os.write(master, line)
                next_type = time.monotonic() + 2.0
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        assert want in out, out
        os.write(master, detach)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return rc, out


async def test_task_exec_with_tty(cli):
    _, env, _ = cli
    rc, out = await asyncio.to_thread(_on_pty, env, ["task", "exec", "-t", "cli-sleeper", "tty"], b"", b"/dev/pts/")
    assert rc == 0, out
    rc, out = await asyncio.to_thread(
        _on_pty, {**env, "PS1": "$ "}, ["task", "exec", "-i", "-t", "cli-sleeper", "sh"],
        b"echo answer-$((6*7)); exit 4\r", b"answer-42")
    assert rc == 4, out


async def test_task_attach_to_a_tty_task_and_detach(cli):
    _, env, _ = cli
    rc, out = await asyncio.to_thread(
        _on_pty, env, ["task", "attach", "cli-tty"], b"", b"", 3.0, b"echo attached-$((2*21))\r",
        b"attached-42", b"\x10\x11")
    assert rc == 0, out
    # A task launched without a TTY: refused, with the CLI's own sentence for Mesos' answer.
    rc, out = await asyncio.to_thread(_on_pty, env, ["task", "attach", "cli-sleeper"], b"", b"launched without a TTY")
    assert rc != 0, out

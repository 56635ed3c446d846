"""The fetcher through the agent: ``CommandInfo.uris`` (local path, file://, http:// from an
in-test aiohttp server), extraction of .tar.gz and .zip, ``executable``, ``output_file``, the
cache (a second fetch does not hit the server), and failures (TASK_FAILED,
REASON_CONTAINER_LAUNCH_FAILED, the message names the URI)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from aiohttp import web
from test_agent_integration import FakeMaster, run_task

from mesos_nb.agent import AgentConfig, AgentProcess
from mesos_nb.protocol.messages import CommandInfo


class Files:
    """An HTTP server on 127.0.0.1 serving in-memory files and counting requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[name])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
async def env(tmp_path):
    master = FakeMaster()
    await master.start()
    files = Files()
    await files.start()
    cfg = AgentConfig(master=master.address, port=0, work_dir=str(tmp_path / "agent"), isolation="posix",
                      resources="cpus:4;mem:1024;disk:1000", detect_gpus=False,
                      executor_shutdown_grace_period=0.5)
    proc = AgentProcess([cfg], register_timeout=10)
    await proc.start()
    yield master, proc.agents[0], files
    await proc.stop()
    await files.runner.cleanup()
    await master.stop()


def fetch_task(agent_id: str, task_id: str, cmd: str, uris: list[dict]):
    msg = run_task(agent_id, task_id, cmd)
    msg.task.command = CommandInfo(value=cmd, uris=uris)
    return msg


async def run(master, agent, task_id: str, cmd: str, uris: list[dict], state: str = "TASK_FINISHED"):
    await master.send(fetch_task(agent.agent_id, task_id, cmd, uris))
    upd = await master.wait_state(task_id, state, timeout=60)
    terminal = [u for u in master.updates(task_id) if u.status.state in ("TASK_FINISHED", "TASK_FAILED")]
    assert [u.status.state for u in terminal] == [state], [(u.status.state, u.status.message) for u in terminal]
    return upd


def sandbox(agent, task_id: str) -> Path:
    fw = agent.frameworks.get("fw-1") or agent.completed_frameworks["fw-1"]
    ex = next(e for e in fw.completed_executors if e.executor_id == task_id)
    return Path(ex.directory)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


async def test_local_path_and_file_uri(env, tmp_path):
    master, agent, _ = env
    src = tmp_path / "data.txt"
    src.write_text("hello\n")
    await run(master, agent, "local", "grep -q hello data.txt && grep -q hello copy.txt",
              [{"value": str(src), "extract": False}, {"value": f"file://{src}", "output_file": "copy.txt"}])
    box = sandbox(agent, "local")
    assert (box / "data.txt").read_text() == "hello\n" and (box / "copy.txt").read_text() == "hello\n"


async def test_http_extract_tar_gz_and_zip(env):
    master, agent, files = env
    files.files["app.tar.gz"] = tar_gz({"app/a.txt": b"from tar\n"})
    files.files["lib.zip"] = zipped({"lib/b.txt": b"from zip\n"})
    await run(master, agent, "extract", "grep -q 'from tar' app/a.txt && grep -q 'from zip' lib/b.txt",
              [{"value": files.url("app.tar.gz")}, {"value": files.url("lib.zip")}])
    box = sandbox(agent, "extract")
    assert (box / "app" / "a.txt").read_bytes() == b"from tar\n"
    assert (box / "lib" / "b.txt").read_bytes() == b"from zip\n"
    # extract: false keeps the archive as it is
    await run(master, agent, "keep", "test -f app.tar.gz && test ! -e app", [{"value": files.url("app.tar.gz"),
                                                                             "extract": False}])


async def test_executable_script_runs_and_output_file(env):
    master, agent, files = env
    files.files["run.sh"] = b"#!/bin/sh\necho ran-the-script > ran.txt\n"
    await run(master, agent, "exe", "./job.sh", [{"value": files.url("run.sh"), "executable": True,
                                                   "output_file": "job.sh"}])
    box = sandbox(agent, "exe")
    assert (box / "ran.txt").read_text() == "ran-the-script\n"
    assert (box / "job.sh").stat().st_mode & 0o111
    assert not (box / "run.sh").exists()


async def test_cache_second_fetch_does_not_hit_the_server(env):
    master, agent, files = env
    files.files["big.bin"] = b"x" * 100_000
    uri = {"value": files.url("big.bin"), "cache": True}
    await run(master, agent, "c1", "test $(wc -c < big.bin) -eq 100000", [uri])
    assert files.hits["big.bin"] == 1
    await run(master, agent, "c2", "test $(wc -c < big.bin) -eq 100000", [uri])
    assert files.hits["big.bin"] == 1
    # without cache: true, every fetch downloads
    await run(master, agent, "c3", "test -f big.bin", [{"value": files.url("big.bin")}])
    assert files.hits["big.bin"] == 2


@pytest.mark.parametrize("kind", ["http404", "missing-file", "bad-scheme", "bad-archive"])
async def test_fetch_failure_fails_the_task_naming_the_uri(env, tmp_path, kind):
    master, agent, files = env
    if kind == "http404":
        uri = files.url("nope.tar.gz")
    elif kind == "missing-file":
        uri = f"file://{tmp_path}/does-not-exist.txt"
    elif kind == "bad-scheme":
        uri = "gopher://example.invalid/thing"
    else:
        files.files["broken.tar.gz"] = b"this is not a tarball"
        uri = files.url("broken.tar.gz")
    await master.send(fetch_task(agent.agent_id, "bad", "touch ran", [{"value": uri}]))
    upd = await master.wait_state("bad", "TASK_FAILED", timeout=60)
    assert upd.status.reason == "REASON_CONTAINER_LAUNCH_FAILED"
    name = uri if kind != "bad-archive" else "broken.tar.gz"
    assert name in upd.status.message, upd.status.message
    assert "TASK_RUNNING" not in master.states("bad")
    box = sandbox(agent, "bad")
    assert not (box / "ran").exists()
    assert "cpus" not in agent.used.names() or agent.used.scalar("cpus") == 0  # resources given back

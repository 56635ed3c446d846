"""The agent's v1 operator API: reads, and nested container sessions (task exec) with and without a TTY."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid

import aiohttp
import pytest
from conftest import async_wait_for
from test_scheduler_integration import Framework, info, launch

from mesos_nb.protocol import recordio
from mesos_nb.scheduler import SchedulerDriver

pytest.importorskip("mesos_nb.agent.process")
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
STREAM = {"Content-Type": "application/json", "Accept": "application/recordio", "Message-Accept": "application/json"}
INPUT = {"Content-Type": "application/recordio", "Message-Content-Type": "application/json",
         "Accept": "application/json"}


@pytest.fixture
async def running(local_cluster):
    fw = Framework()
    driver = SchedulerDriver(fw, info("agent-op"), local_cluster.master_address)
    await driver.start()
    await launch(driver, fw, "sleeper", "export GREETING=hello-from-task; sleep 60")
    await async_wait_for(lambda: "TASK_RUNNING" in fw.states("sleeper"), timeout=15)
    agent = next(a for a in local_cluster.agents if a.agent_id == fw.agents["sleeper"])
    ex = next(e for f in agent.frameworks.values() for e in f.executors.values() if e.executor_id == "sleeper")
    try:
        yield agent, ex
    finally:
        await driver.stop()


async def _collect(resp: aiohttp.ClientResponse, until: bytes | None = None, timeout: float = 15) -> tuple[bytes, bytes]:
    dec = recordio.Decoder()
    out, err = b"", b""

    async def read():
        nonlocal out, err
        while True:
            chunk = await resp.content.readany()
            if not chunk:
                return
            for rec in dec.feed(chunk):
                r = json.loads(rec)
                if r["type"] == "DATA":
                    data = base64.b64decode(r["data"]["data"])
                    if r["data"]["type"] == "STDOUT":
                        out += data
                    else:
                        err += data
            if until is not None and until in out:
                return

    await asyncio.wait_for(read(), timeout)
    return out, err


def _io(record: dict) -> bytes:
    return recordio.encode(json.dumps(record).encode())


async def test_agent_read_calls_and_v0(running):
    agent, ex = running
    async with aiohttp.ClientSession() as s:
        for t in ("GET_HEALTH", "GET_FLAGS", "GET_VERSION", "GET_STATE", "GET_CONTAINERS", "GET_FRAMEWORKS",
                  "GET_EXECUTORS", "GET_TASKS", "GET_AGENT", "GET_LOGGING_LEVEL"):
            async with s.post(agent.url + "/api/v1", json={"type": t}, headers=JSON) as r:
                assert r.status == 200, (t, await r.text())
                body = await r.json()
                assert body["type"] == t
        async with s.post(agent.url + "/api/v1", json={"type": "GET_CONTAINERS"}, headers=JSON) as r:
            conts = (await r.json())["get_containers"]["containers"]
        assert {"value": ex.container_id} in [c["container_id"] for c in conts]
        async with s.post(agent.url + "/api/v1", json={"type": "GET_TASKS"}, headers=JSON) as r:
            launched = (await r.json())["get_tasks"]["launched_tasks"]
        assert [t["task_id"]["value"] for t in launched] == ["sleeper"]
        async with s.post(agent.url + "/api/v1", json={"type": "GET_METRICS", "get_metrics": {}}, headers=JSON) as r:
            assert "slave/tasks_running" in {x["name"] for x in (await r.json())["get_metrics"]["metrics"]}
        virtual = f"/frameworks/{ex.framework_id}/executors/sleeper/runs/latest"
        async with s.post(agent.url + "/api/v1", json={"type": "LIST_FILES", "list_files": {"path": virtual}},
                          headers=JSON) as r:
            names = [os.path.basename(f["path"]) for f in (await r.json())["list_files"]["file_infos"]]
        assert "stdout" in names
        for path in ("/flags", "/version", "/containers", "/state/", "/slave(1)/flags"):
            async with s.get(agent.url + path) as r:
                assert r.status == 200, path
        async with s.post(agent.url + "/api/v1", json={"type": "GET_HEALTH"},
                          headers={**JSON, "Accept": "application/recordio"}) as r:
            assert r.status == 406  # only the session/output calls stream
        async with s.post(agent.url + "/api/v1", json={"type": "LAUNCH_CONTAINER"}, headers=JSON) as r:
            assert r.status == 501


async def test_exec_without_tty_streams_output_and_exit_status(running):
    agent, ex = running
    cid = {"value": str(uuid.uuid4()), "parent": {"value": ex.container_id}}
    call = {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": {
        "container_id": cid, "command": {"shell": False, "value": "sh", "arguments": [
            "sh", "-c", "echo hi; echo oops >&2; pwd; exit 3"]}}}
    async with aiohttp.ClientSession() as s:
        async with s.post(agent.url + "/api/v1", json=call, headers=STREAM) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/recordio"
            out, err = await _collect(r)
        assert out.decode().splitlines() == ["hi", ex.directory] and err == b"oops\n"
        async with s.post(agent.url + "/api/v1", json={"type": "WAIT_CONTAINER", "wait_container": {
                "container_id": cid}}, headers=JSON) as r:
            status = (await r.json())["wait_container"]["exit_status"]
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
        bad = {**call, "launch_nested_container_session": {**call["launch_nested_container_session"],
               "container_id": {"value": "x", "parent": {"value": "nope"}}}}
        async with s.post(agent.url + "/api/v1", json=bad, headers=STREAM) as r:
            assert r.status == 404


async def test_exec_with_tty_takes_input_and_sees_the_task_environment(running):
    agent, ex = running
    cid = {"value": str(uuid.uuid4()), "parent": {"value": ex.container_id}}
    call = {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": {
        "container_id": cid, "command": {"shell": False, "value": "sh", "arguments": ["sh"]},
        "container": {"type": "MESOS", "tty_info": {}}}}
    async with aiohttp.ClientSession() as s:
        async with s.post(agent.url + "/api/v1", json=call, headers=STREAM) as r:
            assert r.status == 200

            async def records():
                yield _io({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
                    "type": "CONTAINER_ID", "container_id": cid}})
                yield _io({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
                    "type": "PROCESS_IO", "process_io": {"type": "CONTROL", "control": {
                        "type": "TTY_INFO", "tty_info": {"window_size": {"rows": 33, "columns": 77}}}}}})
                for line in (b"[ -t 0 ] && echo is-a-tty; stty size; echo $MESOS_SANDBOX\n", b"exit 5\n"):
                    yield _io({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
                        "type": "PROCESS_IO", "process_io": {"type": "DATA", "data": {
                            "type": "STDIN", "data": base64.b64encode(line).decode()}}}})

            inp = await s.post(agent.url + "/api/v1", data=records(), headers=INPUT)
            assert inp.status == 200, await inp.text()
            out, _ = await _collect(r)
        text = out.decode(errors="replace")
        assert "is-a-tty" in text and "33 77" in text and ex.directory in text
        async with s.post(agent.url + "/api/v1", json={"type": "WAIT_NESTED_CONTAINER", "wait_nested_container": {
                "container_id": cid}}, headers=JSON) as r:
            assert os.WEXITSTATUS((await r.json())["wait_nested_container"]["exit_status"]) == 5


async def test_tty_task_attach_input_output_and_its_exit_status(local_cluster):
    from test_mesos_cli import TtyFramework

    fw = TtyFramework()
    driver = SchedulerDriver(fw, info("agent-tty"), local_cluster.master_address)
    await driver.start()
    try:
        await launch(driver, fw, "cli-tty", "read x; echo got-$x; [ -t 1 ] && exit 3")
        await async_wait_for(lambda: "TASK_RUNNING" in fw.states("cli-tty"), timeout=15)
        agent = next(a for a in local_cluster.agents if a.agent_id == fw.agents["cli-tty"])
        ex = next(e for f in agent.frameworks.values() for e in f.executors.values() if e.executor_id == "cli-tty")
        cid = {"value": ex.container_id}
        async with aiohttp.ClientSession() as s:
            out_call = {"type": "ATTACH_CONTAINER_OUTPUT", "attach_container_output": {"container_id": cid}}
            async with s.post(agent.url + "/api/v1", json=out_call, headers=STREAM) as r:
                assert r.status == 200

                async def records():
                    yield _io({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
                        "type": "CONTAINER_ID", "container_id": cid}})
                    yield _io({"type": "ATTACH_CONTAINER_INPUT", "attach_container_input": {
                        "type": "PROCESS_IO", "process_io": {"type": "DATA", "data": {
                            "type": "STDIN", "data": base64.b64encode(b"hello\n").decode()}}}})

                inp = await s.post(agent.url + "/api/v1", data=records(), headers=INPUT)
                assert inp.status == 200, await inp.text()
                out, _ = await _collect(r, until=b"got-hello")
        sandbox = {n: open(os.path.join(ex.directory, n), "rb").read() for n in ("stdout", "stderr")}
        assert b"got-hello" in out, sandbox
        await async_wait_for(lambda: "TASK_FAILED" in fw.states("cli-tty"), timeout=15)
        assert fw.last("cli-tty").message == "Command exited with status 3"  # the task's own status
        with open(os.path.join(ex.directory, "stdout"), "rb") as f:
            assert b"got-hello" in f.read()  # the switchboard also keeps the sandbox's stdout
    finally:
        await driver.stop()


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="needs root (to connect as another user) and a system python3 that user can run")
async def test_switchboard_refuses_other_users(tmp_path):
    import subprocess
    import sys

    from mesos_nb.agent import switchboard

    name = f"t-{uuid.uuid4()}"
    out = open(tmp_path / "stdout", "wb")
    sb = subprocess.Popen([sys.executable, "-S", switchboard.__file__, name, "", "sh", "-c", "read x; echo got-$x"],
                          stdout=out, stderr=subprocess.STDOUT)
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\nimport time\n"
             "for i in range(100):\n"
             "    try: s.connect('\\0mesos-nb-io-' + sys.argv[1]); break\n"
             "    except OSError: time.sleep(0.05)\n"
             "s.sendall(b'ID\\x00\\x00\\x00\\x04one\\n'); print(s.recv(10))\n")
    try:
        def as_nobody():
            os.setgid(65534)
            os.setuid(65534)

        res = await asyncio.to_thread(subprocess.run, ["/usr/bin/python3", "-S", "-c", probe, name],
                                      preexec_fn=as_nobody, capture_output=True, timeout=30)
        assert res.stdout.strip() in (b"b''", b""), res  # closed on it (EOF or a broken pipe)
        assert sb.poll() is None and b"got-" not in (tmp_path / "stdout").read_bytes()  # nothing reached the task
        res = await asyncio.to_thread(subprocess.run, [sys.executable, "-S", "-c", probe.replace(
            "print(s.recv(10))", "s.close()"), name], capture_output=True, timeout=30)
        assert res.returncode == 0
        assert await asyncio.to_thread(sb.wait, 30) == 0  # the agent's user typed "one": the task ended
        assert b"got-one" in (tmp_path / "stdout").read_bytes()
    finally:
        if sb.poll() is None:
            sb.kill()
        out.close()

"""The agent's security: clean task environments and secrets, tasks run as their user, the
agent's credential kept out of argv/ps/tasks. Each test performs the attack or misuse and
shows it refused, with real tasks on a real master and agent."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import aiohttp
import pytest
from agent_security_support import Framework, cluster
from conftest import REPO, cli_env, free_port, get_json, wait_for

from mesos_nb.agent.environment import DEFAULT_PATH

SECRET = "s3cr3t-agent-credential-value"
ROOT = os.geteuid() == 0


def _env_of(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


async def _stdout(c, task_id: str) -> str:
    code, body = await c.read(c.sandbox(task_id) + "/stdout")
    assert code == 200, body
    return body["data"]


# ---------------------------------------------------------------------- environment (hole 5)
async def test_task_environment_is_clean(tmp_path, monkeypatch):
    """The agent's own environment (its secret, MESOS_NB_* settings, anything else) never
    reaches a task; the task gets MESOS_*, its own variables, the operator's, a default PATH."""
    monkeypatch.setenv("MESOS_NB_AGENT_SECRET", SECRET)
    monkeypatch.setenv("MESOS_NB_MASTER", "10.0.0.1:5050")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-" + SECRET)
    monkeypatch.setenv("PATH", "/opt/agent-only/bin:" + os.environ["PATH"])
    monkeypatch.setenv("LIBPROCESS_IP", "127.0.0.1")
    secret_b64 = base64.b64encode(b"pa55word").decode()
    async with cluster(str(tmp_path / "agent"), agent_secret=SECRET,
                       executor_environment_variables={"OPS_VAR": "from-operator"}) as c:
        final = await c.run("env", {"value": "env", "environment": {"variables": [
            {"name": "MINE", "value": "task-value"},
            {"name": "DB_PASSWORD", "type": "SECRET", "secret": {"type": "VALUE", "value": {"data": secret_b64}}},
        ]}})
        assert final["state"] == "TASK_FINISHED", final
        out = await _stdout(c, "env")
    env = _env_of(out)
    assert SECRET not in out
    assert not [k for k in env if k.startswith("MESOS_NB_")], env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["PATH"] == DEFAULT_PATH  # not the agent's PATH
    assert env["LIBPROCESS_IP"] == "127.0.0.1"  # the one variable Mesos copies from the agent
    assert env["OPS_VAR"] == "from-operator" and env["MINE"] == "task-value"
    assert env["DB_PASSWORD"] == "pa55word"
    assert env["MESOS_FRAMEWORK_ID"] == c.fw.fid and env["MESOS_EXECUTOR_ID"] == "env"
    assert env["MESOS_SANDBOX"] == env["MESOS_DIRECTORY"] and env["LIBPROCESS_PORT"] == "0"


async def test_task_path_can_be_given(tmp_path):
    async with cluster(str(tmp_path / "agent"), executor_environment_variables={"PATH": "/usr/bin:/bin"}) as c:
        await c.run("p1", {"value": "echo $PATH"})
        assert (await _stdout(c, "p1")) == "/usr/bin:/bin\n"
        await c.run("p2", {"value": "echo $PATH", "environment": {"variables": [{"name": "PATH", "value": "/bin"}]}})
        assert (await _stdout(c, "p2")) == "/bin\n"


async def test_secret_reference_and_bad_secrets_fail_the_task(tmp_path):
    async with cluster(str(tmp_path / "agent")) as c:
        ref = await c.run("ref", {"value": "env", "environment": {"variables": [
            {"name": "PW", "type": "SECRET", "secret": {"type": "REFERENCE", "reference": {"name": "/s", "key": "k"}}}]}})
        assert ref["state"] == "TASK_FAILED" and ref["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
        assert "secret references are not supported" in ref["message"] and "'PW'" in ref["message"]
        bad = await c.run("bad", {"value": "env", "environment": {"variables": [
            {"name": "PW", "type": "SECRET", "secret": {"type": "VALUE", "value": {"data": "%%%not-b64"}}}]}})
        assert bad["state"] == "TASK_FAILED" and "not base64" in bad["message"]


async def test_local_cluster_tasks_get_no_secret(tmp_path, monkeypatch):
    """`mesos-nb local` / LocalCluster: in-process agents share the caller's environment;
    their tasks still see none of it."""
    from mesos_nb.local import LocalCluster

    monkeypatch.setenv("MESOS_NB_AGENT_SECRET", SECRET)
    monkeypatch.setenv("JUPYTER_TOKEN", "tok-" + SECRET)
    async with LocalCluster(agents=1, port=0, work_dir=str(tmp_path / "lc"),
                            agent_resources="cpus:2;mem:512;disk:100") as lc, aiohttp.ClientSession() as s:
        fw = Framework(s, lc.master_url, "")
        await fw.subscribe()
        try:
            fw.launch("env", {"value": "env; cat /proc/self/environ | tr '\\0' '\\n'"})
            final = await fw.wait_state("env", {"TASK_FINISHED", "TASK_FAILED"})
            assert final["state"] == "TASK_FINISHED", final
            agent = lc.agents[0]
            async with s.get(agent.url + "/files/read", params={
                    "path": f"/frameworks/{fw.fid}/executors/env/runs/latest/stdout"}) as r:
                out = (await r.json())["data"]
        finally:
            fw.reader.cancel()
            fw.resp.close()
    assert "MESOS_FRAMEWORK_ID=" in out
    assert SECRET not in out and "MESOS_NB_" not in out


# ---------------------------------------------------------------------- credential and ps (hole 5)
def test_agent_credential_comes_from_a_file_and_never_shows_in_ps(tmp_path):
    cred = tmp_path / "credential.json"
    cred.write_text(json.dumps({"principal": "agent-1", "secret": SECRET}))
    cred.chmod(0o600)
    port, aport = free_port(), free_port()
    env = cli_env()
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "mesos_nb", "master", "--port", str(port),
                                       "--allocation-interval", "0.1"], env=env, cwd=str(REPO),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/health"), 30, message="master up")
        agent = subprocess.Popen([sys.executable, "-m", "mesos_nb", "agent", "--master", f"127.0.0.1:{port}",
                                  "--port", str(aport), "--work-dir", str(tmp_path / "a"), "--credential",
                                  str(cred), "--resources", "cpus:1;mem:128;disk:10"],
                                 env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(agent)
        wait_for(lambda: get_json(f"http://127.0.0.1:{port}/master/state")["slaves"], 30, message="agent registered")
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        assert str(cred) in ps  # the agent is there, with its credential FILE
        assert SECRET not in ps
        with open(f"/proc/{agent.pid}/cmdline", "rb") as f:
            assert SECRET.encode() not in f.read()
        # --agent-secret on argv is refused with one sentence.
        bad = subprocess.run([sys.executable, "-m", "mesos_nb", "agent", "--agent-secret", SECRET],
                             env=env, cwd=str(REPO), capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "--credential FILE" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        for p in reversed(procs):
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(20)
            if p.poll() is None:
                p.kill()


def _up(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


async def test_agent_presents_its_credential_as_basic(tmp_path):
    from aiohttp import web

    from mesos_nb.agent import AgentConfig, AgentProcess

    seen: list[str] = []

    async def channel(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=401)

    app = web.Application()
    app.router.add_get("/api/v1/agent-channel", channel)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cred = tmp_path / "cred"
    cred.write_text(f"agent-1 {SECRET}\n")  # Mesos' text form
    try:
        proc = AgentProcess([AgentConfig(master=f"127.0.0.1:{runner.addresses[0][1]}", port=0, credential=str(cred),
                                         work_dir=str(tmp_path / "a"), resources="cpus:1;mem:64", detect_gpus=False)],
                            register_timeout=10)
        with pytest.raises(ConnectionError, match="refused the agent"):
            await proc.start()
    finally:
        await runner.cleanup()
    assert seen and seen[0] == "Basic " + base64.b64encode(f"agent-1:{SECRET}".encode()).decode()


# ---------------------------------------------------------------------- users (hole 4)
@contextlib.contextmanager
def _world_traversable_dir():
    d = tempfile.mkdtemp(prefix="mesos-nb-users-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs the agent to run as root")


@needs_root
@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "supervised"])
async def test_tasks_run_as_the_framework_user(checkpoint):
    import pwd

    nobody = pwd.getpwnam("nobody")
    with _world_traversable_dir() as d:
        async with cluster(os.path.join(d, "agent"), user="nobody", switch_user=True,
                           checkpoint=checkpoint) as c:
            final = await c.run("who", {"value": "id -u; id -g; stat -c %u $MESOS_SANDBOX; "
                                                 "touch mine && stat -c %u mine"})
            assert final["state"] == "TASK_FINISHED", final
            uid, gid = str(nobody.pw_uid), str(nobody.pw_gid)
            assert (await _stdout(c, "who")).split() == [uid, gid, uid, uid]  # the sandbox is the user's
            # CommandInfo.user wins over FrameworkInfo.user.
            final = await c.run("as-root", {"value": "id -u", "user": "root"})
            assert final["state"] == "TASK_FINISHED" and (await _stdout(c, "as-root")) == "0\n"


@needs_root
async def test_health_checks_run_as_the_task_user():
    with _world_traversable_dir() as d:
        async with cluster(os.path.join(d, "agent"), user="nobody", switch_user=True, health_check_poll=0.1) as c:
            c.fw.launch("hc", {"value": "exec sleep 60"})
            c.fw.pending[-1]["health_check"] = {
                "type": "COMMAND", "command": {"value": 'test "$(id -u)" = 65534'},
                "delay_seconds": 0, "interval_seconds": 0.2, "grace_period_seconds": 0}
            await c.fw.wait(lambda e: e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"] == "hc"
                            and e["update"]["status"].get("healthy") is not None)
            healthy = [s["healthy"] for s in c.fw.states("hc") if "healthy" in s]
            assert healthy[0] is True, c.fw.states("hc")


@needs_root
async def test_a_user_that_does_not_exist_fails_the_task():
    with _world_traversable_dir() as d:
        async with cluster(os.path.join(d, "agent"), user="no-such-user-xq", switch_user=True) as c:
            final = await c.run("ghost", {"value": "id -u"})
    assert final["state"] == "TASK_FAILED" and final["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert "no-such-user-xq" in final["message"] and "does not exist" in final["message"]


@needs_root
async def test_no_switch_user_runs_tasks_as_the_agent(tmp_path):
    async with cluster(str(tmp_path / "agent"), user="nobody", switch_user=False) as c:
        await c.run("who", {"value": "id -u"})
        assert (await _stdout(c, "who")) == f"{os.geteuid()}\n"


def test_switch_user_is_on_by_default_on_the_cli():
    from mesos_nb.cli.parser import build_parser

    p = build_parser()
    env_before = os.environ.pop("MESOS_NB_SWITCH_USER", None)
    try:
        assert p.parse_args(["agent"]).switch_user is True
        assert build_parser().parse_args(["agent", "--no-switch-user"]).switch_user is False
    finally:
        if env_before is not None:
            os.environ["MESOS_NB_SWITCH_USER"] = env_before


@needs_root
def test_sandbox_chown_does_not_follow_links(tmp_path):
    import pwd

    from mesos_nb.agent.users import chown_sandbox, resolve_user

    outside = tmp_path / "outside"
    outside.write_text("agent's")
    (tmp_path / "s").mkdir()
    os.symlink(outside, tmp_path / "s" / "link")
    chown_sandbox(str(tmp_path / "s"), resolve_user("nobody"))
    assert os.stat(tmp_path / "s").st_uid == pwd.getpwnam("nobody").pw_uid
    assert os.stat(outside).st_uid == 0

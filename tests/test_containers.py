"""Containers: ``namespaces/pid``, ``filesystem/linux``, ``disk/du`` and Docker images with the
Mesos containerizer, on a real agent (FakeMaster) with real processes and mounts."""

from __future__ import annotations

import os
import uuid

import pytest
from images_support import (
    REGISTRY,
    busybox_path,
    make_image,
    push_image,
    save_manifest_tar,
    start_registry,
)
from test_agent_integration import agents_on_fake_masters, run_task, wait_for

from mesos_nb.agent.container_spec import parse_container
from mesos_nb.agent.disk_usage import disk_message, format_bytes
from mesos_nb.agent.isolation import namespaces_unavailable, parse_isolation

NO_NS = namespaces_unavailable()
needs_ns = pytest.mark.skipif(NO_NS is not None, reason=f"namespaces unavailable: {NO_NS}")
needs_busybox = pytest.mark.skipif(busybox_path() is None, reason="busybox-static is not installed")


@pytest.fixture
async def make(tmp_path):
    async with agents_on_fake_masters(tmp_path, "cpus:4;mem:4096;disk:4096") as make:
        yield make


def sandbox_of(agent, task_id: str) -> str:
    for fw in [*agent.frameworks.values(), *agent.completed_frameworks.values()]:
        ex = fw.executors.get(task_id)
        if ex is not None:
            return ex.directory
        for ex in fw.completed_executors:
            if ex.executor_id == task_id:
                return ex.directory
    raise KeyError(task_id)


def _host_processes_with(marker: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(name))
            except OSError:
                pass
    return out


# ---------------------------------------------------------------------- namespaces/pid
@needs_ns
async def test_pid_namespace_task_sees_only_its_own_processes(make):
    master, agent = await make("posix,filesystem/linux,namespaces/pid")
    cmd = "sleep 30 & echo self=$$; ls /proc | grep -c '^[0-9]'; ps -e -o pid= -o comm="
    await master.send(run_task(agent.agent_id, "ps", cmd))
    await master.wait_state("ps", "TASK_FINISHED", timeout=30)
    out = open(os.path.join(sandbox_of(agent, "ps"), "stdout")).read()
    lines = out.splitlines()
    assert lines[0] == "self=2", out  # the shell is the first child of the namespace's init (PID 1)
    count = int(lines[1])
    assert count <= 5, out  # init, sh, sleep, ls, grep -- not the host's hundreds
    pids = sorted(int(line.split()[0]) for line in lines[2:])
    assert pids[0] == 1 and pids[-1] < 10, out
    assert str(os.getpid()) not in out.split()


@needs_ns
async def test_daemon_of_a_finished_task_does_not_outlive_it(make):
    master, agent = await make("posix,filesystem/linux,namespaces/pid")
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    # setsid: a new session and process group, out of the container's group (a posix kill misses it)
    await master.send(run_task(agent.agent_id, "daemon", f"setsid sleep {marker} & sleep 0.2; exit 0"))
    await master.wait_state("daemon", "TASK_FINISHED", timeout=30)
    await wait_for(lambda: not _host_processes_with(f"sleep\0{marker}"), 10, "the daemon is gone")


@needs_ns
async def test_killing_the_container_kills_every_process_in_it(make):
    master, agent = await make("posix,filesystem/linux,namespaces/pid")
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    await master.send(run_task(agent.agent_id, "k", f"setsid sleep {marker} & exec sleep 1000", grace=0.2))
    await master.wait_state("k", "TASK_RUNNING", timeout=30)
    await wait_for(lambda: _host_processes_with(f"sleep\0{marker}"), 10, "the daemon started")
    from mesos_nb.protocol.channel import KillTask
    await master.send(KillTask(agent_id=agent.agent_id, framework_id="fw-1", task_id="k"))
    await master.wait_state("k", "TASK_KILLED", timeout=30)
    await wait_for(lambda: not _host_processes_with(f"sleep\0{marker}"), 10, "the daemon is gone")


async def test_without_pid_namespace_a_daemon_survives(make):
    """The control for the two tests above: under plain posix isolation a setsid daemon escapes
    (so those tests show the namespace doing the work)."""
    master, agent = await make("posix")
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}"
    await master.send(run_task(agent.agent_id, "esc", f"setsid sleep {marker} & sleep 0.2; exit 0"))
    await master.wait_state("esc", "TASK_FINISHED", timeout=30)
    pids = _host_processes_with(f"sleep\0{marker}")
    for pid in pids:
        os.kill(pid, 9)
    assert pids


# ---------------------------------------------------------------------- filesystem/linux
@needs_ns
async def test_private_tmp_is_backed_by_the_sandbox(make):
    master, agent = await make("posix,filesystem/linux")
    name = f"mesos-nb-private-{uuid.uuid4().hex}"
    cmd = f"echo secret > /tmp/{name} && cat /tmp/{name} && test -d \"$MESOS_SANDBOX\" && echo sandbox-ok"
    await master.send(run_task(agent.agent_id, "tmp", cmd))
    await master.wait_state("tmp", "TASK_FINISHED", timeout=30)
    box = sandbox_of(agent, "tmp")
    assert open(os.path.join(box, "stdout")).read() == "secret\nsandbox-ok\n"
    assert not os.path.exists(f"/tmp/{name}")
    assert open(os.path.join(box, "tmp", name)).read() == "secret\n"


@needs_ns
async def test_host_path_volume_is_mounted_only_when_asked(make, tmp_path):
    master, agent = await make("posix,filesystem/linux")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("from the host\n")
    msg = run_task(agent.agent_id, "vol", "cat data/data.txt; touch data/new 2>/dev/null || echo read-only")
    msg.task.container = {"type": "MESOS", "volumes": [
        {"container_path": "data", "mode": "RO", "source": {"type": "HOST_PATH", "host_path": {"path": str(shared)}}}]}
    await master.send(msg)
    await master.wait_state("vol", "TASK_FINISHED", timeout=30)
    assert open(os.path.join(sandbox_of(agent, "vol"), "stdout")).read() == "from the host\nread-only\n"
    assert not (shared / "new").exists()


# ---------------------------------------------------------------------- disk/du
async def test_task_over_its_disk_quota_is_killed(make):
    master, agent = await make("posix,disk/du", enforce_container_disk_quota=True,
                               container_disk_watch_interval=0.2)
    cmd = "dd if=/dev/zero of=big bs=1M count=24 2>/dev/null; sync; sleep 60"
    await master.send(run_task(agent.agent_id, "du", cmd, resources="cpus:0.1;mem:64;disk:8"))
    failed = await master.wait_state("du", "TASK_FAILED", timeout=30)
    assert failed.status.reason == "REASON_CONTAINER_LIMITATION_DISK", failed.status
    assert failed.status.message.startswith("Disk usage (") and failed.status.message.endswith(
        "exceeds quota (8MB)"), failed.status.message


async def test_disk_usage_is_reported_without_enforcement(make):
    master, agent = await make("posix,disk/du", container_disk_watch_interval=0.2)
    await master.send(run_task(agent.agent_id, "du2", "dd if=/dev/zero of=big bs=1M count=12 2>/dev/null; sleep 60",
                               resources="cpus:0.1;mem:64;disk:8"))
    await master.wait_state("du2", "TASK_RUNNING", timeout=30)
    ex = agent.frameworks["fw-1"].executors["du2"]
    await wait_for(lambda: (ex.container.disk_used or 0) >= 12 << 20, 20, "usage measured")
    stats = agent.containerizer.usage(ex.container)
    assert stats["disk_limit_bytes"] == 8 << 20 and stats["disk_used_bytes"] >= 12 << 20
    assert not any(u.status.state == "TASK_FAILED" for u in master.updates("du2"))


# ---------------------------------------------------------------------- images
@pytest.fixture
def image_dir(tmp_path):
    if busybox_path() is None:
        pytest.skip("busybox-static is not installed")
    d = tmp_path / "images"
    save_manifest_tar(make_image("from-the-image"), d / "busybox-test:latest.tar")
    return d


def image_task(agent_id: str, task_id: str, cmd: str | None, image: str = "busybox-test", **kw):
    msg = run_task(agent_id, task_id, cmd, **kw)
    msg.task.container = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}}
    return msg


@needs_ns
async def test_image_task_sees_the_image_runs_as_its_user_writes_the_sandbox(make, image_dir):
    master, agent = await make("posix,filesystem/linux,docker/runtime", docker_registry=str(image_dir))
    cmd = "cat /etc/hostname; id -u; echo $MESOS_SANDBOX; echo hello > /mnt/mesos/sandbox/out"
    await master.send(image_task(agent.agent_id, "img", cmd))
    await master.wait_state("img", "TASK_FINISHED", timeout=60)
    box = sandbox_of(agent, "img")
    assert open(os.path.join(box, "stdout")).read() == "from-the-image\n1234\n/mnt/mesos/sandbox\n"
    assert open(os.path.join(box, "out")).read() == "hello\n"
    assert os.stat(os.path.join(box, "out")).st_uid == 1234
    store = agent.images.store
    downloads = store.stats["layer_downloads"]
    await master.send(image_task(agent.agent_id, "img2", "cat /etc/hostname"))
    await master.wait_state("img2", "TASK_FINISHED", timeout=60)
    assert store.stats["layer_downloads"] == downloads  # reused from the store
    assert open(os.path.join(sandbox_of(agent, "img2"), "stdout")).read() == "from-the-image\n"
    provisioner = os.path.join(agent.config.work_dir, "provisioner")
    await wait_for(lambda: not any(os.listdir(os.path.join(provisioner, c)) for c in os.listdir(provisioner)),
             10, "rootfs removed after the tasks ended")


@needs_ns
async def test_image_with_pid_namespace_and_explicit_user(make, image_dir):
    master, agent = await make("posix,filesystem/linux,namespaces/pid", docker_registry=str(image_dir))
    msg = image_task(agent.agent_id, "pid", "echo $$; id -u; ls /proc | grep -c '^[0-9]' || true")
    msg.task.command.user = "root"
    await master.send(msg)
    await master.wait_state("pid", "TASK_FINISHED", timeout=60)
    lines = open(os.path.join(sandbox_of(agent, "pid"), "stdout")).read().split()
    assert lines[:2] == ["2", "0"], lines


@needs_ns
async def test_unknown_image_fails_the_launch_with_the_reason(make, image_dir):
    master, agent = await make("posix,filesystem/linux", docker_registry=str(image_dir))
    await master.send(image_task(agent.agent_id, "nope", "true", image="no-such-image"))
    failed = await master.wait_state("nope", "TASK_FAILED", timeout=30)
    assert failed.status.reason == "REASON_CONTAINER_LAUNCH_FAILED"
    assert "no-such-image" in failed.status.message


async def test_docker_containerizer_type_is_refused_clearly(make):
    master, agent = await make("posix")
    msg = run_task(agent.agent_id, "dock", "true")
    msg.task.container = {"type": "DOCKER", "docker": {"image": "busybox"}}
    await master.send(msg)
    failed = await master.wait_state("dock", "TASK_FAILED", timeout=30)
    assert failed.status.reason == "REASON_CONTAINER_LAUNCH_FAILED"
    assert "Docker daemon" in failed.status.message


@pytest.fixture
def loopback_registry(tmp_path):
    if REGISTRY is None:
        pytest.skip("Debian package docker-registry is not installed")
    if busybox_path() is None:
        pytest.skip("busybox-static is not installed")
    root = tmp_path / "registry"
    root.mkdir()
    proc, base = start_registry(root)
    push_image(base, make_image("from-the-registry"))
    yield base
    proc.terminate()
    proc.wait(10)


@needs_ns
async def test_image_from_the_loopback_registry_is_pulled_once(make, loopback_registry):
    master, agent = await make("posix,filesystem/linux", docker_registry=loopback_registry)
    await master.send(image_task(agent.agent_id, "r1", "cat /etc/hostname; id -un 2>/dev/null || id -u"))
    await master.wait_state("r1", "TASK_FINISHED", timeout=60)
    assert open(os.path.join(sandbox_of(agent, "r1"), "stdout")).read().startswith("from-the-registry\n")
    source, store = agent.images.source, agent.images.store
    asked, downloads = source.requests, store.stats["layer_downloads"]
    assert downloads == 2
    await master.send(image_task(agent.agent_id, "r2", "cat /etc/hostname"))
    await master.wait_state("r2", "TASK_FINISHED", timeout=60)
    assert source.requests == asked and store.stats["layer_downloads"] == downloads
    assert open(os.path.join(sandbox_of(agent, "r2"), "stdout")).read() == "from-the-registry\n"


# ---------------------------------------------------------------------- pure parts
def test_isolation_names_follow_mesos():
    spec = parse_isolation("cgroups/cpu,cgroups/mem,cgroups/blkio,disk/du,filesystem/linux,namespaces/pid")
    assert (spec.io, spec.disk_du, spec.filesystem_linux, spec.pid_namespace) == (True, True, True, True)
    assert parse_isolation("auto") == parse_isolation("")
    with pytest.raises(ValueError, match="network/cni"):
        parse_isolation("posix,network/cni")


def test_container_info_shapes():
    name, cached, vols = parse_container({"type": "MESOS", "mesos": {"image": {
        "type": "DOCKER", "docker": {"name": "busybox:1.36"}, "cached": False}},
        "volumes": [{"container_path": "/data", "mode": "RO", "host_path": "/srv"},
                    {"container_path": "/tmp", "mode": "RW",
                     "source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "SELF", "path": "tmp"}}}]})
    assert (name, cached) == ("busybox:1.36", False)
    assert vols[0].host_path == "/srv" and vols[0].readonly and vols[1].sandbox_path == "tmp"
    for bad, words in (({"type": "MESOS", "mesos": {"image": {"type": "APPC", "appc": {"name": "x"}}}}, "APPC"),
                       ({"type": "MESOS", "volumes": [{"container_path": "/x", "mode": "RW",
                                                       "source": {"type": "SECRET"}}]}, "SECRET")):
        with pytest.raises(ValueError, match=words):
            parse_container(bad)


def test_disk_message_uses_mesos_units():
    assert disk_message(25 * 1024 * 1024, 8 * 1024 * 1024) == "Disk usage (25MB) exceeds quota (8MB)"
    assert format_bytes(1536) == "1536B" and format_bytes(3 << 30) == "3GB" and format_bytes(4096) == "4KB"


def test_unavailable_namespaces_refuse_the_agent_with_a_reason(monkeypatch):
    from mesos_nb.agent import containerizer

    monkeypatch.setattr(containerizer, "namespaces_unavailable", lambda: "the agent is not running as root")
    with pytest.raises(ValueError, match="namespaces/pid isolation is unavailable: the agent is not running as root"):
        containerizer.make_containerizer("posix,namespaces/pid")


# ---------------------------------------------------------------------- status, limits, executors
@needs_ns
async def test_exit_status_passes_through_the_namespace_init(make):
    master, agent = await make("posix,filesystem/linux,namespaces/pid")
    msg = run_task(agent.agent_id, "three", "exit 3")
    msg.framework.checkpoint = True  # supervised: the waiter records the status for a restarted agent
    await master.send(msg, run_task(agent.agent_id, "sig", "kill -KILL $$"))
    failed = await master.wait_state("three", "TASK_FAILED", timeout=30)
    assert failed.status.message == "Command exited with status 3"
    killed = await master.wait_state("sig", "TASK_FAILED", timeout=30)
    assert killed.status.message == "Command terminated with signal Killed"
    meta = os.path.join(agent.config.work_dir, "meta")
    statuses = [os.path.join(r, "exit.status") for r, _, files in os.walk(meta) if "exit.status" in files]
    assert statuses and int(open(statuses[0]).read()) == 3 << 8


CGROUPS_WHY = None
try:
    from mesos_nb.agent.isolation import detect_isolation
    _kind, _why = detect_isolation()
    CGROUPS_WHY = None if _kind.startswith("cgroups") else "; ".join(f"{k}: {v}" for k, v in _why.items())
except Exception as e:  # pragma: no cover - detection itself failed
    CGROUPS_WHY = str(e)


@needs_ns
@pytest.mark.skipif(CGROUPS_WHY is not None, reason=f"cgroups unusable here: {CGROUPS_WHY}")
async def test_memory_limit_still_applies_inside_a_pid_namespace(make):
    import sys
    # The interpreter itself, not the venv's link: filesystem/linux gives the task a private /tmp,
    # so a checkout (and its venv) under /tmp is not visible inside the container.
    python = os.path.realpath(sys.executable)
    hog = (f"{python} -c \"import time; b = []\n"
           "while True:\n    b.append(bytearray(8 << 20)); time.sleep(0.01)\"")
    master, agent = await make("cgroups/cpu,cgroups/mem,filesystem/linux,namespaces/pid")
    await master.send(run_task(agent.agent_id, "hog", hog, resources="cpus:0.5;mem:64"))
    failed = await master.wait_state("hog", "TASK_FAILED", timeout=60)
    assert failed.status.reason == "REASON_CONTAINER_LIMITATION_MEMORY", failed.status


@needs_ns
async def test_custom_executor_runs_in_its_image(make, image_dir):
    from mesos_nb.protocol.messages import ID, CommandInfo, ExecutorInfo

    master, agent = await make("posix,filesystem/linux", docker_registry=str(image_dir),
                               executor_registration_timeout=30)
    executor = ExecutorInfo(
        executor_id=ID(value="img-exec"), framework_id=ID(value="fw-1"),
        command=CommandInfo(value="cat /etc/hostname > $MESOS_SANDBOX/seen; id -u >> $MESOS_SANDBOX/seen"),
        container={"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox-test"}}}})
    await master.send(run_task(agent.agent_id, "t-ex", None, executor=executor))
    await master.wait_state("t-ex", "TASK_FAILED", timeout=30)  # it exits without subscribing
    assert open(os.path.join(sandbox_of(agent, "img-exec"), "seen")).read() == "from-the-image\n1234\n"


def test_cli_agent_refuses_an_unknown_isolator_in_one_sentence(tmp_path):
    from conftest import run_cli

    r = run_cli("agent", "--isolation", "posix,network/cni", "--port", "0", "--master", "127.0.0.1:1",
                "--work-dir", str(tmp_path / "agent"), timeout=30)
    assert r.returncode == 2, r
    assert "Unsupported isolation 'network/cni'" in r.stderr and "Traceback" not in r.stderr


@needs_ns
async def test_task_group_executor_runs_in_its_image(make, image_dir):
    from mesos_nb.protocol.channel import RunTask
    from mesos_nb.protocol.messages import ID, CommandInfo, ExecutorInfo

    master, agent = await make("posix,filesystem/linux,namespaces/pid", docker_registry=str(image_dir),
                               executor_registration_timeout=30)
    executor = ExecutorInfo(
        executor_id=ID(value="group-exec"), framework_id=ID(value="fw-1"),
        command=CommandInfo(value="cat /etc/hostname > $MESOS_SANDBOX/seen; echo $$ >> $MESOS_SANDBOX/seen"),
        container={"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox-test"}}}})
    tasks = [run_task(agent.agent_id, t, None).task for t in ("g1", "g2")]
    first = run_task(agent.agent_id, "g1", None)
    await master.send(RunTask(agent_id=agent.agent_id, framework=first.framework, executor=executor, task_group=tasks))
    for t in ("g1", "g2"):
        await master.wait_state(t, "TASK_FAILED", timeout=30)  # the executor exits without subscribing
    assert open(os.path.join(sandbox_of(agent, "group-exec"), "seen")).read() == "from-the-image\n2\n"


@needs_ns
async def test_posix_memory_accounting_skips_the_namespace_wrappers(make):
    """The waiter and init are forks of the agent: their RSS is the agent's shared pages, not
    the task's. A small task under a small limit must not be killed for them."""
    master, agent = await make("posix,filesystem/linux,namespaces/pid")
    await master.send(run_task(agent.agent_id, "small", "sleep 1; echo done", resources="cpus:0.1;mem:8"))
    await master.wait_state("small", "TASK_FINISHED", timeout=30)
    assert not any(u.status.state == "TASK_FAILED" for u in master.updates("small"))

"""Docker images from the user's side: ``mesos-nb run --image``, ``%mesos run --image`` and Dask
workers in an image, against local clusters whose agents read a directory of ``docker save``
tarballs (``mesos-nb local --isolation … --docker-registry DIR``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import images_support
import pytest
from conftest import REPO, cli_env, free_port, mesos_shell, notebook_home, run_cli, wait_for
from images_support import TarBuilder, busybox_path, make_image, save_manifest_tar

from mesos_nb.agent.isolation import namespaces_unavailable

NO_NS = namespaces_unavailable()
pytestmark = [pytest.mark.skipif(NO_NS is not None, reason=f"namespaces unavailable: {NO_NS}"),
              pytest.mark.skipif(busybox_path() is None, reason="busybox-static is not installed")]

MARKER = "inside-the-busybox-image"
ISOLATION = "posix,filesystem/linux"
AGENT = "cpus:2;mem:2048;disk:1024"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    save_manifest_tar(make_image(MARKER, repo="busybox"), d / "busybox:latest.tar")
    return d


@pytest.fixture
def local_cli(tmp_path: Path, registry: Path):
    """``mesos-nb local`` as a user starts it, with the image options; yields the master address."""
    port = free_port()
    log = open(tmp_path / "local.log", "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesos_nb", "local", "--agents", "1", "--port", str(port), "--resources", AGENT,
         "--work-dir", str(tmp_path / "local"), "--isolation", ISOLATION, "--docker-registry", str(registry)],
        env=cli_env(), cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "local.log").read_text()
            r = run_cli("--master", f"127.0.0.1:{port}", "agents")
            return r.returncode == 0 and len(r.stdout.splitlines()) >= 2
        wait_for(up, 60, message="mesos-nb local with one agent")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def test_cli_run_image_prints_the_images_file(local_cli):
    r = run_cli("--master", local_cli, "run", "--cpus", "0.2", "--mem", "64", "--image", "busybox",
                "--timeout", "90", "--", "cat", "/etc/hostname")
    assert (r.returncode, r.stdout) == (0, MARKER + "\n"), r.stderr
    host = run_cli("--master", local_cli, "run", "--cpus", "0.2", "--mem", "64", "--timeout", "90",
                   "--", "cat", "/etc/hostname")  # control: without --image, the host's file
    assert host.returncode == 0 and MARKER not in host.stdout
    missing = run_cli("--master", local_cli, "run", "--cpus", "0.2", "--mem", "64", "--image", "no-such-image",
                      "--timeout", "90", "--", "true")
    assert missing.returncode != 0 and "no-such-image" in missing.stderr


def test_cli_local_refuses_an_unknown_isolator_in_one_sentence(tmp_path):
    r = run_cli("local", "--agents", "1", "--port", "0", "--work-dir", str(tmp_path / "w"),
                "--isolation", "posix,network/cni")
    assert r.returncode == 2 and "network/cni" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------- notebook
@pytest.fixture
def image_cluster(tmp_path: Path, registry: Path):
    from mesos_nb.notebook.embedded import ClusterThread

    ct = ClusterThread(agents=1, port=0, agent_resources=AGENT, work_dir=str(tmp_path / "nb-cluster"),
                       isolation=ISOLATION, docker_registry=str(registry))
    ct.start()
    try:
        yield ct
    finally:
        ct.stop()


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("IPython")
    notebook_home(tmp_path / "home", monkeypatch)
    with mesos_shell() as shell:
        yield shell


def test_notebook_run_image(ip, image_cluster):
    ip.run_line_magic("mesos", f"connect {image_cluster.master_address}")
    t = ip.run_line_magic("mesos", "run --cpus 0.2 --mem 64 --image busybox -- cat /etc/hostname")
    assert t.wait(90).state == "TASK_FINISHED", t.message
    assert t.logs().stdout == MARKER + "\n"
    plain = ip.run_line_magic("mesos", "run --cpus 0.2 --mem 64 -- cat /etc/hostname")
    assert plain.wait(90).state == "TASK_FINISHED" and MARKER not in plain.logs().stdout


# ---------------------------------------------------------------------------- dask
def etc_only_image(marker: str) -> images_support.TestImage:
    """An image whose layer has only /etc files (and the host's top-level symlinks such as
    ``lib -> usr/lib``, since a volume cannot be mounted over a symlink): Python comes from
    read-only host volumes."""
    t = TarBuilder().dir("etc").file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    t.file("etc/group", "root:x:0:\n").file("etc/hostname", marker + "\n").dir("tmp", 0o1777)
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            t.symlink(name, os.readlink(p))
    config = {"architecture": "amd64", "os": "linux",
              "config": {"User": "root", "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]}}
    return images_support.TestImage([t.bytes()], config, "pyhost", "latest")


def python_volumes() -> list[tuple[str, str]]:
    """The host's Python installation and this checkout, as (host, container) pairs."""
    paths = {"/usr", sys.base_prefix, sys.prefix, os.path.realpath(sys.prefix), str(REPO),
             os.path.dirname(os.path.realpath(sys.executable))}
    for name in ("lib", "lib64"):
        p = Path("/") / name
        if p.is_dir() and not p.is_symlink():
            paths.add(str(p))
    keep = sorted(p for p in paths if os.path.isdir(p))
    # a path under another kept path is already visible there
    keep = [p for p in keep if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in keep)]
    return [(p, p) for p in keep]


def test_dask_workers_run_in_the_image(tmp_path: Path):
    pytest.importorskip("distributed")
    from mesos_nb.frameworks.dask import MesosCluster
    from mesos_nb.local import LocalCluster
    from mesos_nb.notebook.embedded import ClusterThread

    d = tmp_path / "images"
    save_manifest_tar(etc_only_image("dask-in-the-image"), d / "pyhost:latest.tar")
    ct = ClusterThread(agents=1, port=0, agent_resources="cpus:2;mem:4096;disk:2048",
                       work_dir=str(tmp_path / "dask-cluster"), isolation=ISOLATION, docker_registry=str(d))
    assert isinstance(ct.cluster, LocalCluster)
    ct.start()
    try:
        from distributed import Client

        with MesosCluster(ct.master_address, n_workers=1, cpus=1, mem=1024, image="pyhost",
                          volumes=python_volumes()) as cluster, Client(cluster) as client:
            client.wait_for_workers(1, timeout=120)
            seen = client.run(lambda: (open("/etc/hostname").read(), socket.gethostname() != ""))
            assert [v[0] for v in seen.values()] == ["dask-in-the-image\n"]
            assert client.submit(lambda x: x + 1, 41).result(timeout=60) == 42
            tasks = cluster.worker_tasks()
            assert len(tasks) == 1
    finally:
        ct.stop()


def test_notebook_dask_image_with_volumes(ip, tmp_path: Path):
    pytest.importorskip("distributed")
    from mesos_nb.notebook import MesosNotebookError
    from mesos_nb.notebook.embedded import ClusterThread

    d = tmp_path / "images"
    save_manifest_tar(etc_only_image("magic-dask-image"), d / "pyhost:latest.tar")
    ct = ClusterThread(agents=1, port=0, agent_resources="cpus:2;mem:4096;disk:2048",
                       work_dir=str(tmp_path / "dask-magic"), isolation=ISOLATION, docker_registry=str(d))
    ct.start()
    try:
        ip.run_line_magic("mesos", f"connect {ct.master_address}")
        with pytest.raises(MesosNotebookError, match="give --image too"):
            ip.run_line_magic("mesos", "dask --workers 1 --volume /usr")
        vols = " ".join(f"--volume {h}:{c}" for h, c in python_volumes())
        client = ip.run_line_magic("mesos", f"dask --workers 1 --cpus 1 --mem 1024 --image pyhost {vols}")
        seen = client.run(lambda: open("/etc/hostname").read())
        assert list(seen.values()) == ["magic-dask-image\n"]
        ip.run_line_magic("mesos", "disconnect")
    finally:
        ct.stop()

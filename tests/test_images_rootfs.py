"""A real process started in an image's root file system through prepare_container's
preexec: it sees the image's files, runs as the image user, writes into the sandbox at
/mnt/mesos/sandbox, and leaves no mount behind on the host. Needs root (mounts)."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest
from images_support import busybox_path, make_image, save_manifest_tar

from mesos_nb.agent.images import (
    ImageError,
    ImageStore,
    TarballSource,
    overlay_available,
    prepare_container,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="entering a rootfs needs root (mount namespaces)"),
    pytest.mark.skipif(busybox_path() is None, reason="busybox-static is not installed"),
]

SCRIPT = ("cat /etc/hostname; id -u; id -g; pwd; echo $GREETING $MESOS_SANDBOX; "
          "test -e /gone.txt || echo no-gone; ls /opq; cat /proc/self/status | grep -c Uid; "
          "test -c /dev/null && echo devnull; echo written > /mnt/mesos/sandbox/out")


@pytest.fixture
def tarballs(tmp_path):
    d = tmp_path / "images"
    save_manifest_tar(make_image(), d / "busybox-test:latest.tar")
    return TarballSource(str(d))


def _mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


async def _run(prepared, sandbox) -> tuple[int, str, str]:
    ln = prepared.launch
    with open(sandbox / "stdout", "wb") as out, open(sandbox / "stderr", "wb") as err:
        proc = subprocess.Popen(ln.argv, executable=ln.executable, env=ln.env, cwd=str(sandbox),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=prepared.preexec, start_new_session=True)
        rc = await asyncio.to_thread(proc.wait, 30)
    return rc, (sandbox / "stdout").read_text(), (sandbox / "stderr").read_text()


@pytest.mark.parametrize("backend", ["overlay", "copy"])
async def test_task_runs_inside_the_image(tmp_path, tarballs, backend):
    if backend == "overlay" and not overlay_available(str(tmp_path)):
        pytest.skip("overlayfs cannot be mounted here")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    os.chown(sandbox, 1234, 1234)  # the containerizer chowns the sandbox to the task user
    store = ImageStore(str(tmp_path / "store"))
    host_hostname = open("/etc/hostname").read() if os.path.exists("/etc/hostname") else None
    prepared = await prepare_container(store, tarballs, "busybox-test", str(tmp_path / "container"),
                                       str(sandbox), shell=True, value=SCRIPT, backend=backend)
    try:
        assert prepared.rootfs.backend == backend
        assert (prepared.user.uid, prepared.user.gid) == (1234, 1234)
        rc, out, err = await _run(prepared, sandbox)
        assert rc == 0, err
        lines = out.splitlines()
        assert lines[:7] == ["image-marker", "1234", "1234", "/work", "hello /mnt/mesos/sandbox",
                             "no-gone", "new.txt"], out
        assert "devnull" in lines
        assert (sandbox / "out").read_text() == "written\n"
        assert os.stat(sandbox / "out").st_uid == 1234
        assert "/mnt/mesos/sandbox" not in _mounts()  # the child's mounts stayed in its namespace
        if host_hostname is not None:
            assert open("/etc/hostname").read() == host_hostname
    finally:
        prepared.release()
    assert not os.path.exists(prepared.rootfs.path)
    assert prepared.rootfs.path not in _mounts()
    assert store._holds == {}  # released: evictable again


async def test_image_entrypoint_cmd_and_explicit_user(tmp_path, tarballs):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    store = ImageStore(str(tmp_path / "store"))
    prepared = await prepare_container(store, tarballs, "busybox-test", str(tmp_path / "c"), str(sandbox),
                                       user="root")
    try:
        assert prepared.launch.argv == ["/bin/sh", "-c", "echo default"]
        rc, out, err = await _run(prepared, sandbox)
        assert (rc, out) == (0, "default\n"), err
    finally:
        prepared.release()
    with pytest.raises(ImageError, match="'ghost' is not in the image's /etc/passwd"):
        await prepare_container(store, tarballs, "busybox-test", str(tmp_path / "c2"), str(sandbox),
                                user="ghost")
    assert not os.path.exists(tmp_path / "c2" / "rootfs") and store._holds == {}


async def test_missing_workdir_executable_fails_the_launch_clearly(tmp_path, tarballs):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    store = ImageStore(str(tmp_path / "store"))
    prepared = await prepare_container(store, tarballs, "busybox-test", str(tmp_path / "c"), str(sandbox),
                                       value="/no/such/binary", user="root")
    try:
        with pytest.raises(FileNotFoundError):
            await _run(prepared, sandbox)
    finally:
        prepared.release()


@pytest.mark.parametrize("link", ["mnt", "dev"])
async def test_image_symlink_cannot_aim_a_mount_at_the_host(tmp_path, link):
    from images_support import TarBuilder, base_layer

    victim = tmp_path / "victim"
    victim.mkdir()
    d = tmp_path / "images"
    img = make_image(layers=[base_layer(), TarBuilder().symlink(link, str(victim)).bytes()])
    save_manifest_tar(img, d / "busybox-test:latest.tar")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    store = ImageStore(str(tmp_path / "store"))
    prepared = await prepare_container(store, TarballSource(str(d)), "busybox-test", str(tmp_path / "c"),
                                       str(sandbox), shell=True, value="echo ran", user="root")
    try:
        with pytest.raises(subprocess.SubprocessError):
            await _run(prepared, sandbox)
        assert "cannot enter the container's root file system" in (sandbox / "stderr").read_text()
        assert list(victim.iterdir()) == [] and str(victim) not in _mounts()
    finally:
        prepared.release()

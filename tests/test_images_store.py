"""The layer store with `docker save` tarball sources: both archive layouts, one fetch per
layer (also under concurrency and across a restart), DiffID verification, LRU eviction,
rootfs assembly with whiteouts."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest
from images_support import busybox_path, make_image, save_legacy_tar, save_manifest_tar

from mesos_nb.agent.images import (
    ImageError,
    ImageStore,
    TarballSource,
    assemble_rootfs,
    destroy_rootfs,
    overlay_available,
)

pytestmark = pytest.mark.skipif(busybox_path() is None, reason="busybox-static is not installed")


class Counting:
    """A real source that records which layers were fetched from it."""

    def __init__(self, inner):
        self.inner, self.name, self.fetches = inner, inner.name, []

    async def resolve(self, ref):
        return await self.inner.resolve(ref)

    async def fetch_layer(self, image, layer, dest):
        self.fetches.append(layer.diff_id)
        await self.inner.fetch_layer(image, layer, dest)


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "images"
    img = make_image()
    save_manifest_tar(img, d / "busybox-test:latest.tar")
    save_legacy_tar(img, d / "legacy" / "busybox-test.tar")
    return d, img


async def test_manifest_layout_pulled_once_and_reused(tmp_path, image_dir):
    d, img = image_dir
    src = Counting(TarballSource(str(d)))
    store = ImageStore(str(tmp_path / "store"))
    image = await store.pull("busybox-test", src)
    assert image.layer_ids == img.diff_ids and len(src.fetches) == 2
    assert image.config.user == "app" and image.config.working_dir == "/work"
    for layer in image.layers:
        assert os.path.isdir(layer.path) and layer.path.startswith(str(tmp_path / "store" / "layers" / "sha256"))
    again = await store.pull("busybox-test:latest", src)
    assert again.layer_ids == image.layer_ids and len(src.fetches) == 2
    await store.pull("busybox-test", src, cached=False)  # re-reads the archive, layers reused
    assert len(src.fetches) == 2
    restarted = ImageStore(str(tmp_path / "store"))  # a new agent process on the same store
    await restarted.pull("busybox-test", src)
    assert len(src.fetches) == 2


async def test_concurrent_pulls_share_one_fetch_per_layer(tmp_path, image_dir):
    d, img = image_dir
    src = Counting(TarballSource(str(d)))
    store = ImageStore(str(tmp_path / "store"))
    images = await asyncio.gather(*(store.pull("busybox-test", src) for _ in range(4)),
                                  store.pull("busybox-test", src, cached=False))
    assert all(i.layer_ids == img.diff_ids for i in images)
    assert sorted(src.fetches) == sorted(img.diff_ids)


async def test_legacy_layout_and_layers_shared_with_manifest_layout(tmp_path, image_dir):
    d, img = image_dir
    legacy = Counting(TarballSource(str(d / "legacy")))
    store = ImageStore(str(tmp_path / "store"))
    image = await store.pull("busybox-test:latest", legacy)  # busybox-test.tar (untagged file name)
    assert image.layer_ids == img.diff_ids and len(legacy.fetches) == 2
    assert image.config.cmd == ["/bin/sh", "-c", "echo default"] and image.config.user == "app"
    modern = Counting(TarballSource(str(d)))
    await store.pull("busybox-test", modern)
    assert modern.fetches == []  # same DiffIDs: the layers are already stored


async def test_docker25_oci_style_archive(tmp_path):
    img = make_image()
    d = tmp_path / "images"
    save_manifest_tar(img, d / "team" / "app:v1.tar", oci=True)  # "team/app:v1": '/' is a subdirectory
    src = Counting(TarballSource(str(d)))
    image = await ImageStore(str(tmp_path / "store")).pull("team/app:v1", src)
    assert image.layer_ids == img.diff_ids and len(src.fetches) == 2


async def test_missing_image_and_tampered_layer_are_refused(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    store = ImageStore(str(tmp_path / "store"))
    with pytest.raises(ImageError, match=r"no busybox-test:1\.0\.tar"):
        await store.pull("busybox-test:1.0", TarballSource(str(d)))
    good = make_image()
    bad = make_image(marker="tampered")
    bad.config["rootfs"]["diff_ids"] = good.diff_ids  # config claims the good layers
    bad.__post_init__()
    bad.diff_ids = good.diff_ids
    save_manifest_tar(bad, d / "busybox-test:latest.tar")
    with pytest.raises(ImageError, match="does not match its DiffID"):
        await store.pull("busybox-test", TarballSource(str(d)))
    assert store.layer(good.diff_ids[0]) is None
    assert os.listdir(tmp_path / "store" / "staging") == []


async def test_lru_eviction_spares_held_and_recent_layers(tmp_path):
    d = tmp_path / "images"
    imgs = {n: make_image(marker=n, filler=os.urandom(200_000), repo=f"img-{n}") for n in "abc"}
    for n, img in imgs.items():
        save_manifest_tar(img, d / f"img-{n}:latest.tar")
    tick = itertools.count(1)
    store = ImageStore(str(tmp_path / "store"), clock=lambda: float(next(tick)))
    src = Counting(TarballSource(str(d)))
    a = await store.pull("img-a", src)
    base_size = store.layer(a.layer_ids[0]).size
    top_size = store.layer(a.layer_ids[1]).size
    store.max_bytes = int(1.5 * base_size) + top_size  # one image (its top layer is shared by all)
    b = await store.pull("img-b", src)
    assert store.layer(a.layer_ids[0]) is None  # least recently used and not held: evicted
    assert store.layer(b.layer_ids[0]) is not None and store.layer(a.layer_ids[1]) is not None
    assert store.stats["layers_evicted"] == 1
    store.hold(b)
    await store.pull("img-c", src)
    assert store.layer(b.layer_ids[0]) is not None  # held by a container: kept (store over budget)
    assert store.total_bytes() > store.max_bytes
    store.release(b)
    n = len(src.fetches)
    await store.pull("img-a", src)  # evicted before: fetched again; b's base is now the LRU one
    assert len(src.fetches) == n + 1 and store.layer(b.layer_ids[0]) is None
    assert store.total_bytes() <= store.max_bytes


BACKENDS = ["copy", pytest.param("overlay", marks=pytest.mark.skipif(
    os.geteuid() != 0, reason="overlay mounts need root"))]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_rootfs_has_whiteouts_applied(tmp_path, image_dir, backend):
    d, _ = image_dir
    if backend == "overlay" and not overlay_available(str(tmp_path)):
        pytest.skip("this kernel/filesystem cannot mount overlayfs here")
    store = ImageStore(str(tmp_path / "store"))
    image = await store.pull("busybox-test", TarballSource(str(d)))
    rootfs = assemble_rootfs(image.layers, str(tmp_path / "c1"), backend)
    try:
        r = rootfs.path
        assert rootfs.backend == backend
        assert not os.path.lexists(os.path.join(r, "gone.txt"))
        assert os.listdir(os.path.join(r, "opq")) == ["new.txt"]
        assert open(os.path.join(r, "keep.txt")).read() == "kept\n"
        assert open(os.path.join(r, "etc", "hostname")).read() == "image-marker\n"
        assert os.readlink(os.path.join(r, "bin", "sh")) == "busybox"
        with open(os.path.join(r, "written-by-container"), "w") as f:
            f.write("x")
        for layer in image.layers:  # writes never reach the shared layers
            assert not os.path.exists(os.path.join(layer.path, "written-by-container"))
    finally:
        destroy_rootfs(rootfs)
    assert not os.path.exists(rootfs.path)

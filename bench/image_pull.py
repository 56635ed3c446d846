"""Image pull, unpack and rootfs assembly times for a small busybox image (no Docker daemon).

    python bench/image_pull.py [--repeat 5]

Builds the test image of tests/images_support.py (busybox-static + /etc files, 2 layers, the
second with whiteouts), then measures, median of --repeat runs:
* tarball source (`docker save` archive): cold pull (fresh store: read, verify, unpack),
  warm pull (cached record), re-resolve pull (``cached=False``: archive re-read, layers reused);
* registry source (Debian's docker-registry on loopback, gzipped layers), same three;
* rootfs assembly: overlay mount vs copy backend, and teardown;
* one process started in the rootfs through the enter-rootfs preexec (``sh -c :``).
Needs root for overlay and entering; those rows are skipped otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from images_support import make_image, push_image, save_manifest_tar  # noqa: E402

from mesos_nb.agent.images import (  # noqa: E402
    ImageStore,
    RegistrySource,
    TarballSource,
    assemble_rootfs,
    destroy_rootfs,
    overlay_available,
    prepare_container,
)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _pulls(tmp: str, source, ref: str, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"cold": [], "warm": [], "re-resolve": []}
    for i in range(repeat):
        store = ImageStore(os.path.join(tmp, f"store-{source.name}-{i}"))
        for kind, cached in (("cold", True), ("warm", True), ("re-resolve", False)):
            t = time.perf_counter()
            await store.pull(ref, source, cached=cached)
            out[kind].append(time.perf_counter() - t)
    return out


def _start_registry(tmp: str):
    exe = shutil.which("docker-registry")
    if exe is None:
        return None, None
    port = _free_port()
    cfg = os.path.join(tmp, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                f"  filesystem:\n    rootdirectory: {tmp}/registry\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([exe, "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/v2/", timeout=1).close()
            return proc, base
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                return None, None
            time.sleep(0.05)  # startup poll of an external server, not test synchronisation


async def main(repeat: int) -> None:
    tmp = tempfile.mkdtemp(prefix="image-bench-")
    rows: list[tuple[str, float]] = []
    try:
        img = make_image()
        save_manifest_tar(img, __import__("pathlib").Path(tmp, "images", "busybox-test:latest.tar"))
        print(f"image: 2 layers, {sum(len(x) for x in img.layers) / 1e6:.2f} MB uncompressed")
        res = await _pulls(tmp, TarballSource(os.path.join(tmp, "images")), "busybox-test", repeat)
        rows += [(f"tarball pull {k}", statistics.median(v)) for k, v in res.items()]
        proc, base = _start_registry(tmp)
        if proc is not None:
            try:
                push_image(base, img)
                src = RegistrySource(base)
                res = await _pulls(tmp, src, "busybox-test", repeat)
                await src.close()
                rows += [(f"registry pull {k}", statistics.median(v)) for k, v in res.items()]
            finally:
                proc.terminate()
                proc.wait()
        store = ImageStore(os.path.join(tmp, "store-rootfs"))
        image = await store.pull("busybox-test", TarballSource(os.path.join(tmp, "images")))
        backends = ["copy"] + (["overlay"] if overlay_available(tmp) else [])
        for backend in backends:
            build, teardown = [], []
            for i in range(repeat):
                t = time.perf_counter()
                r = assemble_rootfs(image.layers, os.path.join(tmp, f"c-{backend}-{i}"), backend)
                build.append(time.perf_counter() - t)
                t = time.perf_counter()
                destroy_rootfs(r)
                teardown.append(time.perf_counter() - t)
            rows += [(f"rootfs assemble {backend}", statistics.median(build)),
                     (f"rootfs destroy {backend}", statistics.median(teardown))]
        if os.geteuid() == 0:
            sandbox = os.path.join(tmp, "sandbox")
            os.mkdir(sandbox)
            times = []
            for i in range(repeat):
                p = await prepare_container(store, TarballSource(os.path.join(tmp, "images")), "busybox-test",
                                            os.path.join(tmp, f"run-{i}"), sandbox, shell=True, value=":", user="root")
                t = time.perf_counter()
                subprocess.run(p.launch.argv, executable=p.launch.executable, env=p.launch.env, cwd=sandbox,
                               preexec_fn=p.preexec, check=True)
                times.append(time.perf_counter() - t)
                p.release()
            rows.append(("exec sh -c : inside the rootfs", statistics.median(times)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, secs in rows:
        print(f"{name:36s} {secs * 1000:9.1f} ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    asyncio.run(main(ap.parse_args().repeat))

"""Content-addressed layer store with one download per layer and LRU eviction.

Layout under ``root`` (the ``--docker_store_dir`` of this agent)::

    layers/sha256/<diffid hex>/rootfs/      the unpacked layer (whiteouts in overlay form when root)
    layers/sha256/<diffid hex>/layer.json   {diff_id, size, whiteouts, opaque, last_used}
    images/<source>/<reference>.json        {reference, manifest_digest, config, layers}
    staging/<random>/                       downloads and unpacking in progress (removed at start)

Layers are keyed by DiffID, so two images (or a tarball and a registry copy of one image)
share them. A layer appears in ``layers/`` only after its DiffID was verified, by one rename.
Concurrent pulls of an image share one pull, concurrent needs of a layer share one download
(in-flight maps of tasks). The store is bounded by ``max_bytes`` (0 = unbounded): after each
pull, layers no container holds are evicted least-recently-used first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from .layers import LayerContents, extract_layer
from .manifest import ImageConfig, ImageError, check_digest, parse_config
from .reference import ImageReference, parse_reference
from .source import ImageSource, LayerRef, ResolvedImage

log = logging.getLogger("mesos_nb.agent.images")


@dataclass(frozen=True)
class StoredLayer:
    diff_id: str
    path: str                  # the layer's rootfs directory
    size: int
    whiteouts: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()


@dataclass
class StoredImage:
    reference: str
    config: ImageConfig
    layers: list[StoredLayer]  # base first
    manifest_digest: str | None = None
    source: str = ""

    @property
    def layer_ids(self) -> list[str]:
        return [lyr.diff_id for lyr in self.layers]


class ImageStore:
    def __init__(self, root: str, *, max_bytes: int = 0, clock: Callable[[], float] = time.time,
                 overlay_markers: bool | None = None) -> None:
        self.root = os.path.abspath(root)
        self.max_bytes = max_bytes
        self._clock = clock
        self.overlay_markers = os.geteuid() == 0 if overlay_markers is None else overlay_markers
        for d in ("layers/sha256", "images", "staging"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        staging = os.path.join(self.root, "staging")
        for name in os.listdir(staging):  # left by a crash: never a finished layer
            shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
        self._layers: dict[str, dict] = {}
        self._load()
        self._holds: dict[str, int] = {}
        self._layer_jobs: dict[str, asyncio.Task] = {}
        self._pull_jobs: dict[str, asyncio.Task] = {}
        self.stats = {"layer_downloads": 0, "layer_hits": 0, "layers_evicted": 0, "pulls": 0}

    # --- index ------------------------------------------------------------------------

    def _layer_dir(self, diff_id: str) -> str:
        return os.path.join(self.root, "layers", "sha256", check_digest(diff_id))

    def _load(self) -> None:
        base = os.path.join(self.root, "layers", "sha256")
        for hexid in os.listdir(base):
            try:
                with open(os.path.join(base, hexid, "layer.json")) as f:
                    meta = json.load(f)
                if meta.get("diff_id") == f"sha256:{hexid}":
                    self._layers[meta["diff_id"]] = meta
                    continue
            except (OSError, ValueError):
                pass
            shutil.rmtree(os.path.join(base, hexid), ignore_errors=True)  # torn: unpack again

    def _write_meta(self, diff_id: str) -> None:
        meta = self._layers[diff_id]
        path = os.path.join(self._layer_dir(diff_id), "layer.json")
        tmp = f"{path}.{uuid.uuid4().hex}"
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, path)

    def _touch(self, diff_id: str) -> None:
        self._layers[diff_id]["last_used"] = self._clock()
        with contextlib.suppress(OSError):
            self._write_meta(diff_id)

    def layer(self, diff_id: str) -> StoredLayer | None:
        meta = self._layers.get(diff_id)
        if meta is None:
            return None
        return StoredLayer(diff_id, os.path.join(self._layer_dir(diff_id), "rootfs"), int(meta["size"]),
                           tuple(meta.get("whiteouts", ())), tuple(meta.get("opaque", ())))

    def total_bytes(self) -> int:
        return sum(int(m["size"]) for m in self._layers.values())

    def _image_path(self, source: str, ref: ImageReference) -> str:
        return os.path.join(self.root, "images", source, quote(str(ref.with_default_tag()), safe="") + ".json")

    def cached(self, ref: ImageReference | str, source: str) -> StoredImage | None:
        """The stored image for ``ref`` if its record and every layer are present."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        try:
            with open(self._image_path(source, ref)) as f:
                rec = json.load(f)
            config = parse_config(rec["config"].encode())
        except (OSError, ValueError, KeyError, ImageError):
            return None
        layers = [self.layer(d) for d in rec.get("layers", [])]
        if not layers or any(lyr is None for lyr in layers):
            return None
        return StoredImage(rec["reference"], config, layers, rec.get("manifest_digest"), source)  # type: ignore[arg-type]

    # --- holds (layers in use by containers are never evicted) ---------------------------

    def hold(self, image: StoredImage) -> None:
        for d in image.layer_ids:
            self._holds[d] = self._holds.get(d, 0) + 1

    def release(self, image: StoredImage) -> None:
        for d in image.layer_ids:
            n = self._holds.get(d, 0) - 1
            if n > 0:
                self._holds[d] = n
            else:
                self._holds.pop(d, None)

    # --- pull ---------------------------------------------------------------------------

    async def pull(self, ref: ImageReference | str, source: ImageSource, *, cached: bool = True,
                   hold: bool = False) -> StoredImage:
        """The image ``ref`` from ``source``, stored; ``cached=False`` re-reads the manifest
        (Mesos ``Image.cached=false``) but still reuses layers already stored. ``hold=True``
        holds the layers before returning (release with :meth:`release`)."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        key = f"{source.name}\0{ref.with_default_tag()}\0{cached}"
        image = self.cached(ref, source.name) if cached else None
        if image is None:
            job = self._pull_jobs.get(key)
            if job is None:
                job = asyncio.ensure_future(self._pull(ref, source))
                self._pull_jobs[key] = job
                job.add_done_callback(lambda _t: self._pull_jobs.pop(key, None))
            image = await asyncio.shield(job)
        for d in image.layer_ids:
            self._touch(d)
        if hold:
            self.hold(image)
        return image

    async def _pull(self, ref: ImageReference, source: ImageSource) -> StoredImage:
        t0 = time.monotonic()
        self.stats["pulls"] += 1
        resolved = await source.resolve(ref)
        pin = StoredImage(str(ref), resolved.config, [StoredLayer(x.diff_id, "", 0) for x in resolved.layers])
        self.hold(pin)  # an eviction triggered by another pull must not take these mid-pull
        try:
            before = self.stats["layer_downloads"]
            results = await asyncio.gather(*(self._ensure_layer(source, resolved, layer)
                                             for layer in resolved.layers), return_exceptions=True)
            for r in results:  # every layer settled (no download left running), then the first error
                if isinstance(r, BaseException):
                    raise r
            downloaded = self.stats["layer_downloads"] - before
            self._write_image(resolved, source.name)
            image = self.cached(ref, source.name)
            if image is None:  # pragma: no cover - a layer vanished between write and read
                raise ImageError(f"image {ref} was stored incompletely")
        finally:
            self.release(pin)
        log.info("image pulled ref=%s source=%s manifest=%s layers=%d downloaded=%d seconds=%.3f",
                 ref, source.name, resolved.manifest_digest or "-", len(image.layers), downloaded,
                 time.monotonic() - t0)
        self.evict(protect=set(image.layer_ids))
        return image

    def _write_image(self, resolved: ResolvedImage, source: str) -> None:
        path = self._image_path(source, resolved.reference)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rec = {"reference": str(resolved.reference), "manifest_digest": resolved.manifest_digest,
               "config": resolved.config_bytes.decode(), "layers": [x.diff_id for x in resolved.layers]}
        tmp = f"{path}.{uuid.uuid4().hex}"
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, path)

    async def _ensure_layer(self, source: ImageSource, resolved: ResolvedImage, layer: LayerRef) -> None:
        check_digest(layer.diff_id)
        if layer.diff_id in self._layers:
            self.stats["layer_hits"] += 1
            return
        job = self._layer_jobs.get(layer.diff_id)
        if job is None:
            job = asyncio.ensure_future(self._fetch_layer(source, resolved, layer))
            self._layer_jobs[layer.diff_id] = job
            job.add_done_callback(lambda _t: self._layer_jobs.pop(layer.diff_id, None))
        else:
            self.stats["layer_hits"] += 1
        await asyncio.shield(job)

    async def _fetch_layer(self, source: ImageSource, resolved: ResolvedImage, layer: LayerRef) -> None:
        stage = os.path.join(self.root, "staging", uuid.uuid4().hex)
        os.makedirs(os.path.join(stage, "layer", "rootfs"))
        try:
            blob = os.path.join(stage, "blob")
            self.stats["layer_downloads"] += 1
            await source.fetch_layer(resolved, layer, blob)
            contents: LayerContents = await asyncio.to_thread(
                extract_layer, blob, os.path.join(stage, "layer", "rootfs"), overlay_markers=self.overlay_markers)
            if contents.diff_id != layer.diff_id:
                raise ImageError(f"layer content does not match its DiffID: the config says {layer.diff_id}, "
                                 f"the unpacked tar hashes to {contents.diff_id}")
            meta = {"diff_id": layer.diff_id, "size": contents.size, "whiteouts": contents.whiteouts,
                    "opaque": contents.opaque, "last_used": self._clock(),
                    "skipped_devices": contents.skipped_devices}
            with open(os.path.join(stage, "layer", "layer.json"), "w") as f:
                json.dump(meta, f)
            os.replace(os.path.join(stage, "layer"), self._layer_dir(layer.diff_id))
            self._layers[layer.diff_id] = meta
            log.info("image layer stored layer=%s size=%d whiteouts=%d", layer.diff_id, contents.size,
                     len(contents.whiteouts) + len(contents.opaque))
        finally:
            await asyncio.to_thread(shutil.rmtree, stage, True)

    # --- eviction -----------------------------------------------------------------------

    def evict(self, protect: set[str] | None = None) -> list[str]:
        """Remove least-recently-used unheld layers until the store fits ``max_bytes``."""
        if self.max_bytes <= 0:
            return []
        total = self.total_bytes()
        evicted: list[str] = []
        candidates = sorted((m["last_used"], d) for d, m in self._layers.items()
                            if d not in self._holds and d not in (protect or ()) and d not in self._layer_jobs)
        for _, diff_id in candidates:
            if total <= self.max_bytes:
                break
            total -= int(self._layers[diff_id]["size"])
            trash = os.path.join(self.root, "staging", f"evict-{uuid.uuid4().hex}")
            os.replace(self._layer_dir(diff_id), trash)
            del self._layers[diff_id]
            shutil.rmtree(trash, ignore_errors=True)
            evicted.append(diff_id)
        if evicted:
            self.stats["layers_evicted"] += len(evicted)
            log.info("image layers evicted count=%d store_bytes=%d max_bytes=%d", len(evicted), total,
                     self.max_bytes)
        return evicted


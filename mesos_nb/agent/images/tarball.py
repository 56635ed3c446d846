"""Images from a directory of ``docker save`` tarballs (Mesos ``--docker_registry=/dir``).

The file for a reference is ``<dir>/<reference as printed>.tar`` (``busybox:latest`` →
``busybox:latest.tar``, ``busybox`` → ``busybox.tar``, a ``/`` is a subdirectory); a reference
without a tag also finds ``<repo>:latest.tar`` and one tagged ``latest`` also finds
``<repo>.tar``. Both archive layouts are read without unpacking the archive:

* ``manifest.json`` (Docker ≥ 1.10, including the OCI-layout archives of Docker ≥ 25):
  ``[{"Config", "RepoTags", "Layers"}]``; DiffIDs come from the config.
* legacy: ``repositories`` ``{repo: {tag: top layer id}}`` then ``<id>/json`` ``parent``
  links, layers in ``<id>/layer.tar``; the run-time config is the top layer's ``config`` and
  DiffIDs are computed by hashing each layer tar.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tarfile
from typing import Any

from .manifest import ImageError, parse_config
from .reference import DEFAULT_TAG, ImageReference
from .source import LayerRef, ResolvedImage


def _norm(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


class _Archive:
    """Random access to the members of one outer ``docker save`` tar by normalised name."""

    def __init__(self, path: str) -> None:
        try:
            self.tf = tarfile.open(path, "r:*")
        except (tarfile.TarError, OSError) as e:
            raise ImageError(f"{path} is not a readable tar archive: {e}") from None
        self.members = {_norm(m.name): m for m in self.tf.getmembers() if m.isreg()}
        self.path = path

    def close(self) -> None:
        self.tf.close()

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        m = self.members.get(_norm(name))
        if m is None:
            raise ImageError(f"{os.path.basename(self.path)} has no member {name!r}")
        if m.size > limit:
            raise ImageError(f"{name!r} in {os.path.basename(self.path)} is too large ({m.size} bytes)")
        f = self.tf.extractfile(m)
        assert f is not None
        return f.read()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise ImageError(f"{name!r} in {os.path.basename(self.path)} is not JSON: {e}") from None

    def sha256(self, name: str) -> str:
        m = self.members.get(_norm(name))
        if m is None:
            raise ImageError(f"{os.path.basename(self.path)} has no member {name!r}")
        f = self.tf.extractfile(m)
        assert f is not None
        h = hashlib.sha256()
        while chunk := f.read(1 << 20):
            h.update(chunk)
        return "sha256:" + h.hexdigest()

    def copy_to(self, name: str, dest: str) -> None:
        m = self.members.get(_norm(name))
        if m is None:
            raise ImageError(f"{os.path.basename(self.path)} has no member {name!r}")
        f = self.tf.extractfile(m)
        assert f is not None
        with open(dest, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)


class TarballSource:
    """An :class:`~.source.ImageSource` over a directory of ``docker save`` archives."""

    name = "tarball"

    def __init__(self, directory: str) -> None:
        self.directory = os.path.realpath(directory)

    def archive_path(self, ref: ImageReference) -> str:
        names = [str(ref)]
        if not ref.tag and not ref.digest:
            names.append(str(ref.with_default_tag()))
        elif ref.tag == DEFAULT_TAG and not ref.digest:
            names.append(str(ImageReference(ref.registry, ref.repository)))
        for n in names:
            p = os.path.realpath(os.path.join(self.directory, n + ".tar"))
            if not p.startswith(self.directory + os.sep):
                raise ImageError(f"image reference {ref} names a file outside the image directory")
            if os.path.isfile(p):
                return p
        raise ImageError(f"image {ref} not found: no {' or '.join(n + '.tar' for n in names)} "
                         f"in {self.directory}")

    async def resolve(self, ref: ImageReference) -> ResolvedImage:
        return await asyncio.to_thread(self._resolve, ref)

    def _resolve(self, ref: ImageReference) -> ResolvedImage:
        path = self.archive_path(ref)
        arc = _Archive(path)
        try:
            if "manifest.json" in arc.members:
                config_bytes, layers = self._from_manifest(arc, ref)
            elif "repositories" in arc.members:
                config_bytes, layers = self._from_legacy(arc, ref)
            else:
                raise ImageError(f"{os.path.basename(path)} has neither manifest.json nor repositories "
                                 "(not a docker save archive)")
        finally:
            arc.close()
        config = parse_config(config_bytes)
        if len(config.diff_ids) != len(layers):
            raise ImageError(f"{os.path.basename(path)}: config lists {len(config.diff_ids)} layers, "
                             f"the archive {len(layers)}")
        refs = [LayerRef(diff_id=d, locator=loc) for d, loc in zip(config.diff_ids, layers, strict=True)]
        return ResolvedImage(ref, config_bytes, config, refs, None, self.name, {"path": path})

    @staticmethod
    def _from_manifest(arc: _Archive, ref: ImageReference) -> tuple[bytes, list[str]]:
        entries = arc.json("manifest.json")
        if not isinstance(entries, list) or not entries:
            raise ImageError("manifest.json is not a non-empty list")
        want = {f"{ref.repository}:{ref.tag or DEFAULT_TAG}", str(ref.with_default_tag())}
        chosen = None
        for e in entries:
            tags = e.get("RepoTags") or [] if isinstance(e, dict) else []
            if want & set(tags) or any(t.endswith("/" + w) for t in tags for w in want):
                chosen = e
                break
        if chosen is None:
            if len(entries) != 1:
                raise ImageError(f"manifest.json has {len(entries)} images and none is tagged {ref}")
            chosen = entries[0]
        if not isinstance(chosen, dict) or not isinstance(chosen.get("Config"), str) \
                or not isinstance(chosen.get("Layers"), list):
            raise ImageError("manifest.json entry lacks Config or Layers")
        return arc.read(chosen["Config"]), [str(x) for x in chosen["Layers"]]

    @staticmethod
    def _from_legacy(arc: _Archive, ref: ImageReference) -> tuple[bytes, list[str]]:
        repos = arc.json("repositories")
        tag = ref.tag or DEFAULT_TAG
        tags = None
        for key in (ref.repository, f"{ref.registry}/{ref.repository}" if ref.registry else None):
            if key and isinstance(repos, dict) and isinstance(repos.get(key), dict):
                tags = repos[key]
                break
        if tags is None or not isinstance(tags.get(tag), str):
            raise ImageError(f"repositories has no {ref.repository}:{tag}")
        chain: list[str] = []
        layer_id: str | None = tags[tag]
        top: dict[str, Any] = {}
        while layer_id:
            if layer_id in chain or len(chain) > 500:
                raise ImageError("legacy layer parents form a loop")
            if "/" in layer_id or layer_id in ("", ".", ".."):
                raise ImageError(f"legacy layer id {layer_id!r} is malformed")
            meta = arc.json(f"{layer_id}/json")
            if not isinstance(meta, dict):
                raise ImageError(f"{layer_id}/json is not an object")
            top = top or meta
            chain.append(layer_id)
            parent = meta.get("parent")
            layer_id = parent if isinstance(parent, str) else None
        chain.reverse()  # base first
        locators = [f"{i}/layer.tar" for i in chain]
        diff_ids = [arc.sha256(loc) for loc in locators]
        config = {"architecture": top.get("architecture", ""), "os": top.get("os", "linux"),
                  "config": top.get("config") or {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        return json.dumps(config).encode(), locators

    async def fetch_layer(self, image: ResolvedImage, layer: LayerRef, dest_path: str) -> None:
        def copy() -> None:
            arc = _Archive(image.extra.get("path") or self.archive_path(image.reference))
            try:
                arc.copy_to(layer.locator, dest_path)
            finally:
                arc.close()
        await asyncio.to_thread(copy)

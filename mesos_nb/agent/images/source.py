"""What an image source (tarball directory, registry) hands the layer store.

A source turns a reference into a :class:`ResolvedImage` (config + layer list) and writes a
layer's blob to a file on request. Layers are identified by DiffID (sha256 of the
uncompressed tar, from the config), the one id both `docker save` tarballs and registries
agree on, so an image from either source shares layers in the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .manifest import ImageConfig
from .reference import ImageReference


@dataclass(frozen=True)
class LayerRef:
    diff_id: str               # the store key; verified against the unpacked tar
    digest: str | None = None  # blob digest, verified on download (registry); None = no blob digest
    media_type: str = ""
    locator: str = ""          # source-specific: member name in a tarball, blob digest in a registry
    size: int = -1


@dataclass
class ResolvedImage:
    reference: ImageReference
    config_bytes: bytes
    config: ImageConfig
    layers: list[LayerRef]
    manifest_digest: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)


class ImageSource(Protocol):
    """Where images come from. Both methods may raise ImageError / ImageReferenceError / OSError."""

    name: str

    async def resolve(self, ref: ImageReference) -> ResolvedImage: ...

    async def fetch_layer(self, image: ResolvedImage, layer: LayerRef, dest_path: str) -> None: ...

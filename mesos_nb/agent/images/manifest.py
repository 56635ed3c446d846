"""Image manifests, indexes and configs (Docker schema 2 and OCI), and sha256 digests.

Pure functions over bytes: the registry and tarball sources fetch, these decide. A manifest
list / OCI index is resolved to the entry for this host's platform; a manifest gives the
config descriptor and the layer descriptors (base first); a config gives the DiffIDs and the
run-time fields (Entrypoint, Cmd, Env, WorkingDir, User).
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
# What a daemonless pull accepts, most specific first.
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}\Z")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "i686": "386", "i386": "386"}


class ImageError(Exception):
    """An image cannot be used: malformed manifest/config, digest mismatch, unsafe layer, …"""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest; other algorithms are refused (we can't verify them)."""
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise ImageError(f"unsupported or malformed digest {digest!r} (only sha256:<64 hex> is accepted)")
    return digest.split(":", 1)[1]


def verify_digest(data: bytes, digest: str) -> None:
    check_digest(digest)
    got = sha256_digest(data)
    if got != digest:
        raise ImageError(f"digest mismatch: expected {digest}, content hashes to {got}")


def host_platform() -> tuple[str, str]:
    m = platform.machine().lower()
    return "linux", _ARCH.get(m, m)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int = -1


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: list[Descriptor]
    media_type: str


@dataclass
class ImageConfig:
    """The parts of an image config used at run time (``config.*``) and for layer ids."""

    diff_ids: list[str]
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    os: str = "linux"
    architecture: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _loads(data: bytes, what: str) -> dict[str, Any]:
    try:  # msgspec checks the JSON and that it is an object in one call
        return msgspec.json.decode(data, type=dict[str, Any])
    except msgspec.DecodeError as e:
        raise ImageError(f"{what} is not a valid JSON object: {e}") from None


def _descriptor(d: Any, what: str) -> Descriptor:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
        raise ImageError(f"{what} has no digest")
    check_digest(d["digest"])
    size = d.get("size", -1)
    return Descriptor(str(d.get("mediaType", "")), d["digest"], size if isinstance(size, int) else -1)


def media_type_of(data: bytes, content_type: str | None) -> str:
    """The document's type: its own ``mediaType`` field, else the HTTP Content-Type."""
    ct = (content_type or "").split(";")[0].strip()
    try:
        doc = json.loads(data)
        mt = doc.get("mediaType") if isinstance(doc, dict) else None
        if isinstance(doc, dict) and doc.get("schemaVersion") == 1:
            return SCHEMA1[0]
        if isinstance(doc, dict) and not mt and "manifests" in doc:
            return OCI_INDEX
    except ValueError:
        mt = None
    return mt or ct


def pick_platform(data: bytes, os_name: str | None = None, arch: str | None = None) -> Descriptor:
    """From a manifest list / OCI index, the manifest for ``os_name``/``arch`` (default: this host)."""
    host_os, host_arch = host_platform()
    os_name, arch = os_name or host_os, arch or host_arch
    doc = _loads(data, "manifest list")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ImageError("manifest list has no 'manifests' array")
    seen = []
    for e in entries:
        p = e.get("platform") if isinstance(e, dict) else None
        if not isinstance(p, dict):
            continue
        seen.append(f"{p.get('os')}/{p.get('architecture')}")
        if p.get("os") == os_name and p.get("architecture") == arch:
            return _descriptor(e, "manifest list entry")
    raise ImageError(f"no manifest for {os_name}/{arch} in the manifest list (has: {', '.join(seen) or 'none'})")


def parse_manifest(data: bytes, media_type: str) -> Manifest:
    if media_type in SCHEMA1:
        raise ImageError("schema 1 manifests are not supported (push the image with a current client)")
    doc = _loads(data, "manifest")
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"manifest schemaVersion is {doc.get('schemaVersion')!r}, expected 2")
    config = _descriptor(doc.get("config"), "manifest config")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ImageError("manifest has no layers")
    return Manifest(config, [_descriptor(x, f"manifest layer {i}") for i, x in enumerate(layers)],
                    media_type or DOCKER_MANIFEST)


def _strings(v: Any, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ImageError(f"image config {what} must be a list of strings")
    return list(v)


def parse_config(data: bytes) -> ImageConfig:
    doc = _loads(data, "image config")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ImageError("image config has no rootfs of type 'layers'")
    diff_ids = _strings(rootfs.get("diff_ids"), "rootfs.diff_ids")
    for d in diff_ids:
        check_digest(d)
    c = doc.get("config") or {}
    if not isinstance(c, dict):
        raise ImageError("image config 'config' is not an object")
    wd, user = c.get("WorkingDir") or "", c.get("User") or ""
    if not isinstance(wd, str) or not isinstance(user, str):
        raise ImageError("image config WorkingDir/User must be strings")
    return ImageConfig(diff_ids=diff_ids, entrypoint=_strings(c.get("Entrypoint"), "Entrypoint"),
                       cmd=_strings(c.get("Cmd"), "Cmd"), env=_strings(c.get("Env"), "Env"),
                       working_dir=wd, user=user, os=str(doc.get("os", "linux")),
                       architecture=str(doc.get("architecture", "")), raw=doc)

"""Docker image references: ``[registry[:port]/]repository[:tag|@digest]``.

Parsed with the rules Mesos applies (``src/docker/spec.cpp``): the ``@digest`` is split off
first; the last ``:`` piece is a tag only when it has no ``/``; the first path component is a
registry host only when it contains ``.`` or ``:`` or is ``localhost``. Docker Hub single names
get ``library/``. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "registry-1.docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")


class ImageReferenceError(ValueError):
    """A malformed image reference; the message names the part that is wrong."""


@dataclass(frozen=True)
class ImageReference:
    registry: str | None  # None: the default registry (Docker Hub unless configured)
    repository: str       # as written, e.g. "busybox" or "team/app"
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def reference(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def api_name(self, registry: str | None = None) -> str:
        """The repository name in ``/v2/<name>/…``: Docker Hub single names get ``library/``."""
        host = self.registry or registry or DOCKER_HUB
        if host in (DOCKER_HUB, "docker.io", "index.docker.io") and "/" not in self.repository:
            return f"library/{self.repository}"
        return self.repository

    def with_default_tag(self) -> ImageReference:
        if self.tag or self.digest:
            return self
        return ImageReference(self.registry, self.repository, DEFAULT_TAG, None)


def parse_reference(text: str) -> ImageReference:
    """Parse an image reference or raise :class:`ImageReferenceError` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ImageReferenceError("image reference is empty")
    s = text.strip()
    if len(s) > 512:
        raise ImageReferenceError(f"image reference is too long ({len(s)} characters)")
    digest = None
    if "@" in s:
        s, _, digest = s.partition("@")
        if "@" in digest:
            raise ImageReferenceError(f"image reference {text!r} has more than one '@'")
        if not _DIGEST.match(digest):
            raise ImageReferenceError(f"image reference {text!r}: {digest!r} is not a digest (algorithm:hex)")
    tag = None
    head, sep, last = s.rpartition(":")
    if sep and "/" not in last:
        s, tag = head, last
        if not _TAG.match(tag):
            raise ImageReferenceError(f"image reference {text!r}: {tag!r} is not a valid tag")
    registry = None
    first, slash, rest = s.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, s = first, rest
        if not re.match(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?\Z", registry):
            raise ImageReferenceError(f"image reference {text!r}: {registry!r} is not a registry host[:port]")
    if not s:
        raise ImageReferenceError(f"image reference {text!r} has no repository name")
    if len(s) >= 256:
        raise ImageReferenceError(f"image reference {text!r}: repository name is 256 characters or more")
    for comp in s.split("/"):
        if not _COMPONENT.match(comp):
            raise ImageReferenceError(
                f"image reference {text!r}: repository component {comp!r} must be lower-case "
                "letters and digits separated by '.', '_', '__' or '-'")
    return ImageReference(registry, s, tag, digest)

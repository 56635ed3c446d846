"""What a task's ``ContainerInfo`` asks of the Mesos containerizer: an image and volumes.

Pure: a ``ContainerInfo`` (Mesos JSON, as the master passes it through) → an
:class:`ImageSpec` and :class:`VolumeSpec` list, or a ValueError with one sentence for what
is not supported (``type: DOCKER`` needs the Docker daemon, which is not used; APPC images;
volume sources other than host and sandbox paths).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .images.launch import SANDBOX_TARGET
from .namespaces import Bind


@dataclass(frozen=True)
class ImageSpec:
    """A Docker image for a MESOS container, plus the command fields the runtime combines."""
    name: str
    cached: bool = True
    shell: bool = False
    value: str | None = None
    arguments: tuple[str, ...] = ()
    task_env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None  # CommandInfo.user only (FrameworkInfo.user is not an override)


@dataclass(frozen=True)
class VolumeSpec:
    container_path: str
    host_path: str | None = None       # HOST_PATH (or the legacy ``host_path`` field)
    sandbox_path: str | None = None    # SANDBOX_PATH, type SELF
    readonly: bool = False


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def parse_container(container: Any) -> tuple[str | None, bool, list[VolumeSpec]]:
    """(image name or None, image cached flag, volumes). Raises ValueError when unsupported."""
    if container is None:
        return None, True, []
    ctype = _get(container, "type") or "MESOS"
    if ctype == "DOCKER":
        raise ValueError("ContainerInfo type DOCKER needs a Docker daemon, which mesos-nb does not use; "
                         "use type MESOS with mesos.image of type DOCKER")
    if ctype != "MESOS":
        raise ValueError(f"ContainerInfo type {ctype!r} is not supported")
    name, cached = None, True
    image = _get(_get(container, "mesos"), "image")
    if image is not None:
        itype = _get(image, "type")
        if itype != "DOCKER":
            raise ValueError(f"image type {itype!r} is not supported (only DOCKER)")
        name = _get(_get(image, "docker"), "name")
        if not isinstance(name, str) or not name:
            raise ValueError("the DOCKER image has no name")
        cached = _get(image, "cached") is not False
    volumes = [_volume(v) for v in _get(container, "volumes") or []]
    return name, cached, volumes


def _volume(v: Any) -> VolumeSpec:
    cpath = _get(v, "container_path")
    if not isinstance(cpath, str) or not cpath:
        raise ValueError("a volume has no container_path")
    readonly = _get(v, "mode") == "RO"
    source = _get(v, "source")
    if source is None:
        host = _get(v, "host_path")
        if not isinstance(host, str) or not host.startswith("/"):
            raise ValueError(f"volume {cpath!r}: only host_path volumes (absolute paths) are supported here")
        return VolumeSpec(cpath, host_path=host, readonly=readonly)
    stype = _get(source, "type")
    if stype == "HOST_PATH":
        host = _get(_get(source, "host_path"), "path")
        if not isinstance(host, str) or not host.startswith("/"):
            raise ValueError(f"volume {cpath!r}: host_path.path must be an absolute path")
        return VolumeSpec(cpath, host_path=host, readonly=readonly)
    if stype == "SANDBOX_PATH":
        sp = _get(source, "sandbox_path")
        if (_get(sp, "type") or "SELF") != "SELF":
            raise ValueError(f"volume {cpath!r}: only SANDBOX_PATH of type SELF is supported")
        path = _get(sp, "path")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"volume {cpath!r}: sandbox_path.path must be relative, inside the sandbox")
        if not cpath.startswith("/"):
            raise ValueError(f"volume {cpath!r}: a SANDBOX_PATH volume needs an absolute container_path")
        return VolumeSpec(cpath, sandbox_path=path, readonly=readonly)
    raise ValueError(f"volume {cpath!r}: source type {stype!r} is not supported (HOST_PATH, SANDBOX_PATH)")


def binds(volumes: list[VolumeSpec], sandbox: str, *, image: bool) -> list[Bind]:
    """Volumes → bind mounts. A relative container_path is inside the sandbox; with an image,
    targets are paths inside the container's root (the sandbox at ``/mnt/mesos/sandbox``)."""
    out = []
    for v in volumes:
        source = v.host_path or os.path.join(sandbox, v.sandbox_path or "")
        if ".." in v.container_path.split("/"):
            raise ValueError(f"volume {v.container_path!r}: container_path must not contain '..'")
        if v.container_path.startswith("/"):
            target = posixpath.normpath(v.container_path)
        else:
            target = posixpath.join(SANDBOX_TARGET if image else sandbox, v.container_path)
        if not os.path.exists(source):
            if v.sandbox_path is not None:
                os.makedirs(source, exist_ok=True)
            else:
                raise ValueError(f"volume {v.container_path!r}: host path {source} does not exist")
        out.append(Bind(source, target, v.readonly))
    return out


__all__ = ["ImageSpec", "VolumeSpec", "parse_container", "binds"]

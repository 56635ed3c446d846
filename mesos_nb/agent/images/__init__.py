"""Docker/OCI images for the Mesos containerizer, without a Docker daemon (see README.md)."""

from .container import PreparedContainer, make_source, prepare_container
from .launch import SANDBOX_TARGET, ImageLaunch, User, image_launch, resolve_user
from .manifest import ImageConfig, ImageError
from .reference import ImageReference, ImageReferenceError, parse_reference
from .registry import RegistryError, RegistrySource, credentials_from_docker_config
from .rootfs import Rootfs, assemble_rootfs, destroy_rootfs, overlay_available
from .store import ImageStore, StoredImage, StoredLayer
from .tarball import TarballSource

__all__ = [
    "SANDBOX_TARGET", "ImageConfig", "ImageError", "ImageLaunch", "ImageReference", "ImageStore",
    "PreparedContainer", "ImageReferenceError", "RegistryError", "RegistrySource", "Rootfs", "StoredImage",
    "StoredLayer", "TarballSource", "User", "assemble_rootfs", "credentials_from_docker_config",
    "destroy_rootfs", "image_launch", "make_source", "overlay_available", "parse_reference",
    "prepare_container", "resolve_user",
]

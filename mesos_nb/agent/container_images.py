"""The agent's side of container images: one image store and one source per agent (from
``--docker_registry``, ``--docker_store_dir``, ``--image_store_max_bytes``), a launch's
image prepared through :func:`~.images.prepare_container`, the sandbox handed to the task's
user, and images of containers recovered after a restart held again.

The store is opened on first use, so agents that never run an image pay nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .images import ImageStore, make_source, prepare_container
from .images.rootfs import Rootfs, destroy_rootfs
from .images.store import StoredImage

logger = logging.getLogger("mesos_nb.agent")
DOCKER_HUB = "https://registry-1.docker.io"


def chown_tree(path: str, uid: int, gid: int) -> None:
    """Give the sandbox to the task's user (as Mesos does for ``--switch_user``)."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


@dataclass
class RecoveredImage:
    """A container's image after an agent restart: its rootfs and (when still stored) held layers."""
    rootfs: Rootfs
    image: StoredImage | None
    store: ImageStore

    def release(self) -> None:
        try:
            destroy_rootfs(self.rootfs)
            with contextlib.suppress(OSError):
                os.rmdir(self.rootfs.container_dir)
        finally:
            if self.image is not None:
                self.store.release(self.image)


class ContainerImages:
    def __init__(self, docker_registry: str | None, store_dir: str, *, max_bytes: int = 0,
                 credentials: dict[str, tuple[str, str]] | None = None) -> None:
        self.docker_registry = docker_registry or DOCKER_HUB
        self.store_dir = store_dir
        self.max_bytes = max_bytes
        self.credentials = credentials
        self._store: ImageStore | None = None
        self._source: Any = None

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            self._store = ImageStore(self.store_dir, max_bytes=self.max_bytes)
        return self._store

    @property
    def source(self) -> Any:
        if self._source is None:
            self._source = make_source(self.docker_registry, credentials=self.credentials)
        return self._source

    async def prepare(self, spec: Any, container_dir: str, volumes: Sequence[tuple[str, str, bool]]) -> Any:
        """A PreparedContainer for ``spec`` (a LaunchSpec with ``image``); errors propagate."""
        img = spec.image
        prepared = await prepare_container(
            self.store, self.source, img.name, container_dir, spec.cwd, shell=img.shell, value=img.value,
            arguments=list(img.arguments), task_env=dict(img.task_env), agent_env=spec.env, user=img.user,
            cached=img.cached, volumes=volumes)
        try:
            if prepared.user.uid != os.geteuid() or prepared.user.gid != os.getegid():
                await asyncio.to_thread(chown_tree, spec.cwd, prepared.user.uid, prepared.user.gid)
        except BaseException:
            self.release(prepared)
            raise
        logger.info("image prepared container=%s image=%s backend=%s uid=%d", spec.container_id, img.name,
                    prepared.rootfs.backend, prepared.user.uid)
        return prepared

    def release(self, prepared: Any) -> None:
        """Unmount and delete the rootfs, unhold the layers (off the event loop when there is one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._release_now(prepared)
        else:
            loop.run_in_executor(None, self._release_now, prepared)

    @staticmethod
    def _release_now(prepared: Any) -> None:
        try:
            prepared.release()
            with contextlib.suppress(OSError):
                os.rmdir(prepared.rootfs.container_dir)
        except OSError:
            logger.exception("cannot remove a container's root file system")

    def recovered(self, image_name: str, container_dir: str) -> RecoveredImage:
        """Hold the image of a container that survived an agent restart (so the store does not
        evict its layers) and remember its rootfs for removal when it ends."""
        image = self.store.cached(image_name, self.source.name)
        if image is not None:
            self.store.hold(image)
        path = os.path.join(container_dir, "rootfs")
        backend = "overlay" if os.path.ismount(path) else "copy"
        return RecoveredImage(Rootfs(path, backend, container_dir), image, self.store)

    async def close(self) -> None:
        if self._source is not None:
            closer = getattr(self._source, "close", None)
            if closer is not None:
                res = closer()
                if asyncio.iscoroutine(res):
                    await res


__all__ = ["ContainerImages", "RecoveredImage", "chown_tree", "DOCKER_HUB"]

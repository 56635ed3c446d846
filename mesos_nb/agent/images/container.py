"""The one call the containerizer makes: image → stored layers → rootfs → what to exec.

:func:`prepare_container` pulls (or reuses) the image, holds its layers, assembles the
rootfs in the container's directory, resolves the command/env/cwd/user and returns a
:class:`PreparedContainer` whose ``preexec`` is handed to ``subprocess.Popen`` (``cwd`` = the
host sandbox, which the child leaves for the container root). ``release()`` undoes it all
when the container is destroyed. :func:`make_source` maps the ``--docker_registry`` flag to
a source (a path → tarballs, else a registry URL or host).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .enter import make_enter_rootfs
from .launch import SANDBOX_TARGET, ImageLaunch, User, image_launch, resolve_user
from .reference import ImageReference, parse_reference
from .registry import RegistrySource
from .rootfs import Rootfs, assemble_rootfs, destroy_rootfs, read_image_file
from .source import ImageSource
from .store import ImageStore, StoredImage
from .tarball import TarballSource


def make_source(docker_registry: str, *, credentials: Mapping[str, tuple[str, str]] | None = None) -> ImageSource:
    """Mesos ``--docker_registry``: a value starting with ``/`` is a directory of tarballs."""
    if docker_registry.startswith("/"):
        return TarballSource(docker_registry)
    return RegistrySource(docker_registry, credentials=credentials)


@dataclass
class PreparedContainer:
    image: StoredImage
    rootfs: Rootfs
    launch: ImageLaunch        # argv/env/cwd (cwd inside the container)
    user: User
    preexec: Callable[[], None]
    store: ImageStore

    def release(self) -> None:
        """Unmount/delete the rootfs and let the store evict the layers again."""
        try:
            destroy_rootfs(self.rootfs)
        finally:
            self.store.release(self.image)


async def prepare_container(store: ImageStore, source: ImageSource, image: str | ImageReference,
                            container_dir: str, sandbox: str, *, shell: bool = False,
                            value: str | None = None, arguments: Sequence[str] = (),
                            task_env: Mapping[str, str] | None = None,
                            agent_env: Mapping[str, str] | None = None, user: str | None = None,
                            cached: bool = True, backend: str = "auto",
                            sandbox_target: str = SANDBOX_TARGET,
                            then: Callable[[], None] | None = None,
                            volumes: Sequence[tuple[str, str, bool]] = ()) -> PreparedContainer:
    """Everything needed to exec a task in ``image`` (see the module doc). Raises
    ImageReferenceError / ImageError with a one-sentence reason (for TASK_FAILED)."""
    ref = parse_reference(image) if isinstance(image, str) else image
    stored = await store.pull(ref, source, cached=cached, hold=True)
    try:
        launch = image_launch(stored.config, shell=shell, value=value, arguments=arguments,
                              task_env=task_env, agent_env=agent_env, user=user,
                              sandbox_target=sandbox_target)
        rootfs = await asyncio.to_thread(assemble_rootfs, stored.layers, container_dir, backend)
        try:
            ids = resolve_user(launch.user, read_image_file(rootfs.path, "/etc/passwd"),
                               read_image_file(rootfs.path, "/etc/group"))
        except BaseException:
            destroy_rootfs(rootfs)
            raise
    except BaseException:
        store.release(stored)
        raise
    preexec = make_enter_rootfs(rootfs.path, sandbox, workdir=launch.cwd, uid=ids.uid, gid=ids.gid,
                                groups=ids.groups, sandbox_target=sandbox_target, then=then, volumes=volumes)
    return PreparedContainer(stored, rootfs, launch, ids, preexec, store)

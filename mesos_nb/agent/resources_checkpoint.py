"""The agent's checkpointed resources: its total after the master applied dynamic
reservations and persistent volumes to it (``volumes.py`` keeps the volumes' directories).

``<work_dir>/meta/resources/resources.info`` holds ``{"base": <the total the flags give>,
"resources": [Resource...]}``. The master sends the converted total in
``CHECKPOINT_RESOURCES``; the agent writes it atomically and, when it starts again with the
same flags, reports that total when it (re-)registers, so the reservations survive agent and
master restarts. A checkpoint made under different ``--resources`` is ignored (with a warning),
as Mesos refuses an incompatible resource change.
"""

from __future__ import annotations

import json
import logging
import os

import msgspec

from mesos_nb.protocol.messages import Resource
from mesos_nb.protocol.resources import ResourceParseError, Resources

from .checkpoint import atomic_write, meta_dir

logger = logging.getLogger("mesos_nb.agent")


def path(work_dir: str) -> str:
    return os.path.join(meta_dir(work_dir), "resources", "resources.info")


def save(work_dir: str, base: Resources, resources: list[Resource]) -> Resources:
    """Persist the master's total for this agent; returns it as Resources."""
    total = Resources.from_proto(resources)
    body = {"base": msgspec.to_builtins(base.to_proto()), "resources": msgspec.to_builtins(resources)}
    atomic_write(path(work_dir), json.dumps(body).encode())
    return total


def load(work_dir: str, base: Resources) -> Resources:
    """The checkpointed total if it was made from the same flag resources, else ``base``."""
    try:
        with open(path(work_dir), "rb") as f:
            body = json.loads(f.read())
        saved_base = Resources.parse(json.dumps(body["base"]))
        total = Resources.parse(json.dumps(body["resources"]))
    except FileNotFoundError:
        return base
    except (OSError, ValueError, KeyError, TypeError, ResourceParseError) as e:
        logger.warning("ignoring unreadable checkpointed resources %s: %s", path(work_dir), e)
        return base
    if saved_base != base:
        logger.warning("ignoring checkpointed resources made under other --resources (%s, now %s)", saved_base, base)
        return base
    logger.info("recovered checkpointed resources %s", total)
    return total

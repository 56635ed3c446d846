"""Block I/O control for the cgroup isolators (``cgroups/blkio``, alias ``cgroups/io``).

Mesos has no I/O resource, so a task asks through its labels (``TaskInfo.labels``):

* ``mesos_nb.io.weight`` -- proportional share, 1..10000 (v2 ``io.weight``; v1 ``blkio.weight``
  or ``blkio.bfq.weight``, scaled to 10..1000). Needs a scheduler with group weights (BFQ,
  iocost); without one the weight is logged as not applied.
* ``mesos_nb.io.read_bps`` / ``write_bps`` / ``read_iops`` / ``write_iops`` -- hard ceilings
  (v2 ``io.max``; v1 ``blkio.throttle.*_device``), reliable on any block device.
* ``mesos_nb.io.device`` -- ``MAJ:MIN`` or a path on the device (default: the disk holding
  the agent's work directory, i.e. the sandboxes).

Statistics come back in Mesos' ``blkio_statistics`` shape (``throttling`` entries with
``serviced`` / ``service_bytes`` per op) for ``/monitor/statistics``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from .cgroupfs import read_text, write_text
from .isolator import IoLimits

logger = logging.getLogger("mesos_nb.agent")

PREFIX = "mesos_nb.io."
_KEYS = ("weight", "read_bps", "write_bps", "read_iops", "write_iops")


def labels_dict(labels: Any) -> dict[str, str]:
    """``{"labels": [{"key", "value"}]}`` (Mesos JSON) → a plain dict."""
    out: dict[str, str] = {}
    items = labels.get("labels", []) if isinstance(labels, Mapping) else getattr(labels, "labels", None) or []
    for item in items:
        key = item.get("key") if isinstance(item, Mapping) else getattr(item, "key", None)
        value = item.get("value") if isinstance(item, Mapping) else getattr(item, "value", None)
        if isinstance(key, str):
            out[key] = value if isinstance(value, str) else ""
    return out


def block_device(path: str) -> str:
    """``MAJ:MIN`` of the whole disk holding ``path`` ("" when it is not on a block device,
    e.g. tmpfs or overlay). Throttle rules apply to whole disks, so a partition maps to its disk."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    if os.path.exists(path) and _is_blockdev(path):
        major, minor = os.major(os.stat(path).st_rdev), os.minor(os.stat(path).st_rdev)
    sys_dir = f"/sys/dev/block/{major}:{minor}"
    if not os.path.exists(sys_dir):
        return ""
    if os.path.exists(os.path.join(sys_dir, "partition")):
        parent = os.path.realpath(os.path.join(sys_dir, ".."))
        dev = (read_text(os.path.join(parent, "dev")) or "").strip()
        if dev:
            return dev
    return f"{major}:{minor}"


def _is_blockdev(path: str) -> bool:
    import stat as _stat

    try:
        return _stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def io_limits(labels: Any, default_device: str) -> IoLimits | None:
    """The task's I/O limits from its labels (None when it asks for none). Raises ValueError
    with a sentence on a bad value."""
    found = {k[len(PREFIX):]: v for k, v in labels_dict(labels).items() if k.startswith(PREFIX)}
    if not found:
        return None
    unknown = set(found) - set(_KEYS) - {"device"}
    if unknown:
        raise ValueError(f"unknown I/O label(s) {', '.join(PREFIX + k for k in sorted(unknown))}")
    values: dict[str, int] = {}
    for k in _KEYS:
        if k in found:
            try:
                values[k] = int(found[k])
            except ValueError:
                raise ValueError(f"label {PREFIX}{k} must be a whole number, not {found[k]!r}") from None
            if values[k] < 0:
                raise ValueError(f"label {PREFIX}{k} must not be negative")
    if "weight" in values and not 1 <= values["weight"] <= 10000:
        raise ValueError(f"label {PREFIX}weight must be in 1..10000, not {values['weight']}")
    device = found.get("device", "").strip()
    if device and ":" not in device:
        device = block_device(device)
    device = device or default_device
    if not device:
        raise ValueError("no block device for the I/O limits: the work directory is not on a block device; "
                         f"name one with the {PREFIX}device label")
    return IoLimits(device=device, **values)


# ---------------------------------------------------------------------- cgroups v1 (blkio)
def apply_v1(cgroup: str, io: IoLimits) -> None:
    for name, value in (("read_bps", io.read_bps), ("write_bps", io.write_bps),
                        ("read_iops", io.read_iops), ("write_iops", io.write_iops)):
        if value:
            write_text(os.path.join(cgroup, f"blkio.throttle.{name}_device"), f"{io.device} {value}")
    if io.weight:
        w = max(10, min(1000, io.weight // 10 if io.weight > 1000 else io.weight))
        for f in ("blkio.weight", "blkio.bfq.weight"):
            path = os.path.join(cgroup, f)
            if os.path.exists(path):
                write_text(path, str(w))
                break
        else:
            logger.warning("I/O weight not applied: no blkio.weight or blkio.bfq.weight in %s "
                           "(the disk's scheduler has no group weights)", os.path.dirname(cgroup))


def _dev(key: str) -> dict[str, int] | None:
    major, _, minor = key.partition(":")
    if major.isdigit() and minor.isdigit():
        return {"major": int(major), "minor": int(minor)}
    return None


def stats_v1(cgroup: str) -> dict[str, Any]:
    """``blkio_statistics`` from ``blkio.throttle.io_service{_bytes,d}`` (Mesos' shape)."""
    per: dict[str, dict[str, list]] = {}
    for fname, field in (("blkio.throttle.io_service_bytes", "service_bytes"),
                         ("blkio.throttle.io_serviced", "serviced")):
        for line in (read_text(os.path.join(cgroup, fname)) or "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2].isdigit() and _dev(parts[0]):
                per.setdefault(parts[0], {"service_bytes": [], "serviced": []})[field].append(
                    {"op": parts[1].upper(), "value": int(parts[2])})
    return {"throttling": [{"device": _dev(d), **v} for d, v in sorted(per.items())]}


# ---------------------------------------------------------------------- cgroups v2 (io)
def apply_v2(cgroup: str, io: IoLimits) -> None:
    keys = [f"{k}={v}" for k, v in (("rbps", io.read_bps), ("wbps", io.write_bps),
                                      ("riops", io.read_iops), ("wiops", io.write_iops)) if v]
    if keys:
        write_text(os.path.join(cgroup, "io.max"), f"{io.device} {' '.join(keys)}")
    if io.weight:
        path = os.path.join(cgroup, "io.weight")
        try:
            write_text(path, f"{io.device} {io.weight}")
        except OSError:
            with contextlib.suppress(OSError):
                write_text(path, f"default {io.weight}")
        if not os.path.exists(path):
            logger.warning("I/O weight not applied: %s has no io.weight (no iocost/BFQ)", cgroup)


def stats_v2(cgroup: str) -> dict[str, Any]:
    """``blkio_statistics`` from ``io.stat`` (``rbytes wbytes rios wios dbytes dios``)."""
    out = []
    for line in (read_text(os.path.join(cgroup, "io.stat")) or "").splitlines():
        parts = line.split()
        dev = _dev(parts[0]) if parts else None
        if dev is None:
            continue
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        num = {k: int(v) for k, v in kv.items() if v.isdigit()}
        rb, wb, ri, wi = num.get("rbytes", 0), num.get("wbytes", 0), num.get("rios", 0), num.get("wios", 0)
        out.append({"device": dev,
                    "service_bytes": [{"op": "READ", "value": rb}, {"op": "WRITE", "value": wb},
                                      {"op": "TOTAL", "value": rb + wb}],
                    "serviced": [{"op": "READ", "value": ri}, {"op": "WRITE", "value": wi},
                                 {"op": "TOTAL", "value": ri + wi}]})
    return {"throttling": out}


def totals(blkio: Mapping[str, Any]) -> dict[str, int]:
    """Flat read/write byte counts summed over devices (handy for dashboards and tests)."""
    out = {"io_read_bytes": 0, "io_write_bytes": 0}
    for entry in blkio.get("throttling", []):
        for item in entry.get("service_bytes", []):
            if item["op"] == "READ":
                out["io_read_bytes"] += item["value"]
            elif item["op"] == "WRITE":
                out["io_write_bytes"] += item["value"]
    return out


__all__ = ["PREFIX", "labels_dict", "block_device", "io_limits", "apply_v1", "apply_v2", "stats_v1", "stats_v2",
           "totals"]

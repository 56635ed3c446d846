"""Command-line flags of the master's HA and partition settings, shared by every CLI layout.

Why here: the flag names, defaults and checks are the master's contract (Mesos 1.11 names,
dashes for underscores), whichever module builds the ``mesos-nb master`` parser; the CLI only
calls :func:`add_master_flags` and passes :func:`master_config_kwargs` to ``MasterConfig``.
Durations accept seconds (``2``, ``2.5``) or Mesos' forms (``10secs``, ``10mins``, ``2weeks``).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from .partitions import REGISTRY_MAX_AGENT_AGE, REGISTRY_MAX_AGENT_COUNT

_UNITS = {"ns": 1e-9, "nsecs": 1e-9, "us": 1e-6, "usecs": 1e-6, "ms": 1e-3, "msecs": 1e-3, "s": 1.0,
          "secs": 1.0, "sec": 1.0, "m": 60.0, "mins": 60.0, "min": 60.0, "h": 3600.0, "hrs": 3600.0,
          "hours": 3600.0, "d": 86400.0, "days": 86400.0, "w": 604800.0, "weeks": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")


def duration(text: str) -> float:
    """``"10secs"`` -> 10.0; argparse type (ArgumentTypeError names the problem)."""
    mo = _DURATION.match(text.lower())
    if not mo or (mo.group(2) and mo.group(2) not in _UNITS):
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration (e.g. 10, 10secs, 10mins, 2weeks)")
    value = float(mo.group(1)) * _UNITS.get(mo.group(2) or "s", 1.0)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be a positive duration")
    return value


def _zk(text: str) -> str:
    from ..protocol.zk_url import parse_zk_url

    try:
        parse_zk_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive integer")
    return n


def add_master_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("high availability and partitions")
    g.add_argument("--zk", type=_zk, metavar="zk://[USER:PASS@]H1:P1,H2:P2/PATH",
                   help="contend for leadership in this ZooKeeper group; the registry is kept there")
    g.add_argument("--quorum", type=_positive_int,
                   help="masters that make a majority (recorded; ZooKeeper's own majority keeps the registry)")
    g.add_argument("--zk-session-timeout", type=duration, default=10.0, metavar="DURATION",
                   help="ZooKeeper session timeout (default 10secs)")
    g.add_argument("--agent-reregister-timeout", type=duration, default=600.0, metavar="DURATION",
                   help="how long agents have to re-register after a failover (default 10mins)")
    g.add_argument("--registry-max-agent-age", type=duration, default=REGISTRY_MAX_AGENT_AGE, metavar="DURATION",
                   help="forget unreachable/gone agents older than this (default 2weeks)")
    g.add_argument("--registry-max-agent-count", type=_positive_int, default=REGISTRY_MAX_AGENT_COUNT,
                   help="keep at most this many unreachable (and gone) agents (default 102400)")


def master_config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"zk": args.zk, "quorum": args.quorum, "zk_session_timeout": args.zk_session_timeout,
            "agent_reregister_timeout": args.agent_reregister_timeout,
            "registry_max_agent_age": args.registry_max_agent_age,
            "registry_max_agent_count": args.registry_max_agent_count}


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zk-session-timeout", type=duration, default=10.0, metavar="DURATION",
                   help="ZooKeeper session timeout when --master is zk:// (default 10secs)")
    p.add_argument("--master-ping-timeout", type=duration, default=75.0, metavar="DURATION",
                   help="reconnect when the master has not answered for this long (default 75secs)")


__all__ = ["add_agent_flags", "add_master_flags", "duration", "master_config_kwargs"]

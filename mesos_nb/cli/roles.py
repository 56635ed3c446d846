"""``mesos-nb roles`` and ``mesos-nb quota``: the roles' weights, DRF shares, guarantees,
limits and headroom, read through :mod:`mesos_nb.client.roles`."""

from __future__ import annotations

import argparse

from mesos_nb.client import MasterClient
from mesos_nb.client.roles import QUOTA_HEADERS, ROLE_HEADERS, quota_rows, read_roles, role_rows

from .tables import print_table


def cmd_roles(args: argparse.Namespace) -> int:
    print_table(ROLE_HEADERS, role_rows(read_roles(MasterClient(args.master))))
    return 0


def cmd_quota(args: argparse.Namespace) -> int:
    rows = quota_rows(read_roles(MasterClient(args.master)))
    if not rows:
        print("no role has quota (set it with the operator API's UPDATE_QUOTA)")
        return 0
    print_table(QUOTA_HEADERS, rows)
    return 0


__all__ = ["cmd_quota", "cmd_roles"]

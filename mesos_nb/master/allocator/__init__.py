"""Weighted-DRF allocator: pure, synchronous, time injected. See README.md here."""

from .allocator import Allocation, HierarchicalDRFAllocator
from .cycle import CycleRun
from .filters import DEFAULT_REFUSE_SECONDS, MAX_REFUSE_SECONDS, OfferFilter, refuse_timeout
from .quota import RoleQuota
from .sorter import DRFSorter

__all__ = [
    "Allocation",
    "CycleRun",
    "HierarchicalDRFAllocator",
    "DRFSorter",
    "RoleQuota",
    "OfferFilter",
    "refuse_timeout",
    "DEFAULT_REFUSE_SECONDS",
    "MAX_REFUSE_SECONDS",
]

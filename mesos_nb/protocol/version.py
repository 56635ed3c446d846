"""The one place that says which version this is.

Read from the installed package metadata so that ``pyproject.toml`` stays the single source;
a source checkout that was never installed falls back to the number below, which a test
keeps equal to the metadata.
"""

from __future__ import annotations

from importlib import metadata

FALLBACK_VERSION = "1.12.0"


def _read() -> str:
    try:
        return metadata.version("mesos-nb")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


VERSION: str = _read()

__all__ = ["VERSION"]

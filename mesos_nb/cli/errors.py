"""The CLI's one-sentence failure (exit 2)."""

from __future__ import annotations


class CLIError(Exception):
    """A user-facing failure: ``str()`` is one sentence; the process exits 2."""


__all__ = ["CLIError"]

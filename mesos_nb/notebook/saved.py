"""Where the notebook remembers its framework id across kernel restarts
(``~/.mesos-nb/notebook-frameworks.json``, keyed by master and notebook)."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from .embedded import state_dir


def frameworks_file() -> Any:
    return state_dir() / "notebook-frameworks.json"


def notebook_key() -> str | None:
    """What identifies this notebook across kernel restarts: the notebook's path when Jupyter
    tells the kernel (``JPY_SESSION_NAME``), else the kernel id; None outside a kernel."""
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        return name
    with contextlib.suppress(Exception):
        from ipykernel import get_connection_file

        base = os.path.basename(get_connection_file())
        if base.startswith("kernel-") and base.endswith(".json"):
            return base[len("kernel-"):-len(".json")]
    return None


def load_saved() -> dict[str, Any]:
    try:
        data = json.loads(frameworks_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save(key: str, entry: dict[str, Any] | None) -> None:
    path = frameworks_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_saved()
    if entry is None:
        data.pop(key, None)
    else:
        data[key] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


__all__ = ["frameworks_file", "load_saved", "notebook_key", "save"]

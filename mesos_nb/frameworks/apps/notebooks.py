"""Scheduled notebooks: the task command that executes a notebook with papermill, and what a
finished run's executed notebook says (its failing cell).

Data flow: the job's notebook JSON lives in the job definition. The task's sandbox fetches it
from the framework's REST API (``GET /v2/jobs/{id}/notebook``, a ``CommandInfo.uris`` entry
the agent's fetcher downloads as ``input.ipynb``), runs
``python -m papermill input.ipynb output.ipynb -y '<parameters as JSON>'`` there, and when the
task has ended the framework copies ``output.ipynb`` back through the agent's
``/files/download`` into ``<state dir>/results/<job id>/<run id>.ipynb`` (served again at
``GET /v2/jobs/{id}/runs/{run}/notebook``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from .model import JobDef

INPUT, OUTPUT = "input.ipynb", "output.ipynb"


def command(job: JobDef, python: str, api_url: str,
            token: Callable[[str], str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The shell command and fetcher URIs of a notebook job's task (``token``: the job-bound
    fetch token when the REST API requires credentials)."""
    nb = job.notebook
    assert nb is not None
    args = [python, "-m", "papermill", INPUT, OUTPUT, "--no-progress-bar"]
    if nb.parameters:
        # YAML is a superset of JSON: values keep their types (papermill's -p would guess them)
        args += ["-y", json.dumps(nb.parameters)]
    kernel = nb.kernel or ("python3" if not (nb.notebook.get("metadata") or {}).get("kernelspec") else None)
    if kernel:
        args += ["-k", kernel]
    if nb.timeout_seconds:
        args += ["--execution-timeout", str(int(nb.timeout_seconds))]
    url = f"{api_url}/v2/jobs/{job.id}/notebook"
    if token is not None:
        url += "?token=" + token(job.id)
    uris = [{"value": url, "output_file": INPUT,
             "extract": False, "cache": False}]
    return shlex.join(args), uris


def failing_cell(notebook: dict[str, Any]) -> dict[str, Any] | None:
    """The first cell papermill marked failed (or holding an error output): index, source, error."""
    for i, cell in enumerate(notebook.get("cells", [])):
        tags = (cell.get("metadata") or {}).get("tags") or []
        if "papermill-error-cell-tag" in tags:
            continue
        pm = (cell.get("metadata") or {}).get("papermill") or {}
        errors = [o for o in cell.get("outputs", []) or [] if o.get("output_type") == "error"]
        if pm.get("status") == "failed" or pm.get("exception") or errors:
            src = cell.get("source", "")
            err = errors[0] if errors else {}
            return {
                "index": i,
                "executionCount": cell.get("execution_count"),
                "source": "".join(src) if isinstance(src, list) else src,
                "ename": err.get("ename"),
                "evalue": err.get("evalue"),
            }
    return None


def parameters_of(notebook: dict[str, Any]) -> dict[str, Any]:
    return ((notebook.get("metadata") or {}).get("papermill") or {}).get("parameters") or {}


__all__ = ["INPUT", "OUTPUT", "command", "failing_cell", "parameters_of"]

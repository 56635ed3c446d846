"""A small function API over the REST API, for ``mesos-nb apps|jobs`` and ``%mesos app|job``.

Every call takes ``url`` (default ``$MESOS_NB_APPS_URL``, else ``http://127.0.0.1:8080``) and
returns the decoded JSON; a 4xx/5xx answer raises :class:`AppsError` whose message is the
server's one sentence (``instances: must be >= 0 (got -1)``), never a traceback to show.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

DEFAULT_URL = "http://127.0.0.1:8080"


class AppsError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status, self.message, self.field = status, message, field
        super().__init__(f"{field}: {message}" if field else message)


def _url(url: str | None) -> str:
    return (url or os.environ.get("MESOS_NB_APPS_URL") or DEFAULT_URL).rstrip("/")


def call(method: str, path: str, body: Any = None, url: str | None = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(_url(url) + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read() or b"{}")
        except ValueError:
            err = {}
        raise AppsError(e.code, err.get("message") or e.reason, err.get("field")) from None
    except (urllib.error.URLError, OSError) as e:
        raise AppsError(0, f"the apps framework at {_url(url)} is unreachable: {getattr(e, 'reason', e)}") from None
    return json.loads(raw) if raw else None


def _app(app_id: str) -> str:
    return quote("/" + app_id.strip("/"))


def deploy(app: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """Create or change an app (PUT: fields merge into its current definition)."""
    return call("PUT", "/v2/apps" + _app(app["id"]), app, url)


def list_apps(url: str | None = None) -> list[dict[str, Any]]:
    return call("GET", "/v2/apps", url=url)["apps"]


def get_app(app_id: str, url: str | None = None) -> dict[str, Any]:
    return call("GET", "/v2/apps" + _app(app_id), url=url)["app"]


def scale(app_id: str, instances: int, url: str | None = None) -> dict[str, Any]:
    return call("PUT", "/v2/apps" + _app(app_id), {"instances": instances}, url)


def restart(app_id: str, url: str | None = None) -> dict[str, Any]:
    return call("POST", "/v2/apps" + _app(app_id) + "/restart", url=url)


def delete_app(app_id: str, url: str | None = None) -> dict[str, Any]:
    return call("DELETE", "/v2/apps" + _app(app_id), url=url)


def discover(app_id: str, url: str | None = None) -> list[dict[str, Any]]:
    return call("GET", "/v2/discovery" + _app(app_id), url=url)["instances"]


def schedule_job(job: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """Create or replace a job (cron or ISO 8601 ``schedule``, or ``parents``)."""
    return call("PUT", f"/v2/jobs/{quote(job['id'])}", job, url)


def schedule_notebook(job_id: str, notebook_path: str, parameters: dict[str, Any] | None = None,
                      schedule: str | None = None, url: str | None = None, **fields: Any) -> dict[str, Any]:
    """A notebook job: the notebook file's JSON is sent with the definition."""
    with open(notebook_path) as f:
        nb = json.load(f)
    job = {"id": job_id, "notebook": {"notebook": nb, "parameters": parameters or {}}, **fields}
    if schedule:
        job["schedule"] = schedule
    return schedule_job(job, url)


def list_jobs(url: str | None = None) -> list[dict[str, Any]]:
    return call("GET", "/v2/jobs", url=url)["jobs"]


def delete_job(job_id: str, url: str | None = None) -> dict[str, Any]:
    return call("DELETE", f"/v2/jobs/{quote(job_id)}", url=url)


def run_job(job_id: str, url: str | None = None) -> dict[str, Any]:
    return call("POST", f"/v2/jobs/{quote(job_id)}/runs", url=url)


def list_runs(job_id: str, url: str | None = None) -> list[dict[str, Any]]:
    return call("GET", f"/v2/jobs/{quote(job_id)}/runs", url=url)["runs"]


def run_notebook(job_id: str, run_id: str, url: str | None = None) -> dict[str, Any]:
    """The executed notebook of a notebook job's run."""
    return call("GET", f"/v2/jobs/{quote(job_id)}/runs/{quote(run_id)}/notebook", url=url)


__all__ = ["AppsError", "call", "delete_app", "delete_job", "deploy", "discover", "get_app", "list_apps",
           "list_jobs", "list_runs", "restart", "run_job", "run_notebook", "scale", "schedule_job",
           "schedule_notebook"]

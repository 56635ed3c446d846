"""A small function API over the REST API, for ``mesos-nb apps|jobs`` and ``%mesos app|job``.

Every call takes ``url``, the framework's REST URL; without one, :func:`resolve` finds it:
``$MESOS_NB_APPS`` (or ``$MESOS_NB_APPS_URL``), else the ``webui_url`` the running apps
framework registered with the master (``$MESOS_NB_MASTER``, else ``127.0.0.1:5050``; a
``zk://`` URL is followed to the leading master) as listed by ``/master/frameworks``. Each call
sends the credential of ``$MESOS_NB_PRINCIPAL`` + ``$MESOS_NB_SECRET`` (or the
``$MESOS_NB_CREDENTIAL`` file) when one is set, and returns the decoded JSON; a 4xx/5xx answer raises :class:`AppsError` whose message is the
server's one sentence (``instances: must be >= 0 (got -1)``), never a traceback to show.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from mesos_nb.protocol.client_auth import access_for

DEFAULT_NAME = "mesos-nb-apps"


class AppsError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status, self.message, self.field = status, message, field
        super().__init__(f"{field}: {message}" if field else message)


def from_master(master: str | None = None, name: str | None = None, timeout: float = 5.0) -> str:
    """The REST URL the apps framework named ``name`` registered as its ``webui_url``."""
    from mesos_nb.client import MesosClientError, master_url

    master = master or os.environ.get("MESOS_NB_MASTER") or "127.0.0.1:5050"
    name = name or os.environ.get("MESOS_NB_APPS_NAME") or DEFAULT_NAME
    try:
        base = master_url(master)
    except MesosClientError as e:
        raise AppsError(0, str(e)) from None
    acc = access_for(base)
    req = urllib.request.Request(base + "/master/frameworks", headers=acc.headers())
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=acc.ssl_context(base)) as r:
            fws = json.load(r).get("frameworks", [])
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise AppsError(0, f"cannot ask the master at {master} for the apps framework: "
                           f"{getattr(e, 'reason', e)}") from None
    urls = [f.get("webui_url") for f in fws if f.get("name") == name and f.get("active", True)
            and f.get("webui_url")]
    if not urls:
        raise AppsError(0, f"no running framework named {name!r} on the master at {master}: "
                           f"start one with 'mesos-nb apps serve' or pass --apps URL")
    return str(urls[0]).rstrip("/")


def resolve(url: str | None = None, master: str | None = None) -> str:
    """``url``, else ``$MESOS_NB_APPS`` / ``$MESOS_NB_APPS_URL``, else ask the master."""
    url = url or os.environ.get("MESOS_NB_APPS") or os.environ.get("MESOS_NB_APPS_URL")
    if url:
        return url.rstrip("/") if "://" in url else "http://" + url.rstrip("/")
    return from_master(master)


_url = resolve


def call(method: str, path: str, body: Any = None, url: str | None = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    url = _url(url)
    acc = access_for(url)
    headers = acc.headers()
    if data:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=acc.ssl_context(url)) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read() or b"{}")
        except ValueError:
            err = {}
        raise AppsError(e.code, err.get("message") or e.reason, err.get("field")) from None
    except (urllib.error.URLError, OSError) as e:
        raise AppsError(0, f"the apps framework at {url} is unreachable: {getattr(e, 'reason', e)}") from None
    return json.loads(raw) if raw else None


def every_schedule(text: str, now: float) -> str:
    """``30s``, ``5m``, ``2h``, ``1d`` -> the ISO 8601 repeating schedule starting at ``now``
    (``ValueError`` with one sentence otherwise)."""
    import re
    from datetime import datetime, timezone

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--every {text!r}: expected a positive number and a unit, as 30s, 5m, 2h or 1d")
    n, unit = m.group(1), m.group(2)
    period = f"P{n}D" if unit == "d" else f"PT{n}{unit.upper()}"
    start = datetime.fromtimestamp(int(now), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"R/{start}/{period}"


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``-p name=value`` (papermill's spelling): the value as JSON when it parses (0.1, true,
    [1,2]), else the string itself."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"-p {item!r}: expected NAME=VALUE")
        try:
            out[name.strip()] = json.loads(raw)
        except ValueError:
            out[name.strip()] = raw
    return out


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


def get_job(job_id: str, url: str | None = None) -> dict[str, Any]:
    return call("GET", f"/v2/jobs/{quote(job_id)}", url=url)


def info(url: str | None = None) -> dict[str, Any]:
    return call("GET", "/v2/info", url=url)


def list_runs(job_id: str, url: str | None = None) -> list[dict[str, Any]]:
    return call("GET", f"/v2/jobs/{quote(job_id)}/runs", url=url)["runs"]


def run_notebook(job_id: str, run_id: str, url: str | None = None) -> dict[str, Any]:
    """The executed notebook of a notebook job's run."""
    return call("GET", f"/v2/jobs/{quote(job_id)}/runs/{quote(run_id)}/notebook", url=url)


__all__ = ["AppsError", "call", "delete_app", "delete_job", "deploy", "discover", "every_schedule", "from_master", "get_app", "get_job",
           "info", "list_apps", "parse_params", "resolve",
           "list_jobs", "list_runs", "restart", "run_job", "run_notebook", "scale", "schedule_job",
           "schedule_notebook"]

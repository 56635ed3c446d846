"""The REST API (aiohttp, JSON): apps, jobs, runs, discovery, and an OpenAPI description.

Bad input answers 4xx with ``{"message": ..., "field": ...}`` naming the problem: 400 for a
body that is not JSON, 422 for a definition that does not validate, 404 for an unknown id,
409 for a conflict (an id that exists, a parent job with children). Nothing here decides
anything: handlers call :class:`~.framework.AppsFramework` and render its views.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aiohttp import web

from .http_auth import ApiGuard
from .model import InvalidDefinition, parse_app, run_json, to_json
from .openapi import spec
from .schedule import parse_job
from .ui import add_routes as add_ui_routes
from .zk_store import StoreError

FW = web.AppKey("framework", object)


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.text() or "null")
    except ValueError as e:
        raise web.HTTPBadRequest(text=json.dumps({"message": f"the body is not JSON: {e}"}),
                                 content_type="application/json") from None


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidDefinition as e:
        return _error(422, e.message, e.field)
    except KeyError as e:
        return _error(404, str(e.args[0]) if e.args else "not found")
    except StoreError as e:  # fenced or ZooKeeper lost: this replica is stepping down
        return _error(503, f"this replica no longer leads ({e}); retry against the new leader")


def _fw(request: web.Request) -> Any:
    return request.app[FW]


def _app_id(raw: str) -> str:
    return "/" + raw.strip("/")


# ------------------------------------------------------------------ apps
async def list_apps(request: web.Request) -> web.Response:
    fw = _fw(request)
    return web.json_response({"apps": [fw.app_view(a) for a in sorted(fw.apps.values(), key=lambda a: a.id)]})


async def create_app(request: web.Request) -> web.Response:
    fw = _fw(request)
    body = await _body(request)
    app = parse_app(body)
    if app.id in fw.apps:
        return _error(409, f"app {app.id} already exists (PUT /v2/apps{app.id} changes it)", "id")
    _check_role(fw, app.role)
    app = fw.put_app(app)
    return web.json_response(fw.app_view(app), status=201)


def _check_role(fw: Any, role: str) -> None:
    if role not in fw.roles:
        raise InvalidDefinition("role", f"role {role!r} is not one of this framework's roles ({', '.join(fw.roles)})")


async def app_path(request: web.Request) -> web.Response:
    fw = _fw(request)
    raw = request.match_info["rest"]
    if raw.endswith("/restart"):
        if request.method != "POST":
            return _error(405, "use POST to restart an app")
        app_id = _app_id(raw[: -len("/restart")])
        if app_id not in fw.apps:
            raise KeyError(f"no app {app_id}")
        app = fw.put_app(fw.apps[app_id], restart=True)
        return web.json_response({"version": app.version, "app": fw.app_view(app)})
    app_id = _app_id(raw)
    if request.method == "GET":
        if app_id not in fw.apps:
            raise KeyError(f"no app {app_id}")
        return web.json_response({"app": fw.app_view(fw.apps[app_id])})
    if request.method == "DELETE":
        if app_id not in fw.apps:
            raise KeyError(f"no app {app_id}")
        fw.delete_app(app_id)
        return web.json_response({"deleted": app_id})
    if request.method == "PUT":
        body = await _body(request)
        if not isinstance(body, dict):
            raise InvalidDefinition("", "an app definition must be a JSON object")
        if "id" in body and _app_id(str(body["id"])) != app_id:
            raise InvalidDefinition("id", f"the body's id {body['id']!r} is not the path's {app_id!r}")
        old = fw.apps.get(app_id)
        merged = {**(to_json(old) if old else {}), **body, "id": app_id}
        merged.pop("version", None)
        app = parse_app(merged)
        _check_role(fw, app.role)
        app = fw.put_app(app)
        return web.json_response(fw.app_view(app), status=200 if old else 201)
    return _error(405, f"{request.method} is not supported here")


# ------------------------------------------------------------------ jobs
def _job_view(fw: Any, job: Any) -> dict[str, Any]:
    out = to_json(job)
    if job.notebook is not None:
        out["notebook"] = {k: v for k, v in out["notebook"].items() if k != "notebook"}
    runs = fw.jobs.runs_of(job.id)
    out["activeRuns"] = [r.id for r in runs if r.active]
    done = [r for r in runs if r.status in ("SUCCESS", "FAILED")]
    out["history"] = {
        "successCount": sum(r.status == "SUCCESS" for r in done),
        "failureCount": sum(r.status == "FAILED" for r in done),
        "lastSuccessAt": max((r.finished_at or 0 for r in done if r.status == "SUCCESS"), default=None),
        "lastFailureAt": max((r.finished_at or 0 for r in done if r.status == "FAILED"), default=None),
    }
    out["nextRunAt"] = fw.jobs.next_fire.get(job.id)
    return out


async def list_jobs(request: web.Request) -> web.Response:
    fw = _fw(request)
    return web.json_response({"jobs": [_job_view(fw, j) for j in sorted(fw.jobs.defs.values(), key=lambda j: j.id)]})


def _put_job(fw: Any, job: Any) -> Any:
    _check_role(fw, job.role)
    try:
        return fw.jobs.put(job)
    except ValueError as e:
        raise InvalidDefinition("parents", str(e)) from None


async def create_job(request: web.Request) -> web.Response:
    fw = _fw(request)
    job = parse_job(await _body(request))
    if job.id in fw.jobs.defs:
        return _error(409, f"job {job.id} already exists (PUT /v2/jobs/{job.id} changes it)", "id")
    return web.json_response(_job_view(fw, _put_job(fw, job)), status=201)


def _job(fw: Any, job_id: str) -> Any:
    job = fw.jobs.defs.get(job_id)
    if job is None:
        raise KeyError(f"no job {job_id}")
    return job


async def job_item(request: web.Request) -> web.Response:
    fw = _fw(request)
    job_id = request.match_info["id"]
    if request.method == "GET":
        return web.json_response(_job_view(fw, _job(fw, job_id)))
    if request.method == "DELETE":
        _job(fw, job_id)
        kids = fw.jobs.children(job_id)
        if kids:
            return _error(409, f"job {job_id} is a parent of {', '.join(kids)}; delete those first", "id")
        fw.jobs.delete(job_id)
        return web.json_response({"deleted": job_id})
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidDefinition("", "a job definition must be a JSON object")
    if body.get("id", job_id) != job_id:
        raise InvalidDefinition("id", f"the body's id {body['id']!r} is not the path's {job_id!r}")
    existed = job_id in fw.jobs.defs
    job = _put_job(fw, parse_job({**body, "id": job_id}))
    return web.json_response(_job_view(fw, job), status=200 if existed else 201)


async def job_notebook(request: web.Request) -> web.Response:
    job = _job(_fw(request), request.match_info["id"])
    if job.notebook is None:
        raise KeyError(f"job {job.id} is not a notebook job")
    return web.json_response(job.notebook.notebook)


async def job_runs(request: web.Request) -> web.Response:
    fw = _fw(request)
    job = _job(fw, request.match_info["id"])
    if request.method == "POST":
        return web.json_response(run_json(fw.jobs.start_now(job.id)), status=201)
    return web.json_response({"runs": [run_json(r) for r in fw.jobs.runs_of(job.id)]})


def _run(fw: Any, request: web.Request) -> Any:
    job = _job(fw, request.match_info["id"])
    run = fw.jobs.runs.get(f"{job.id}/{request.match_info['run']}")
    if run is None:
        raise KeyError(f"no run {request.match_info['run']} of job {job.id}")
    return run


async def run_item(request: web.Request) -> web.Response:
    return web.json_response(run_json(_run(_fw(request), request)))


async def run_notebook(request: web.Request) -> web.Response:
    run = _run(_fw(request), request)
    if not run.output_notebook or not os.path.exists(run.output_notebook):
        raise KeyError(f"run {run.id} has no executed notebook (yet)")
    headers = {"Content-Type": "application/x-ipynb+json"}
    if request.query.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="{run.job_id}-{run.id}.ipynb"'
    return web.FileResponse(run.output_notebook, headers=headers)


# ------------------------------------------------------------------ discovery, info
async def discovery(request: web.Request) -> web.Response:
    fw = _fw(request)
    app_id = _app_id(request.match_info["rest"])
    app = fw.apps.get(app_id)
    if app is None:
        raise KeyError(f"no app {app_id}")
    from .dns import healthy_instances

    return web.json_response({"app": app_id, "instances": [
        {"taskId": i.task_id, "host": i.hostname, "ip": i.host_ip, "ports": i.ports, "healthy": i.healthy}
        for i in healthy_instances(app, fw.app_instances(app_id))]})


async def info(request: web.Request) -> web.Response:
    fw = _fw(request)
    return web.json_response({"name": fw.name, "frameworkId": fw.framework_id, "master": fw.master,
                              "leader": True, "roles": list(fw.roles), "reconciledAt": fw.reconciled_at,
                              "ticksSinceSubscribed": fw.ticks, "offersSeen": fw.offers_seen})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(spec())


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


def make_app(fw: Any, guard: ApiGuard | None = None) -> web.Application:
    """The REST API and UI; with ``guard``, credentials and same-origin writes are required."""
    guard = guard or ApiGuard(None)
    if guard.credentials is not None:
        fw.notebook_token = guard.notebook_token
    app = web.Application(middlewares=[guard.middleware, errors], client_max_size=16 * 1024 * 1024)
    app[FW] = fw
    r = app.router
    r.add_get("/ping", ping)
    r.add_get("/v2/info", info)
    r.add_get("/openapi.json", openapi)
    r.add_get("/v2/apps", list_apps)
    r.add_post("/v2/apps", create_app)
    r.add_route("*", "/v2/apps/{rest:.+}", app_path)
    r.add_get("/v2/jobs", list_jobs)
    r.add_post("/v2/jobs", create_job)
    r.add_get("/v2/jobs/{id}/notebook", job_notebook)
    r.add_route("GET", "/v2/jobs/{id}/runs", job_runs)
    r.add_route("POST", "/v2/jobs/{id}/runs", job_runs)
    r.add_get("/v2/jobs/{id}/runs/{run}", run_item)
    r.add_get("/v2/jobs/{id}/runs/{run}/notebook", run_notebook)
    for m in ("GET", "PUT", "DELETE"):
        r.add_route(m, "/v2/jobs/{id}", job_item)
    r.add_get("/v2/discovery/{rest:.+}", discovery)
    add_ui_routes(r, FW)
    return app


__all__ = ["make_app"]

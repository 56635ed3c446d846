"""The OpenAPI 3 description served at ``/openapi.json`` (schemas from the msgspec structs)."""

from __future__ import annotations

from typing import Any

import msgspec

from .model import AppDef, JobDef, RunRecord


def _op(summary: str, *, body: str | None = None, ok: str = "200", errors: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {ok: {"description": "OK"}}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    for e in errors:
        op["responses"][e] = {"description": {"400": "body is not JSON", "404": "unknown id",
                                              "409": "conflict", "422": "invalid definition (field named)"}[e],
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return op


def spec() -> dict[str, Any]:
    (schemas_list, components) = msgspec.json.schema_components([AppDef, JobDef, RunRecord],
                                                                ref_template="#/components/schemas/{name}")
    components["Error"] = {"type": "object", "properties": {"message": {"type": "string"},
                                                            "field": {"type": "string"}}}
    app_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    run_id = {"name": "run", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "mesos-nb apps and jobs", "version": "1"},
        "paths": {
            "/v2/apps": {"get": _op("list apps with their tasks and why instances wait"),
                         "post": _op("create an app", body="AppDef", ok="201", errors=("400", "409", "422"))},
            "/v2/apps/{id}": {"parameters": [app_id],
                              "get": _op("one app", errors=("404",)),
                              "put": _op("create or change an app (fields merge into the current definition)",
                                         body="AppDef", errors=("400", "422")),
                              "delete": _op("delete an app (its tasks are killed)", errors=("404",))},
            "/v2/apps/{id}/restart": {"parameters": [app_id],
                                      "post": _op("rolling restart (new version)", errors=("404",))},
            "/v2/jobs": {"get": _op("list jobs with history summaries"),
                         "post": _op("create a job", body="JobDef", ok="201", errors=("400", "409", "422"))},
            "/v2/jobs/{id}": {"parameters": [job_id], "get": _op("one job", errors=("404",)),
                              "put": _op("create or replace a job", body="JobDef", errors=("400", "422")),
                              "delete": _op("delete a job", errors=("404", "409"))},
            "/v2/jobs/{id}/runs": {"parameters": [job_id],
                                   "get": _op("the job's runs (history)", errors=("404",)),
                                   "post": _op("start a run now", ok="201", errors=("404",))},
            "/v2/jobs/{id}/runs/{run}": {"parameters": [job_id, run_id], "get": _op("one run", errors=("404",))},
            "/v2/jobs/{id}/runs/{run}/notebook": {"parameters": [job_id, run_id],
                                                  "get": _op("the run's executed notebook", errors=("404",))},
            "/v2/jobs/{id}/notebook": {"parameters": [job_id],
                                       "get": _op("the notebook job's input notebook", errors=("404",))},
            "/v2/discovery/{id}": {"parameters": [app_id],
                                   "get": _op("healthy instances of an app: host, ip, ports", errors=("404",))},
            "/v2/info": {"get": _op("framework id, master, roles")},
        },
        "components": {"schemas": components},
    }


__all__ = ["spec"]

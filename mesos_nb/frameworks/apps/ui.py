"""The framework's web pages, on its REST port: ``/ui`` (apps, instances, health, deploys;
jobs, schedules, last runs) and ``/ui/jobs/{id}/runs/{run}`` (an executed notebook, readable).

The master's web UI lists frameworks with their ``webui_url``; this framework registers its
REST URL there and ``/`` redirects to ``/ui``, so the master's page links here without any
change to the master. Pages are rendered on the server from the framework's memory (no
JavaScript), refresh themselves every 5 s, and escape everything they show. Notebook outputs
are shown as text, images and errors only: HTML outputs of a notebook are not trusted here.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from aiohttp import web

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:14px}
th{background:#f3f3f3}
.ok{color:#1a7f37}.bad{color:#c62828}.wait{color:#9a6700}
pre{background:#f6f8fa;padding:.5em;overflow:auto}
.cell{margin-bottom:1em}.out{border-left:3px solid #ddd;padding-left:.5em}
"""


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def when(t: float | None) -> str:
    return "-" if not t else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(headers: list[str], rows: list[list[str]], cls: str) -> str:
    """``rows`` hold HTML already escaped by the caller."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">none</td></tr>'
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def page(title: str, body: str, refresh: bool = True) -> web.Response:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return web.Response(text=f"<!doctype html><html><head><meta charset='utf-8'>{meta}<title>{esc(title)}</title>"
                             f"<style>{STYLE}</style></head><body>{body}</body></html>", content_type="text/html")


def _health(h: bool | None) -> str:
    return {True: '<span class="ok">healthy</span>', False: '<span class="bad">unhealthy</span>'}.get(h, "-")


def apps_html(fw: Any) -> str:
    rows, inst_rows = [], []
    for app in sorted(fw.apps.values(), key=lambda a: a.id):
        v = fw.app_view(app)
        status = ("suspended" if app.instances == 0 else '<span class="wait">deploying</span>' if v["deploying"]
                  else '<span class="wait">waiting: ' + esc("; ".join(v["waiting"]["reasons"]) or "placing") + "</span>"
                  if v["waiting"] else '<span class="ok">running</span>')
        checked = bool(app.health_checks)  # without health checks, healthy is not known: "-"
        rows.append([esc(app.id), esc(app.instances), esc(v["tasksRunning"]),
                     esc(v["tasksHealthy"]) if checked else "-", esc(v["tasksUnhealthy"]) if checked else "-",
                     esc(app.version), status])
        for i in fw.app_instances(app.id):
            inst_rows.append([esc(app.id), esc(i.task_id), esc(i.hostname or "-"), esc(i.state) +
                              (" (killing)" if i.killing else ""), _health(i.healthy),
                              esc(i.version) + ("" if i.version == app.version else " (old)"),
                              esc(",".join(map(str, i.ports)) or "-"), esc(when(i.launched_at))])
    return ("<h2>Apps</h2>" + table(["App", "Instances", "Running", "Healthy", "Unhealthy", "Version", "Deploy"],
                                    rows, "apps")
            + "<h2>Instances</h2>" + table(["App", "Task", "Host", "State", "Health", "Version", "Ports", "Launched"],
                                           inst_rows, "instances"))


def jobs_html(fw: Any, last: int = 5) -> str:
    job_rows, run_rows = [], []
    for job in sorted(fw.jobs.defs.values(), key=lambda j: j.id):
        runs = sorted(fw.jobs.runs_of(job.id), key=lambda r: r.created_at, reverse=True)
        sched = job.schedule or ("after " + ", ".join(job.parents) if job.parents else "manual")
        job_rows.append([esc(job.id), "notebook" if job.notebook else "cmd", esc(sched), esc(job.timezone),
                         esc(when(fw.jobs.next_fire.get(job.id))), esc(runs[0].status if runs else "-")])
        for r in runs[:last]:
            cls = {"SUCCESS": "ok", "FAILED": "bad"}.get(r.status, "wait")
            nb = "-"
            if r.output_notebook and os.path.exists(r.output_notebook):
                base = f"/jobs/{quote(job.id, safe='')}/runs/{quote(r.id, safe='')}"
                nb = (f'<a href="/ui{base}">open</a> · '
                      f'<a href="/v2{base}/notebook?download=1">download</a>')
            cell = ""
            if r.failing_cell:
                cell = esc(f"cell {r.failing_cell.get('index')}: {r.failing_cell.get('ename')}")
            run_rows.append([esc(job.id), esc(r.id), esc(r.trigger), f'<span class="{cls}">{esc(r.status)}</span>',
                             esc(when(r.started_at)), esc("-" if r.duration is None else f"{r.duration:.1f} s"),
                             esc("-" if r.exit_code is None else r.exit_code), cell or esc(r.message or ""), nb])
    return ("<h2>Jobs</h2>" + table(["Job", "Kind", "Schedule", "Time zone", "Next run", "Last run"], job_rows, "jobs")
            + "<h2>Last runs</h2>" + table(["Job", "Run", "Trigger", "Status", "Started", "Duration", "Exit",
                                             "Message", "Executed notebook"], run_rows, "runs"))


def notebook_html(nb: dict[str, Any]) -> str:
    """An executed notebook as HTML: sources, text and error outputs, PNG/JPEG images."""
    out = []
    for i, cell in enumerate(nb.get("cells", [])):
        src = "".join(cell.get("source", "")) if isinstance(cell.get("source"), list) else cell.get("source", "")
        parts = [f'<div class="cell"><div>[{i}] {esc(cell.get("cell_type"))}</div><pre>{esc(src)}</pre>']
        for o in cell.get("outputs", []) or []:
            kind = o.get("output_type")
            if kind == "stream":
                text = o.get("text", "")
                parts.append(f'<pre class="out">{esc("".join(text) if isinstance(text, list) else text)}</pre>')
            elif kind == "error":
                tb = f"{o.get('ename')}: {o.get('evalue')}"
                parts.append(f'<pre class="out bad">{esc(tb)}</pre>')
            elif kind in ("execute_result", "display_data"):
                data = o.get("data", {})
                img = next((m for m in ("image/png", "image/jpeg") if m in data), None)
                if img:
                    b64 = "".join(data[img]) if isinstance(data[img], list) else data[img]
                    parts.append(f'<img class="out" src="data:{img};base64,{esc(b64.strip())}">')
                elif "text/plain" in data:
                    t = data["text/plain"]
                    parts.append(f'<pre class="out">{esc("".join(t) if isinstance(t, list) else t)}</pre>')
        parts.append("</div>")
        out.append("".join(parts))
    return "".join(out)


def add_routes(router: web.UrlDispatcher, fw_key: Any) -> None:
    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui")

    async def index(request: web.Request) -> web.Response:
        fw = request.app[fw_key]
        head = (f"<h1>{esc(fw.name)}</h1><p>framework {esc(fw.framework_id)} · master {esc(fw.master)} · "
                f'<a href="/openapi.json">REST API</a></p>')
        return page(fw.name, head + apps_html(fw) + jobs_html(fw))

    async def run_page(request: web.Request) -> web.Response:
        fw = request.app[fw_key]
        job_id, run_id = request.match_info["id"], request.match_info["run"]
        run = fw.jobs.runs.get(f"{job_id}/{run_id}")
        if run is None or not run.output_notebook or not os.path.exists(run.output_notebook):
            return web.Response(status=404, text=f"run {run_id} of job {job_id} has no executed notebook",
                                content_type="text/plain")
        with open(run.output_notebook) as f:
            nb = json.load(f)
        failed = ""
        if run.failing_cell:
            failed = f"<p class='bad'>failed in cell {esc(run.failing_cell.get('index'))}</p>"
        head = (f'<p><a href="/ui">back</a> · <a href="/v2/jobs/{quote(job_id, safe="")}/runs/{quote(run_id, safe="")}'
                f'/notebook?download=1">download .ipynb</a></p><h1>{esc(job_id)} run {esc(run_id)}: '
                f"{esc(run.status)}</h1>{failed}")
        return page(f"{job_id} {run_id}", head + notebook_html(nb), refresh=False)

    router.add_get("/", root)
    router.add_get("/ui", index)
    router.add_get("/ui/jobs/{id}/runs/{run}", run_page)


__all__ = ["add_routes", "apps_html", "jobs_html", "notebook_html"]

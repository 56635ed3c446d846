"""Offers to TaskInfos: the resources an app instance or a job attempt takes out of an offer,
its environment (Marathon's ``PORT0``…, ``MARATHON_APP_ID``…), its Mesos health check and
kill policy. Pure: the offer's resources are a :class:`Resources` value, ids are arguments.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from typing import Any

from mesos_nb.protocol.messages import (
    ID,
    CommandInfo,
    DurationInfo,
    Environment,
    EnvironmentVariable,
    KillPolicy,
    Offer,
    TaskInfo,
)
from mesos_nb.protocol.resources import Resources
from mesos_nb.scheduler.tasks import offer_attributes, offer_role

from .constraints import Place
from .model import AppDef, JobDef

NEVER_KILL = 2**31 - 1
EXIT = re.compile(r"exited with status (-?\d+)")


def place_of(offer: Offer) -> Place:
    return Place(offer.hostname, offer_attributes(offer))


def host_ip(offer: Offer) -> str:
    """The agent's address for DNS A records: the offer URL's ip, else the hostname resolved."""
    candidates = []
    url = offer.url if isinstance(offer.url, dict) else {}
    addr = url.get("address") or {}
    candidates += [addr.get("ip"), addr.get("hostname"), offer.hostname]
    for c in candidates:
        if not c:
            continue
        try:
            return str(ipaddress.ip_address(c))
        except ValueError:
            pass
    try:
        return socket.gethostbyname(offer.hostname)
    except OSError:
        return ""


def take(have: Resources, role: str, amounts: Mapping[str, float], ports: list[int]) -> tuple[Resources, list[int]] | str:
    """What to launch with out of ``have`` (unreserved first, then ``role``'s reservation) and
    the ports in order, or a sentence saying what is missing."""
    amounts = {k: float(v) for k, v in amounts.items() if v}
    missing = ""
    for res_role in ("*", role):
        want = Resources.scalars_of(role=res_role, **amounts)
        if not have.contains(want):
            missing = ", ".join(f"{k} {v:g} (has {have.scalar(k):g})" for k, v in amounts.items()
                                if have.scalar(k) < v) or "resources of role " + role
            continue
        left = have - want
        chosen: list[int | None] = [None] * len(ports)
        for i, p in enumerate(ports):
            if p:
                one = Resources.parse(f"ports:[{p}-{p}]", default_role=res_role)
                if not left.contains(one):
                    return f"port {p} is not offered"
                want, left, chosen[i] = want + one, left - one, p
        dynamic = sum(1 for p in ports if not p)
        if dynamic:
            try:
                picked = left.pick_ports(dynamic)
            except ValueError:
                return f"fewer than {dynamic} free ports"
            want = want + picked
            free = [q for b, e in picked.ranges("ports") for q in range(b, e + 1)]
            for i, p in enumerate(ports):
                if not p:
                    chosen[i] = free.pop(0)
        return want, [int(c) for c in chosen if c is not None]
    return f"not enough {missing}"


def _env(items: Mapping[str, str]) -> Environment:
    return Environment(variables=[EnvironmentVariable(name=k, value=str(v)) for k, v in items.items()])


def _label_env(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def app_task_id(app_id: str, unique: str) -> str:
    return f"{app_id.strip('/').replace('/', '_')}.instance-{unique}._app"


def task_name(app_id: str) -> str:
    """Mesos task name of an app: the path reversed, dot-joined (``/group/app`` -> ``app.group``)."""
    return ".".join(reversed(app_id.strip("/").split("/")))


def health_check(app: AppDef, ports: list[int]) -> dict[str, Any] | None:
    """The app's first health check as a Mesos ``HealthCheck`` (run by the agent)."""
    if not app.health_checks:
        return None
    hc = app.health_checks[0]
    out: dict[str, Any] = {
        "delay_seconds": hc.delay_seconds,
        "interval_seconds": hc.interval_seconds,
        "timeout_seconds": hc.timeout_seconds,
        "grace_period_seconds": hc.grace_period_seconds,
        # Marathon: 0 = never kill; Mesos kills at >= n failures
        "consecutive_failures": hc.max_consecutive_failures or NEVER_KILL,
    }
    port = hc.port if hc.port is not None else (ports[hc.port_index] if hc.port_index < len(ports) else 0)
    if hc.protocol == "COMMAND":
        out.update(type="COMMAND", command={"value": hc.command, "shell": True})
    elif hc.protocol == "TCP":
        out.update(type="TCP", tcp={"port": port})
    else:
        out.update(type="HTTP", http={"port": port, "path": hc.path, "scheme": "http"})
    return out


def _container(image: str | None) -> dict[str, Any] | None:
    if not image:
        return None
    return {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": image}}}}


def app_task(app: AppDef, offer: Offer, resources: Resources, ports: list[int], task_id: str) -> TaskInfo:
    env: dict[str, str] = dict(app.env)
    for i, p in enumerate(ports):
        env[f"PORT{i}"] = str(p)
    if ports:
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(map(str, ports))
    env.update({
        "HOST": offer.hostname,
        "MARATHON_APP_ID": app.id,
        "MARATHON_APP_VERSION": app.version or "",
        "MARATHON_APP_RESOURCE_CPUS": f"{app.cpus:g}",
        "MARATHON_APP_RESOURCE_MEM": f"{app.mem:g}",
        "MARATHON_APP_RESOURCE_DISK": f"{app.disk:g}",
        "MARATHON_APP_LABELS": " ".join(app.labels),
        "MESOS_TASK_ID": task_id,
    })
    if app.image:
        env["MARATHON_APP_DOCKER_IMAGE"] = app.image
    for k, v in app.labels.items():
        if len(k) <= 512 and len(v) <= 512:
            env[f"MARATHON_APP_LABEL_{_label_env(k)}"] = v
    kill = None
    if app.task_kill_grace_period_seconds is not None:
        kill = KillPolicy(grace_period=DurationInfo(nanoseconds=int(app.task_kill_grace_period_seconds * 1e9)))
    labels = {"labels": [{"key": k, "value": v} for k, v in app.labels.items()]} if app.labels else None
    return TaskInfo(
        name=task_name(app.id),
        task_id=ID(value=task_id),
        agent_id=offer.agent_id,
        resources=resources.to_proto(offer_role(offer)),
        command=CommandInfo(value=app.cmd, shell=True, environment=_env(env)) if app.cmd
        else CommandInfo(shell=False, environment=_env(env)),
        container=_container(app.image),
        health_check=health_check(app, ports),
        kill_policy=kill,
        labels=labels,
    )


def job_task(job: JobDef, offer: Offer, resources: Resources, task_id: str, run_id: str, cmd: str,
             uris: list[dict[str, Any]] | None = None) -> TaskInfo:
    env = {**job.env, "MESOS_NB_JOB_ID": job.id, "MESOS_NB_RUN_ID": run_id, "MESOS_TASK_ID": task_id}
    return TaskInfo(
        name=f"{job.id}.{run_id}",
        task_id=ID(value=task_id),
        agent_id=offer.agent_id,
        resources=resources.to_proto(offer_role(offer)),
        command=CommandInfo(value=cmd, shell=True, environment=_env(env), uris=uris or []),
    )


def exit_code(message: str | None) -> int | None:
    m = EXIT.search(message or "")
    return int(m.group(1)) if m else None


__all__ = ["app_task", "app_task_id", "exit_code", "health_check", "host_ip", "job_task", "place_of", "take",
           "task_name"]

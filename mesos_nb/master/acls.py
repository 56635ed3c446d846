"""Authorization by a Mesos-format ``--acls`` file (the local authorizer), as a pure function.

The file is ``{"permissive": bool, "<action>": [{"principals": E, "<object>": E}, …]}`` where an
entity E is ``{"type": "SOME"|"ANY"|"NONE", "values": [...]}`` (type defaults to SOME).
Rules of one action are tried in order; the first rule whose subject and object both *match*
decides, and allows only if both sides also *allow*; when none matches, ``permissive`` decides.
A request without a principal (authentication off) is the subject ANY; a request object that
is absent is ANY.

An unknown action name or entity type refuses to load (a typo must not silently permit), and
ANY/NONE-only objects given SOME values refuse to load, as Mesos refuses to start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

# action -> the name of its object field
ACTIONS: dict[str, str] = {
    "register_frameworks": "roles",
    "run_tasks": "users",
    "teardown_frameworks": "framework_principals",
    "reserve_resources": "roles",
    "unreserve_resources": "reserver_principals",
    "create_volumes": "roles",
    "destroy_volumes": "creator_principals",
    "resize_volumes": "roles",
    "update_weights": "roles",
    "view_roles": "roles",
    "get_quotas": "roles",
    "update_quotas": "roles",
    "get_endpoints": "paths",
    "view_frameworks": "users",
    "view_tasks": "users",
    "view_executors": "users",
    "access_sandboxes": "users",
    "access_mesos_logs": "logs",
    "view_flags": "flags",
    "set_log_level": "level",
    "register_agents": "agents",
    "update_maintenance_schedules": "machines",
    "get_maintenance_schedules": "machines",
    "start_maintenances": "machines",
    "stop_maintenances": "machines",
    "get_maintenance_statuses": "machines",
    "drain_agents": "agents",
    "deactivate_agents": "agents",
    "reactivate_agents": "agents",
    "mark_agents_gone": "agents",
    "view_containers": "users",
    "launch_nested_containers_as_user": "users",
    "launch_nested_containers_under_parent_with_user": "users",
    "launch_nested_container_sessions_as_user": "users",
    "launch_nested_container_sessions_under_parent_with_user": "users",
    "attach_containers_input": "users",
    "attach_containers_output": "users",
    "kill_nested_containers": "users",
    "wait_nested_containers": "users",
    "remove_nested_containers": "users",
}

ANY_NONE_ONLY = {
    "access_mesos_logs", "view_flags", "set_log_level", "register_agents",
    "update_maintenance_schedules", "get_maintenance_schedules", "start_maintenances",
    "stop_maintenances", "get_maintenance_statuses", "drain_agents", "deactivate_agents",
    "reactivate_agents", "mark_agents_gone",
}

GET_ENDPOINTS_PATHS = {"/containers", "/containerizer/debug", "/files/debug", "/logging/toggle",
                       "/metrics/snapshot", "/monitor/statistics"}

HIERARCHICAL = {"roles"}


class ACLError(ValueError):
    """An ACL file that cannot be loaded; the message names the rule."""


@dataclass(frozen=True)
class Entity:
    kind: str  # SOME | ANY | NONE
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    principals: Entity
    objects: Entity


def _entity(raw: object, where: str) -> Entity:
    if raw is None:
        return Entity("ANY")
    if not isinstance(raw, dict):
        raise ACLError(f"{where}: an entity is an object like {{\"values\": [...]}} or {{\"type\": \"ANY\"}}")
    kind = raw.get("type", "SOME")
    if kind not in ("SOME", "ANY", "NONE"):
        raise ACLError(f"{where}: entity type {kind!r} is not SOME, ANY or NONE")
    values = raw.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ACLError(f"{where}: 'values' must be a list of strings")
    return Entity(kind, tuple(values))


def _matches(acl_values: tuple[str, ...], value: str, hierarchical: bool) -> bool:
    for a in acl_values:
        if a == value:
            return True
        if hierarchical and a.endswith("/%") and value.startswith(a[:-1]) and len(value) > len(a) - 1:
            return True
    return False


def _decide(acl: Entity, request: tuple[str, ...] | None, hierarchical: bool) -> tuple[bool, bool]:
    """(matches, allows) of one side; ``request`` None is the ANY request entity."""
    if acl.kind == "ANY":
        return True, True
    if acl.kind == "NONE":
        return True, False
    if request is None:
        return False, False
    ok = all(_matches(acl.values, v, hierarchical) for v in request)
    return ok, ok


class ACLs:
    """Loaded ACLs; ``allowed(action, principal, objects)`` is the whole authorizer."""

    def __init__(self, permissive: bool = True, rules: dict[str, list[Rule]] | None = None) -> None:
        self.permissive = permissive
        self.rules = rules or {}

    @classmethod
    def parse(cls, doc: object) -> ACLs:
        if not isinstance(doc, dict):
            raise ACLError("the ACLs must be a JSON object")
        permissive = doc.get("permissive", True)
        if not isinstance(permissive, bool):
            raise ACLError("'permissive' must be true or false")
        rules: dict[str, list[Rule]] = {}
        for action, items in doc.items():
            if action == "permissive":
                continue
            if action not in ACTIONS:
                raise ACLError(f"unknown ACL action {action!r}")
            if not isinstance(items, list):
                raise ACLError(f"{action}: must be a list of rules")
            field = ACTIONS[action]
            out = []
            for i, item in enumerate(items):
                where = f"{action}[{i}]"
                if not isinstance(item, dict):
                    raise ACLError(f"{where}: a rule is an object with 'principals' and '{field}'")
                subj = _entity(item.get("principals"), where + ".principals")
                obj = _entity(item.get(field), f"{where}.{field}")
                if action in ANY_NONE_ONLY and obj.kind == "SOME" and field in item:
                    raise ACLError(f"{where}.{field}: only ANY or NONE is allowed for {action}")
                if action == "get_endpoints" and obj.kind == "SOME":
                    bad = [p for p in obj.values if p not in GET_ENDPOINTS_PATHS]
                    if bad:
                        raise ACLError(f"{where}.paths: {bad[0]!r} cannot be protected by get_endpoints")
                out.append(Rule(subj, obj))
            rules[action] = out
        return cls(permissive, rules)

    @classmethod
    def load(cls, text_or_path: str) -> ACLs:
        """``--acls`` takes JSON text or a path, as in Mesos."""
        text = text_or_path
        if not text_or_path.lstrip().startswith("{"):
            path = text_or_path[7:] if text_or_path.startswith("file://") else text_or_path
            try:
                with open(os.path.expanduser(path), encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise ACLError(f"cannot read the ACLs file {path}: {e.strerror}") from None
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ACLError(f"the ACLs are not valid JSON ({e})") from None
        return cls.parse(doc)

    def allowed(self, action: str, principal: str | None, objects: Iterable[str] | None = None) -> bool:
        """Is ``principal`` (None = anonymous) allowed ``action`` on every one of ``objects``
        (None = the object is absent)?"""
        rules = self.rules.get(action)
        if not rules:
            return self.permissive
        subject = (principal,) if principal is not None else None
        obj = tuple(objects) if objects is not None else None
        hierarchical = ACTIONS.get(action) in HIERARCHICAL
        for rule in rules:
            sm, sa = _decide(rule.principals, subject, False)
            om, oa = _decide(rule.objects, obj, hierarchical)
            if sm and om:
                return sa and oa
        return self.permissive

    def constrains(self, action: str) -> bool:
        """Could ``action`` ever be refused? (Skip filtering work when it cannot.)"""
        return bool(self.rules.get(action)) or not self.permissive


PERMIT_ALL = ACLs()

__all__ = ["ACLError", "ACLs", "ACTIONS", "GET_ENDPOINTS_PATHS", "PERMIT_ALL"]

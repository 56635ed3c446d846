"""Who may talk to the master, and what they may do: authentication, authorization, request
hygiene, in one aiohttp middleware plus the checks the agent channel and SUBSCRIBE need.

Realms (as Mesos): the scheduler API (``--authenticate-frameworks``), the operator API and any
other state-changing call (``--authenticate-http-readwrite``), the read-only endpoints and the
web UI (``--authenticate-http-readonly``), the agent channel (``--authenticate-agents``).
``/health`` stays open for load balancers. A realm with authentication on needs HTTP Basic
with a principal and secret from ``--credentials``; anything else is 401 with
``WWW-Authenticate: Basic realm="mesos"``. A realm with authentication off attaches no
principal (the ``Authorization`` header is ignored), so the ACLs see the subject ANY.

Request hygiene, whatever the flags: a state-changing request whose ``Origin`` is another
site is 403 (a browser that holds Basic credentials cannot be used from another page); the
agent channel refuses any ``Origin`` (agents never send one); the operator API takes only
``application/json`` bodies (protobuf is 415 "not supported"; ``text/plain``, which a web page
can send without a preflight, is 415), and a body nested too deeply is 400.

Authorization (``--acls``, :mod:`.acls`) of operator calls happens here, before the handler,
so that calls added to the operator API later are covered by their type.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from ..protocol import channel as ch
from ..protocol.credentials import CredentialsError, load_credentials, parse_basic, verify
from ..protocol.http_calls import CallRefused, check_json_content_type, decode_json
from ..protocol.routing import trim_slash
from .acls import GET_ENDPOINTS_PATHS, PERMIT_ALL, ACLError, ACLs
from .visibility import VIEW_ACTIONS, VIEW_PATHS, filter_view, restricted

log = logging.getLogger("mesos_nb.master")

REALM = "mesos"
# request key of the authenticated principal (None: no principal)
PRINCIPAL: web.RequestKey[str | None] = web.RequestKey("mesos_principal", str)  # type: ignore[arg-type]
# Set on a request whose answer goes out as the handler made it (no view ACL filters it): only
# then may a handler stream its answer (a filtered one must be a whole ``web.Response``).
SENT_AS_IS: web.RequestKey[bool] = web.RequestKey("mesos_sent_as_is", bool)

SCHEDULER_PATHS = {"/api/v1/scheduler", "/master/api/v1/scheduler"}
OPERATOR_PATHS = {"/api/v1", "/master/api/v1"}
CHANNEL_PATH = "/api/v1/agent-channel"
OPEN_PATHS = {"/health", "/master/health"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

# operator call type -> ACL action (object taken from the call where Mesos takes one)
OPERATOR_ACTIONS: dict[str, str] = {
    "GET_FLAGS": "view_flags",
    "SET_LOGGING_LEVEL": "set_log_level",
    "GET_LOGGING_LEVEL": "view_flags",
    "UPDATE_WEIGHTS": "update_weights",
    "GET_WEIGHTS": "view_roles",
    "GET_ROLES": "view_roles",
    "GET_QUOTA": "get_quotas",
    "SET_QUOTA": "update_quotas",
    "REMOVE_QUOTA": "update_quotas",
    "UPDATE_QUOTA": "update_quotas",
    "RESERVE_RESOURCES": "reserve_resources",
    "UNRESERVE_RESOURCES": "unreserve_resources",
    "CREATE_VOLUMES": "create_volumes",
    "DESTROY_VOLUMES": "destroy_volumes",
    "GROW_VOLUME": "resize_volumes",
    "SHRINK_VOLUME": "resize_volumes",
    "GET_MAINTENANCE_SCHEDULE": "get_maintenance_schedules",
    "UPDATE_MAINTENANCE_SCHEDULE": "update_maintenance_schedules",
    "START_MAINTENANCE": "start_maintenances",
    "STOP_MAINTENANCE": "stop_maintenances",
    "GET_MAINTENANCE_STATUS": "get_maintenance_statuses",
    "DRAIN_AGENT": "drain_agents",
    "DEACTIVATE_AGENT": "deactivate_agents",
    "REACTIVATE_AGENT": "reactivate_agents",
    "MARK_AGENT_GONE": "mark_agents_gone",
    "TEARDOWN": "teardown_frameworks",
    "KILL_TASK": "teardown_frameworks",  # killing one task of a framework is a smaller teardown
}


# v0 endpoints (path without the /master prefix, method) -> ACL action
V0_ACTIONS: dict[tuple[str, str], str] = {
    ("/flags", "GET"): "view_flags",
    ("/weights", "PUT"): "update_weights",
    ("/quota", "GET"): "get_quotas",
    ("/quota", "POST"): "update_quotas",
    ("/quota", "DELETE"): "update_quotas",
    ("/maintenance/status", "GET"): "get_maintenance_statuses",
    ("/maintenance/schedule", "GET"): "get_maintenance_schedules",
    ("/maintenance/schedule", "POST"): "update_maintenance_schedules",
    ("/machine/down", "POST"): "start_maintenances",
    ("/machine/up", "POST"): "stop_maintenances",
    ("/teardown", "POST"): "teardown_frameworks",
    ("/reserve", "POST"): "reserve_resources",
    ("/unreserve", "POST"): "unreserve_resources",
    ("/create-volumes", "POST"): "create_volumes",
    ("/destroy-volumes", "POST"): "destroy_volumes",
}


# views not filtered per caller yet: refused to a principal the view ACLs restrict
UNFILTERED_VIEWS = {"/master/ui/stream", "/master/ui/summary", "/master/ui/frameworks", "/master/ui/tasks",
                    "/master/utilization", "/master/utilization/stream"}
UNFILTERED_CALLS = {"GET_STATE", "GET_FRAMEWORKS", "GET_TASKS", "GET_EXECUTORS", "SUBSCRIBE"}


class SecurityError(ValueError):
    """Security flags that cannot work together; the message says which."""


@dataclass
class SecurityConfig:
    credentials: str | None = None  # a Mesos credentials file
    authenticate_frameworks: bool = False
    authenticate_agents: bool = False
    authenticate_http_readonly: bool = False
    authenticate_http_readwrite: bool = False
    acls: str | None = None  # JSON text or a path

    @property
    def any_authentication(self) -> bool:
        return (self.authenticate_frameworks or self.authenticate_agents or self.authenticate_http_readonly
                or self.authenticate_http_readwrite)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def validate_agent_address(hostname: str, port: int) -> str | None:
    """Why the address an agent registers cannot be called back, or None. The master later
    builds ``http(s)://HOST:PORT/...`` from it, so it must be a plain host and a port, nothing
    that could steer that URL elsewhere."""
    if not isinstance(port, int) or not 0 < port < 65536:
        return f"Invalid agent port {port!r}: expected 1-65535"
    if not hostname or len(hostname) > 253:
        return "Invalid agent hostname: empty or longer than 253 characters"
    h = hostname[1:-1] if hostname.startswith("[") and hostname.endswith("]") else hostname
    try:
        ipaddress.ip_address(h)
        return None
    except ValueError:
        pass
    labels = hostname.rstrip(".").split(".")
    if not all(_HOST_LABEL.match(x) for x in labels):
        return f"Invalid agent hostname {hostname!r}: expected a DNS name or an IP address"
    return None


def _same_origin(request: web.Request, origin: str) -> bool:
    if origin == "null":
        return False
    try:
        u = urlsplit(origin)
    except ValueError:
        return False
    host = request.headers.get("Host", "")
    return bool(u.netloc) and u.netloc.lower() == host.lower()


def _unauthorized(message: str) -> web.Response:
    return web.Response(status=401, text=message, headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})


def _forbidden(message: str) -> web.Response:
    return web.Response(status=403, text=message)


class Guard:
    """The loaded credentials and ACLs, and every check made with them."""

    def __init__(self, config: SecurityConfig | None, agent_secret: Callable[[], str | None] | str | None = None,
                 core: Callable[[], Any] | None = None) -> None:
        self.config = c = config or SecurityConfig()
        self._agent_secret = agent_secret if callable(agent_secret) else (lambda: agent_secret)
        secret = self.agent_secret
        self._core = core
        try:
            self.credentials = load_credentials(c.credentials) if c.credentials else {}
        except CredentialsError as e:
            raise SecurityError(str(e)) from None
        if c.any_authentication and not self.credentials and not (
                secret and not (c.authenticate_frameworks or c.authenticate_http_readonly
                                      or c.authenticate_http_readwrite)):
            raise SecurityError("authentication is on but no --credentials file was given")
        try:
            self.acls: ACLs = ACLs.load(c.acls) if c.acls else PERMIT_ALL
        except ACLError as e:
            raise SecurityError(f"bad --acls: {e}") from None

    @property
    def agent_secret(self) -> str | None:
        """The in-process agents' bearer secret (``mesos-nb local``), read live from the config."""
        return self._agent_secret()

    # ------------------------------------------------------------------ authentication
    def _realm(self, request: web.Request) -> tuple[str, bool]:
        path = request.path.rstrip("/") or "/"
        c = self.config
        if path in SCHEDULER_PATHS:
            return "scheduler", c.authenticate_frameworks
        if path in OPERATOR_PATHS:
            return "operator", c.authenticate_http_readwrite
        if path == CHANNEL_PATH:
            return "channel", c.authenticate_agents
        if path in OPEN_PATHS:
            return "open", False
        if request.method not in SAFE_METHODS:
            return "readwrite", c.authenticate_http_readwrite
        return "readonly", c.authenticate_http_readonly

    def authenticate(self, request: web.Request, realm: str, required: bool) -> web.Response | None:
        header = request.headers.get("Authorization")
        if realm == "channel":
            secret = self.agent_secret
            if secret and header is not None and hmac.compare_digest(header.encode(), f"Bearer {secret}".encode()):
                request[PRINCIPAL] = None
                return None
            if not required:
                if secret:
                    return _unauthorized("Agent authentication failed: wrong or missing secret")
                request[PRINCIPAL] = None
                return None
        elif not required:
            request[PRINCIPAL] = None
            return None
        given = parse_basic(header)
        if not verify(self.credentials, given):
            who = f" for principal '{given.principal}'" if given is not None else ""
            log.warning("authentication failed realm=%s path=%s peer=%s%s", realm, request.path,
                        request.remote, who)
            return _unauthorized(f"Authentication failed{who}: a valid principal and secret "
                                 f"(HTTP Basic) are required")
        assert given is not None
        request[PRINCIPAL] = given.principal
        return None

    # ------------------------------------------------------------------ the middleware
    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path in SCHEDULER_PATHS and not self.config.authenticate_frameworks \
                and "Origin" not in request.headers:
            # The common scheduler call (ACKNOWLEDGE, ACCEPT) on a master without framework
            # authentication: no credentials, Origin, trailing slash or view ACL to look at,
            # which is what the full guard below would find -- at a tenth of the request's CPU.
            request[PRINCIPAL] = None
            return _protobuf_refused(request) or await handler(_as_is(request))
        request, handler = await trim_slash(request, handler)
        realm, required = self._realm(request)
        origin = request.headers.get("Origin")
        if origin is not None:
            if realm == "channel":
                return _forbidden("The agent channel does not accept browser connections (Origin set)")
            if request.method not in SAFE_METHODS and not _same_origin(request, origin):
                return _forbidden(f"Cross-origin request refused (Origin {origin})")
        refused = self.authenticate(request, realm, required)
        if refused is not None:
            return refused
        principal = request[PRINCIPAL]
        v0 = request.path.rstrip("/")
        v0 = v0[7:] if v0.startswith("/master/") else v0
        action = V0_ACTIONS.get((v0, request.method))
        if action is not None:
            objects = await self._v0_objects(request, v0)
            if not self.acls.allowed(action, principal, objects):
                return _forbidden(f"Not authorized: {request.method} {request.path}")
        if realm == "scheduler" and (refused := _protobuf_refused(request)) is not None:
            return refused
        if realm == "operator" and request.method == "POST":
            refused = await self._check_operator(request, principal)
            if refused is not None:
                return refused
        elif realm == "readonly":
            path = request.path.rstrip("/")
            if path in GET_ENDPOINTS_PATHS and not self.acls.allowed("get_endpoints", principal, [path]):
                return _forbidden(f"Not authorized to GET {path}")
            if path == "/master/files/read" and not self._sandbox_allowed(request, principal):
                return _forbidden("Not authorized to read this sandbox")
            if restricted(self.acls) and not self._sees_all(principal):
                view = path[7:] if path.startswith("/master/") else path
                if view in VIEW_PATHS:
                    return self._filtered(await handler(request), principal)
                if path in UNFILTERED_VIEWS:
                    return _forbidden(f"{path} is not available to a principal whose view ACLs hide "
                                      "something; use /master/state")
        return await handler(_as_is(request))

    def _sees_all(self, principal: str | None) -> bool:
        """Allowed the ANY object for every view action, hence every framework, task and executor
        (a SOME rule can only widen what ANY is allowed, never narrow it)."""
        return all(self.acls.allowed(a, principal, None) for a in VIEW_ACTIONS)

    def _filtered(self, resp: web.StreamResponse, principal: str | None) -> web.StreamResponse:
        """The view ACLs applied to a read-only JSON answer (only when they could hide something)."""
        if not isinstance(resp, web.Response) or resp.status != 200:
            return resp
        if resp.content_type != "application/json":
            return _forbidden("Only JSON views can be filtered by the view ACLs")
        core = self._core() if self._core else None
        if core is None or not isinstance(resp.body, bytes):
            return resp

        def task_user(fid: str, tid: str) -> str | None:
            fw = core.frameworks.get(fid)
            t = fw.tasks.get(tid) if fw is not None else None
            cmd = t.info.command if t is not None else None
            return cmd.user if cmd is not None and cmd.user else None

        users = {fw.id: fw.info.user for fw in [*core.completed_frameworks, *core.frameworks.values()]}
        doc = filter_view(msgspec.json.decode(resp.body), self.acls, principal, task_user, users)
        return web.Response(body=msgspec.json.encode(doc), content_type="application/json")

    async def _check_operator(self, request: web.Request, principal: str | None) -> web.Response | None:
        try:
            check_json_content_type(request.headers.get("Content-Type"))
            call = decode_json(await request.read())
        except CallRefused as e:
            return web.Response(status=e.status, text=e.message)
        if not isinstance(call, dict):
            return None  # the handler names the problem
        t = call.get("type")
        if t in UNFILTERED_CALLS and restricted(self.acls) and not self._sees_all(principal):
            return _forbidden(f"{t} is not available to a principal whose view ACLs hide something; "
                              "use /master/state")
        action = OPERATOR_ACTIONS.get(t) if isinstance(t, str) else None
        if action is None:
            return None
        objects = self._operator_objects(t, call)
        if self.acls.allowed(action, principal, objects):
            return None
        who = f"principal '{principal}'" if principal else "an anonymous caller"
        log.warning("operator call refused type=%s principal=%s", t, principal)
        return _forbidden(f"Not authorized: {who} may not {t}")

    def _operator_objects(self, t: str, call: dict[str, Any]) -> list[str] | None:
        """The ACL object of an operator call (None: absent, the ANY object)."""
        core = self._core() if self._core else None
        body = call.get(t.lower())
        try:
            if t == "TEARDOWN" and core is not None:
                fw = core.frameworks.get(body["framework_id"]["value"])
                p = fw.info.principal if fw is not None else None
                return [p] if p else None
            if t == "KILL_TASK" and core is not None:
                task = core.find_task(body["task_id"]["value"])
                fw = core.frameworks.get(task.framework_id) if task is not None else None
                p = fw.info.principal if fw is not None else None
                return [p] if p else None
            if t == "UPDATE_WEIGHTS":
                return [w["role"] for w in body["weight_infos"]]
            if t in ("SET_QUOTA", "REMOVE_QUOTA"):
                return [body["quota_request"]["role"] if t == "SET_QUOTA" else body["role"]]
            if t == "UPDATE_QUOTA":
                return [q["role"] for q in body["quota_configs"]]
            if t == "DESTROY_VOLUMES":  # the creator principal of each volume
                return [(v.get("disk") or {}).get("persistence", {}).get("principal") or "" for v in body["volumes"]]
            if t in ("RESERVE_RESOURCES", "CREATE_VOLUMES", "GROW_VOLUME", "SHRINK_VOLUME"):
                res = body.get("resources") or body.get("volumes") or [body.get("volume")]
                roles = []
                for r in res:
                    resv = r.get("reservations") or []
                    roles.append(resv[-1]["role"] if resv else r.get("role", "*"))
                return roles
        except (KeyError, TypeError, AttributeError, IndexError):
            return None  # malformed: the handler answers 400
        return None

    async def _v0_objects(self, request: web.Request, path: str) -> list[str] | None:
        """The ACL object of a v0 call where one is known (weights: their roles; teardown: the
        framework's principal); None is the ANY object."""
        try:
            if path == "/weights":
                doc = msgspec.json.decode(await request.read())
                return [w["role"] for w in doc]
            if path == "/teardown":
                form = await request.post()
                core = self._core() if self._core else None
                fw = core.frameworks.get(str(form.get("frameworkId", ""))) if core is not None else None
                return [fw.info.principal] if fw is not None and fw.info.principal else None
        except (msgspec.DecodeError, RecursionError, KeyError, TypeError, ValueError):
            return None
        return None

    # ------------------------------------------------------------------ sandboxes
    def _sandbox_allowed(self, request: web.Request, principal: str | None) -> bool:
        if not self.acls.constrains("access_sandboxes"):
            return True
        user = None
        m = re.search(r"/frameworks/([^/]+)/", request.query.get("path", ""))
        core = self._core() if self._core else None
        if m and core is not None:
            fw = core.frameworks.get(m.group(1))
            user = fw.info.user if fw is not None else None
        return self.acls.allowed("access_sandboxes", principal, [user] if user else None)

    # ------------------------------------------------------------------ frameworks
    def check_subscribe(self, principal: str | None, info: Any, existing: Any) -> tuple[int, str] | None:
        """(status, message) when a SUBSCRIBE must be refused."""
        if self.config.authenticate_frameworks:
            if info.principal and info.principal != principal:
                return 400, (f"Authenticated principal '{principal}' does not match principal "
                             f"'{info.principal}' set in `FrameworkInfo`")
            if existing is not None and existing.info.principal != principal:
                return 403, (f"Framework {existing.id} is registered by another principal; "
                             f"'{principal}' cannot subscribe as it")
        roles = info.all_roles()
        if not self.acls.allowed("register_frameworks", principal, roles):
            return 403, f"Not authorized to register framework with roles {{{', '.join(sorted(roles))}}}"
        return None

    def check_framework_call(self, principal: str | None, fw: Any) -> str | None:
        if self.config.authenticate_frameworks and fw.info.principal != principal:
            return f"Framework {fw.id} belongs to another principal"
        return None

    def authorize_task(self, fw: Any, task: Any) -> str | None:
        """``run_tasks``: the framework's principal may run this task as its user."""
        if not self.acls.constrains("run_tasks"):
            return None
        user = None
        if task.command is not None and task.command.user:
            user = task.command.user
        elif task.executor is not None and task.executor.command is not None and task.executor.command.user:
            user = task.executor.command.user
        else:
            user = fw.info.user
        if self.acls.allowed("run_tasks", fw.info.principal, [user] if user else None):
            return None
        return f"Not authorized to launch task {task.task_id.value} as user '{user}'"

    def authorize_operation(self, fw: Any, action: str, objects: list[str]) -> str | None:
        """The ACL of an offer operation in ACCEPT (reserve_resources, unreserve_resources,
        create_volumes, destroy_volumes, resize_volumes) for the framework's principal."""
        if not self.acls.constrains(action):
            return None
        if self.acls.allowed(action, fw.info.principal, [o for o in objects if o] or None):
            return None
        return f"Not authorized: principal '{fw.info.principal}' may not {action.replace('_', ' ')} {objects}"

    # ------------------------------------------------------------------ agents
    def check_agent_registration(self, reg: Any, principal: str | None, channel: Any, existing: Any,
                                 owners: Mapping[str, str | None] | None = None) -> str | None:
        """Why ``reg`` is refused, or None. ``owners`` (the core's ``agent_principals``, kept in
        the registry) binds each agent id to the principal that first registered it."""
        bad = validate_agent_address(reg.hostname, reg.port)
        if bad is not None:
            return bad
        if reg.scheme not in ("http", "https"):
            return f"Invalid agent scheme {reg.scheme!r}: expected http or https"
        if not self.acls.allowed("register_agents", principal):
            return f"Not authorized to register agents as principal '{principal}'"
        if owners and reg.agent_id in owners and owners[reg.agent_id] != principal:
            return f"Agent {reg.agent_id} is registered by another principal"
        if existing is not None:
            if existing.connected and existing.channel is not None and existing.channel is not channel \
                    and not getattr(existing.channel, "closed", False):
                return f"Agent {reg.agent_id} is held by another connection"
        return None

    def register_agent(self, core: Any, reg: Any, chan: Any, now: float) -> None:
        """Register (or refuse) an agent that spoke on ``chan``; the id stays bound to its principal."""
        existing = core.agents.get(reg.agent_id) if reg.agent_id else None
        refused = self.check_agent_registration(reg, chan.principal, chan, existing, core.agent_principals)
        if refused is not None:
            log.warning("agent registration refused peer=%s principal=%s agent=%s: %s",
                        chan.peer, chan.principal, reg.agent_id, refused)
            chan.send(ch.Refused(key=reg.key, message=refused))
            return
        core.register_agent(reg, chan, now, chan.principal)

    def from_channel(self, core: Any, x: Any, chan: Any) -> bool:
        """Is ``x`` about an agent registered over ``chan`` (and, for a status update, a task
        the master placed on that agent, or one it does not know)?"""
        agent = core.agents.get(getattr(x, "agent_id", None) or "")
        ok = agent is not None and agent.channel is chan
        if ok and type(x) is ch.StatusUpdate:
            fw = core.frameworks.get(x.framework_id)
            task = fw.tasks.get(x.status.task_id.value) if fw is not None else None
            ok = task is None or task.agent_id == x.agent_id
        if not ok:
            log.warning("agent channel message refused peer=%s principal=%s type=%s agent=%s: "
                        "not its agent or task", chan.peer, chan.principal, type(x).__name__,
                        getattr(x, "agent_id", None))
        return ok


def _as_is(request: web.Request) -> web.Request:
    """``request`` marked as answered as its handler makes it (no view ACL filters it)."""
    request[SENT_AS_IS] = True
    return request


def _protobuf_refused(request: web.Request) -> web.Response | None:
    """A scheduler call in protobuf is refused with 415 before its handler reads it."""
    if request.headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/x-protobuf":
        return web.Response(status=415, text="Content-Type 'application/x-protobuf' is not supported; "
                                             "mesos-nb speaks 'application/json'")
    return None


__all__ = ["PRINCIPAL", "Guard", "SecurityConfig", "SecurityError", "validate_agent_address"]

"""Path rules libprocess applies before routing, shared by the master's and the agent's apps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def trim_slash(request: web.Request, handler: Any) -> tuple[web.Request, Any]:
    """libprocess trims one trailing ``/`` before routing: ``/master/frameworks/`` is
    ``/master/frameworks``. The request (re-routed when only the trimmed path matches) and its
    handler; a middleware that reads the body must re-route first (a read body cannot be)."""
    path = request.path
    if len(path) > 1 and path.endswith("/") and request.match_info.http_exception is not None:
        clone = request.clone(rel_url=request.rel_url.with_path(path[:-1]))
        match = await request.app.router.resolve(clone)
        if match.http_exception is None:
            match.add_app(request.app)
            match.freeze()
            clone._match_info = match  # what Application._handle does for a fresh request
            return clone, match.handler
    return request, handler


@web.middleware
async def trailing_slash(request: web.Request, handler: Any) -> web.StreamResponse:
    """The trailing-slash rule as a middleware of its own (for an app without another that applies it)."""
    request, handler = await trim_slash(request, handler)
    return await handler(request)


def add_routes(router: web.UrlDispatcher, prefixes: Iterable[str], routes: Mapping[str, Handler]) -> None:
    """Each ``"METHOD /path"`` of ``routes`` under each of ``prefixes``: libprocess serves a
    process's endpoint at ``/<process id>/path`` (``/master/state``); mesos-nb at ``/path`` too.
    A GET answers HEAD as well, as aiohttp's ``add_get`` does."""
    for prefix in prefixes:
        for route, handler in routes.items():
            method, path = route.split(" ", 1)
            if method == "GET":
                router.add_get(prefix + path, handler)
            else:
                router.add_route(method, prefix + path, handler)

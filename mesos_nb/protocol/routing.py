"""Path rules libprocess applies before routing, shared by the master's and the agent's apps."""

from __future__ import annotations

from typing import Any

from aiohttp import web


@web.middleware
async def trailing_slash(request: web.Request, handler: Any) -> web.StreamResponse:
    """libprocess trims one trailing ``/`` before routing: ``/master/frameworks/`` is ``/master/frameworks``."""
    path = request.path
    if len(path) > 1 and path.endswith("/") and request.match_info.http_exception is not None:
        clone = request.clone(rel_url=request.rel_url.with_path(path[:-1]))
        match = await request.app.router.resolve(clone)
        if match.http_exception is None:
            match.add_app(request.app)
            match.freeze()
            clone._match_info = match  # what Application._handle does for a fresh request
            return await match.handler(clone)
    return await handler(request)

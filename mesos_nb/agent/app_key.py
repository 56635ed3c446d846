"""The one link between an agent's aiohttp app and its :class:`~mesos_nb.agent.agent.Agent`:
``make_app`` (http.py) stores the agent under :data:`AGENT_KEY`, and every handler (the
read endpoints in http.py, the executor API in executor_api.py) takes it back with
:func:`agent_of`. Both modules depend on this one; neither on the other's internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .agent import Agent

AGENT_KEY = web.AppKey("agent", object)


def agent_of(request: web.Request) -> Agent:
    """The agent that the app serving ``request`` belongs to."""
    return request.app[AGENT_KEY]  # type: ignore[return-value]


__all__ = ["AGENT_KEY", "agent_of"]

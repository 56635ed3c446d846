"""Could any agent of the cluster ever hold a request? The one check the CLI (``mesos-nb
run``), the notebook (``%mesos submit``) and the kernel provisioner make before they wait
for an offer: when no agent, even idle, is big enough or has the attributes, the wait would
never end, so each caller says why at once, in its own sentence, from the :class:`NoFit`
returned here.

Pure: works on the typed :class:`~mesos_nb.protocol.state.AgentView` snapshots of
``/master/state`` or ``/master/slaves``; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mesos_nb.protocol.state import AgentView
from mesos_nb.scheduler.tasks import attributes_match

Reason = Literal["no_agents", "attributes", "too_small"]


@dataclass(frozen=True)
class NoFit:
    """Why no agent could ever hold the request.

    ``reason``: ``no_agents`` (none active), ``attributes`` (no active agent has them) or
    ``too_small`` (those that have them are all, even idle, too small). ``agents``: the
    active agents; ``candidates``: those of them with the attributes; ``biggest``: the largest
    candidate (by cpus, then mem), None unless ``too_small``.
    """

    reason: Reason
    agents: int
    candidates: int
    biggest: AgentView | None = None


def port_count(value: object) -> int:
    """Ports in an agent's ``resources.ports`` text (``"[31000-32000, 33000-33010]"``)."""
    n = 0
    for part in str(value or "").strip("[] ").split(","):
        b, _, e = part.strip().partition("-")
        if b.strip().isdigit():
            n += int(e or b) - int(b) + 1
    return n


def holds(agent: AgentView, amounts: Mapping[str, float], ports: int = 0) -> bool:
    """The agent's totals (not what is free now) cover ``amounts`` and ``ports`` ports."""
    return (all(agent.scalar(k) >= v for k, v in amounts.items())
            and (not ports or port_count(agent.resources.get("ports")) >= ports))


def never_fits(agents: Sequence[AgentView], amounts: Mapping[str, float],
               constraints: Mapping[str, str], ports: int = 0) -> NoFit | None:
    """None when some active agent has the ``constraints`` attributes and totals covering
    ``amounts`` (scalar name -> amount) and ``ports`` ports; else why not."""
    live = [a for a in agents if a.active]
    if not live:
        return NoFit("no_agents", 0, 0)
    candidates = [a for a in live if attributes_match(a.attributes, constraints)]
    if not candidates:
        return NoFit("attributes", len(live), 0)
    if any(holds(a, amounts, ports) for a in candidates):
        return None
    biggest = max(candidates, key=lambda a: (a.scalar("cpus"), a.scalar("mem")))
    return NoFit("too_small", len(live), len(candidates), biggest)


__all__ = ["NoFit", "holds", "never_fits", "port_count"]

"""UPDATE_FRAMEWORK (scheduler call 22): change a subscribed framework's FrameworkInfo in place.

Validation follows Mesos (``master/validation.cpp`` and ``Master::updateFramework``): the
framework id must match, roles must be valid, suppressed roles must be among the roles, and
``principal``, ``user`` and ``checkpoint`` cannot change. On success the framework's offers
for roles it left are rescinded, the allocator learns the new roles and suppressions, and the
answer is 200. A transition module like :mod:`.frameworks`: a function over the one
:class:`~mesos_nb.master.state.MasterState`; the new FrameworkInfo is written through a
:class:`~mesos_nb.master.effects.SaveFramework` effect, as a re-subscription's is.
"""

from __future__ import annotations

from typing import Any

from ..protocol import messages as m
from .effects import SaveFramework
from .offers import rescind
from .state import CallError, MasterState
from .validation import validate_role


def _invalid(message: str) -> CallError:
    return CallError(400, f"Supplied FrameworkInfo is not valid: {message}")


def update_framework(st: MasterState, framework_id: str, payload: Any, now: float) -> bool:
    """Apply an UPDATE_FRAMEWORK; True when something changed. Raises CallError (400)."""
    if not isinstance(payload, dict):
        raise CallError(400, "Expecting 'update_framework' to be present")
    try:
        info = m.convert(payload.get("framework_info"), m.FrameworkInfo)
    except m.ProtocolError as e:
        raise _invalid(str(e)) from None
    if info.id is None or info.id.value != framework_id:
        raise CallError(400, "'framework_id' differs from 'update_framework.framework_info.id'")
    fw = st.framework(framework_id)
    roles = info.all_roles()
    for role in roles:
        err = validate_role(role)
        if err:
            raise _invalid(err)
    if info.roles and info.role not in (None, "*") and not info.has_capability("MULTI_ROLE"):
        raise _invalid("'roles' requires the MULTI_ROLE capability")
    if info.failover_timeout < 0:
        raise _invalid("'failover_timeout' must not be negative")
    suppressed = payload.get("suppressed_roles") or []
    if not isinstance(suppressed, list) or not all(isinstance(r, str) for r in suppressed):
        raise CallError(400, "Expecting 'suppressed_roles' to be a list of role names")
    for role in suppressed:
        if role not in roles:
            raise _invalid(f"Suppressed role '{role}' is not contained in the list of roles")
    if payload.get("offer_constraints"):
        raise CallError(501, "Offer constraints are not supported by mesos-nb yet")
    for name in ("principal", "user", "checkpoint"):
        if getattr(info, name) != getattr(fw.info, name):
            raise CallError(400, f"FrameworkInfo update is not valid: Changing framework's {name} is not allowed.")
    changed = m.to_builtins(info) != m.to_builtins(fw.info) or set(suppressed) != fw.suppressed_roles
    if not changed:
        return False
    fw.info = info
    fw.suppressed_roles = set(suppressed)
    st.out.append(SaveFramework(fw.id, info, fw.registered_time, fw.failover_deadline))
    for oid in list(fw.offers):
        offer = st.offers.get(oid)
        if offer is not None and offer.role not in roles:
            rescind(st, offer, now)  # the framework left this role: its offers go back
    st.allocator.update_framework(fw.id, roles, suppressed_roles=sorted(fw.suppressed_roles),
                                    gpu_aware=info.has_capability("GPU_RESOURCES"))
    st.version += 1
    st.wants_allocation = True
    return True

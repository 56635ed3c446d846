"""The first checks of a v1 API call sent over HTTP, shared by the master's scheduler and
operator APIs and the agent's operator API, so that each answers the same bad request with
the same status and sentence (as Mesos' ``http.cpp`` does: 400 without a Content-Type, 415
for one that is not JSON, 400 for a body that is not JSON or names no known ``type``, 501
for ``UNKNOWN``).

The checks raise :class:`CallRefused`; each API turns it into its plain-text answer.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

JSON = "application/json"


class StatusError(Exception):
    """An error answered with an HTTP ``status`` and ``message``, a sentence for the caller
    (the master's :class:`CallError`, the agent's nested-container errors, and the checks here)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CallRefused(StatusError):
    """A request refused before it reached its handler."""


def media_types(header: str | None) -> set[str]:
    """The media types a Content-Type or Accept header names, lower case, parameters dropped."""
    if not header:
        return set()
    return {p.split(";")[0].strip().lower() for p in header.split(",")}


def accepts_json(accept: str | None) -> bool:
    """Whether an Accept header lets the answer be JSON (no header takes anything)."""
    return not accept or bool(media_types(accept) & {JSON, "*/*", "application/*", ""})


def check_json_content_type(ctype: str | None) -> None:
    """A call body must say it is JSON (mesos-nb does not speak protobuf)."""
    if ctype is None:
        raise CallRefused(400, "Expecting 'Content-Type' to be present")
    if ctype.split(";")[0].strip().lower() != JSON:
        raise CallRefused(415, f"Content-Type '{ctype}' is not supported; mesos-nb speaks '{JSON}'")


def decode_json(body: bytes) -> Any:
    """The body as plain JSON values; a body nested too deeply for the decoder is a 400 too."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise CallRefused(400, f"Failed to parse body into Call: {e}") from None
    except RecursionError:
        raise CallRefused(400, "Failed to parse body into Call: JSON nested too deeply") from None


def decode_call(body: bytes, side: str, known: Collection[str]) -> tuple[str, dict[str, Any]]:
    """An operator call's ``type`` and the call as a dict (``side``: "master" or "agent", as
    Mesos names the message in its answer); its payload is read by the handler."""
    call = decode_json(body)
    if not isinstance(call, dict) or not isinstance(call.get("type"), str):
        raise CallRefused(400, f"Failed to validate {side}::Call: Expecting 'type' to be present")
    t = call["type"]
    if t == "UNKNOWN":
        raise CallRefused(501, "Received 'UNKNOWN' call")
    if t not in known:
        raise CallRefused(400, f"Failed to parse body into Call: unknown call type '{t}'")
    return t, call

"""The server's answers as iacrun's error tree: an error body (`{"error": {"type", "message",
"exit_code"}}`) names the class to raise again; an answer without one gets the class of its
status. Shared by the HTTP calls (client.py) and the WebSocket tunnels' handshakes (ports.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from iacrun.orchestrator import errors

#: the error of an answer that has no body to name it
_BY_STATUS: dict[int, type[errors.IacrunError]] = {
    401: errors.AuthError,
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
}


def error_of(status: int, body: bytes) -> errors.IacrunError:
    """The error an answer of `status` with `body` names (an HTTP answer's, or a WebSocket
    handshake's refusal)."""
    try:
        detail = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):  # no body (a HEAD), or not iacrun's server
        text = body.decode(errors="replace").strip().splitlines()
        cls = _BY_STATUS.get(status, errors.ServerError)
        return cls(f"the server answered {status}: {text[0] if text else 'no details'}")
    return error_named(detail)


def error_named(detail: Mapping[str, Any]) -> errors.IacrunError:
    """The error an error body's `detail` names, with its message."""
    cls = getattr(errors, str(detail.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.IacrunError)):
        cls = errors.IacrunError
    return cls(str(detail.get("message", "")))

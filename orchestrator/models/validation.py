"""Pydantic's errors in one line each: the one formatter behind every file and flag message.

`problem` says what is wrong with a value, without where it is; the task/profile/config loader
(`loader.PositionedYaml`) puts the file, line and field in front of it, and `flag_error` the flag
and the value typed (`--port 70000:6000: port 70000 is out of range 1..65535`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from iacrun.orchestrator.errors import InputError

_PREFIXES = ("Value error, ", "Assertion failed, ")


def problem(err: ErrorDetails, *, with_value: bool = True) -> str:
    """One line: what is wrong with `err["input"]`, and what is allowed instead; `with_value`
    adds the value when the message does not show it (a flag's message shows it already)."""
    kind = err["type"]
    message = str(err["msg"]).splitlines()[0] if err["msg"] else kind
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    value = err.get("input")
    if kind == "missing":
        return "is required"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{value!r} is not allowed; use one of {expected}"
    if value is None and kind not in ("value_error", "assertion_error"):
        return "is empty; give it a value or remove the line"
    if kind not in ("value_error", "assertion_error"):
        message = message[:1].lower() + message[1:]
    shown = value is None or isinstance(value, dict | list) or str(value) in message
    return message if shown or not with_value else f"{message}, got {redacted(value)!r}"


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)[^/@\s]*@", re.IGNORECASE)


def redacted(value: Any) -> Any:
    """A value as a message may show it: a password inside a URL becomes `***`."""
    return _URL_PASSWORD.sub(r"\g<head>***@", value) if isinstance(value, str) else value


def first_error(exc: ValidationError) -> tuple[tuple[str | int, ...], ErrorDetails]:
    err = exc.errors()[0]
    return tuple(p for p in err["loc"] if isinstance(p, str | int)), err


def flag_error(exc: ValidationError, flags: Mapping[str, str]) -> InputError:
    """A flag's bad value as one line: `FLAG VALUE: problem`."""
    loc, err = first_error(exc)
    field = str(loc[0]) if loc else ""
    flag = flags.get(field, f"--{field.replace('_', '-')}")
    value: Any = err.get("input")
    message = problem(err, with_value=False)
    # a value the message starts by quoting (as repr: a newline in it stays on the line) is not
    # shown twice
    quoted = isinstance(value, str) and message.startswith(repr(value))
    shown = "" if isinstance(value, dict) or quoted else f" {_typed(value)}"
    return InputError(f"{flag}{shown}: {message}")


def _typed(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

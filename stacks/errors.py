"""Pulumi engine failures turned into iacrun's typed errors, in one place.

``translate(source)`` reads what the engine said (the error diagnostics of an update, the text of a
failed CLI command, or both) and returns one error of the tree in ``orchestrator/errors.py``:

    CapacityError     the cloud has no machine for the offer now: try the next offer
    QuotaError        an account limit: try another region or cloud
    CredentialsError  missing, expired or rejected credentials, or no permission
    ToolMissingError  a Pulumi plugin the program needs is not installed
    BackendError      anything else, with the engine's first error line

Cloud error codes recognised (whole words, anywhere in the text):

    AWS    capacity: InsufficientInstanceCapacity, SpotMaxPriceTooLow, InsufficientHostCapacity,
                     Unsupported (instance type not offered in the zone)
           quota:    MaxSpotInstanceCountExceeded, VcpuLimitExceeded, InstanceLimitExceeded
    Azure  capacity: SkuNotAvailable, AllocationFailed, ZonalAllocationFailed,
                     OverconstrainedAllocationRequest, OverconstrainedZonalAllocationRequest
           quota:    QuotaExceeded, OperationNotAllowed when it is about cores or a quota

Nothing else in iacrun parses engine text: failover logic only looks at the error's class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from iacrun.orchestrator.errors import (
    BackendError,
    CapacityError,
    CredentialsError,
    IacrunError,
    QuotaError,
    ToolMissingError,
)

Kind = Literal["capacity", "quota", "credentials", "plugin", "other"]
#: what the engine said: an exception, a text, or several of them
Source = BaseException | str | Iterable[BaseException | str]


CAPACITY_CODES = (
    "InsufficientInstanceCapacity",
    "SpotMaxPriceTooLow",
    "InsufficientHostCapacity",
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
)
QUOTA_CODES = (
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "QuotaExceeded",
)
CREDENTIAL_CODES = (
    # AWS
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "UnauthorizedOperation",
    "NoCredentialProviders",
    # Azure
    "AuthorizationFailed",
    "InvalidAuthenticationToken",
    "ExpiredAuthenticationToken",
    "InvalidAuthenticationTokenTenant",
    "SubscriptionNotFound",
    "InvalidSubscriptionId",
)
CREDENTIAL_PHRASES = (
    r"no valid credential sources",
    r"failed to refresh cached credentials",
    r"unable to locate credentials",
    r"please run 'az login'",
    r"DefaultAzureCredential",
    r"AADSTS\d+",
    r"PULUMI_ACCESS_TOKEN must be set",
    r"incorrect passphrase",
    r"passphrase must be set",
)
#: `Unsupported` alone is too common a word; only the EC2 meaning counts
_AWS_UNSUPPORTED = re.compile(r"\bUnsupported\b: Your requested instance type", re.IGNORECASE)
_CORES_OR_QUOTA = re.compile(r"\bcores?\b|\bquota\b", re.IGNORECASE)
_PLUGIN_MISSING = re.compile(
    r"no resource plugin '(?:pulumi-resource-)?(?P<name>[\w.-]+)'(?: version (?P<version>\S+))?"
    r"[^\n]* found",
    re.IGNORECASE,
)

_ERROR_LINE = re.compile(r"^\s*error:\s*(?P<text>.+)$", re.MULTILINE)
#: the last line of a Python traceback: `ModuleNotFoundError: No module named 'x'`
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")
_NOISE = (
    "update failed",
    "preview failed",
    "destroy failed",
    "an error occurred while advancing the preview",
    "one or more errors occurred",
)
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class Classification:
    """What an engine failure means: its kind, the cloud's code when one was found, a message."""

    kind: Kind
    code: str | None
    message: str


def _word(code: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w]){re.escape(code)}(?![\w])")


def _first_code(text: str, codes: Iterable[str]) -> str | None:
    found: list[tuple[int, str]] = []
    for code in codes:
        match = _word(code).search(text)
        if match:
            found.append((match.start(), code))
    return min(found)[1] if found else None


def _clean(message: str) -> str:
    message = message.replace("\\n", " ").replace('\\"', '"')
    message = re.sub(r"\s+", " ", message).strip().rstrip(":").strip()
    message = re.sub(r":? provider=[\w.-]+@[\w.+-]+$", "", message).strip()
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1].rstrip() + "…"
    return message


def _message_for(code: str, text: str) -> str:
    """The cloud's own words about `code`, from the formats AWS and Azure providers print."""
    c = re.escape(code)
    patterns = (
        rf'Code="{c}"\s+Message="(?P<m>(?:[^"\\]|\\.)*)"',
        rf'"code"\s*:\s*"{c}"\s*,\s*"message"\s*:\s*"(?P<m>(?:[^"\\]|\\.)*)"',
        rf"api error {c}: (?P<m>.*?)(?:: provider=\S+)?$",
        rf"\b{c}\b[:\s]+(?P<m>[^\n]+)",
    )
    for pattern in patterns:
        match = re.search(pattern, text, re.MULTILINE | re.DOTALL)
        if match and match.group("m").strip():
            return _clean(match.group("m"))
    return code


def _texts(source: Source) -> list[str]:
    if isinstance(source, str):
        return [source]
    if isinstance(source, BaseException):
        parts = [str(source)]
        for attr in ("stdout", "stderr"):
            value = getattr(source, attr, None)
            if isinstance(value, str) and value:
                parts.append(value)
        return parts
    texts: list[str] = []
    for item in source:
        texts.extend(_texts(item))
    return texts


def _summary(text: str) -> str:
    """The line that says what went wrong: a traceback's last line, else the first line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = re.sub(r"^error:\s*", "", lines[0])
    if first.startswith("Traceback"):
        raised = [line for line in lines[1:] if _RAISED.match(line)]
        return raised[0] if raised else first
    return first


def _first_error_line(texts: list[str]) -> str:
    """The first meaningful error: from diagnostics first, else from a failed command's output."""
    candidates: list[str] = []
    for text in texts:
        if "\n stdout:" in text or "Diagnostics:" in text or _ERROR_LINE.search(text):
            for match in _ERROR_LINE.finditer(text):
                candidates.append(_summary(text[match.start("text") :]))
        else:
            candidates.append(_summary(text))
    for line in candidates:
        cleaned = _clean(line)
        if cleaned and not any(cleaned.lower().startswith(noise) for noise in _NOISE):
            return cleaned
    return _clean(candidates[0]) if candidates else "the Pulumi engine failed"


def classify(source: Source) -> Classification:
    """The kind of an engine failure. Pure: the same text always gives the same answer."""
    texts = _texts(source)
    text = "\n".join(texts)

    code = _first_code(text, CREDENTIAL_CODES)
    if code:
        return Classification("credentials", code, _message_for(code, text))
    for phrase in CREDENTIAL_PHRASES:
        match = re.search(phrase, text, re.IGNORECASE)
        if match:
            line = next(
                (ln for ln in text.splitlines() if re.search(phrase, ln, re.IGNORECASE)), ""
            )
            return Classification("credentials", None, _clean(re.sub(r"^\s*error:\s*", "", line)))

    code = _first_code(text, QUOTA_CODES)
    if code is None and _word("OperationNotAllowed").search(text):
        message = _message_for("OperationNotAllowed", text)
        if _CORES_OR_QUOTA.search(message):
            return Classification("quota", "OperationNotAllowed", message)
    if code:
        return Classification("quota", code, _message_for(code, text))

    code = _first_code(text, CAPACITY_CODES)
    if code:
        return Classification("capacity", code, _message_for(code, text))
    if _AWS_UNSUPPORTED.search(text):
        return Classification("capacity", "Unsupported", _message_for("Unsupported", text))

    plugin = _PLUGIN_MISSING.search(text)
    if plugin:
        name = plugin.group("name").removeprefix("pulumi-resource-")
        version = plugin.group("version") or ""
        hint = f"pulumi plugin install resource {name} {version}".rstrip()
        return Classification(
            "plugin", None, f"the Pulumi plugin {name!r} is not installed; install it with `{hint}`"
        )

    return Classification("other", None, _first_error_line(texts))


def translate(source: Source, *, action: str = "stack update") -> IacrunError:
    """One typed error for what the engine said. An IacrunError passes through unchanged.

    `source` is an exception (its text and any stdout/stderr), a text, or several of them, such as
    the error diagnostics of an update followed by the failed command.
    """
    if isinstance(source, IacrunError):
        return source
    found = classify(source)
    code = f" ({found.code})" if found.code else ""
    if found.kind == "capacity":
        return CapacityError(f"no capacity{code}: {found.message}")
    if found.kind == "quota":
        return QuotaError(f"quota exceeded{code}: {found.message}")
    if found.kind == "credentials":
        return CredentialsError(f"credentials rejected or missing{code}: {found.message}")
    if found.kind == "plugin":
        return ToolMissingError(found.message)
    return BackendError(f"{action} failed: {found.message}")

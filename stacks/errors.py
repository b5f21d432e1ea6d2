"""Pulumi engine failures turned into iacrun's typed errors, in one place.

``translate(source)`` reads what the engine said (the error diagnostics of an update, the text of a
failed CLI command, or both) and returns one error of the tree in ``orchestrator/errors.py``. The
one table of the clouds' error codes is `CODES` below; each code has an action, and the rule is:

- an error tied to a zone, region, instance type or price moves on to the next offer
  (`CapacityError` and its subclasses; `QuotaError`, which also skips the family's other sizes in
  that region);
- an error tied to the account (credentials, a permission, a registration, a policy) stops the run
  with one line that says what is missing and how to grant it (`CredentialsError`,
  `AccountSetupError`);
- a missing Pulumi plugin is a `ToolMissingError`; anything else a `BackendError` with the
  engine's first error line.

docs/clouds.md ("Cloud errors and what iacrun does") shows the same table. Nothing else in iacrun
parses engine text: failover only looks at the error's class.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from iacrun.orchestrator.errors import (
    AccountSetupError,
    BackendError,
    CapacityError,
    CredentialsError,
    IacrunError,
    PropagationError,
    QuotaError,
    RegionNotReadyError,
    ToolMissingError,
)

#: what a code means, from "stop now" to "try the next offer"
Kind = Literal[
    "credentials",  # stop: the credentials are missing, expired or rejected
    "account",  # stop: a permission, a registration or a policy of the account
    "quota",  # next region or cloud: an account limit in this region
    "region",  # next offer: the account may not use this region yet
    "propagation",  # next offer: the cloud had not yet propagated what the stack created
    "price",  # next offer: the spot price is above the run's max_price
    "capacity",  # next offer: no capacity, or the type is not offered in the zone
    "plugin",  # stop: a Pulumi plugin is missing
    "other",  # stop: anything else
]
#: the order in which kinds win when one text holds several codes: the account's problems first
_PRECEDENCE: tuple[Kind, ...] = (
    "credentials",
    "account",
    "quota",
    "region",
    "propagation",
    "price",
    "capacity",
)
#: what the engine said: an exception, a text, or several of them
Source = BaseException | str | Iterable[BaseException | str]


@dataclass(frozen=True)
class Code:
    """One cloud error code and what iacrun does about it.

    `when`: a pattern the cloud's message must match too, for codes that mean several things
    (Azure's OperationNotAllowed). `fix`: one line saying what to do, given the cloud's message
    (for the account's problems: which permission or registration is missing, and how to grant
    it)."""

    code: str
    cloud: Literal["aws", "azure"]
    kind: Kind
    fix: Callable[[str], str] | None = None
    when: re.Pattern[str] | None = None


def _says(text: str) -> Callable[[str], str]:
    return lambda _message: text


def _aws_action(message: str) -> str:
    found = re.search(r"not authorized to perform: ([\w:*-]+)", message)
    action = found.group(1) if found else "the EC2 actions iacrun uses"
    return (
        f"the AWS identity may not call {action}: grant it (the policy in docs/clouds.md, "
        "AWS → Credentials), or use a profile that has it"
    )


def _azure_action(message: str) -> str:
    found = re.search(r"perform action '([^']+)'", message)
    action = found.group(1) if found else "an action the stack needs"
    if "Microsoft.Authorization/" in action:
        how = (
            "assign the identity Owner or User Access Administrator on the subscription, or set "
            "`self_delete: false` under backends.azure"
        )
    else:
        how = "assign the identity Contributor on the subscription"
    return f"the Azure identity may not perform {action}: {how}"


def _azure_registration(message: str) -> str:
    found = re.search(r"namespace '([\w.]+)'", message)
    namespace = found.group(1) if found else "the resource provider"
    return (
        f"the Azure subscription is not registered for {namespace}: register it once with "
        f"`az provider register --namespace {namespace}` (takes a few minutes)"
    )


def _azure_policy(message: str) -> str:
    found = re.search(r'"policyAssignment"\s*:\s*\{\s*"name"\s*:\s*"([^"]+)"', message)
    policy = f"the policy {found.group(1)!r}" if found else "an Azure Policy of the subscription"
    return (
        f"{policy} forbids this resource: ask the subscription's administrator for an "
        "exemption, or configure regions and instance types the policy allows"
    )


_SPOT_PRICE = re.compile(r"max price .* lower than the current spot price", re.IGNORECASE)
_CORES_OR_QUOTA = re.compile(r"\bcores?\b|\bquota\b", re.IGNORECASE)
_RAISE_PRICE = _says("raise max_price, or allow on-demand offers (spot_policy: auto)")

#: THE table of cloud error codes: each code, its cloud, and what iacrun does (see the docstring)
CODES: tuple[Code, ...] = (
    # ---------------------------------------------------------------- AWS
    Code("InsufficientInstanceCapacity", "aws", "capacity"),
    Code("InsufficientHostCapacity", "aws", "capacity"),
    Code("Unsupported", "aws", "capacity"),  # the type, or spot for it, in that zone
    Code("SpotMaxPriceTooLow", "aws", "price", _RAISE_PRICE),
    Code("MaxSpotInstanceCountExceeded", "aws", "quota"),
    Code("VcpuLimitExceeded", "aws", "quota"),
    Code("InstanceLimitExceeded", "aws", "quota"),
    Code(
        "VpcLimitExceeded",
        "aws",
        "quota",
        _says("delete an unused VPC in the region, or ask AWS for more VPCs (Service Quotas)"),
    ),
    Code(
        "PendingVerification",
        "aws",
        "region",
        _says("AWS is still validating this region for the account; other regions may work"),
    ),
    Code(
        "OptInRequired",
        "aws",
        "region",
        _says(
            "the account may not use EC2 here: enable the region (Account → AWS Regions) or "
            "finish the account's activation"
        ),
    ),
    Code(
        "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
        "aws",
        "account",
        _says(
            "the AWS identity may not create the EC2 Spot service-linked role: create it once with "
            "`aws iam create-service-linked-role --aws-service-name spot.amazonaws.com` (or grant "
            "iam:CreateServiceLinkedRole), or run on-demand (spot_policy: on-demand)"
        ),
    ),
    Code("UnauthorizedOperation", "aws", "account", _aws_action),
    Code(
        "Blocked",
        "aws",
        "account",
        _says("the AWS account is blocked: contact AWS Support"),
        when=re.compile(r"account is currently blocked", re.IGNORECASE),
    ),
    Code("AuthFailure", "aws", "credentials"),
    Code("InvalidClientTokenId", "aws", "credentials"),
    Code("SignatureDoesNotMatch", "aws", "credentials"),
    Code("ExpiredToken", "aws", "credentials"),
    Code("ExpiredTokenException", "aws", "credentials"),
    Code("UnrecognizedClientException", "aws", "credentials"),
    Code("NoCredentialProviders", "aws", "credentials"),
    # ---------------------------------------------------------------- Azure
    Code("SkuNotAvailable", "azure", "capacity"),
    Code("AllocationFailed", "azure", "capacity"),
    Code("ZonalAllocationFailed", "azure", "capacity"),
    Code("OverconstrainedAllocationRequest", "azure", "capacity"),
    Code("OverconstrainedZonalAllocationRequest", "azure", "capacity"),
    Code("SpotPriceGreaterThanProvidedMaxPrice", "azure", "price", _RAISE_PRICE),
    Code("OperationNotAllowed", "azure", "price", _RAISE_PRICE, when=_SPOT_PRICE),
    Code("QuotaExceeded", "azure", "quota"),
    Code("OperationNotAllowed", "azure", "quota", when=_CORES_OR_QUOTA),
    Code(
        "PublicIPCountLimitReached",
        "azure",
        "quota",
        _says("ask for more Public IP Addresses in the region (Azure portal → Quotas)"),
    ),
    Code("RoleDefinitionDoesNotExist", "azure", "propagation"),
    Code("PrincipalNotFound", "azure", "propagation"),
    Code("MissingSubscriptionRegistration", "azure", "account", _azure_registration),
    Code("RequestDisallowedByPolicy", "azure", "account", _azure_policy),
    Code("AuthorizationFailed", "azure", "account", _azure_action),
    Code("InvalidAuthenticationToken", "azure", "credentials"),
    Code("ExpiredAuthenticationToken", "azure", "credentials"),
    Code("InvalidAuthenticationTokenTenant", "azure", "credentials"),
    Code("SubscriptionNotFound", "azure", "credentials"),
    Code("InvalidSubscriptionId", "azure", "credentials"),
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
#: `Unsupported` alone is too common a word; only EC2's own uses count
_AWS_UNSUPPORTED = re.compile(
    r"api error Unsupported:|\bUnsupported\b: (?:Your requested instance type|The requested "
    r"configuration is currently not supported)",
    re.IGNORECASE,
)
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
    """What an engine failure means: its kind, the cloud's code when one was found, the cloud's
    message, and what to do (for the account's problems and a few others)."""

    kind: Kind
    code: str | None
    message: str
    fix: str | None = None


def _word(code: str) -> re.Pattern[str]:
    # `AuthFailure` is not found inside `AuthFailure.ServiceLinkedRoleCreationNotPermitted`
    return re.compile(rf"(?<![\w.]){re.escape(code)}(?![\w]|\.\w)")


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


def _found(code: Code, text: str) -> tuple[int, Code, str] | None:
    """Where `code` is in `text` (and its message matches `when`), with the cloud's message."""
    if code.code == "Unsupported":
        match = _AWS_UNSUPPORTED.search(text)
        return (match.start(), code, _message_for("Unsupported", text)) if match else None
    match = _word(code.code).search(text)
    if match is None:
        return None
    message = _message_for(code.code, text)
    if code.when is not None and not code.when.search(message):
        return None
    return match.start(), code, message


def classify(source: Source) -> Classification:
    """The kind of an engine failure. Pure: the same text always gives the same answer."""
    texts = _texts(source)
    text = "\n".join(texts)

    found = [hit for code in CODES if (hit := _found(code, text)) is not None]
    if found:
        _, code, message = min(found, key=lambda h: (_PRECEDENCE.index(h[1].kind), h[0]))
        fix = code.fix(message) if code.fix is not None else None
        return Classification(code.kind, code.code, message, fix)
    for phrase in CREDENTIAL_PHRASES:
        if re.search(phrase, text, re.IGNORECASE):
            line = next(
                (ln for ln in text.splitlines() if re.search(phrase, ln, re.IGNORECASE)), ""
            )
            return Classification("credentials", None, _clean(re.sub(r"^\s*error:\s*", "", line)))

    plugin = _PLUGIN_MISSING.search(text)
    if plugin:
        name = plugin.group("name").removeprefix("pulumi-resource-")
        version = plugin.group("version") or ""
        hint = f"pulumi plugin install resource {name} {version}".rstrip()
        return Classification(
            "plugin", None, f"the Pulumi plugin {name!r} is not installed; install it with `{hint}`"
        )

    return Classification("other", None, _first_error_line(texts))


#: the error each kind becomes, and the words its message starts with
_ERRORS: dict[Kind, tuple[type[IacrunError], str]] = {
    "credentials": (CredentialsError, "credentials rejected or missing"),
    "quota": (QuotaError, "quota exceeded"),
    "region": (RegionNotReadyError, "region not usable yet"),
    "propagation": (PropagationError, "not yet propagated by the cloud"),
    "price": (CapacityError, "spot price above max_price"),
    "capacity": (CapacityError, "no capacity"),
}


def translate(source: Source, *, action: str = "stack update") -> IacrunError:
    """One typed error for what the engine said. An IacrunError passes through unchanged.

    `source` is an exception (its text and any stdout/stderr), a text, or several of them, such as
    the error diagnostics of an update followed by the failed command.
    """
    if isinstance(source, IacrunError):
        return source
    found = classify(source)
    code = f" ({found.code})" if found.code else ""
    if found.kind == "account":
        # one line: what is missing and how to grant it, then the cloud's own words
        return AccountSetupError(f"{found.fix}{code}: {found.message}")
    if found.kind == "plugin":
        return ToolMissingError(found.message)
    if found.kind in _ERRORS:
        kind, words = _ERRORS[found.kind]
        fix = f"; {found.fix}" if found.fix else ""
        return kind(f"{words}{code}: {found.message}{fix}")
    return BackendError(f"{action} failed: {found.message}")

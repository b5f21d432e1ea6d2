"""The task file (dstack's `.dstack.yml`, `type: task`) and profiles, as strict pydantic models."""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from iacrun.orchestrator.models.common import CoreModel
from iacrun.orchestrator.models.container import ContainerUser, RegistryAuth, Shell
from iacrun.orchestrator.models.names import RunName
from iacrun.orchestrator.models.policies import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    CreationPolicy,
    Schedule,
    StartupOrder,
    StopCriteria,
    UtilizationPolicy,
)
from iacrun.orchestrator.models.requirements import BACKEND_NAMES, SpotPolicy
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.models.shipped import FileEntry, RepoEntry
from iacrun.orchestrator.models.units import parse_duration

PYTHON_VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
RetryEvent = Literal["no-capacity", "interruption", "error"]
RETRY_EVENTS: tuple[RetryEvent, ...] = ("no-capacity", "interruption", "error")
DEFAULT_RETRY_DURATION = 3600
#: the most machines one run may take (`nodes:`); the cloud programs declare at most this many
MAX_NODES = 64

#: dstack task fields iacrun refuses, each with why and what to do instead: the one place for
#: them (the loader turns a key found here into one line at its position).
UNSUPPORTED_DSTACK_FIELDS = {
    "volumes": "iacrun mounts no volumes (every machine is given back after the run); ship "
    "inputs with the working folder and write results to object storage from the commands",
    "fleets": "iacrun has no fleets; list your own machines as ssh hosts in config.yml and "
    "pick them with backends: [ssh]",
    "reservation": "iacrun does not use capacity reservations; pick the machine with "
    "instance_types and regions",
    "idle_duration": "iacrun gives every machine back when its run ends, so none is kept idle "
    "for reuse; remove it",
    "termination_policy": "iacrun gives every machine back when its run ends (dstack "
    "deprecated this field for idle_duration); remove it",
    "termination_idle_time": "iacrun gives every machine back when its run ends (dstack "
    "deprecated this field for idle_duration); remove it",
    "availability_zones": "iacrun picks the zone within a region itself; narrow the "
    "placement with regions",
    "groups": "iacrun runs one job per run (no job groups); split the groups into task files",
    "dstack": "iacrun reads no dstack server settings in a task file; remove it",
    "home_dir": "dstack deprecated home_dir (the home is the image's); remove it",
    "tags": "iacrun tags the cloud resources it creates itself; remove it",
}


#: dstack's max_duration is a duration or "off"; 0 would end every run at once, so it is refused
ZERO_DURATION = "0 would end the run at once; write off for no limit, or a duration like 2h"


def _duration_or_off(value: Any) -> int | None:
    if value is None or value is False or (isinstance(value, str) and value.strip() == "off"):
        return None
    if value is True:
        raise ValueError("max_duration takes a duration like 2h, or off")
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError(ZERO_DURATION)
    return seconds


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "string", "examples": ["30m", "2h"]}, {"type": "integer"}]}),
]
OptionalDuration = Annotated[
    int | None,
    BeforeValidator(_duration_or_off),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "examples": ["off", "90s", "30m", "2h", "1d"]},
                {"type": "integer"},
                {"const": False},
            ]
        }
    ),
]


class PortMapping(CoreModel):
    """A task port and the local port it is reachable on (`6000`, `"8080:6000"`, `"*:6000"`)."""

    local_port: int | None = Field(default=None, ge=1, le=65535)
    container_port: int = Field(ge=1, le=65535)

    @classmethod
    def parse(cls, value: Any) -> PortMapping:
        """`6000`, `"8080:6000"` (LOCAL:TASK, as in dstack's code and Docker) or `"*:6000"`;
        a ValueError of one line otherwise."""
        if isinstance(value, PortMapping):
            return value
        local: int | None
        task: int
        if isinstance(value, int) and not isinstance(value, bool):
            local = task = value
        elif isinstance(value, dict) and set(value) <= {"local_port", "container_port"}:
            given_local, given_task = value.get("local_port"), value.get("container_port")
            if not isinstance(given_task, int) or not isinstance(given_local, int | None):
                raise ValueError(f'{value!r} is not a port mapping; write it like "8080:6000"')
            local, task = given_local, given_task
        elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
            local = task = int(value)
        elif isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+|\*):(\d+)\s*", value)):
            local = None if match.group(1) == "*" else int(match.group(1))
            task = int(match.group(2))
        else:
            raise ValueError(f'{value!r} is not a port; write it like 6000 or "8080:6000"')
        for port in (local, task):
            if port is not None and not 1 <= port <= 65535:
                raise ValueError(f"port {port} is out of range 1..65535")
        return cls(local_port=local, container_port=task)

    def render(self) -> str:
        return f"{self.local_port or '*'}:{self.container_port}"


def check_distinct_ports(ports: list[PortMapping]) -> None:
    """Each task port once, and each local port for one task port only."""
    tasks: set[int] = set()
    for port in ports:
        if port.container_port in tasks:
            raise ValueError(f"port {port.container_port} is listed twice")
        tasks.add(port.container_port)
    twice = repeated_local_port(ports)
    if twice is not None:
        raise ValueError(local_port_twice(*twice))


def repeated_local_port(ports: list[PortMapping]) -> tuple[PortMapping, PortMapping] | None:
    """The first two mappings that take the same local port, if any."""
    owner: dict[int, PortMapping] = {}
    for port in ports:
        if port.local_port is not None:
            first = owner.setdefault(port.local_port, port)
            if first is not port:
                return first, port
    return None


def local_port_twice(first: PortMapping, second: PortMapping) -> str:
    return f"local port {second.local_port} is used twice ({first.render()}, {second.render()})"


Port = Annotated[
    PortMapping,
    BeforeValidator(PortMapping.parse),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "examples": ["8080:6000"]}]}),
]


class RetrySpec(CoreModel):
    """Which events resubmit the run, and for how long after its first submission."""

    on_events: list[RetryEvent] = Field(default_factory=lambda: list(RETRY_EVENTS))
    duration: Duration = DEFAULT_RETRY_DURATION

    @field_validator("on_events")
    @classmethod
    def _some_events(cls, value: list[RetryEvent]) -> list[RetryEvent]:
        if not value:  # as in dstack: omitted means every event, empty is a mistake
            raise ValueError("cannot be empty; omit it to retry on every event")
        return value

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        if value is True:
            return {}
        return value


def _env_entries(value: Any) -> Any:
    """`[K=V, K]` or `{K: V}` → `{K: V or None}`; None means "take it from my environment"."""
    if value is None:
        return {}
    if isinstance(value, dict):
        out: dict[str, str | None] = {}
        for key, val in value.items():
            if isinstance(val, bool) or not isinstance(val, str | int | float | type(None)):
                raise ValueError(f"env {key}: values must be strings or numbers")
            out[str(key)] = None if val is None else str(val)
        return out
    if isinstance(value, list):
        out = {}
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"env entries are K=V strings, got {item!r}")
            key, sep, val = item.partition("=")
            out[key.strip()] = val if sep else None
        return out
    raise ValueError("env is a list of K=V (or bare K) or a mapping of K: V")


EnvMap = Annotated[
    dict[str, str | None],
    BeforeValidator(_env_entries),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "array",
                    "items": {"type": "string", "examples": ["HF_TOKEN", "EPOCHS=3"]},
                },
                {"type": "object", "additionalProperties": {"type": ["string", "number", "null"]}},
            ]
        }
    ),
]


def _positive_price(value: float) -> float:
    if not value > 0:
        raise ValueError("a price per hour must be above 0")
    return value


def _known_backend(value: str) -> str:
    if value not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {value!r}; known: {', '.join(BACKEND_NAMES)}")
    return value


#: a price in $/hour, above 0 (dstack's rule too)
Price = Annotated[
    float,
    AfterValidator(_positive_price),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0}),
]
#: one of iacrun's backends; whether it is configured is config.yml's business
BackendName = Annotated[
    str, AfterValidator(_known_backend), WithJsonSchema({"enum": list(BACKEND_NAMES)})
]


class ProfileFields(CoreModel):
    """Policies a task and a profile share; the task beats the profile, CLI flags beat both."""

    spot_policy: SpotPolicy | None = None
    retry: RetrySpec | None = None
    max_duration: OptionalDuration = None
    max_price: Price | None = None
    backends: list[BackendName] | None = None
    regions: list[str] | None = None
    instance_types: list[str] | None = None
    utilization_policy: UtilizationPolicy | None = None
    creation_policy: CreationPolicy | None = None
    startup_order: StartupOrder | None = None
    stop_criteria: StopCriteria | None = None
    schedule: Schedule | None = None

    @field_validator("schedule")
    @classmethod
    def _no_schedule_yet(cls, value: Schedule | None) -> Schedule | None:
        if value is not None:
            raise ValueError(
                "scheduled runs need something that stays up: `iacrun server` will run them; "
                "until then remove schedule and start the run with `iacrun up` from cron"
            )
        return value

    @field_validator("retry", mode="before")
    @classmethod
    def _retry_false(cls, value: Any) -> Any:
        return None if value is False else value

    @field_validator("backends", "regions", "instance_types", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class TaskConfig(ProfileFields):
    """A task: commands to run once on a machine that meets `resources`, then tear down."""

    type: Literal["task"] = "task"
    name: RunName = None
    image: str | None = None
    entrypoint: str | None = None
    user: ContainerUser | None = None
    privileged: bool = False
    registry_auth: RegistryAuth | None = None
    docker: bool | None = None
    nvcc: bool | None = None
    shell: Shell | None = None
    python: str | None = None
    env: EnvMap = Field(default_factory=dict)
    setup: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    working_dir: str | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    #: dstack's multi-node tasks: the same commands on N machines of one offer (rank 0 = master)
    nodes: StrictInt = Field(default=1, ge=1, le=MAX_NODES)
    stop_duration: Duration = 15
    priority: int | None = Field(default=None, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    files: list[FileEntry] = Field(default_factory=list)
    repos: list[RepoEntry] = Field(default_factory=list)
    single_branch: bool | None = None

    @field_validator("repos", mode="before")
    @classmethod
    def _one_repo(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > 1:  # dstack's limit too
            raise ValueError("a task takes one repo; ship the others under files")
        return value

    @field_validator("resources", "ports", "commands", "setup", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        """`resources:` with nothing under it means dstack's defaults, as in dstack."""
        if value is not None:
            return value
        return {} if info.field_name == "resources" else []

    @field_validator("image", "entrypoint")
    @classmethod
    def _not_blank(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"{info.field_name} is empty; give a value or remove it")
        if value is not None and info.field_name == "entrypoint":
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(
                    f"entrypoint {value!r} cannot be split into words: {exc}"
                ) from None
        return value

    @field_validator("ports")
    @classmethod
    def _distinct_ports(cls, ports: list[PortMapping]) -> list[PortMapping]:
        check_distinct_ports(ports)
        return ports

    @field_validator("python", mode="before")
    @classmethod
    def _python_version(cls, value: Any) -> Any:
        if isinstance(value, float):
            value = "3.10" if value == 3.1 else str(value)
        if value is not None and str(value) not in PYTHON_VERSIONS:
            raise ValueError(
                f"python {value} is not supported; use one of {', '.join(PYTHON_VERSIONS)} "
                '(quote it, e.g. "3.10")'
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if self.python is not None and self.image is not None:
            raise ValueError("python and image exclude each other; keep one of them")
        if not self.commands and self.image is None:
            raise ValueError("a task needs commands (or an image whose entrypoint runs it)")
        if self.docker:
            # dstack's rule: docker: true picks the machine's Docker, not an image or a Python
            for other in ("image", "python", "nvcc"):
                if getattr(self, other):
                    raise ValueError(
                        f"docker: true and {other} exclude each other (as in dstack); "
                        f"keep one of them"
                    )
        if self.nvcc and self.image is not None:
            raise ValueError(
                "nvcc: true and image exclude each other (as in dstack); use an image that "
                "ships nvcc (a CUDA -devel image) and drop nvcc"
            )
        if self.image is None:
            for field in ("entrypoint", "user", "registry_auth"):
                if getattr(self, field) is not None:
                    raise ValueError(
                        f"{field} applies to an image's container; add image: or remove {field}"
                    )
            if self.privileged:
                raise ValueError(
                    "privileged applies to an image's container; add image: or remove it"
                )
        if self.setup and not self.commands:
            raise ValueError(
                "setup runs before the commands, and this task has none; move setup to commands"
            )
        return self


class Profile(ProfileFields):
    """One entry of `.dstack/profiles.yml`."""

    name: str
    default: bool = False


class ProfilesFile(CoreModel):
    profiles: list[Profile] = Field(default_factory=list)

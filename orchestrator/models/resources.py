"""The `resources` section of a task: CPU, memory, disk, shared memory and GPU requirements.

Each field takes dstack's shorthands as well as the long mapping form::

    cpu: 4..            memory: 16GB..        disk: 200GB..       shm_size: 8GB
    gpu: 80GB | A100 | A100:2 | 24GB..80GB | A10G,L4 | H100:80GB:8 | nvidia:2..
    gpu: {name: [A100, H100], count: 2.., memory: 40GB.., total_memory: 160GB..}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from iacrun.orchestrator.models.common import CoreModel
from iacrun.orchestrator.models.units import Range, format_size_gb, parse_range, parse_size_gb

GPU_VENDORS = ("nvidia", "amd", "google", "intel")
_SIZE_TOKEN = re.compile(r"^\s*\d+(\.\d+)?\s*(mb|gb|tb|mib|gib|tib)\s*$", re.IGNORECASE)
_COUNT_TOKEN = re.compile(r"^\s*(\d+)?\s*(\.\.)?\s*(\d+)?\s*$")


def _range_schema(example: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "examples": [example]},
                {"type": "number"},
                {
                    "type": "object",
                    "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
                    "additionalProperties": False,
                },
            ]
        }
    )


def _count_range(what: str) -> BeforeValidator:
    return BeforeValidator(lambda v: parse_range(v, size=False, what=what))


def _size_range(what: str) -> BeforeValidator:
    return BeforeValidator(lambda v: v if isinstance(v, Range) else _size_range_value(v, what))


def _size_range_value(value: Any, what: str) -> Range:
    if isinstance(value, dict) and "size" in value:
        if set(value) != {"size"}:
            extra = sorted(set(value) - {"size"})[0]
            raise ValueError(f"unknown key {extra!r} in {what}; only size is supported")
        value = value["size"]
    return parse_range(value, size=True, what=what)


CountRange = Annotated[Range, _count_range("count"), _range_schema("2..8")]
CpuRange = Annotated[Range, _count_range("cpu"), _range_schema("4..")]
MemoryRange = Annotated[Range, _size_range("memory"), _range_schema("16GB..")]
DiskRange = Annotated[Range, _size_range("disk"), _range_schema("200GB..")]
GpuMemoryRange = Annotated[Range, _size_range("GPU memory"), _range_schema("24GB..80GB")]
Size = Annotated[
    float,
    BeforeValidator(parse_size_gb),
    WithJsonSchema({"anyOf": [{"type": "string", "examples": ["8GB"]}, {"type": "number"}]}),
]


class CPUSpec(CoreModel):
    """How many vCPUs, and optionally of which architecture (`x86:8..`, `arm:4`)."""

    arch: Literal["x86", "arm"] | None = None
    count: CpuRange = Range(min=2)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict) and not ({"min", "max"} & set(value)):
            return value
        if isinstance(value, str) and ":" in value:
            arch, _, count = value.partition(":")
            return {"arch": arch.strip().lower(), "count": count}
        return {"count": value}

    def render(self) -> str:
        return (f"{self.arch}:" if self.arch else "") + self.count.render()


class GPUSpec(CoreModel):
    """GPU requirements: vendor, accepted names, count, memory per GPU and in total."""

    vendor: Literal["nvidia", "amd", "google", "intel"] | None = None
    name: list[str] | None = None
    count: CountRange = Range(min=1, max=1)
    memory: GpuMemoryRange | None = None
    total_memory: GpuMemoryRange | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a GPU spec like 80GB, A100:2 or H100:80GB:8, got {value}")
        if isinstance(value, int):
            return {"count": value}
        if isinstance(value, str):
            return parse_gpu_shorthand(value)
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            return {**value, "name": [n.strip() for n in value["name"].split(",")]}
        return value

    def render(self) -> str:
        parts: list[str] = []
        if self.name:
            parts.append(",".join(self.name))
        if self.memory is not None:
            parts.append(self.memory.render(size=True))
        parts.append(self.count.render())
        text = ":".join(parts)
        if self.total_memory is not None:
            text += f" (total {self.total_memory.render(size=True)})"
        return text


def parse_gpu_shorthand(text: str) -> dict[str, Any]:
    """`H100:80GB:8` → vendor, name, memory and count, in any order, separated by colons."""
    spec: dict[str, Any] = {}
    for raw in text.split(":"):
        token = raw.strip()
        if not token:
            raise ValueError(f"empty part in GPU spec {text!r}")
        low = token.lower()
        if low in GPU_VENDORS or low == "tpu":
            _set_once(spec, "vendor", "google" if low == "tpu" else low, text)
        elif (".." in token and _looks_like_size_range(token)) or _SIZE_TOKEN.match(token):
            _set_once(spec, "memory", token, text)
        elif _COUNT_TOKEN.match(token) and any(ch.isdigit() for ch in token):
            _set_once(spec, "count", token, text)
        else:
            names = [n.strip() for n in token.split(",") if n.strip()]
            if not all(re.match(r"^[A-Za-z][\w\-]*$", n) for n in names):
                raise ValueError(
                    f"{token!r} in GPU spec {text!r} is not a GPU name, count or memory; "
                    "write it like A100, 2, 80GB or H100:80GB:8"
                )
            _set_once(spec, "name", names, text)
    return spec


def _looks_like_size_range(token: str) -> bool:
    lo, _, hi = token.partition("..")
    return any(_SIZE_TOKEN.match(part) for part in (lo, hi) if part.strip())


def _set_once(spec: dict[str, Any], key: str, value: Any, text: str) -> None:
    if key in spec:
        raise ValueError(f"GPU spec {text!r} gives the {key} twice")
    spec[key] = value


class ResourcesSpec(CoreModel):
    """What the task needs. Defaults follow dstack: 2.. CPUs, 8GB.. memory, 100GB.. disk."""

    cpu: CPUSpec = Field(default_factory=CPUSpec)
    memory: MemoryRange = Range(min=8)
    shm_size: Size | None = None
    gpu: GPUSpec | None = None
    disk: DiskRange = Range(min=100)

    @property
    def disk_is_explicit(self) -> bool:
        """Hosts that cannot grow a disk filter on it only when the user asked for one."""
        return "disk" in self.model_fields_set

    @model_serializer(mode="wrap")
    def _default_disk_unwritten(self, handler: SerializerFunctionWrapHandler) -> Any:
        """A default disk is left out of what is stored, so it reads back as a default."""
        data = handler(self)
        if isinstance(data, dict) and not self.disk_is_explicit:
            data.pop("disk", None)
        return data

    def render(self) -> str:
        parts = [f"cpu={self.cpu.render()}", f"mem={self.memory.render(size=True)}"]
        parts.append(f"disk={self.disk.render(size=True)}")
        if self.gpu is not None:
            parts.append(f"gpu={self.gpu.render()}")
        if self.shm_size is not None:
            parts.append(f"shm={format_size_gb(self.shm_size)}")
        return " ".join(parts)

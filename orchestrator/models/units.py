"""Sizes, durations and ranges as users write them (`8GB`, `512MB`, `90s`, `2h`, `24GB..80GB`)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, model_validator

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.IGNORECASE)
_SIZE_FACTORS_GB = {
    "b": 1 / 1024**3,
    "kb": 1 / 1024**2,
    "mb": 1 / 1024,
    "gb": 1.0,
    "tb": 1024.0,
    "kib": 1 / 1024**2,
    "mib": 1 / 1024,
    "gib": 1.0,
    "tib": 1024.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_FACTORS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size_gb(value: object, *, default_unit: str = "gb") -> float:
    """A memory or disk size in GB (GB is 1024**3 bytes, as dstack counts it)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 8GB, got {value!r}")
    if isinstance(value, int | float):
        return float(value) * _SIZE_FACTORS_GB[default_unit]
    if not isinstance(value, str):
        raise ValueError(f"expected a size like 8GB, got {value!r}")
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size; write it like 512MB, 8GB or 1TB")
    unit = (match.group(2) or default_unit).lower()
    return float(match.group(1)) * _SIZE_FACTORS_GB[unit]


def format_size_gb(gb: float) -> str:
    if gb >= 1024 and gb % 1024 == 0:
        return f"{gb / 1024:g}TB"
    if gb < 1:
        return f"{gb * 1024:g}MB"
    return f"{round(gb, 1):g}GB"


def format_price(price: float) -> str:
    return f"${price:.4f}".rstrip("0").rstrip(".") if price else "$0"


def parse_duration(value: object) -> int:
    """Seconds from `90s`, `30m`, `2h`, `1d`, `1w` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30m, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return int(match.group(1)) * _DURATION_FACTORS[match.group(2).lower()]
    raise ValueError(f"{value!r} is not a duration; write it like 90s, 30m, 2h or 1d")


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds}s"


class Range(BaseModel):
    """An inclusive range; `None` on either side means unbounded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("the minimum is above the maximum")
        return self

    def contains(self, value: float) -> bool:
        if self.min is not None and value < self.min - 1e-9:
            return False
        return not (self.max is not None and value > self.max + 1e-9)

    def render(self, *, size: bool = False) -> str:
        def one(v: float | None) -> str:
            if v is None:
                return ""
            return format_size_gb(v) if size else f"{v:g}"

        if self.min == self.max and self.min is not None:
            return one(self.min)
        return f"{one(self.min)}..{one(self.max)}"


def parse_range(value: object, *, size: bool, what: str) -> Range:
    """`4`, `4..`, `..8`, `2..8` (counts) or `8GB..`, `24GB..80GB` (sizes)."""

    def one(part: str | int | float) -> float:
        return parse_size_gb(part) if size else _parse_count(part, what)

    if isinstance(value, dict):
        lo, hi = value.get("min"), value.get("max")
        extra = set(value) - {"min", "max"}
        if extra:
            raise ValueError(f"unknown key {sorted(extra)[0]!r} in {what} range; use min and max")
        r_min = one(lo) if lo is not None else None
        r_max = one(hi) if hi is not None else None
    elif isinstance(value, str) and ".." in value:
        lo_s, _, hi_s = value.partition("..")
        r_min = one(lo_s.strip()) if lo_s.strip() else None
        r_max = one(hi_s.strip()) if hi_s.strip() else None
        if r_min is None and r_max is None:
            raise ValueError(f"{value!r} bounds nothing; write it like 8GB.. or 2..8")
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        r_min = r_max = one(value)
    else:
        raise ValueError(f"expected a {what} like 4, 4.. or 2..8, got {value!r}")
    if r_min is not None and r_max is not None and r_min > r_max:
        lo_txt = format_size_gb(r_min) if size else f"{r_min:g}"
        hi_txt = format_size_gb(r_max) if size else f"{r_max:g}"
        raise ValueError(
            f"{what} range {value!s} is inverted: the minimum is above the maximum; "
            f"write {hi_txt}..{lo_txt}"
        )
    return Range(min=r_min, max=r_max)


def _parse_count(part: str | int | float, what: str) -> float:
    if isinstance(part, int | float):
        if part < 0:
            raise ValueError(f"a {what} cannot be negative")
        return float(part)
    try:
        number = int(part)
    except ValueError:
        raise ValueError(f"{part!r} is not a {what} count") from None
    if number < 0:
        raise ValueError(f"a {what} cannot be negative")
    return float(number)

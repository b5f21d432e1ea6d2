"""Engine events turned into a progress line: resources done out of planned, and elapsed time.

The engine streams events while an update runs (a step starts, a step ends, a step fails, a
diagnostic). ``EventRecord.from_engine_event`` copies the few fields we use out of Pulumi's
``EngineEvent`` (read by attribute, so this module never imports pulumi), and ``ProgressTracker``
folds them into ``Progress`` values such as::

    creating 3/7 resources, 42s elapsed (aws:ec2/instance:Instance vm)

The tracker also keeps the error diagnostics it saw, which ``engine_errors.translate`` reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["pre", "outputs", "failed", "diag", "summary", "cancel", "other"]
Action = Literal["up", "destroy", "preview"]

_VERBS = {"up": "creating", "destroy": "deleting", "preview": "planning"}
_DONE_VERBS = {"up": "created", "destroy": "deleted", "preview": "planned"}
_STACK_TYPE = "pulumi:pulumi:Stack"


def urn_name(urn: str) -> str:
    """The resource's name: the last `::` part of its URN."""
    return urn.rsplit("::", 1)[-1] if urn else ""


def urn_type(urn: str) -> str:
    """The resource's type token (the last `$`-separated part of the URN's type part)."""
    parts = urn.split("::")
    return parts[-2].rsplit("$", 1)[-1] if len(parts) >= 3 else ""


def counts(type_: str, urn: str) -> bool:
    """Whether a resource counts in progress: not the stack itself, not a default provider."""
    if type_ == _STACK_TYPE:
        return False
    return not (type_.startswith("pulumi:providers:") and urn_name(urn).startswith("default"))


@dataclass(frozen=True)
class EventRecord:
    """The part of one engine event that progress and error translation use."""

    kind: EventKind
    op: str = ""
    urn: str = ""
    type: str = ""
    severity: str = ""
    message: str = ""
    planning: bool = False

    @property
    def name(self) -> str:
        return urn_name(self.urn)

    @classmethod
    def from_engine_event(cls, event: Any) -> EventRecord:
        """Read a `pulumi.automation.events.EngineEvent` (duck-typed)."""
        for attr, kind in (
            ("resource_pre_event", "pre"),
            ("res_outputs_event", "outputs"),
            ("res_op_failed_event", "failed"),
        ):
            payload = getattr(event, attr, None)
            if payload is not None:
                meta = payload.metadata
                op = getattr(meta.op, "value", meta.op)
                return cls(
                    kind=kind,  # type: ignore[arg-type]
                    op=str(op or ""),
                    urn=str(meta.urn or ""),
                    type=str(meta.type or ""),
                    planning=bool(getattr(payload, "planning", False)),
                )
        diag = getattr(event, "diagnostic_event", None)
        if diag is not None:
            return cls(
                kind="diag",
                urn=str(diag.urn or ""),
                severity=str(diag.severity or ""),
                message=str(diag.message or ""),
            )
        if getattr(event, "summary_event", None) is not None:
            return cls(kind="summary")
        if getattr(event, "cancel_event", None) is not None:
            return cls(kind="cancel")
        return cls(kind="other")


@dataclass(frozen=True)
class Progress:
    """Where an update stands."""

    action: Action
    done: int
    planned: int | None
    elapsed: float
    failed: int = 0
    current: str | None = None
    finished: bool = False

    def render(self) -> str:
        verb = _DONE_VERBS[self.action] if self.finished else _VERBS[self.action]
        total = f"/{self.planned}" if self.planned is not None else ""
        line = f"{verb} {self.done}{total} resources, {format_elapsed(self.elapsed)} elapsed"
        if self.failed:
            line += f", {self.failed} failed"
        if self.current and not self.finished:
            line += f" ({self.current})"
        return line


def format_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class ProgressTracker:
    """Folds engine events into `Progress`. Thread-safe: events and ticks come from threads.

    `planned` is how many resources the update will touch, when known beforehand (the resources
    in the state for a destroy); `declare` raises it as the program declares resources.
    """

    action: Action
    planned: int | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    finished: bool = False
    _declared: int = 0
    _seen: set[str] = field(default_factory=set)
    _active: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def declare(self, type_: str, name: str) -> None:
        """The program declared a resource (called from a stack transformation)."""
        with self._lock:
            self._declared += 1
            if self.planned is None or self._declared > self.planned:
                self.planned = self._declared

    def feed(self, event: EventRecord) -> Progress | None:
        """Take one event; return new progress when it changed what is shown."""
        with self._lock:
            if event.kind == "diag":
                text = event.message.strip()
                if text and event.severity == "error":
                    self.errors.append(text)
                elif text and event.severity == "warning":
                    self.warnings.append(text)
                return None
            if event.kind == "summary":
                self.finished = True
                return self._snapshot()
            if event.kind not in ("pre", "outputs", "failed") or event.planning:
                return None
            if not counts(event.type, event.urn) or event.op in ("same", "read", "refresh"):
                return None
            if event.kind == "pre":
                self._active[event.urn] = f"{event.type} {event.name}"
                self._see(event.urn)
            else:
                self._active.pop(event.urn, None)
                if event.kind == "outputs":
                    self.done += 1
                else:
                    self.failed += 1
            return self._snapshot()

    def tick(self) -> Progress:
        """The current progress with a fresh elapsed time."""
        with self._lock:
            return self._snapshot()

    def _see(self, urn: str) -> None:
        if urn not in self._seen:
            self._seen.add(urn)
            if self.planned is not None and len(self._seen) > self.planned:
                self.planned = len(self._seen)

    def _snapshot(self) -> Progress:
        current = next(reversed(self._active.values()), None) if self._active else None
        return Progress(
            action=self.action,
            done=self.done,
            planned=self.planned,
            elapsed=self.clock() - self.started,
            failed=self.failed,
            current=current,
            finished=self.finished,
        )

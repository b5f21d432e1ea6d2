"""Small dynamic resources whose effects the engine tests can see on disk.

Module-level classes, so the engine's dynamic-provider process unpickles them by reference
(``tests.stacks.engine.resources``; the engine of a test gets PYTHONPATH=<repo root>).

    Marker(path, value)          create writes `value` to `path`; delete removes the file
    Slow(started, seconds)       create touches `started`, then sleeps (an update to interrupt);
                                 delete waits while the file `hold_delete` exists
    Failing(message)             create fails with `message` (a cloud's error text)
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class MarkerProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        Path(props["path"]).write_text(props["value"])
        return CreateResult(
            id_=f"marker-{uuid.uuid4().hex[:8]}", outs={**props, "pid": os.getpid()}
        )

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        Path(props["path"]).unlink(missing_ok=True)


class Marker(Resource):
    value: pulumi.Output[str]
    pid: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        path: str,
        value: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(MarkerProvider(), name, {"path": path, "value": value, "pid": None}, opts)


class SlowProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        Path(props["started"]).write_text(str(os.getpid()))
        time.sleep(float(props["seconds"]))
        return CreateResult(id_=f"slow-{uuid.uuid4().hex[:8]}", outs=props)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        hold = props.get("hold_delete")
        end = time.monotonic() + 300
        while hold and Path(hold).exists() and time.monotonic() < end:
            time.sleep(0.1)


class Slow(Resource):
    """Create sleeps `seconds`; delete waits while the file `hold_delete` exists."""

    def __init__(
        self,
        name: str,
        started: str,
        seconds: float,
        opts: pulumi.ResourceOptions | None = None,
        hold_delete: str | None = None,
    ) -> None:
        props = {"started": started, "seconds": seconds, "hold_delete": hold_delete}
        super().__init__(SlowProvider(), name, props, opts)


class FailingProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        raise Exception(props["message"])


class Failing(Resource):
    def __init__(self, name: str, message: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(FailingProvider(), name, {"message": message}, opts)

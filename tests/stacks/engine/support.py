"""What engine tests share: finding the real `pulumi` CLI, and the offline environment.

Tests marked `engine` need `pulumi` on PATH. When it is not there but `tests/tools/get-pulumi`
has already built it into its cache, its bin dir is put on PATH (get-pulumi's fast path: no
build). Otherwise those tests skip and say how to get the CLI.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from iacrun.stacks.engine import StackEngine

REPO = Path(__file__).resolve().parents[3]
GET_PULUMI = REPO / "tests" / "tools" / "get-pulumi"

#: the engine runs offline: no plugin downloads, and any non-loopback HTTP request fails fast
OFFLINE_ENV = {
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "localhost,127.0.0.1,::1",
    "no_proxy": "localhost,127.0.0.1,::1",
    # the dynamic-provider process unpickles tests.* providers by reference
    "PYTHONPATH": str(REPO),
}


def _cached_pulumi() -> bool:
    cache = os.environ.get("IACRUN_TOOLS_CACHE") or os.path.expanduser("~/.cache/iacrun-tools")
    return bool(glob.glob(os.path.join(cache, "pulumi-v*", "bin", "pulumi")))


def ensure_pulumi() -> str | None:
    """Why engine tests cannot run here, or None once `pulumi` is on PATH."""
    if shutil.which("pulumi"):
        return None
    if GET_PULUMI.exists() and _cached_pulumi():
        proc = subprocess.run(
            [str(GET_PULUMI)], capture_output=True, text=True, timeout=300, check=False
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 0 and lines:
            os.environ["PATH"] = lines[-1] + os.pathsep + os.environ.get("PATH", "")
            if shutil.which("pulumi"):
                return None
    return (
        "the pulumi CLI is not on PATH: build it with tests/tools/get-pulumi "
        '(PATH="$(tests/tools/get-pulumi | tail -n1):$PATH") or install Pulumi'
    )


_REASON = ensure_pulumi()


def skip_without_pulumi(request: pytest.FixtureRequest) -> None:
    """Skip a test marked `engine` when there is no `pulumi` CLI."""
    if _REASON is not None and request.node.get_closest_marker("engine") is not None:
        pytest.skip(_REASON)


@contextlib.contextmanager
def engine_for(home: Path) -> Iterator[StackEngine]:
    """A StackEngine on `home` (file:// backend under it); stacks left behind are destroyed."""
    from iacrun.stacks.engine import StackEngine

    eng = StackEngine(home, env=OFFLINE_ENV, cancel_grace=5)
    try:
        yield eng
    finally:
        try:
            leftovers = eng.list_stacks()
        except Exception:  # the test may have broken the backend on purpose
            leftovers = []
        for summary in leftovers:
            try:
                eng.destroy(summary.name, force=True, timeout=120)
            except Exception as exc:  # report, never hide, a leak
                print(f"teardown: could not destroy {summary.name}: {exc}")

"""Engine fixtures: the real `pulumi` CLI, a temporary `file://` backend, offline and hermetic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.support import engine_for, skip_without_pulumi


@pytest.fixture(autouse=True)
def _needs_pulumi(request: pytest.FixtureRequest) -> None:
    skip_without_pulumi(request)


@pytest.fixture
def engine_home(tmp_path: Path) -> Path:
    home = tmp_path / "iacrun"
    home.mkdir()
    return home


@pytest.fixture
def engine(engine_home: Path) -> Iterator[StackEngine]:
    """A StackEngine on a fresh file:// backend; stacks a test leaves are destroyed after it."""
    with engine_for(engine_home) as eng:
        yield eng


def pytest_configure(config: pytest.Config) -> None:
    # When a test kills `pulumi` mid-update on purpose, the Automation API abandons the inline
    # program's coroutine; Python reports it whenever it is collected, in whatever test runs then.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Exception ignored in. <coroutine object run_in_stack"
        ":pytest.PytestUnraisableExceptionWarning",
    )

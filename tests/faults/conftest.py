"""The fault-injection harness's table: every case adds its row, printed after the tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.outcomes import OUTCOMES, render_table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if OUTCOMES:
        terminalreporter.section("fault injection: phase x victim")
        for line in render_table(OUTCOMES):
            terminalreporter.write_line(line)


@pytest.fixture
def outcomes() -> list[dict[str, str]]:
    return OUTCOMES

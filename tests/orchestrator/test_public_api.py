"""`iacrun.orchestrator` exports the public API, lazily: importing the package loads nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

import iacrun.orchestrator as api


@pytest.mark.parametrize("name", api.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(api, name)
    assert getattr(value, "__name__", name) == name


def test_all_lists_exactly_what_loads() -> None:
    assert sorted(api.__all__) == sorted(api._WHERE)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = api.Nope  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_submodule() -> None:
    code = (
        "import sys, iacrun.orchestrator\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('iacrun.orchestrator.'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""make_backends: the one place config.yml becomes backends, for `up`, `offers` and dry runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.backends.assemble import (
    comparison_note,
    make_backends,
    unconfigured_clouds,
)
from iacrun.orchestrator.backends.aws import AWSBackend
from iacrun.orchestrator.backends.azure import AzureBackend
from iacrun.orchestrator.backends.local import LocalBackend
from iacrun.orchestrator.backends.ssh import SSHBackend
from iacrun.orchestrator.models.settings import Settings
from iacrun.orchestrator.paths import shown_config_file
from iacrun.orchestrator.registry import Registry


@pytest.fixture
def runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IACRUN_HOME", str(tmp_path / "home"))
    root = tmp_path / "home" / "runs"
    root.mkdir(parents=True)
    return root


def test_configured_clouds_are_narrowed_and_the_others_noted(runs_root: Path) -> None:
    settings = Settings.model_validate(
        {"backends": {"aws": {"regions": ["us-west-2"]}, "local": {"enabled": False}}}
    )
    shown = make_backends(settings, runs_root, include_unconfigured=True)
    by_name = {b.name: b for b in shown}
    assert set(by_name) == {"aws", "azure"}
    assert isinstance(by_name["aws"], AWSBackend) and by_name["aws"].regions == ["us-west-2"]
    assert isinstance(by_name["azure"], AzureBackend) and by_name["azure"].regions is None
    assert unconfigured_clouds(settings) == ["azure"]
    assert comparison_note(settings) == (
        f"azure is not configured in {shown_config_file()}: shown for comparison, "
        "`iacrun up` will not use it"
    )
    configured = make_backends(settings, runs_root)
    assert [b.name for b in configured] == ["aws"]


def test_with_no_cloud_configured_both_are_noted_together() -> None:
    assert comparison_note(Settings()) == (
        "aws and azure are not configured in ~/.iacrun/config.yml: shown for comparison, "
        "`iacrun up` will not use them"
    )  # the conftest's IACRUN_HOME is ~/.iacrun of a temporary HOME
    both = Settings.model_validate({"backends": {"aws": {}, "azure": {}}})
    assert unconfigured_clouds(both) == [] and comparison_note(both) is None


def test_the_local_machine_comes_unless_disabled(runs_root: Path) -> None:
    backends = make_backends(Settings(), runs_root)
    assert [type(b) for b in backends] == [LocalBackend]
    assert isinstance(backends[0], LocalBackend) and backends[0].runs_root == runs_root
    off = Settings.model_validate({"backends": {"local": {"enabled": False}}})
    assert make_backends(off, runs_root) == []


def test_a_disabled_cloud_is_shown_for_comparison_without_its_settings(runs_root: Path) -> None:
    settings = Settings.model_validate(
        {"backends": {"aws": {"enabled": False, "regions": ["eu-north-1"]}}}
    )
    assert [b.name for b in make_backends(settings, runs_root)] == ["local"]
    shown = {b.name: b for b in make_backends(settings, runs_root, include_unconfigured=True)}
    assert isinstance(shown["aws"], AWSBackend) and shown["aws"].regions is None
    assert unconfigured_clouds(settings) == ["aws", "azure"]


def test_ssh_hosts_come_when_listed_and_see_the_registry(runs_root: Path) -> None:
    registry = Registry(runs_root.parent / "registry.db")
    hosts = {"ssh": {"hosts": [{"name": "box", "host": "127.0.0.1"}]}}
    settings = Settings.model_validate({"backends": hosts})
    backends = make_backends(settings, runs_root, registry=registry)
    assert [b.name for b in backends] == ["local", "ssh"]
    assert isinstance(backends[1], SSHBackend) and backends[1].registry is registry
    empty = Settings.model_validate({"backends": {"ssh": {"hosts": []}}})
    assert [b.name for b in make_backends(empty, runs_root)] == ["local"]


def test_the_orchestrator_adds_only_the_missing_clouds_for_comparison(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings.model_validate({"backends": {"azure": {"regions": ["eastus"]}}})
    orch = Orchestrator(home=home, settings=settings)
    assert [b.name for b in orch.backends()] == ["local", "azure"]
    shown = orch.backends(include_unconfigured=True)
    assert [b.name for b in shown] == ["local", "azure", "aws"]
    assert shown[:2] == orch.backends()  # the configured ones, as `up` uses them
    given = AzureBackend(home=home)
    injected = Orchestrator(home=home, settings=Settings(), backends=[given])
    names = [b.name for b in injected.backends(include_unconfigured=True)]
    assert names == ["azure", "aws"] and injected.backends() == [given]  # clouds only

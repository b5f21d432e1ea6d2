"""`iacrun doctor`: one line per check, exit 0 only when every configured backend can run, and
the quotas a probe read ruling offers out."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.backends.aws import AWSBackend
from iacrun.orchestrator.doctor import Check, Doctor
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.models.settings import AWSSettings
from iacrun.orchestrator.offers.quotas import load_quota_cache
from iacrun.orchestrator.paths import home_tag
from iacrun.stacks.toolchain import Plugin, required_plugin
from tests.conftest import Cli

CONFIG = """
backends:
  aws: {regions: [us-east-1], ssh_cidrs: [203.0.113.0/24]}
  azure: {regions: [eastus], ssh_cidrs: [203.0.113.0/24]}
"""


def test_without_tools_or_credentials_each_check_is_one_line_and_it_fails(
    cli: Cli, tmp_path: Path
) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yml").write_text(CONFIG)
    empty = tmp_path / "bin"
    empty.mkdir()
    cli.env["PATH"] = f"{empty}:/usr/bin:/bin"
    for name in list(cli.env):
        if name.startswith(("AWS_", "ARM_", "AZURE_")):
            del cli.env[name]
    done = cli("doctor")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    names = [line[6:].split("  ")[0].strip() for line in lines]
    assert names == [
        "config",
        "pulumi CLI",
        "aws plugin",
        "aws credentials",
        "aws ssh access",
        "aws account",
        "azure plugin",
        "azure credentials",
        "azure ssh access",
        "azure account",
        "local",
    ]
    marks = {n: line[:4].strip() for n, line in zip(names, lines, strict=True)}
    assert marks["pulumi CLI"] == "FAIL" and "iacrun doctor --fix" in lines[1]
    assert marks["aws credentials"] == marks["azure credentials"] == "FAIL"
    assert marks["aws plugin"] == marks["aws account"] == "--"
    assert marks["config"] == marks["aws ssh access"] == marks["local"] == "ok"
    assert "Traceback" not in done.stderr


def test_only_the_local_backend_is_healthy_with_no_config(cli: Cli) -> None:
    done = cli("doctor", "--json")
    assert done.returncode == 0, done.stdout
    assert '"name": "local"' in done.stdout


class PluginsInstalled:
    """The part of the stack engine doctor asks about plugins: the required one is there."""

    def plugins(self) -> list[Plugin]:
        plugin = required_plugin("aws")
        assert plugin is not None
        return [plugin]


@pytest.mark.engine
def test_a_probe_reads_the_account_and_low_quotas_rule_offers_out(tmp_path: Path) -> None:
    if shutil.which("pulumi") is None:
        pytest.skip("the pulumi CLI is not on PATH (tests/tools/get-pulumi builds it)")
    home = tmp_path / "home"
    backend = AWSBackend(
        AWSSettings(regions=["us-east-1"], ssh_cidrs=["203.0.113.0/24"]),
        engine=PluginsInstalled(),  # type: ignore[arg-type]
        home=home,
        environ={"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"},
        user_home=tmp_path,
    )
    probed: list[list[str]] = []

    def probe(_backend: Any, regions: list[str]) -> dict[str, Any]:
        probed.append(regions)
        return {
            "account": "123456789012",
            "identity": "arn:aws:iam::123456789012:user/ci",
            "quotas": {
                "us-east-1": {
                    "g/on-demand": {"limit": 0.0, "used": None},
                    "p/on-demand": {"limit": 1000.0, "used": None},
                }
            },
        }

    checks = Doctor(Orchestrator(home=home), probe=probe, backends=[backend]).run()
    by_name: dict[str, Check] = {c.name: c for c in checks}
    assert probed == [["us-east-1"]]
    assert by_name["aws account"].ok is True
    assert by_name["aws account"].detail == "123456789012 as arn:aws:iam::123456789012:user/ci"
    quotas = by_name["aws quotas"]
    assert quotas.ok is False and quotas.detail.startswith("g/on-demand in us-east-1: 0 vCPUs free")
    assert by_name["state backend"].ok is True
    assert by_name["state backend"].detail.endswith(
        f": 0 stacks, 0 of this home (home {home_tag(home)}), 0 of other homes, 0 of no known owner"
    )
    assert load_quota_cache(home)["aws"]["account"] == "123456789012"

    gpu = Requirements(resources=ResourcesSpec.model_validate({"gpu": "1.."}))
    offers = backend.offers(gpu)
    g = [o for o in offers if o.instance_type.startswith("g")]
    p = [o for o in offers if o.instance_type.startswith("p")]
    assert g and p
    assert not any(o.available for o in g)
    assert all(
        (o.note or "").startswith("quota: 0 vCPUs of g/on-demand free in us-east-1") for o in g
    )
    assert all(o.available for o in p if o.resources.cpus <= 1000)

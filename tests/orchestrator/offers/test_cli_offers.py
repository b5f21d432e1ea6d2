"""`iacrun offers` through typer, registered on a bare app the way cli/main.py registers it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from iacrun.cli import offers as offers_cli
from iacrun.orchestrator.paths import shown_config_file


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    offers_cli.register(app)

    @app.callback()
    def main() -> None:
        """A second command keeps typer from flattening `offers` into the app itself."""

    return app


def run(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["offers", *args])
    return result.exit_code, result.stdout, result.stderr


def test_gpu_80gb_shows_both_clouds_cheapest_first_with_notes(app: typer.Typer) -> None:
    code, out, _ = run(app, "--gpu", "80GB", "--max-offers", "50")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE"]
    assert "1xA100 (80GB), 100GB disk" in out and "1xH100 (80GB)" in out
    assert "p5.4xlarge" in out and "Standard_NC24ads_A100_v4" in out
    assert f"aws and azure are not configured in {shown_config_file()}" in out
    assert "prices: aws as of 2025-06-01 (shipped), azure as of 2024-05-01 (shipped)" in out
    prices = [
        float(line.split("$")[-1]) for line in lines[1:] if "$" in line and line[:1].isdigit()
    ]
    assert prices == sorted(prices)


def test_shown_n_of_m(app: typer.Typer) -> None:
    code, out, _ = run(app, "--gpu", "A10G", "-n", "3", "--spot-auto")
    assert code == 0
    assert "Shown 3 of " in out and " offers, $" in out and out.count("\n") > 4


def test_task_file_with_profile_policies_and_an_unset_env_variable(
    app: typer.Typer, tmp_path: Path
) -> None:
    task = tmp_path / "train.dstack.yml"
    task.write_text(
        textwrap.dedent(
            """
            type: task
            env: [HF_TOKEN_THAT_IS_NOT_SET_HERE]
            commands: [python train.py]
            resources: {gpu: "A100:8"}
            spot_policy: on-demand
            """
        )
    )
    code, out, err = run(app, "-f", str(task), "--configured-only", "--json")
    assert code == 1  # no cloud configured, and this machine has no eight A100s
    assert err == "error: no offer meets cpu=2.. mem=8GB.. disk=100GB.. gpu=A100:8 on local\n"
    code, out, err = run(app, "-f", str(task), "--json", "--max-offers", "100")
    assert code == 0, err
    doc = json.loads(out)
    types = {(o["backend"], o["instance_type"]) for o in doc["offers"]}
    assert types == {
        ("aws", "p4d.24xlarge"),
        ("aws", "p4de.24xlarge"),
        ("azure", "Standard_ND96asr_v4"),
        ("azure", "Standard_ND96amsr_A100_v4"),
    }
    assert not any(o["spot"] for o in doc["offers"])


def test_flags_beat_the_task_file(app: typer.Typer, tmp_path: Path) -> None:
    task = tmp_path / "t.dstack.yml"
    task.write_text("type: task\ncommands: [echo]\nresources: {gpu: A100:8}\n")
    code, out, _ = run(app, "-f", str(task), "--gpu", "L40S", "--spot", "--json")
    assert code == 0
    doc = json.loads(out)
    assert {o["resources"]["gpus"][0]["name"] for o in doc["offers"]} == {"L40S"}
    assert all(o["spot"] for o in doc["offers"])


def test_an_unknown_gpu_name_says_what_the_clouds_have(app: typer.Typer) -> None:
    code, _, err = run(app, "--gpu", "lots", "-b", "aws")
    assert code == 1
    assert err.startswith(
        "error: no offer has 1xlots on aws: no instance type meets gpu lots:1; aws has A100"
    )


def test_no_offer_is_one_line_with_exit_code_one(app: typer.Typer) -> None:
    code, out, err = run(app, "--gpu", "H100:8", "--max-price", "20")
    assert code == 1 and out == ""
    assert (
        err == "error: no offer has 8xH100 under $20/h; "
        "the cheapest is $55.04/h on aws p5.48xlarge (us-east-1)\n"
    )


def test_group_by(app: typer.Typer) -> None:
    code, out, _ = run(
        app, "--gpu", "80GB..", "--group-by", "gpu,backend", "-b", "aws", "-b", "azure"
    )
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["#", "GPU", "BACKEND"]
    assert "H200:141GB:8" not in out  # one GPU is the default count
    rows = [line.split()[:3] for line in out.splitlines()[1:4]]
    assert rows == [
        ["1", "A100:80GB:1", "azure"],
        ["2", "H100:80GB:1", "aws"],
        ["3", "H100NVL:94GB:1", "azure"],
    ]


@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        (["--spot", "--on-demand"], "choose one of --spot, --on-demand and --spot-auto", 2),
        (["--group-by", "zone"], "--group-by: cannot group by zone", 2),
        (["--gpu", "80GB..8GB"], "--gpu: GPU memory range 80GB..8GB is inverted", 2),
        (["--max-offers", "0"], "--max-offers 0: show at least 1 offer", 2),
        (["-f", "missing.dstack.yml"], "missing.dstack.yml", 2),
    ],
)
def test_input_errors_exit_2_with_one_line(
    app: typer.Typer, args: list[str], message: str, status: int
) -> None:
    code, _, err = run(app, *args)
    assert code == status
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_configured_regions_narrow_the_cloud(app: typer.Typer, isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yml").write_text("backends:\n  aws: {regions: [eu-north-1]}\n")
    code, out, _ = run(app, "--gpu", "L4", "--configured-only", "--json", "-n", "200")
    assert code == 0
    doc = json.loads(out)
    assert {(o["backend"], o["region"]) for o in doc["offers"]} == {("aws", "eu-north-1")}


def test_refresh_failure_is_reported_and_nothing_else_runs(
    app: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iacrun.orchestrator.errors import BackendError
    from iacrun.orchestrator.offers.catalog import http as catalog_http

    def offline(self: object, url: str, headers: object = None) -> str:
        raise BackendError(f"could not reach {url}: no route to host")

    monkeypatch.setattr(catalog_http.UrllibHttp, "get_text", offline)
    code, out, err = run(app, "--refresh", "--gpu", "80GB")
    assert code == 1 and out == ""
    assert "could not reach https://website.spot.ec2.aws.a2z.com/spot.js" in err


def test_configured_ssh_hosts_are_offered_too(app: typer.Typer, isolated_home: Path) -> None:
    """`iacrun offers` asks the backends `iacrun up` would: an SSH host that is down shows why."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFqJ0i1Zf2m3nKp5e3Yc3JHt0n7f8d2V4n3kq5ZbYw8x"
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.yml").write_text(
        "backends:\n  ssh:\n    hosts:\n"
        f"      - {{name: box, host: 127.0.0.1, port: {port}, host_key: '{key}'}}\n"
    )
    code, out, err = run(app, "--cpu", "1..", "--configured-only", "--json")
    assert code == 0, err
    doc = json.loads(out)
    box = [o for o in doc["offers"] if o["backend"] == "ssh"]
    assert [(o["region"], o["available"]) for o in box] == [("box", False)]
    assert box[0]["note"] == "unreachable: connection refused"

"""What users typed or wrote, refused in one line that names the field or flag and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from iacrun.orchestrator.errors import ConfigError, InputError
from iacrun.orchestrator.models.loader import load_task
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec, merge_ports
from iacrun.orchestrator.models.settings import load_settings
from iacrun.orchestrator.models.taskfile import PortMapping
from tests.conftest import write_task


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "pydantic" not in text and "https://" not in text, text
    return text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ports": ["70000:6000"]}, "--port 70000:6000: port 70000 is out of range 1..65535"),
        ({"ports": ["6000:0"]}, "--port 6000:0: port 0 is out of range 1..65535"),
        ({"max_price": -1}, "--max-price -1: a price per hour must be above 0"),
        (
            {"backends": ["aws", "gcp"]},
            "-b/--backend gcp: unknown backend 'gcp'; known: aws, azure, local, ssh",
        ),
    ],
)
def test_overrides_refuse_in_one_line_naming_the_flag(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    task = write_task(tmp_path, "commands: [x]\nports: [6000]\n")
    with pytest.raises(InputError) as caught:
        build_run_spec(task, Overrides.model_validate(fields), environ={})
    assert _one_line(caught.value).startswith(message)


def test_overrides_constructed_directly_raise_input_errors() -> None:
    """The CLI builds Overrides from typer's values: a bad one must not leak a ValidationError."""
    with pytest.raises(InputError, match=r"^--max-price 0: a price per hour must be above 0$"):
        Overrides(max_price=0)


def test_port_mappings_must_name_a_task_port() -> None:
    task = [PortMapping.parse(6000)]
    with pytest.raises(InputError) as swapped:
        merge_ports(task, ["6000:6001"])
    assert str(swapped.value) == (
        "--port 6000:6001 forwards local port 6000 to task port 6001, but the task listens on "
        "6000 (ports: [6000]); did you mean --port 6001:6000?"
    )
    with pytest.raises(InputError, match=r"the task lists no ports; add ports: \[6000\]"):
        merge_ports([], ["6000"])
    moved = merge_ports(task, ["6001:6000"])
    assert [p.render() for p in moved] == ["6001:6000"]
    assert [p.render() for p in merge_ports(task, ["*:6000"])] == ["*:6000"]


def test_a_local_port_used_twice_is_refused() -> None:
    task = [PortMapping.parse(6000), PortMapping.parse(6001)]
    with pytest.raises(InputError, match=r"^--port 6000:6001: local port 6000 is used twice"):
        merge_ports(task, ["6000:6001"])  # 6000 stays the local port of task port 6000
    assert [p.render() for p in merge_ports(task, ["6001:6000", "6000:6001"])] == [
        "6001:6000",
        "6000:6001",
    ]


def test_duplicate_keys_are_refused_in_every_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("backends:\n  local: {enabled: true}\n  local: {enabled: false}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value) == (
        f'{config}:3: key "backends.local" repeats line 2; keep one of them'
    )
    profiles = tmp_path / "p.dstack.yml"
    profiles.write_text("type: task\ncommands: [x]\ncommands: [y]\n")
    with pytest.raises(ConfigError, match=r':3: key "commands" repeats line 2'):
        load_task(profiles)


def test_a_file_without_type_is_refused(tmp_path: Path) -> None:
    path = write_task(tmp_path, "commands: [x]\n", typed=False)
    with pytest.raises(ConfigError) as caught:
        load_task(path)
    assert str(caught.value) == f'{path}: missing "type: task" (iacrun runs tasks)'


def test_empty_sections_mean_their_defaults(tmp_path: Path) -> None:
    path = write_task(tmp_path, "commands: [x]\nresources:\nenv:\nports:\n")
    task = load_task(path)
    assert task.resources.render() == "cpu=2.. mem=8GB.. disk=100GB.."
    assert task.ports == [] and task.env == {}


def test_an_unconfigured_backend_names_the_config_file_read(tmp_path: Path) -> None:
    from iacrun.orchestrator.api import Orchestrator

    home = tmp_path / "elsewhere"
    home.mkdir()
    with pytest.raises(InputError) as caught:
        Orchestrator(home=home).backend("ssh")
    assert str(caught.value) == f"backend 'ssh' is not configured in {home / 'config.yml'}"
    with pytest.raises(InputError, match="unknown backend 'gcp'; known: aws, azure, local, ssh"):
        Orchestrator(home=home).backend("gcp")


def test_messages_name_the_config_file_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iacrun.orchestrator.backends.assemble import comparison_note
    from iacrun.orchestrator.models.settings import Settings

    note = comparison_note(Settings(), tmp_path)
    assert note is not None and f"not configured in {tmp_path / 'config.yml'}:" in note
    monkeypatch.setenv("IACRUN_HOME", str(Path.home() / "alt"))
    note = comparison_note(Settings())
    assert note is not None and "not configured in ~/alt/config.yml:" in note


def test_a_password_in_a_url_is_never_echoed_back() -> None:
    from iacrun.orchestrator.models.validation import redacted

    assert redacted("https://u:secret-pw@h/x.git") == "https://u:***@h/x.git"
    assert redacted("https://h/x.git") == "https://h/x.git"
    assert redacted("git@github.com:org/repo.git") == "git@github.com:org/repo.git"

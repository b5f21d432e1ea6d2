"""Where profiles come from: this folder, the repository's root, the task file's folder, then
~/.dstack; a profile's name found earlier shadows the same name found later."""

from __future__ import annotations

from pathlib import Path

import pytest

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec, profile_paths
from tests.conftest import write_task


def _profiles(folder: Path, text: str) -> Path:
    (folder / ".dstack").mkdir(parents=True, exist_ok=True)
    path = folder / ".dstack" / "profiles.yml"
    path.write_text(text)
    return path


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A repository with the task file in a subfolder, and a working folder elsewhere."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    sub = repo / "jobs" / "train"
    sub.mkdir(parents=True)
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    task = write_task(sub, "commands: [x]\n")
    return {"repo": repo, "sub": sub, "cwd": cwd, "home": Path.home(), "task": task}


@pytest.mark.parametrize("where", ["cwd", "repo", "sub", "home"])
def test_each_location_is_read(layout: dict[str, Path], where: str) -> None:
    _profiles(layout[where], "profiles:\n  - name: p\n    default: true\n    max_price: 3\n")
    spec = build_run_spec(layout["task"], environ={})
    assert spec.requirements.max_price == 3
    named = build_run_spec(layout["task"], Overrides(profile="p"), environ={})
    assert named.requirements.max_price == 3


def test_earlier_locations_win_by_name(layout: dict[str, Path]) -> None:
    for price, where in enumerate(["cwd", "repo", "sub", "home"], start=1):
        _profiles(layout[where], f"profiles:\n  - name: p\n    max_price: {price}\n")
    _profiles(layout["home"], "profiles:\n  - name: p\n    max_price: 4\n  - name: h\n")
    assert (
        build_run_spec(layout["task"], Overrides(profile="p"), environ={}).requirements.max_price
        == 1
    )
    # a name only a later file has is still found
    assert (
        build_run_spec(layout["task"], Overrides(profile="h"), environ={}).requirements.max_price
        is None
    )


def test_search_order_without_duplicates(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [p.parent.parent for p in profile_paths(layout["task"])]
    assert names == [layout["cwd"], layout["repo"], layout["sub"], layout["home"]]
    monkeypatch.chdir(layout["repo"])
    names = [p.parent.parent for p in profile_paths(layout["task"])]
    assert names == [layout["repo"], layout["sub"], layout["home"]]


def test_a_missing_profile_names_the_files_searched(layout: dict[str, Path]) -> None:
    _profiles(layout["repo"], "profiles:\n  - name: cheap\n")
    with pytest.raises(InputError) as caught:
        build_run_spec(layout["task"], Overrides(profile="big"), environ={})
    message = str(caught.value)
    assert message.startswith("no profile named 'big' (known: cheap); searched ")
    assert str(layout["cwd"] / ".dstack" / "profiles.yml") in message
    assert str(layout["repo"] / ".dstack" / "profiles.yml") in message
    assert "~/.dstack/profiles.yml" in message

"""What lies in an iacrun home: the home tag, drawn once, private, the same for every reader."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import ConfigError
from iacrun.orchestrator.paths import home_id_file, home_tag
from iacrun.stacks.owner import HOME_TAG


def test_the_home_tag_is_drawn_once_and_kept_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    tag = home_tag(home)
    assert HOME_TAG.fullmatch(tag)
    assert home_tag(home) == tag
    assert stat.S_IMODE(home_id_file(home).stat().st_mode) == 0o600
    assert home_tag(tmp_path / "other") != tag
    assert [p.name for p in home.iterdir()] == ["home-id"]  # no temporary file left


def test_concurrent_first_uses_agree_on_one_tag(tmp_path: Path) -> None:
    home = tmp_path / "home"
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(home_tag(home))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and len(seen) == 8


def test_a_damaged_home_id_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    home_id_file(tmp_path).write_text("not a tag\n")
    with pytest.raises(ConfigError) as caught:
        home_tag(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "holds 'not a tag', not a home id" in message and "remove it" in message


def test_a_shared_folder_is_refused_and_never_tightened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iacrun.orchestrator.errors import InputError
    from iacrun.orchestrator.paths import private_dir

    sticky = tmp_path / "shared"
    sticky.mkdir()
    sticky.chmod(0o1777)  # as /tmp is
    with pytest.raises(InputError, match=r"shared folder \(mode 1777\).*IACRUN_HOME"):
        private_dir(sticky)
    assert stat.S_IMODE(sticky.stat().st_mode) == 0o1777

    home = tmp_path / "me"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(InputError, match="shared folder"):
        private_dir(home)  # IACRUN_HOME=~ would make the user's own home 0700
    assert stat.S_IMODE(home.stat().st_mode) == 0o755

    own = home / ".iacrun"
    own.mkdir(mode=0o755)
    own.chmod(0o755)
    assert stat.S_IMODE(private_dir(own).stat().st_mode) == 0o700


def test_a_shared_iacrun_home_is_one_line_from_the_cli(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env = dict(os.environ, HOME=str(tmp_path), IACRUN_HOME=str(shared))
    done = subprocess.run(
        [sys.executable, "-m", "iacrun.cli.main", "ps"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777

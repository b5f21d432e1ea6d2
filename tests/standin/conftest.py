"""Stand-in VM fixtures: the real `pulumi` CLI and a real OpenSSH `sshd` (both or skip)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from iacrun.stacks.engine import StackEngine
from tests.stacks.engine.support import engine_for, skip_without_pulumi

SSHD = "/usr/sbin/sshd"


@pytest.fixture(autouse=True)
def _needs_tools(request: pytest.FixtureRequest) -> None:
    skip_without_pulumi(request)
    if request.node.get_closest_marker("sshd") is not None:
        if not os.path.exists(SSHD):
            pytest.skip(f"{SSHD} is missing: apt-get install openssh-server")
        if shutil.which("ssh-keygen") is None:
            pytest.skip("ssh-keygen is missing: apt-get install openssh-client")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[StackEngine]:
    home = tmp_path / "iacrun"
    home.mkdir()
    with engine_for(home) as eng:
        yield eng

"""The run's key pairs: generated here, in OpenSSH formats, the private half written 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from iacrun.stacks.keys import KeyPair, generate_ed25519, generate_rsa, write_private_key
from iacrun.stacks.spec import StackSpec

from .conftest import host_key, make_spec


def test_the_host_key_must_be_ed25519_in_openssh_format() -> None:
    data = make_spec().model_dump()
    data["host_key"] = generate_rsa(2048).model_dump()
    with pytest.raises(ValidationError, match="ssh-ed25519"):
        StackSpec.model_validate(data)
    pair = host_key()
    with pytest.raises(ValidationError, match="OpenSSH format"):
        KeyPair(private_openssh="-----BEGIN PRIVATE KEY-----\n", public_openssh=pair.public_openssh)
    assert pair.public_key_only == " ".join(pair.public_openssh.split()[:2])
    assert "PRIVATE" not in repr(pair)


def test_generated_keys_load_and_match(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    for pair, algorithm in (
        (generate_ed25519("c"), "ssh-ed25519"),
        (generate_rsa(2048), "ssh-rsa"),
    ):
        assert pair.algorithm == algorithm
        key = serialization.load_ssh_private_key(pair.private_openssh.encode(), None)
        public = key.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        assert pair.public_openssh.startswith(public.decode())
    assert generate_ed25519() != generate_ed25519()


def test_private_keys_are_written_0600(tmp_path: Path) -> None:
    pair = generate_ed25519("run")
    path = write_private_key(tmp_path / "runs" / "r-1" / "id_ed25519", pair)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == pair.private_openssh
    assert (tmp_path / "runs" / "r-1" / "id_ed25519.pub").read_text() == pair.public_openssh + "\n"

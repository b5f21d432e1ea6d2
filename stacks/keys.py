"""Key pairs for a run: the SSH key iacrun logs in with, and the VM's host key it pins.

Both are generated here, on the user's machine, for every run, as the one `KeyPair` type. The
host key's private half only travels inside the VM's cloud-init (a Pulumi secret in the stack's
state); its public half goes into the `Host` so that the first connection already checks it (no
trust on first use). The login key's private half is written under the run's folder
(`write_private_key`) and never leaves this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class KeyPair(BaseModel):
    """An SSH key pair in OpenSSH formats (a `StackSpec` carries the host key as one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    private_openssh: str = Field(repr=False)
    #: "ssh-ed25519 AAAA... comment"
    public_openssh: str

    @field_validator("public_openssh")
    @classmethod
    def _public(cls, value: str) -> str:
        value = value.strip()
        if len(value.split()) < 2 or "\n" in value:
            raise ValueError("the public key must be one line in OpenSSH format")
        return value

    @field_validator("private_openssh")
    @classmethod
    def _private(cls, value: str) -> str:
        if "BEGIN OPENSSH PRIVATE KEY" not in value:
            raise ValueError("the private key must be in OpenSSH format")
        return value if value.endswith("\n") else value + "\n"

    @property
    def algorithm(self) -> str:
        """`ssh-ed25519`, `ssh-rsa`..."""
        return self.public_openssh.split()[0]

    @property
    def public_key_only(self) -> str:
        """`ssh-ed25519 AAAA...` without the comment, as `Host.host_key` takes it."""
        return " ".join(self.public_openssh.split()[:2])


def generate_ed25519(comment: str = "iacrun") -> KeyPair:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return _pair(Ed25519PrivateKey.generate(), comment)


def generate_rsa(bits: int = 3072, comment: str = "iacrun") -> KeyPair:
    """RSA, for clouds that do not take Ed25519 keys everywhere (Azure's VM SSH settings)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=bits), comment)


def _pair(key: object, comment: str) -> KeyPair:
    from cryptography.hazmat.primitives import serialization

    private = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()  # type: ignore[attr-defined]
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return KeyPair(private_openssh=private, public_openssh=f"{public} {comment}".strip())


def write_private_key(path: Path, pair: KeyPair) -> Path:
    """Write the private key with mode 0600 (created so, never widened), and `.pub` beside it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pair.private_openssh.encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    path.with_name(path.name + ".pub").write_text(pair.public_openssh + "\n")
    return path

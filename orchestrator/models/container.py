"""How a task's commands are run: the shell, and for `image:` tasks the container's entrypoint,
user and private-registry credentials (dstack's `shell`, `user`, `registry_auth`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator, Field, WithJsonSchema

from iacrun.orchestrator.models.common import CoreModel

_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
_ENV_EXPR_RE = re.compile(r"\$\{\{\s*(?:env|secrets)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _shell(value: str) -> str:
    if value in ("sh", "bash") or (value.startswith("/") and len(value) > 1):
        return value
    raise ValueError(
        f"{value!r} is not a shell iacrun can run; write sh, bash or an absolute path "
        "such as /usr/bin/zsh"
    )


def _user(value: str) -> str:
    if not _USER_RE.match(value):
        raise ValueError(
            f"{value!r} is not a user; write a name or id, optionally with a group: "
            "ubuntu, 1000 or 1000:1000"
        )
    return value


#: `sh`, `bash` or an absolute path (dstack's rule)
Shell = Annotated[
    str, AfterValidator(_shell), WithJsonSchema({"type": "string", "examples": ["bash"]})
]
#: `user`, `uid`, `user:group` or `uid:gid`, inside the container
ContainerUser = Annotated[
    str, AfterValidator(_user), WithJsonSchema({"type": "string", "examples": ["1000:1000"]})
]


def default_shell(image: str | None) -> str:
    """dstack's defaults: /bin/sh inside an image, bash otherwise."""
    return "/bin/sh" if image else "bash"


class RegistryAuth(CoreModel):
    """Credentials for pulling a private image; `${{ env.NAME }}` takes a value from the run's
    environment (the task's `env`, `-e` flags, this shell), so none needs to be in the file."""

    username: str = Field(min_length=1)
    password: str = Field(min_length=1)

    def resolve(self, env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
        """Username and password with `${{ env.NAME }}` (or `secrets.NAME`) filled in; a
        ValueError naming the variable when it has no value."""

        def fill(text: str) -> str:
            def one(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in env:
                    return env[name]
                if name in environ:
                    return environ[name]
                raise ValueError(
                    f"registry_auth uses ${{{{ env.{name} }}}}, and {name} has no value: "
                    f"export {name} in this shell or pass -e {name}=VALUE"
                )

            return _ENV_EXPR_RE.sub(one, text)

        return {"username": fill(self.username), "password": fill(self.password)}

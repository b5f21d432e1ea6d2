"""What a task brings besides its working folder: `files` and `repos`, as in dstack.

`files` maps a path here to a path on the host (`local[:path]` or `{local_path, path}`); `repos`
is one git repo, a local path shipped as its tracked and untracked-but-not-ignored files, or a
URL cloned on the host. Relative local paths start at the task file's folder; a relative `path`
is under the run's working folder on the host; `~` and absolute paths are the host's.

When the task file is validated with a `task_dir` in its context (the loader does), local paths
are checked here, so a missing one is reported at its line and column before anything runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from iacrun.orchestrator.models.common import CoreModel

RepoExists = Literal["error", "skip"]
#: what a repo URL may look like: a scheme git speaks, or scp-like `user@host:path`
_URL_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)\S+$")


def is_repo_url(value: str) -> bool:
    """dstack's rule: `user@host:…` or `scheme://…` is a URL; anything else is a local path."""
    head, sep, rest = value.partition(":")
    return bool(sep) and ("@" in head or rest.startswith("//"))


def local_path(task_dir: Path, value: str) -> Path:
    """A local path as the task file means it: `~` is this user's home, relative paths start at
    the task file's folder."""
    return (task_dir / Path(value).expanduser()).resolve()


def _host_path(value: str, what: str) -> str:
    """A path on the host: relative (under the working folder), absolute, or `~/…`."""
    if not value.strip():
        raise ValueError(f"{what} is empty; write a path on the host")
    if PureWindowsPath(value).drive:
        raise ValueError(f"{what} {value!r} must be a Unix path (the host runs Linux)")
    if value.startswith("~") and PurePosixPath(value).parts[0] != "~":
        raise ValueError(f"{what} {value!r}: ~user is not supported; write ~/… or an absolute path")
    return value


#: a `path` on the host, checked by `_host_path`
HostPath = Annotated[str, AfterValidator(lambda value: _host_path(value, "path"))]


def _task_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    folder = context.get("task_dir") if isinstance(context, dict) else None
    return Path(folder) if folder is not None else None


class FileMapping(CoreModel):
    """One `files` entry: a file or folder here, and where it goes on the host."""

    local_path: str = Field(min_length=1)
    path: HostPath

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        parts = value.split(":")
        if len(parts) == 1:
            return {"local_path": value, "path": value}
        if len(parts) == 2:
            return {"local_path": parts[0], "path": parts[1]}
        raise ValueError(f"{value!r} is not LOCAL[:PATH]; a path may hold at most one ':'")

    @field_validator("local_path")
    @classmethod
    def _exists(cls, value: str, info: ValidationInfo) -> str:
        folder = _task_dir(info)
        if folder is not None and not local_path(folder, value).exists():
            shown = local_path(folder, value)
            raise ValueError(f"{value!r}: no such file or folder ({shown}); check the path")
        return value


class RepoSpec(CoreModel):
    """The `repos` entry: a local git repo to ship, or a URL to clone on the host."""

    local_path: str | None = None
    url: str | None = None
    branch: str | None = None
    hash: str | None = None
    path: HostPath = "."
    if_exists: RepoExists = "error"

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """`.`, `../other:lib`, `https://host/x.git`, `git@host:x.git:lib` (dstack's forms)."""
        if not isinstance(value, str):
            return value
        parts = value.split(":")
        url = len(parts) > 1 and ("@" in parts[0] or parts[1].startswith("//"))
        if "://" in value:  # the `:PATH` is after the host (a port is not a path)
            scheme, rest = value.split("://", 1)
            authority, slash, tail = rest.partition("/")
            where, sep, mapped = tail.rpartition(":")
            parts = [f"{scheme}://{authority}{slash}{where if sep else tail}"]
            parts += [mapped] if sep else []
        elif url:
            parts = [f"{parts[0]}:{parts[1]}", *parts[2:]]
        if len(parts) > 2:
            raise ValueError(f"{value!r} is not REPO[:PATH]; a path may hold at most one ':'")
        key = "url" if url else "local_path"
        return {key: parts[0], **({"path": parts[1]} if len(parts) == 2 else {})}

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not (value.startswith(_URL_SCHEMES) or _SCP_LIKE.match(value)):
            raise ValueError(
                f"{value!r} is not a git URL; write https://host/repo.git, git@host:repo.git, "
                "ssh://host/repo.git or file:///path/repo.git"
            )
        authority = value.split("://", 1)[1].split("/", 1)[0] if "://" in value else ""
        if ":" in authority.rpartition("@")[0]:
            raise ValueError(
                "the URL holds a password; take it out and set IACRUN_GIT_TOKEN or use your "
                "git credential helper"
            )
        return value

    @field_validator("branch", "hash")
    @classmethod
    def _ref(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.strip() or value.startswith("-") or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a git {info.field_name}")
        if info.field_name == "hash" and not re.fullmatch(r"[0-9a-fA-F]{4,64}", value):
            raise ValueError(f"{value!r} is not a commit hash (4 to 64 hex digits)")
        return value

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> RepoSpec:
        if self.local_path and self.url:
            raise ValueError("local_path and url exclude each other; keep one of them")
        if not self.local_path and not self.url:
            raise ValueError("a repo needs local_path or url")
        if self.local_path and (self.branch or self.hash):
            raise ValueError(
                "branch and hash apply to a repo url; a local repo ships its working tree as it "
                "is (commit or check out what you want first)"
            )
        folder = _task_dir(info)
        if self.local_path and folder is not None:
            check_local_repo(local_path(folder, self.local_path), self.local_path)
        return self


def check_local_repo(root: Path, shown: str) -> None:
    """A local repo can be shipped: it exists, git is installed, and it is a git work tree."""
    if not root.is_dir():
        raise ValueError(f"{shown!r}: no such folder ({root}); check the path")
    if shutil.which("git") is None:
        raise ValueError("git is not installed here; install git to ship a local repo")
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if done.returncode != 0 or done.stdout.strip() != "true":
        raise ValueError(
            f"{shown!r} ({root}) is not a git repository; list a plain folder under files instead"
        )


def _string_or(properties: dict[str, Any], required: list[str], example: str) -> dict[str, Any]:
    """An editor's view of a field dstack writes either as a string or as a mapping."""
    mapping = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return {"anyOf": [{"type": "string", "examples": [example]}, mapping]}


_TEXT = {"type": "string"}
#: a `files` entry as the JSON Schema shows it (the model takes both forms)
FileEntry = Annotated[
    FileMapping,
    WithJsonSchema(
        _string_or({"local_path": _TEXT, "path": _TEXT}, ["local_path", "path"], "data:/data")
    ),
]
#: a `repos` entry as the JSON Schema shows it
RepoEntry = Annotated[
    RepoSpec,
    WithJsonSchema(
        _string_or(
            {
                "local_path": _TEXT,
                "url": _TEXT,
                "branch": _TEXT,
                "hash": _TEXT,
                "path": _TEXT,
                "if_exists": {"enum": ["error", "skip"]},
            },
            [],
            "https://github.com/org/repo.git",
        )
    ),
]

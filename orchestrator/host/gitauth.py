"""Credentials for cloning a private repo URL on the host, found here at upload time.

`IACRUN_GIT_TOKEN` (with `IACRUN_GIT_USER`, default `oauth2`) wins; otherwise the user's git
credential helper answers (`git credential fill`, never prompting). They travel to the host as
two 0600 files beside job.json, read by a GIT_ASKPASS helper and removed once the clone is done:
never in job.json, the registry, the log or the state. SSH URLs use the host's own keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from iacrun.orchestrator.models.runspec import RunSpec

TOKEN_ENV = "IACRUN_GIT_TOKEN"
USER_ENV = "IACRUN_GIT_USER"
DEFAULT_TOKEN_USER = "oauth2"  # what GitLab needs for a token; GitHub takes any name


def git_credentials(url: str, environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(username, password) for an http(s) URL, or None when there is nothing to give."""
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    token = environ.get(TOKEN_ENV)
    if token:
        return environ.get(USER_ENV) or parts.username or DEFAULT_TOKEN_USER, token
    if shutil.which("git") is None:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    query = f"protocol={parts.scheme}\nhost={host}\npath={parts.path.lstrip('/')}\n"
    if parts.username:
        query += f"username={parts.username}\n"
    env = {k: v for k, v in environ.items() if k not in ("GIT_ASKPASS", "SSH_ASKPASS")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        done = subprocess.run(
            ["git", "credential", "fill"],
            input=query + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if not found.get("password"):
        return None
    return found.get("username", ""), found["password"]


def git_auth_for(spec: RunSpec) -> tuple[str, str] | None:
    """The credentials the run's repo URL needs, if it has one and they are found."""
    return next((found for r in spec.repos if r.url and (found := git_credentials(r.url))), None)

"""From a task file, profiles and CLI flags to a RunSpec: what exactly will run, and where."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from iacrun.orchestrator.errors import ConfigError, InputError
from iacrun.orchestrator.models.container import default_shell
from iacrun.orchestrator.models.names import RunName
from iacrun.orchestrator.models.policies import (
    PRIORITY_DEFAULT,
    StartupOrder,
    StopCriteria,
    UtilizationPolicy,
)
from iacrun.orchestrator.models.requirements import OWN_HOST_BACKENDS, Requirements, SpotPolicy
from iacrun.orchestrator.models.resources import CPUSpec, GPUSpec, ResourcesSpec
from iacrun.orchestrator.models.runargs import ARGS_RE, substitute_args
from iacrun.orchestrator.models.shipped import local_path
from iacrun.orchestrator.models.taskfile import (
    ZERO_DURATION,
    BackendName,
    PortMapping,
    Price,
    Profile,
    RetrySpec,
    TaskConfig,
    local_port_twice,
    repeated_local_port,
)
from iacrun.orchestrator.models.units import parse_duration, parse_range
from iacrun.orchestrator.models.validation import flag_error
from iacrun.orchestrator.paths import shown_path

_ANY_EXPR_RE = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


class Overrides(BaseModel):
    """What `iacrun up` flags say; None means "not given"."""

    name: RunName = None
    env: list[str] = Field(default_factory=list)
    ports: list[str] = Field(default_factory=list)
    gpu: str | None = None
    cpu: str | None = None
    memory: str | None = None
    disk: str | None = None
    spot_policy: SpotPolicy | None = None
    max_price: Price | None = None
    max_duration: str | None = None
    retry: bool | None = None
    retry_duration: str | None = None
    backends: list[BackendName] | None = None
    regions: list[str] | None = None
    instance_types: list[str] | None = None
    profile: str | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _one_line(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A bad flag value is an InputError naming the flag, never pydantic's report."""
        try:
            return handler(data)
        except ValidationError as exc:
            raise flag_error(exc, FLAGS) from None


#: the `iacrun up` flag behind each Overrides field, for messages
FLAGS = {
    "name": "-n/--name",
    "env": "-e/--env",
    "ports": "--port",
    "spot_policy": "--spot/--on-demand/--spot-auto",
    "backends": "-b/--backend",
    "regions": "-r/--region",
}


class ShippedFile(BaseModel):
    """A `files` entry resolved: the absolute local path, and the path on the host as written."""

    local: str
    path: str


class RepoSource(BaseModel):
    """The `repos` entry resolved: a local repo's absolute path, or a URL the host clones."""

    local: str | None = None
    url: str | None = None
    branch: str | None = None
    hash: str | None = None
    path: str = "."
    if_exists: str = "error"
    single_branch: bool = True


class RunSpec(BaseModel):
    """Everything needed to run a task, resolved: nothing here depends on this shell any more."""

    run_name: str | None
    config_path: str
    repo_dir: str
    working_dir: str
    image: str | None
    python: str | None
    commands: list[str]
    env: dict[str, str]
    ports: list[PortMapping]
    requirements: Requirements
    retry: RetrySpec | None
    max_duration: int | None
    stop_duration: int
    args: list[str] = Field(default_factory=list)
    #: how the commands run: `sh`, `bash` or an absolute path
    shell: str = "bash"
    entrypoint: str | None = None
    user: str | None = None
    privileged: bool = False
    #: Docker on the machine, for the commands (dstack's `docker: true`)
    docker: bool = False
    #: the CUDA compiler on the machine's PATH (dstack's `nvcc: true`)
    nvcc: bool = False
    #: the env variables that hold the registry's username and password (never the values)
    registry_auth: dict[str, str] | None = None
    utilization_policy: UtilizationPolicy | None = None
    priority: int = PRIORITY_DEFAULT
    #: machines the run takes (`nodes:`), all of one offer; rank 0 is the master
    nodes: int = 1
    #: a multi-node run ends when every node is done (`all-done`) or when the master is
    startup_order: StartupOrder = "any"
    stop_criteria: StopCriteria = "all-done"

    @property
    def needs_container_engine(self) -> bool:
        return self.image is not None or self.docker

    files: list[ShippedFile] = Field(default_factory=list)
    repos: list[RepoSource] = Field(default_factory=list)


PROFILES_FILE = Path(".dstack") / "profiles.yml"


def profile_paths(config_path: str | Path, cwd: Path | None = None) -> list[Path]:
    """Where profiles are looked for, in this order: `.dstack/profiles.yml` in the current
    folder, in the repository's root (the nearest folder above the task file holding `.git`),
    in the task file's folder, then `~/.dstack/profiles.yml`; each folder once."""
    task_folder = Path(config_path).resolve().parent
    root = git_root(Path(config_path))
    folders = [(cwd or Path.cwd()).resolve(), root, task_folder, Path.home()]
    seen: dict[Path, None] = {}
    for folder in folders:
        if folder is not None:
            seen.setdefault(folder, None)
    return [folder / PROFILES_FILE for folder in seen]


def git_root(config_path: Path) -> Path | None:
    """The nearest folder above the task file that holds `.git`, if any."""
    folder = config_path.resolve().parent
    return next((c for c in (folder, *folder.parents) if (c / ".git").exists()), None)


def repo_root(config_path: Path) -> Path:
    """The git repository holding the task file, or the task file's folder."""
    return git_root(config_path) or config_path.resolve().parent


def select_profile(
    profiles: Sequence[Profile], name: str | None, searched: Sequence[Path] = ()
) -> Profile | None:
    """The profile called `name`, else the first marked `default: true`, else None."""
    if name is not None:
        for profile in profiles:
            if profile.name == name:
                return profile
        known = ", ".join(p.name for p in profiles) or "none"
        files = ", ".join(shown_path(p) for p in searched) or ".dstack/profiles.yml"
        raise InputError(f"no profile named {name!r} (known: {known}); searched {files}")
    return next((p for p in profiles if p.default), None)


def build_run_spec(
    config_path: str | Path,
    overrides: Overrides | None = None,
    args: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> RunSpec:
    # the YAML loader is needed to build a spec, not to read one back from the registry
    from iacrun.orchestrator.models.loader import load_profiles, load_task

    config_path = Path(config_path)
    task = load_task(config_path)
    overrides = overrides or Overrides()
    repo = repo_root(config_path)
    searched = profile_paths(config_path)
    profile = select_profile(load_profiles(*searched), overrides.profile, searched)
    environ = os.environ if environ is None else environ

    def pick(flag: Any, field: str) -> Any:
        if flag is not None:
            return flag
        value = getattr(task, field)
        if value is None and profile is not None:
            value = getattr(profile, field)
        return value

    retry = _retry(task, profile, overrides)
    max_duration_flag = _duration_flag(overrides.max_duration)
    max_duration = max_duration_flag[0] if max_duration_flag else pick(None, "max_duration")
    requirements = build_requirements(overrides, task.resources, lambda field: pick(None, field))
    requirements = requirements.model_copy(update={"nodes": task.nodes})
    if pick(None, "creation_policy") == "reuse":
        requirements = _reuse_only(requirements, str(config_path))
    working_dir = task.working_dir or "."
    absolute_ok = task.image is not None and Path(working_dir).is_absolute()
    if not absolute_ok and (Path(working_dir).is_absolute() or ".." in Path(working_dir).parts):
        raise ConfigError(
            "working_dir must be a folder inside the repository, relative to its root "
            "(an absolute path is a folder inside an image's container)",
            file=str(config_path),
            field="working_dir",
        )
    env = resolve_env(task.env, overrides.env, environ, str(config_path))
    registry_auth = None
    if task.registry_auth is not None:
        try:
            secret = task.registry_auth.resolve(env, environ)
        except ValueError as exc:
            raise InputError(f"{config_path}: {exc}") from None
        registry_auth = {"username": REGISTRY_USER_ENV, "password": REGISTRY_PASSWORD_ENV}
        env = {
            **env,
            REGISTRY_USER_ENV: secret["username"],
            REGISTRY_PASSWORD_ENV: secret["password"],
        }
    return RunSpec(
        run_name=overrides.name or task.name,
        config_path=str(config_path),
        repo_dir=str(repo),
        working_dir=working_dir,
        image=task.image,
        python=task.python,
        commands=interpolate_commands([*task.setup, *task.commands], args, str(config_path)),
        env=env,
        ports=merge_ports(task.ports, overrides.ports),
        requirements=requirements,
        retry=retry,
        max_duration=max_duration,
        stop_duration=task.stop_duration,
        args=list(args),
        shell=task.shell or default_shell(task.image),
        entrypoint=task.entrypoint,
        user=task.user,
        privileged=task.privileged,
        docker=bool(task.docker),
        nvcc=bool(task.nvcc),
        registry_auth=registry_auth,
        utilization_policy=pick(None, "utilization_policy"),
        priority=PRIORITY_DEFAULT if task.priority is None else task.priority,
        nodes=task.nodes,
        startup_order=pick(None, "startup_order") or "any",
        stop_criteria=pick(None, "stop_criteria") or "all-done",
        files=shipped_files(task, config_path),
        repos=repo_sources(task, config_path),
    )


#: where a private registry's credentials travel: the run's env, like every other secret; the
#: runner hands them to the engine's login on stdin and keeps them out of the container
REGISTRY_USER_ENV = "IACRUN_REGISTRY_USERNAME"
REGISTRY_PASSWORD_ENV = "IACRUN_REGISTRY_PASSWORD"


def _reuse_only(requirements: Requirements, file: str) -> Requirements:
    """`creation_policy: reuse`: only machines that exist already (this one, your ssh hosts)."""
    allowed = [b for b in (requirements.backends or OWN_HOST_BACKENDS) if b in OWN_HOST_BACKENDS]
    if not allowed:
        raise ConfigError(
            "creation_policy: reuse takes only machines that exist (local, ssh), and backends "
            "lists none of them; add local or ssh, or use reuse-or-create",
            file=file,
            field="creation_policy",
        )
    return requirements.model_copy(update={"backends": allowed})


def shipped_files(task: TaskConfig, config_path: Path) -> list[ShippedFile]:
    folder = config_path.resolve().parent
    return [
        ShippedFile(local=str(local_path(folder, f.local_path)), path=f.path) for f in task.files
    ]


def repo_sources(task: TaskConfig, config_path: Path) -> list[RepoSource]:
    """The task's repo; a task without `repos` ships its own repo as the working folder."""
    folder = config_path.resolve().parent
    return [
        RepoSource(
            local=str(local_path(folder, r.local_path)) if r.local_path else None,
            url=r.url,
            branch=r.branch,
            hash=r.hash,
            path=r.path,
            if_exists=r.if_exists,
            single_branch=True if task.single_branch is None else task.single_branch,
        )
        for r in task.repos
    ]


def _duration_flag(value: str | None) -> tuple[int | None] | None:
    if value is None:
        return None
    if value.strip() == "off":
        return (None,)
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise InputError(f"--max-duration: {exc}") from exc
    if seconds == 0:
        raise InputError(f"--max-duration: {ZERO_DURATION}")
    return (seconds,)


def _retry(task: TaskConfig, profile: Profile | None, overrides: Overrides) -> RetrySpec | None:
    if overrides.retry is False:
        return None
    base = task.retry if "retry" in task.model_fields_set else (profile.retry if profile else None)
    if overrides.retry is True and base is None:
        base = RetrySpec()
    if overrides.retry_duration is not None:
        try:
            duration = parse_duration(overrides.retry_duration)
        except ValueError as exc:
            raise InputError(f"--retry-duration: {exc}") from exc
        base = (base or RetrySpec()).model_copy(update={"duration": duration})
    return base


def requirements_for(config_path: str | Path | None, overrides: Overrides) -> Requirements:
    """What `iacrun offers` looks for: the task file's (with its profile) and the flags, flags
    winning; without a file, the flags alone on dstack's defaults. Nothing runs, so a variable
    the task takes from this shell may be unset here."""
    if config_path is not None:
        return build_run_spec(config_path, overrides, environ=_AnyEnvironment()).requirements
    return build_requirements(overrides)


def build_requirements(
    overrides: Overrides,
    resources: ResourcesSpec | None = None,
    fallback: Callable[[str], Any] | None = None,
) -> Requirements:
    """The flags over `resources` (default: dstack's) and over what `fallback(field)` gives for
    the policies (the task file, then its profile); on-demand unless something says otherwise."""

    def pick(field: str) -> Any:
        flag = getattr(overrides, field)
        return flag if flag is not None or fallback is None else fallback(field)

    return Requirements(
        resources=apply_resource_flags(resources or ResourcesSpec(), overrides),
        spot_policy=pick("spot_policy") or "on-demand",
        max_price=pick("max_price"),
        backends=pick("backends"),
        regions=pick("regions"),
        instance_types=pick("instance_types"),
    )


def apply_resource_flags(spec: ResourcesSpec, o: Overrides) -> ResourcesSpec:
    """`--gpu`, `--cpu`, `--memory` and `--disk` over `spec`: the one parser of these flags."""
    update: dict[str, object] = {}
    flag = ""
    try:
        if o.gpu is not None:
            flag = "--gpu"
            update["gpu"] = GPUSpec.model_validate(o.gpu)
        if o.cpu is not None:
            flag = "--cpu"
            update["cpu"] = CPUSpec.model_validate(o.cpu)
        if o.memory is not None:
            flag = "--memory"
            update["memory"] = parse_range(o.memory, size=True, what="memory")
        if o.disk is not None:
            flag = "--disk"
            update["disk"] = parse_range(o.disk, size=True, what="disk")
    except ValueError as exc:
        raise InputError(f"resources flag {flag}: {_first_line(exc)}") from exc
    if not update:
        return spec
    data = spec.model_dump(exclude_unset=True)
    data.update({k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in update.items()})
    return ResourcesSpec.model_validate(data)


class _AnyEnvironment(dict[str, str]):
    """An environment in which every variable is set (to "")."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return ""


def _first_line(exc: Exception) -> str:
    text = str(exc)
    if "Value error, " in text:
        text = text.split("Value error, ", 1)[1]
    return text.split("[type=")[0].strip().splitlines()[0]


def interpolate_commands(commands: Sequence[str], args: Sequence[str], file: str) -> list[str]:
    """Each `${{ run.args }}` becomes a reference to the job's positional parameters (the
    runner passes `args` as those; see models/runargs.py), never the arguments' text; other
    expressions are errors."""
    quoted = shlex.join(args)
    if args and not any(ARGS_RE.search(command) for command in commands):
        raise InputError(
            f"{file}: {quoted} after the task file would go to the task, but its commands do "
            "not use ${{ run.args }}; iacrun's options go before the file: "
            "iacrun up [OPTIONS] FILE [ARGS]..."
        )
    out = []
    for command in commands:
        for match in _ANY_EXPR_RE.finditer(command):
            if not ARGS_RE.fullmatch(match.group(0)):
                raise ConfigError(
                    f"unknown expression ${{{{ {match.group(1)} }}}}; only ${{{{ run.args }}}} "
                    "is supported",
                    file=file,
                    field="commands",
                )
        out.append(substitute_args(command))
    return out


def resolve_env(
    task_env: Mapping[str, str | None],
    flags: Sequence[str],
    environ: Mapping[str, str],
    file: str,
) -> dict[str, str]:
    """Task env, then `-e K=V` flags; a bare `K` takes its value from this shell's environment."""
    merged: dict[str, str | None] = dict(task_env)
    for flag in flags:
        key, sep, text = flag.partition("=")
        if not _valid_env_name(key):
            raise InputError(
                f"-e {flag}: {key!r} is not a valid variable name; write -e NAME=VALUE"
            )
        merged[key] = text if sep else None
    out: dict[str, str] = {}
    for key, value in merged.items():
        if not _valid_env_name(key):
            raise ConfigError(f"{key!r} is not a valid variable name", file=file, field="env")
        if value is not None:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
        else:
            raise InputError(
                f"env {key} has no value: export {key} in this shell or pass -e {key}=VALUE"
            )
    return out


def _valid_env_name(key: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) is not None


def merge_ports(task_ports: Sequence[PortMapping], flags: Sequence[str]) -> list[PortMapping]:
    """`--port LOCAL:TASK` changes the local port a task port is reachable on. The task port must
    be one of the task's `ports:`, and no local port may serve two task ports; both are refused
    here, before anything is created (`up`, `up --dry-run` and `attach --port` all come here)."""
    ports = {p.container_port: p for p in task_ports}
    listens = list(ports)
    typed: dict[int, str] = {}  # task port → the flag that moved it
    for flag in flags:
        shown = f"--port {flag.strip()}"
        try:
            mapping = PortMapping.parse(flag)
        except ValueError as exc:
            raise InputError(f"{shown}: {exc}") from exc
        if mapping.container_port not in ports:
            raise InputError(_not_a_task_port(shown, mapping, listens))
        ports[mapping.container_port] = mapping
        typed[mapping.container_port] = shown
    merged = list(ports.values())
    twice = repeated_local_port(merged)
    if twice is not None:
        first, second = twice
        flag = typed.get(second.container_port) or typed[first.container_port]
        raise InputError(f"{flag}: {local_port_twice(first, second)}")
    return merged


def _not_a_task_port(typed: str, mapping: PortMapping, listens: Sequence[int]) -> str:
    task = mapping.container_port
    if not listens:
        return f"{typed}: the task lists no ports; add ports: [{task}] to the task file"
    local = (
        "a free local port" if mapping.local_port is None else f"local port {mapping.local_port}"
    )
    ports = ", ".join(str(p) for p in listens)
    text = (
        f"{typed} forwards {local} to task port {task}, "
        f"but the task listens on {ports} (ports: [{ports}])"
    )
    if mapping.local_port in listens:
        return f"{text}; did you mean --port {task}:{mapping.local_port}?"
    return f"{text}; add {task} to its ports or forward one of those"

"""The stack engine: the one module that drives Pulumi, through its Automation API.

Every cloud run is an ephemeral Pulumi stack in project ``iacrun``, named after the run::

    engine = StackEngine(home)                      # home: iacrun_home(), a temp folder in tests
    outputs = engine.up("brave-otter-1", program, {"aws:region": "us-east-1"},
                        secrets={"iacrun:ssh_host_key": key}, on_progress=show, timeout=1800)
    engine.outputs("brave-otter-1")                 # the same plain values again
    engine.state("brave-otter-1")                   # resources (type, name, id), masked outputs
    engine.export("brave-otter-1")                  # the deployment, secrets left encrypted
    engine.list_stacks()                            # every iacrun stack in the state backend
    engine.destroy("brave-otter-1")                 # destroy, then remove; idempotent

Interface (every method blocks; any number of threads may use one engine on different stacks):

    up(stack, program, config=None, *, secrets=None, on_progress=None, timeout=1800) -> dict
        Create or select the stack, set its config (``secrets`` as Pulumi secrets), run the update
        and return the outputs as plain values. On failure the stack is destroyed and removed
        before the typed error is raised (engine_errors.translate: CapacityError, QuotaError,
        CredentialsError, ToolMissingError, BackendError; StackTimeoutError when the update ran
        past `timeout`: it is sent SIGINT, then killed after `cancel_grace` seconds).
    preview(stack, program, config=None) -> list[(type, name)]   what `up` would create
    destroy(stack, program=None, *, on_progress=None, timeout=1800, force=False, lookups=None)
        -> DestroyResult
        Settle the pending operations an interrupted update left (stacks/pending.py: a pending
        create is adopted and destroyed, found gone, or named as a `Leak`), destroy every resource,
        remove the stack and its workspace folder. A stack with leaks is kept (with its pending
        creates and `unresolved.json` naming them), so `list_stacks` and the next destroy see it.
        A lock left by a dead `pulumi` on this host is cancelled;
        `force=True` cancels any lock (the caller vouches no live process updates the stack; needed
        for Pulumi Cloud, whose locks do not say who holds them). A missing stack is no error.
        Past `timeout`: StackTimeoutError, the stack kept (retry later: the lock is then stale).
    outputs(stack) -> dict     export(stack) -> dict     state(stack) -> StackState
    list_stacks() -> list[StackSummary]      (with each stack's last update result and leaks)
    stack_names() -> list[str]               (one quick CLI call)

Interruptions: Ctrl-C during `up` is passed to `pulumi` once (it runs in a session of its own):
it cancels, finishing the operations in flight so that a VM being created ends up in the state,
and is killed only after `cancel_grace`; KeyboardInterrupt then propagates and the stack stays
for `destroy` (`iacrun down`). If this process dies, `pulumi` fails the update by itself. When
`pulumi` dies (killed, say), the plugins it started (IACRUN_PULUMI_CALL in their environment)
are killed before anything reads the state: an orphaned provider must not finish a create that
nobody records. When the caller died with its `pulumi` (a supervisor killed midway through a
destroy), the next `up` or `destroy` of an engine of that PULUMI_HOME kills what that call left.

Where things live (home = ``~/.iacrun`` unless injected):

    <home>/stacks/<stack>/     the stack's workspace (Pulumi.yaml, Pulumi.<stack>.yaml with the
                               secrets salt, engine.log); kept until the stack is removed
    <home>/state/              the default state backend (``file://``); `backend_url` may name any
                               Pulumi backend instead: s3://, azblob://, gs://, https://api.pulumi.com
    <home>/pulumi-passphrase   the passphrase of the stacks' secrets, generated once, 0600
    <home>/pulumi/             PULUMI_HOME: plugins and credentials, apart from ~/.pulumi

Environment given to the `pulumi` CLI (``env`` entries win): PULUMI_BACKEND_URL, PULUMI_HOME,
PULUMI_CONFIG_PASSPHRASE_FILE (an inherited PULUMI_CONFIG_PASSPHRASE is dropped),
PULUMI_SKIP_UPDATE_CHECK=true, PULUMI_PYTHON_CMD (this interpreter, for Python dynamic providers).
Pulumi Cloud needs PULUMI_ACCESS_TOKEN, since PULUMI_HOME is not ~/.pulumi.

Without `pulumi` on PATH the constructor raises ToolMissingError with one line on installing it.
"""

from __future__ import annotations

import json
import os
import re
import secrets as secrets_module
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.errors import (
    BackendError,
    IacrunError,
    StackLockedError,
    StackOwnerError,
    StackTimeoutError,
    ToolMissingError,
)
from iacrun.stacks.errors import translate
from iacrun.stacks.owner import OWNER_KEY, Owner
from iacrun.stacks.pending import Leak, Lookup, read_ledger, settle, write_ledger
from iacrun.stacks.progress import (
    EventRecord,
    Progress,
    ProgressTracker,
    counts,
    urn_name,
)
from iacrun.stacks.toolchain import (
    Plugin,
    find_pulumi,
    installed_cli,
    missing_cli_hint,
    parse_plugin_list,
    sdk_version,
)

if TYPE_CHECKING:
    from pulumi.automation import CommandResult, LocalWorkspace, Stack

PROJECT = "iacrun"
CALL_MARK = "IACRUN_PULUMI_CALL"  # in the environment of one `pulumi` call and its plugins
SECRET_MASK = "[secret]"
_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_LOCK_OWNER = re.compile(r"created by (?P<user>[^@\s]+)@(?P<host>\S+) \(pid (?P<pid>\d+)\)")
_DATETIME = "%Y-%m-%dT%H:%M:%S.%fZ"

OnProgress = Callable[[Progress], None]
Program = Callable[[], None]


def pulumi_path(home: Path | None = None) -> str | None:
    """The `pulumi` CLI to use, if any (cheap: no process is started). See stacks/toolchain."""
    return find_pulumi(home)


def install_cli(home: Path) -> str:
    """Download and install the `pulumi` CLI matching the SDK under `home` (needs internet).

    Returns the path of the installed binary; a failure is one ToolMissingError line."""
    from pulumi.automation import PulumiCommand
    from semver import VersionInfo

    target = installed_cli(home)
    try:
        PulumiCommand.install(
            root=str(target.parent.parent), version=VersionInfo.parse(sdk_version())
        )
    except Exception as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ToolMissingError(
            f"could not install pulumi {sdk_version()} into {target.parent.parent}: {reason}; "
            "install it yourself: https://www.pulumi.com/docs/install/"
        ) from exc
    return str(target)


def default_state_dir(home: Path) -> Path:
    """The folder of the default state backend (`file://`), used when no `backend_url` is set;
    it exists once a stack engine has been made on it."""
    return home / "state"


@dataclass(frozen=True)
class StackSummary:
    """A stack in the state backend."""

    name: str
    resource_count: int | None
    last_update: datetime | None
    result: str | None
    update_in_progress: bool
    url: str | None
    #: the `iacrun:owner` the last update recorded (`stacks/owner.py`); None when none did
    owner: str | None = None
    unresolved: list[Leak] = field(default_factory=list)  # pending creates it could not settle


@dataclass(frozen=True)
class StackResource:
    type: str
    name: str
    id: str | None
    urn: str


@dataclass(frozen=True)
class UpdateInfo:
    """The last operation on a stack: `update` or `destroy`, and how it ended."""

    kind: str
    result: str
    started: datetime | None
    ended: datetime | None
    resource_changes: dict[str, int]
    #: the `iacrun:owner` in the stack's config at that operation (None: not recorded)
    owner: str | None = None


@dataclass(frozen=True)
class StackState:
    name: str
    resources: list[StackResource]
    outputs: dict[str, Any]
    last_update: UpdateInfo | None
    pending_operations: list[StackResource] = field(default_factory=list)


@dataclass(frozen=True)
class DestroyResult:
    """What `destroy` did with the pending creates of an interrupted update: `adopted` were put
    into the state and destroyed, `dropped` were looked up and are not in the cloud, `leaks` could
    not be looked up (the stack is then kept: see stacks/pending.py)."""

    existed: bool
    deleted: int = 0
    dropped: list[StackResource] = field(default_factory=list)
    cancelled_lock: bool = False
    adopted: list[str] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)

    def leak_text(self, stack_name: str) -> str:
        return "; ".join(leak.line(stack_name) for leak in self.leaks)


def _noop_program() -> None:
    """The program given to `destroy`: it is not run, but the engine wants an inline program."""


# ----------------------------------------------------------------------------- the CLI runner


@dataclass
class _Deadline:
    at: float
    grace: float
    interrupted_at: float | None = None

    @property
    def expired(self) -> bool:
        return self.interrupted_at is not None


def _command_class() -> type[Any]:
    from pulumi.automation import CommandResult, PulumiCommand
    from pulumi.automation.errors import create_command_error

    class Command(PulumiCommand):
        """`pulumi` runs with a deadline: SIGINT at the deadline, SIGKILL after a grace period.

        It runs in a session of its own, so the terminal's Ctrl-C reaches only us: we pass one
        SIGINT on (a second would make `pulumi` quit at once, losing track of what it was
        creating), give it the grace period, then kill it, and re-raise KeyboardInterrupt. A
        second Ctrl-C stops the waiting; `pulumi` then finishes cancelling on its own. If this
        process dies, `pulumi` sees its program's host gone and fails the update cleanly.
        """

        def __init__(self, command: str, version: Any) -> None:  # no `pulumi version` per use
            self.command = command
            self.version = version
            self.local = threading.local()

        def run(
            self,
            args: list[str],
            cwd: str,
            additional_env: Mapping[str, str],
            on_output: Callable[[str], Any] | None = None,
            on_error: Callable[[str], Any] | None = None,
        ) -> CommandResult:
            if "--non-interactive" not in args:
                args.insert(0, "--non-interactive")
            marker = secrets_module.token_hex(8)
            env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
            env[CALL_MARK] = marker  # inherited by its plugins: see `_reap_plugins`
            if "PULUMI_CONFIG_PASSPHRASE_FILE" in additional_env and (
                "PULUMI_CONFIG_PASSPHRASE" not in additional_env
            ):
                env.pop("PULUMI_CONFIG_PASSPHRASE", None)
            env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env.get("PATH", "")])
            chunks: dict[str, list[str]] = {"out": [], "err": []}

            def consume(stream: Any, callback: Callable[[str], Any] | None, key: str) -> None:
                for line in iter(stream.readline, ""):
                    line = line.rstrip()
                    if callback:
                        callback(line)
                    chunks[key].append(line)
                stream.close()

            deadline: _Deadline | None = getattr(self.local, "deadline", None)
            with subprocess.Popen(
                [self.command, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                encoding="utf-8",
                start_new_session=True,  # Ctrl-C reaches it once, from us: see `_stop`
            ) as process:
                readers = [
                    threading.Thread(target=consume, args=(process.stdout, on_output, "out")),
                    threading.Thread(target=consume, args=(process.stderr, on_error, "err")),
                ]
                for reader in readers:
                    reader.daemon = True
                    reader.start()
                try:
                    _wait(process, deadline)
                except KeyboardInterrupt:
                    _stop(process, grace=deadline.grace if deadline else 30.0)
                    raise
                for reader in readers:
                    reader.join()
            if process.returncode != 0:
                _reap_plugins(marker)
            result = CommandResult(
                stdout="\n".join(chunks["out"]),
                stderr="\n".join(chunks["err"]),
                code=process.returncode,
            )
            if process.returncode != 0:
                raise create_command_error(result)
            return result

    return Command


def _wait(process: subprocess.Popen[str], deadline: _Deadline | None) -> None:
    while True:
        try:
            process.wait(timeout=0.2)
            return
        except subprocess.TimeoutExpired:
            pass
        if deadline is None:
            continue
        now = time.monotonic()
        if deadline.interrupted_at is None and now >= deadline.at:
            deadline.interrupted_at = now
            process.send_signal(signal.SIGINT)  # the engine cancels, finishing what is in flight
        elif (
            deadline.interrupted_at is not None and now >= deadline.interrupted_at + deadline.grace
        ):
            _kill_tree(process)


def _stop(process: subprocess.Popen[str], grace: float) -> None:
    """After Ctrl-C: ask `pulumi` to cancel (it finishes the operations in flight, so a VM being
    created ends up in the state, and saves it); kill it only after `grace` seconds."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _kill_tree(process)
        process.wait()


def _kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL `pulumi` and its plugins: each plugin has a process group of its own, and an
    orphaned plugin (a Python dynamic provider, say) would otherwise wait forever."""
    for pid in [*_descendants(process.pid), process.pid]:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _reap_plugins(marker: str) -> None:
    """SIGKILL what is left of a failed `pulumi` call: its plugins (a dynamic provider midway
    through a create, say) outlive a killed `pulumi` in process groups of their own, orphaned."""
    needle = f"{CALL_MARK}={marker}".encode()
    with suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)


def _reap_orphans(pulumi_home: str) -> list[int]:
    """SIGKILL the plugins of `pulumi` calls of this engine (its PULUMI_HOME) whose `pulumi` is
    gone, or whose caller is gone (its `pulumi` handed to init: nobody reads its answer, and its
    plugins would outlive it); the pids killed. A call's processes carry its mark (see
    `Command.run`): when the process that started a call died too (a supervisor killed with its
    `pulumi` midway through a destroy, say), nobody was left to run `_reap_plugins`, and its
    dynamic provider would wait forever."""
    home = f"PULUMI_HOME={pulumi_home}".encode()
    mark = f"{CALL_MARK}=".encode()
    calls: dict[bytes, list[int]] = {}
    live: set[bytes] = set()
    with suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                state, ppid = stat[0], stat[1]
            except (OSError, IndexError):
                continue
            marks = [v for v in environ if v.startswith(mark)]
            if home not in environ or not marks or state == "Z":
                continue
            calls.setdefault(marks[0], []).append(int(entry))
            if comm == "pulumi" and ppid != "1":  # the CLI of the call, its caller alive
                live.add(marks[0])
    killed = [pid for marker, pids in calls.items() if marker not in live for pid in pids]
    for pid in killed:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return killed


def _descendants(root: int) -> list[int]:
    """Every process below `root` (Linux /proc; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    with suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


# ----------------------------------------------------------------------------- the engine


class StackEngine:
    """Ephemeral stacks of project `iacrun` in one state backend. See the module docstring."""

    def __init__(
        self,
        home: Path,
        backend_url: str | None = None,
        *,
        project: str = PROJECT,
        env: Mapping[str, str] | None = None,
        cancel_grace: float = 60.0,
    ) -> None:
        found = pulumi_path(Path(home))
        if found is None:
            raise ToolMissingError(missing_cli_hint(Path(home)))
        self.pulumi = found
        self.home = Path(home)
        self.project = project
        self.cancel_grace = cancel_grace
        self.backend_url = self._backend_url(backend_url)
        self.passphrase_file = self._passphrase_file()
        self.env: dict[str, str] = {
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_HOME": str(self.home / "pulumi"),
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(self.passphrase_file),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_PYTHON_CMD": sys.executable,
            **(env or {}),
        }
        Path(self.env["PULUMI_HOME"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._command_lock = threading.Lock()
        self._command: Any = None

    # -- configuration -------------------------------------------------------------------------

    def _backend_url(self, url: str | None) -> str:
        if not url:
            state = default_state_dir(self.home)
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
            return state.resolve().as_uri()
        if url.startswith("file://"):
            path = Path(os.path.expanduser(url.removeprefix("file://")))
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            return path.resolve().as_uri()
        return url

    def _passphrase_file(self) -> Path:
        """The secrets passphrase, generated once (0600); concurrent first uses agree on one."""
        path = self.home / "pulumi-passphrase"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".pulumi-passphrase.{os.getpid()}.{threading.get_ident()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets_module.token_urlsafe(32) + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return path

    def workspace_dir(self, stack_name: str) -> Path:
        return self.home / "stacks" / check_stack_name(stack_name)

    def _cmd(self) -> Any:
        with self._command_lock:
            if self._command is None:
                from pulumi.automation import InvalidVersionError, PulumiCommand

                try:
                    probe = PulumiCommand(root=_cli_root(self.pulumi))  # checks its version once
                except (InvalidVersionError, OSError, subprocess.CalledProcessError) as exc:
                    raise ToolMissingError(
                        f"the `pulumi` CLI at {self.pulumi} cannot be used ({exc}); "
                        f"{missing_cli_hint(self.home).split('; ', 1)[1]}"
                    ) from exc
                self._command = _command_class()(self.pulumi, probe.version)
            return self._command

    def _workspace(self, stack_name: str | None) -> LocalWorkspace:
        from pulumi.automation import LocalWorkspace, ProjectSettings

        folder = self.workspace_dir(stack_name) if stack_name else self.home / "stacks" / ".project"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return LocalWorkspace(
            work_dir=str(folder),
            env_vars=self.env,
            secrets_provider="passphrase",
            project_settings=ProjectSettings(name=self.project, runtime="python"),
            pulumi_command=self._cmd(),
        )

    def plugins(self) -> list[Plugin]:
        """The resource plugins installed in this engine's PULUMI_HOME."""
        return parse_plugin_list(self._cli(["plugin", "ls", "--json"]).stdout)

    def install_plugins(
        self,
        plugins: list[Plugin],
        *,
        server: str | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Install `plugins` (exact versions) into PULUMI_HOME, from `server` when given (a
        mirror) else from Pulumi's; a failure is one ToolMissingError line naming the plugin."""
        from pulumi.automation import CommandError

        for plugin in plugins:
            if on_progress is not None:
                on_progress(f"installing the pulumi {plugin} plugin (once per iacrun home)")
            args = ["plugin", "install", "resource", plugin.name, f"v{plugin.version}"]
            if server:
                args += ["--server", server]
            try:
                self._cli(args)
            except CommandError as exc:
                lines = [line for line in str(exc).splitlines() if "error:" in line]
                reason = lines[-1].split("error:", 1)[1].strip() if lines else "see the log"
                raise ToolMissingError(
                    f"the pulumi {plugin} plugin could not be installed ({reason}); run "
                    "`iacrun doctor --fix` where the internet is reachable, or set "
                    "state.plugin_server in config.yml to a mirror"
                ) from exc

    def _cli(self, args: list[str], stack_name: str | None = None) -> CommandResult:
        """Run one `pulumi` command in the stack's workspace when there is one, else in the
        project's (reading a stack made elsewhere leaves no folder behind)."""
        folder = self.workspace_dir(stack_name) if stack_name else None
        ws = self._workspace(stack_name if folder is not None and folder.exists() else None)
        result: CommandResult = self._cmd().run(list(args), ws.work_dir, self.env)
        return result

    @contextmanager
    def _deadline(self, timeout: float) -> Iterator[_Deadline]:
        local = self._cmd().local
        previous = getattr(local, "deadline", None)
        local.deadline = _Deadline(at=time.monotonic() + timeout, grace=self.cancel_grace)
        try:
            yield local.deadline
        finally:
            local.deadline = previous

    # -- stacks -------------------------------------------------------------------------------

    def _select(self, stack_name: str) -> Stack | None:
        from pulumi.automation import Stack, StackNotFoundError

        try:
            return Stack.select(stack_name, self._workspace(stack_name))
        except StackNotFoundError:
            return None

    def _forget(self, stack_name: str) -> None:
        shutil.rmtree(self.workspace_dir(stack_name), ignore_errors=True)

    def up(
        self,
        stack_name: str,
        program: Program,
        config: Mapping[str, str] | None = None,
        *,
        secrets: Mapping[str, str] | None = None,
        on_progress: OnProgress | None = None,
        timeout: float = 1800,
    ) -> dict[str, Any]:
        """Create or update the stack; its outputs as plain values. See the module docstring."""
        from pulumi.automation import CommandError, ConfigValue

        tracker = ProgressTracker("up")
        stack: Stack | None = None
        try:
            with self._deadline(timeout) as deadline:
                try:
                    stack = self._create_or_select_own(stack_name, (config or {}).get(OWNER_KEY))
                    values = {k: ConfigValue(value=v) for k, v in (config or {}).items()}
                    values |= {
                        k: ConfigValue(value=v, secret=True) for k, v in (secrets or {}).items()
                    }
                    if values:
                        stack.set_all_config(values)
                    counted = _counting(program, tracker)
                    with self._reporting(tracker, on_progress) as on_event:
                        result = self._unlocked(
                            stack_name,
                            lambda: stack.up(
                                program=counted, on_event=on_event, on_output=self._log(stack_name)
                            ),
                            force=False,
                        )[0]
                    return {key: value.value for key, value in result.outputs.items()}
                except CommandError as exc:
                    if deadline.expired:
                        raise StackTimeoutError(
                            f"stack {stack_name}: the update ran past {timeout:.0f}s and was "
                            "cancelled"
                        ) from exc
                    raise translate([*tracker.errors, exc], action="stack update") from exc
        except StackLockedError:
            raise  # another live update owns the stack: leave it alone
        except IacrunError as error:
            # Ctrl-C is not caught: the interrupted stack stays for `iacrun down` to clean up
            if stack is not None:
                self._cleanup_after_failure(stack_name, error, timeout)
            raise

    def _create_or_select_own(self, stack_name: str, owner: str | None) -> Stack:
        """The stack `up` works on: a new one, or the existing one when no other owner recorded
        it (an update of ours that stopped midway). With no `owner` given, no check is made."""
        from pulumi.automation import Stack, StackAlreadyExistsError

        workspace = self._workspace(stack_name)
        try:
            return Stack.create(stack_name, workspace)
        except StackAlreadyExistsError:
            pass
        ours = Owner.parse(owner)
        recorded = Owner.parse(self.owner(stack_name))
        if ours is not None and recorded is not None and recorded.home != ours.home:
            self._forget(stack_name)  # the folder this look made in our home
            raise StackOwnerError(
                f"stack {stack_name} belongs to {recorded.describe()}, not to this iacrun home "
                f"(home {ours.home}); it is left alone"
            )
        return Stack.select(stack_name, workspace)

    def owner(self, stack_name: str) -> str | None:
        """The `iacrun:owner` the stack's last update recorded (one quick CLI call); None when
        none did (a stack made by an older iacrun, or whose first update has not ended)."""
        from pulumi.automation import CommandError

        try:
            last = self._last_update(stack_name)
        except CommandError as exc:
            raise translate(exc, action=f"reading stack {stack_name}") from exc
        return last.owner if last else None

    def _cleanup_after_failure(self, stack_name: str, error: BaseException, timeout: float) -> None:
        problem: IacrunError | None = None
        for _ in range(2):
            try:
                result = self.destroy(stack_name, timeout=timeout)
            except IacrunError as exc:
                problem = exc
                continue
            if result.leaks:  # named in the error, hence in the run's reason and events
                raise BackendError(f"{error}; {result.leak_text(stack_name)}") from error
            return
        raise BackendError(
            f"{error}; destroying the failed stack {stack_name} failed too ({problem}); "
            f"run `iacrun down {stack_name}` to retry"
        ) from error

    def preview(
        self, stack_name: str, program: Program, config: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """(type, name) of each resource `up` would create; a stack made for this is removed."""
        from pulumi.automation import CommandError, ConfigValue, Stack

        existed = self._select(stack_name) is not None
        stack = Stack.create_or_select(stack_name, self._workspace(stack_name))
        creates: list[tuple[str, str]] = []

        def on_event(event: Any) -> None:
            record = EventRecord.from_engine_event(event)
            if record.kind == "pre" and record.op == "create" and counts(record.type, record.urn):
                creates.append((record.type, record.name))

        try:
            if config:
                stack.set_all_config({k: ConfigValue(value=v) for k, v in config.items()})
            stack.preview(program=program, on_event=on_event)
        except CommandError as exc:
            raise translate(exc, action="stack preview") from exc
        finally:
            if not existed:
                with suppress(CommandError):
                    self._cli(["stack", "rm", "--yes", "--force", stack_name], stack_name)
                self._forget(stack_name)
        return creates

    def destroy(
        self,
        stack_name: str,
        program: Program | None = None,
        *,
        on_progress: OnProgress | None = None,
        timeout: float = 1800,
        force: bool = False,
        lookups: Mapping[str, Lookup] | None = None,
    ) -> DestroyResult:
        """Destroy the stack's resources and remove it. Idempotent. See the module docstring."""
        from pulumi.automation import CommandError

        tracker = ProgressTracker("destroy")
        deadline: _Deadline | None = None
        try:
            stack = self._select(stack_name)
            if stack is None:
                self._forget(stack_name)
                return DestroyResult(existed=False)
            settled: list[Any] = []

            def destroy() -> Any:
                # pending operations first (under the lock's recovery: importing needs it free)
                settled[:] = [self._settle_pending(stack_name, lookups)]
                resources, _ = _resources(settled[0].deployment)
                tracker.planned = sum(counts(r.type, r.urn) for r in resources)
                return stack.destroy(
                    program=program or _noop_program,
                    on_event=on_event,
                    on_output=self._log(stack_name),
                )

            with self._deadline(timeout) as deadline:
                with self._reporting(tracker, on_progress) as on_event:
                    _, cancelled = self._unlocked(stack_name, destroy, force=force)
                settlement = settled[0]
                dropped = [_resource(r) for r in settlement.dropped]
                write_ledger(self.workspace_dir(stack_name), settlement.leaks)
                if settlement.leaks:  # kept, pending creates and all, for `stacks` and `down`
                    return DestroyResult(
                        existed=True,
                        deleted=tracker.done,
                        dropped=dropped,
                        cancelled_lock=cancelled,
                        adopted=settlement.adopted,
                        leaks=settlement.leaks,
                    )
                self._cli(["stack", "rm", "--yes", stack_name], stack_name)
        except CommandError as exc:
            if deadline is not None and deadline.expired:
                raise StackTimeoutError(
                    f"stack {stack_name}: the destroy ran past {timeout:.0f}s and was cancelled; "
                    f"run `iacrun down` again"
                ) from exc
            raise translate(
                [*tracker.errors, exc], action=f"destroying stack {stack_name}"
            ) from exc
        self._forget(stack_name)
        return DestroyResult(
            existed=True,
            deleted=tracker.done,
            dropped=dropped,
            cancelled_lock=cancelled,
            adopted=settlement.adopted,
        )

    # -- recovery from interrupted updates --------------------------------------------------------

    def _unlocked(
        self, stack_name: str, operation: Callable[[], Any], *, force: bool
    ) -> tuple[Any, bool]:
        """Run `operation`; if a stale lock (with `force`: any lock) stops it, cancel and rerun.
        First the plugins a dead `pulumi` call of this engine left are reaped."""
        from pulumi.automation.errors import ConcurrentUpdateError

        _reap_orphans(self.env["PULUMI_HOME"])

        try:
            return operation(), False
        except ConcurrentUpdateError as exc:
            text = f"{exc}"
            if not force and not lock_is_stale(text):
                owners = ", ".join(m.group(0) for m in _LOCK_OWNER.finditer(text)) or "unknown"
                raise StackLockedError(
                    f"stack {stack_name} is being updated by another process ({owners}); wait for "
                    "it, or stop that process and run `iacrun down` again"
                ) from exc
        self._cli(["cancel", "--yes", "--stack", stack_name], stack_name)
        return operation(), True

    def _settle_pending(
        self, stack_name: str, lookups: Mapping[str, Lookup] | None
    ) -> Any:  # a stacks.pending.Settlement
        """Settle the pending operations an interrupted update left (stacks/pending.py) and put
        the settled deployment back: adopted creates are destroyed with the rest."""
        recorded = read_ledger(self.workspace_dir(stack_name))
        settlement = settle(self._export(stack_name), stack_name, lookups, recorded)
        if settlement.changed:
            from pulumi.automation import Deployment

            body = settlement.deployment
            self._workspace(stack_name).import_stack(
                stack_name,
                Deployment(version=body.get("version"), deployment=body["deployment"]),
            )
        return settlement

    # -- reading ------------------------------------------------------------------------------

    def _export(self, stack_name: str) -> dict[str, Any]:
        result = self._cli(["stack", "export", "--stack", stack_name], stack_name)
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def export(self, stack_name: str) -> dict[str, Any]:
        """The stack's deployment (`pulumi stack export`), its secrets still encrypted."""
        from pulumi.automation import CommandError

        try:
            return self._export(stack_name)
        except CommandError as exc:
            raise translate(exc, action=f"exporting stack {stack_name}") from exc

    def outputs(self, stack_name: str) -> dict[str, Any]:
        """The stack's outputs as plain values, secrets included."""
        return self._outputs(stack_name, show_secrets=True)

    def _outputs(self, stack_name: str, *, show_secrets: bool) -> dict[str, Any]:
        from pulumi.automation import CommandError

        args = ["stack", "output", "--json", "--stack", stack_name]
        if show_secrets:
            args.insert(3, "--show-secrets")
        try:
            data: dict[str, Any] = json.loads(self._cli(args, stack_name).stdout or "{}")
        except CommandError as exc:
            raise translate(exc, action=f"reading outputs of {stack_name}") from exc
        return data

    def _last_update(self, stack_name: str) -> UpdateInfo | None:
        args = [
            "stack",
            "history",
            "--json",
            "--page-size",
            "1",
            "--page",
            "1",
            "--stack",
            stack_name,
        ]
        history = json.loads(self._cli(args, stack_name).stdout or "[]")
        if not history:
            return None
        last = history[0]
        return UpdateInfo(
            kind=str(last.get("kind", "")),
            result=str(last.get("result", "")),
            started=_parse_time(last.get("startTime")),
            ended=_parse_time(last.get("endTime")),
            resource_changes={
                str(k): int(v) for k, v in (last.get("resourceChanges") or {}).items()
            },
            owner=_recorded_owner(last.get("config")),
        )

    def state(self, stack_name: str) -> StackState:
        """Resources (type, name, id), outputs with secrets masked, and the last update's result."""
        from pulumi.automation import CommandError

        try:
            resources, pending = _resources(self._export(stack_name))
            outputs = self._outputs(stack_name, show_secrets=False)
            last = self._last_update(stack_name)
        except CommandError as exc:
            raise translate(exc, action=f"reading stack {stack_name}") from exc
        return StackState(
            name=stack_name,
            resources=resources,
            outputs=outputs,
            last_update=last,
            pending_operations=pending,
        )

    def stack_names(self) -> list[str]:
        """The names of the project's stacks in the state backend (one quick CLI call)."""
        return [s["name"] for s in self._listed()]

    def _listed(self) -> list[dict[str, Any]]:
        from pulumi.automation import CommandError

        try:
            listed: list[dict[str, Any]] = json.loads(
                self._cli(["stack", "ls", "--json"]).stdout or "[]"
            )
        except CommandError as exc:
            raise translate(exc, action="listing stacks") from exc
        for item in listed:
            item["name"] = str(item["name"]).rsplit("/", 1)[-1]
        return listed

    def list_stacks(self) -> list[StackSummary]:
        """Every stack of the project in the state backend, with its last update's result."""
        from concurrent.futures import ThreadPoolExecutor

        from pulumi.automation import CommandError

        listed = self._listed()
        names = [item["name"] for item in listed]

        def last(name: str) -> UpdateInfo | None:
            try:
                return self._last_update(name)
            except CommandError:
                return None

        with ThreadPoolExecutor(max_workers=4) as pool:
            updates = list(pool.map(last, names))
        summaries = []
        for item, name, update in zip(listed, names, updates, strict=True):
            summaries.append(
                StackSummary(
                    name=name,
                    resource_count=item.get("resourceCount"),
                    last_update=_parse_time(item.get("lastUpdate")),
                    result=update.result if update else None,
                    update_in_progress=bool(item.get("updateInProgress", False)),
                    url=item.get("url"),
                    owner=update.owner if update else None,
                    unresolved=read_ledger(self.workspace_dir(name)),
                )
            )
        return summaries

    # -- progress and logs --------------------------------------------------------------------

    @contextmanager
    def _reporting(
        self, tracker: ProgressTracker, on_progress: OnProgress | None
    ) -> Iterator[Callable[[Any], None]]:
        """An `on_event` for the Automation API, and a ticker refreshing the elapsed time."""
        lock = threading.Lock()
        stop = threading.Event()

        def emit(progress: Progress | None) -> None:
            if progress is not None and on_progress is not None:
                with lock:
                    on_progress(progress)

        def on_event(event: Any) -> None:
            emit(tracker.feed(EventRecord.from_engine_event(event)))

        def tick() -> None:
            while not stop.wait(1.0):
                if not tracker.finished:
                    emit(tracker.tick())

        ticker = threading.Thread(target=tick, daemon=True)
        if on_progress is not None:
            ticker.start()
        try:
            yield on_event
        finally:
            stop.set()
            if ticker.is_alive():
                ticker.join()

    def _log(self, stack_name: str) -> Callable[[str], None]:
        path = self.workspace_dir(stack_name) / "engine.log"
        lock = threading.Lock()

        def write(line: str) -> None:
            with lock, open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

        return write


# ----------------------------------------------------------------------------- helpers


def _cli_root(binary: str) -> str | None:
    """The root PulumiCommand expects (ROOT/bin/pulumi), or None to look on PATH."""
    path = Path(binary)
    return str(path.parent.parent) if path.parent.name == "bin" else None


def check_stack_name(name: str) -> str:
    """A stack name is also a folder name: letters, digits, `-`, `_`, `.`; not starting with `.`."""
    if not _STACK_NAME.match(name):
        raise BackendError(f"{name!r} cannot name a stack (letters, digits, - _ .)")
    return name


def _counting(program: Program, tracker: ProgressTracker) -> Program:
    """The program, counting the resources it declares (a stack transformation sees each one)."""

    def counted() -> None:
        import pulumi

        def count(args: Any) -> None:
            tracker.declare(str(args.type_), str(args.name))

        pulumi.runtime.register_stack_transformation(count)
        program()

    return counted


def lock_is_stale(message: str) -> bool:
    """Whether every lock named in a diy backend's "stack is currently locked" message belongs to
    a `pulumi` process of this host that no longer runs."""
    owners = list(_LOCK_OWNER.finditer(message))
    if not owners:
        return False
    here = socket.gethostname()
    return all(m.group("host") == here and not _pulumi_alive(int(m.group("pid"))) for m in owners)


def _pulumi_alive(pid: int) -> bool:
    """A `pulumi` process that still runs; a zombie (killed, not yet reaped) holds nothing."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return comm.startswith("pulumi") and state != "Z"


def _resource(data: Mapping[str, Any]) -> StackResource:
    urn = str(data.get("urn", ""))
    return StackResource(
        type=str(data.get("type", "")), name=urn_name(urn), id=data.get("id") or None, urn=urn
    )


def _resources(deployment: Mapping[str, Any]) -> tuple[list[StackResource], list[StackResource]]:
    body = deployment.get("deployment") or {}
    resources = [_resource(r) for r in body.get("resources") or []]
    pending = [_resource(op.get("resource", {})) for op in body.get("pending_operations") or []]
    return resources, pending


def _recorded_owner(config: Any) -> str | None:
    """The `iacrun:owner` value in an update's config, as `pulumi stack history` shows it."""
    entry = config.get(OWNER_KEY) if isinstance(config, dict) else None
    value = entry.get("value") if isinstance(entry, dict) and not entry.get("secret") else None
    return str(value) if value else None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    for fmt in (_DATETIME, "%Y-%m-%dT%H:%M:%SZ"):
        with suppress(ValueError):
            return datetime.strptime(str(value), fmt).replace(tzinfo=UTC)
    with suppress(ValueError):
        return datetime.fromisoformat(str(value))
    return None

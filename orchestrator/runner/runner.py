"""The iacrun runner: one file, standard library only, the same on every host.

It runs a job described by `job.json` in a run folder and keeps the run's state in plain files
beside it, so that anything able to read a file (the CLI, an SSH session) can follow the run:

    job.json   the job: commands, env, python, max_duration, retry (written by iacrun, 0600)
    job.sh     the commands as one bash script (rendered by ``render_job_script``)
    log        stdout and stderr of every attempt, append-only
    status     one word: running, pending (waiting to retry), done, failed or terminated
    state.json status, reason, exit code, times and attempts, replaced atomically
    exit_code  the job's exit code once it ended
    pid        the runner's process id
    payload/   the task's `files` and local repo as shipped; placed, then removed (place_payload)
    git-user, git-password   credentials for cloning a repo URL (0600); removed after the clone
    pgid       the job's process group (its own session): reachable without the runner
    job_exit   the exit code the job's own shell wrote as it ended, even with the runner gone
    stop_request  why the job is being stopped (the latest stop's reason)
    stop_grace    the seconds a stop gives the job between SIGTERM and SIGKILL, when a stop
               asked for other than `stop_duration` (0: an abort, SIGKILL at once); only ever
               lowered, so an abort cuts a graceful stop's grace short and a later plain stop
               leaves an abort an abort

    python3 runner.py start RUN_DIR     start detached; returns once the runner is up
    python3 runner.py run RUN_DIR       run in the foreground (systemd, tests)
    python3 runner.py stop RUN_DIR [--reason TEXT] [--grace SECONDS]
    python3 runner.py state RUN_DIR     print state.json
    python3 runner.py settle RUN_DIR    print state.json, first settling it if the runner died

`stop --grace 0` is an abort (`iacrun stop -x`): SIGKILL to the job's whole process group (and
its container) with no SIGTERM first, so no trap of the job runs.

A runner that dies (killed, OOM) leaves the job running in its own process group: `stop` then
ends that group itself, and `settle` records how the job ended from `job_exit` once no process
of the group is left. A final status is never written while a process of the run is alive.

Kept compatible with Python 3.8 so it runs on any Linux a cloud image ships.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

#: the registry's final RunStatus values (this file cannot import iacrun; a test holds them equal)
FINAL_STATUSES = ("done", "failed", "terminated")
POLL_SECONDS = 0.02
#: the job's own shell writes its exit code to `job_exit` ($1: the shell, $2: job.sh, $3:
#: job_exit, then the task's arguments, passed on to job.sh); it outlives a SIGTERM to the
#: group (a trap, reset for the job's shell) so the code
#: written is the job's own
EXIT_WRAPPER = (
    'i=$1 s=$2 e=$3; shift 3; trap : TERM INT; "$i" "$s" "$@"; code=$?; '
    '(umask 077; echo "$code" > "$e.tmp") && mv -f "$e.tmp" "$e"; exit "$code"'
)
MAX_BACKOFF_SECONDS = 60.0


# ----------------------------------------------------------------------------- rendering


def render_job_script(job: dict[str, Any], run_dir: str) -> str:
    """The job as one script: its commands in one shell session, stopping at a failure; for an
    `image:` job, the container started with the engine (after a private registry's login)."""
    workdir = job_workdir(job, run_dir)
    lines = [
        "#!/bin/sh" if job.get("image") else "#!%s" % shell_path(job),
        "# iacrun job for run %s, written by iacrun; the runner starts it." % job["run_name"],
        "set -e",
    ]
    if job.get("image"):
        lines += registry_login_lines(job, run_dir)
        # the job's arguments (this script's "$@", from the runner) go on to the container
        lines.append("exec " + " ".join(_word(a) for a in docker_argv(job, run_dir)))
        return "\n".join(lines) + "\n"
    lines.append("cd %s" % shlex.quote(workdir))
    if job.get("python"):
        lines.append(". %s" % shlex.quote(os.path.join(run_dir, "venv", "bin", "activate")))
    lines.extend(job["commands"])
    return "\n".join(lines) + "\n"


def shell_path(job: dict[str, Any]) -> str:
    """The interpreter of the job's commands on the host: `sh`, `bash` or an absolute path."""
    shell = job.get("shell") or "bash"
    if shell.startswith("/"):
        return shell
    return shutil.which(shell) or "/bin/%s" % shell


def job_args(job: dict[str, Any]) -> list[str]:
    """The task's arguments (`iacrun up FILE ARGS...`): job.sh's "$@" and "$*"."""
    return [str(a) for a in job.get("args") or []]


#: in docker_argv, where job.sh's own arguments go ("$@" unquoted by render_job_script)
ARGS_HERE = "\0iacrun-args\0"
#: what `${{ run.args }}` became when it is a whole command (models/runargs.py)
ARGS_REFERENCE = '"$@"'


def _word(arg: str) -> str:
    return '"$@"' if arg == ARGS_HERE else shlex.quote(arg)


def job_workdir(job: dict[str, Any], run_dir: str) -> str:
    return os.path.normpath(os.path.join(run_dir, "code", job.get("working_dir") or "."))


#: the job's env variables that hold a private registry's credentials (see registry_login_lines)
REGISTRY_ENV = ("IACRUN_REGISTRY_USERNAME", "IACRUN_REGISTRY_PASSWORD")


def registry_host(image: str) -> str:
    """The registry an image reference names (`ghcr.io/o/i:t` → ghcr.io), else Docker Hub."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def registry_login_lines(job: dict[str, Any], run_dir: str) -> list[str]:
    """Log in to the image's registry, pull, log out: the password goes to the engine on stdin
    from the runner's environment, so it is in no command line, log or file once pulled."""
    auth = job.get("registry_auth")
    if not auth:
        return []
    engine = job.get("container_engine") or "docker"
    registry = shlex.quote(registry_host(job["image"]))
    where = os.path.join(run_dir, "registry-auth")
    if engine == "podman":
        config = "--authfile %s" % shlex.quote(os.path.join(where, "auth.json"))
        login, pull, logout = (
            "podman login %s" % config,
            "podman pull -q %s" % config,
            "podman logout %s" % config,
        )
    else:
        config = "--config %s" % shlex.quote(where)
        login, pull, logout = (
            "docker %s login" % config,
            "docker %s pull -q" % config,
            "docker %s logout" % config,
        )
    return [
        "umask 077; mkdir -p %s" % shlex.quote(where),
        "rc=0",
        '{ printf %%s "$%s" | %s --username "$%s" --password-stdin %s >/dev/null && %s %s '
        ">/dev/null; } || rc=$?"
        % (auth["password"], login, auth["username"], registry, pull, shlex.quote(job["image"])),
        "%s %s >/dev/null 2>&1 || true" % (logout, registry),
        "rm -rf %s" % shlex.quote(where),
        'if [ "$rc" -ne 0 ]; then echo "could not pull %s from %s with registry_auth (exit $rc)" '
        '>&2; exit "$rc"; fi' % (job["image"].replace('"', ""), registry.strip("'")),
        "umask 022",
    ]


def docker_argv(job: dict[str, Any], run_dir: str) -> list[str]:
    """The engine's command line for an `image:` job, as dstack builds the container's command:
    `entrypoint` split like a shell would, followed by the commands as its arguments; without
    an entrypoint, the commands in one `shell -c` script; with neither, the image's own."""
    engine = job.get("container_engine") or "docker"
    name = "iacrun-%s" % job["run_name"]
    commands = job.get("commands") or []
    argv = [engine, "run", "--rm", "--init", "--name", name]
    argv += ["-v", "%s:/workflow" % os.path.join(run_dir, "code")]
    working_dir = job.get("working_dir") or "."
    if working_dir.startswith("/"):
        argv += ["-w", working_dir]
    elif commands or working_dir != ".":
        argv += ["-w", os.path.normpath(os.path.join("/workflow", working_dir))]
    for key in sorted(job.get("env", {})):
        if key not in REGISTRY_ENV:
            argv += ["-e", key]
    for key in ("IACRUN_RUN_NAME", "DSTACK_RUN_NAME"):
        argv += ["-e", key]
    if job.get("user"):
        argv += ["--user", job["user"]]
    if job.get("privileged"):
        argv += ["--privileged"]
    if job.get("gpus"):
        argv += ["--gpus", '"device=%s"' % job["gpus"] if engine == "docker" else "all"]
    if job.get("shm_size_gb"):
        argv += ["--shm-size", "%dm" % int(float(job["shm_size_gb"]) * 1024)]
    for port in job.get("ports", []):
        argv += ["-p", "127.0.0.1:%d:%d" % (port, port)]
    for source, target in payload_mounts(job, run_dir):
        argv += ["-v", "%s:%s" % (source, target)]
    if job.get("entrypoint"):
        words = shlex.split(job["entrypoint"])
        # no shell reads the commands here: a command that is `${{ run.args }}` alone is
        # the arguments, word for word
        words += [ARGS_HERE if c == ARGS_REFERENCE else c for c in commands]
        return [*argv, "--entrypoint", words[0], job["image"], *words[1:]]
    if commands:
        shell = job.get("shell") or "/bin/sh"
        shell = shell if shell.startswith("/") else "/bin/%s" % shell
        script = "set -e\n" + "\n".join(commands)
        return [*argv, "--entrypoint", shell, job["image"], "-c", script, "iacrun-job", ARGS_HERE]
    return [*argv, job["image"]]


# ----------------------------------------------------------------------------- files and repos

#: a container's home for `~/…` targets (dstack's too)
CONTAINER_HOME = "/root"


def payload_targets(job: dict[str, Any], run_dir: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, where on this host, entry) of the repo, then each `files` entry, in placing order.

    A relative `path` is under the working folder (RUN_DIR/code); `~/…` is the home and an
    absolute path is itself: this host's for a plain job, the container's for an image job
    (placed under RUN_DIR/mounts and mounted there, see payload_mounts)."""
    code = os.path.join(run_dir, "code")
    out = []
    entries = [("repo", r) for r in job.get("repos") or []]
    entries += [("file", f) for f in job.get("files") or []]
    for kind, entry in entries:
        path = entry["path"]
        if job.get("image") and (path.startswith("~") or os.path.isabs(path)):
            inside = _container_path(path)
            out.append((kind, os.path.join(run_dir, "mounts", inside.lstrip("/")), entry))
        elif path.startswith("~"):
            out.append((kind, os.path.expanduser(path), entry))
        else:
            out.append((kind, os.path.normpath(os.path.join(code, path)), entry))
    return out


def _container_path(path: str) -> str:
    if path.startswith("~"):
        path = CONTAINER_HOME + path[1:]
    return os.path.normpath(path)


def payload_mounts(job: dict[str, Any], run_dir: str) -> list[tuple[str, str]]:
    """(host path, container path) of the files and repo an image job has outside /workflow."""
    mounts = []
    for _kind, where, entry in payload_targets(job, run_dir):
        path = entry["path"]
        if path.startswith("~") or os.path.isabs(path):
            mounts.append((where, _container_path(path)))
    return mounts


class PlaceError(Exception):
    pass


def place_payload(job: dict[str, Any], run_dir: str, note: Any, log_fd: int) -> None:
    """Put the repo and `files` where the task asked, before the job starts.

    Every file appears at its target whole (written beside it, then renamed), with its mode
    (a 0600 key stays 0600); a cloned repo appears whole too. PlaceError says what went wrong."""
    payload = os.path.join(run_dir, "payload")
    file_index = 0
    try:
        for kind, where, entry in payload_targets(job, run_dir):
            if kind == "file":
                _install(os.path.join(payload, "files", str(file_index)), where)
                file_index += 1
                continue
            if _occupied(where):
                if entry.get("if_exists") == "skip":
                    note("repo path %s exists and is not empty; skipped (if_exists: skip)" % where)
                    continue
                raise PlaceError(
                    "repo path %s exists and is not empty; set if_exists: skip or choose "
                    "another path" % where
                )
            if entry.get("local"):
                _install(os.path.join(payload, "repo"), where)
            else:
                _clone(entry, where, run_dir, note, log_fd)
    finally:
        shutil.rmtree(payload, ignore_errors=True)
        for name in ("git-user", "git-password", "git-askpass"):
            try:
                os.unlink(os.path.join(run_dir, name))
            except OSError:
                pass


def _occupied(path: str) -> bool:
    if os.path.isdir(path) and not os.path.islink(path):
        return bool(os.listdir(path))
    return os.path.lexists(path)


def _install(source: str, target: str) -> None:
    if not os.path.lexists(source):
        raise PlaceError("%s was not shipped" % target)
    if os.path.isdir(source) and not os.path.islink(source):
        try:
            os.makedirs(target, exist_ok=True)
        except OSError as exc:
            raise PlaceError("cannot create %s: %s" % (target, exc.strerror)) from None
        for name in sorted(os.listdir(source)):
            _install(os.path.join(source, name), os.path.join(target, name))
        return
    folder = os.path.dirname(target) or "."
    tmp = os.path.join(folder, ".%s.iacrun-%d" % (os.path.basename(target), os.getpid()))
    try:
        os.makedirs(folder, exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), tmp)
        else:
            mode = os.stat(source).st_mode & 0o7777
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o700)
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise PlaceError("cannot write %s: %s" % (target, exc.strerror)) from None


def _clone(entry: dict[str, Any], target: str, run_dir: str, note: Any, log_fd: int) -> None:
    git = shutil.which("git")
    if git is None:
        raise PlaceError("git is not installed on the host; install it to clone %s" % entry["url"])
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    env.pop("SSH_ASKPASS", None)
    if os.path.exists(os.path.join(run_dir, "git-password")):
        helper = os.path.join(run_dir, "git-askpass")
        with open(helper, "w") as f:
            f.write(
                '#!/bin/sh\ncase "$1" in\n  Username*) cat %s ;;\n  *) cat %s ;;\nesac\n'
                % (
                    shlex.quote(os.path.join(run_dir, "git-user")),
                    shlex.quote(os.path.join(run_dir, "git-password")),
                )
            )
        os.chmod(helper, 0o700)
        env["GIT_ASKPASS"] = helper
    else:
        env.pop("GIT_ASKPASS", None)
    folder = os.path.dirname(target) or "."
    tmp = os.path.join(folder, ".%s.iacrun-clone-%d" % (os.path.basename(target), os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    argv = [git, "clone", "--quiet"]
    if entry.get("single_branch", True):
        argv.append("--single-branch")
    if entry.get("branch"):
        argv += ["--branch", entry["branch"]]
    argv += ["--", entry["url"], tmp]
    shown = entry["url"] + (" (branch %s)" % entry["branch"] if entry.get("branch") else "")
    note("cloning %s into %s" % (shown, target))
    try:
        os.makedirs(folder, exist_ok=True)
        _git(argv, env, log_fd, "could not clone %s" % shown)
        if entry.get("hash"):
            commit = entry["hash"]
            checkout = [git, "-C", tmp, "-c", "advice.detachedHead=false", "checkout", "-q"]
            has = [git, "-C", tmp, "cat-file", "-e", commit + "^{commit}"]
            null = subprocess.DEVNULL
            if subprocess.call(has, env=env, stdout=null, stderr=null) != 0:  # not on the branch
                fetch = [git, "-C", tmp, "fetch", "--quiet", "origin", commit]
                _git(fetch, env, log_fd, "commit %s is not in %s" % (commit, shown))
            _git([*checkout, commit], env, log_fd, "cannot check out %s" % commit)
            note("checked out %s" % commit)
        if os.path.isdir(target) and not os.listdir(target):
            os.rmdir(target)
        os.rename(tmp, target)
    except OSError as exc:
        raise PlaceError("cannot place the repo at %s: %s" % (target, exc.strerror)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _git(argv: list[str], env: dict[str, str], log_fd: int, problem: str) -> None:
    if subprocess.call(argv, env=env, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd):
        raise PlaceError("%s (see the git output above)" % problem)


# ----------------------------------------------------------------------------- python


def find_python(version: str) -> str | None:
    """An interpreter of exactly `version` (like "3.11") on this host, or None.

    Looked for, in order: `pythonX.Y` on PATH; pyenv's (`$PYENV_ROOT`, default `~/.pyenv`:
    `versions/X.Y.Z/bin/pythonX.Y`); uv's managed ones (`$UV_PYTHON_INSTALL_DIR`, default
    `$XDG_DATA_HOME/uv/python` or `~/.local/share/uv/python`, on macOS too:
    `cpython-X.Y.Z-PLATFORM/bin/pythonX.Y`), the newest patch release first; then /usr/bin and
    /usr/local/bin. Each candidate is run to check its version.
    """
    name = "python%s" % version
    candidates = []
    found = shutil.which(name)
    if found:
        candidates.append(found)
    for root, pattern in python_trees(version):
        candidates += _newest_first(glob.glob(os.path.join(root, pattern, "bin", name)))
    candidates += ["/usr/bin/" + name, "/usr/local/bin/" + name]
    for candidate in candidates:
        if os.path.isfile(candidate) and _python_is(candidate, version):
            return candidate
    return None


def python_trees(version: str) -> list[tuple[str, str]]:
    """(folder, glob of an install's folder in it) for pyenv's and uv's interpreters."""
    home = os.path.expanduser("~")
    pyenv = os.environ.get("PYENV_ROOT") or os.path.join(home, ".pyenv")
    uv = os.environ.get("UV_PYTHON_INSTALL_DIR")
    if not uv:
        data = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
        uv = os.path.join(data, "uv", "python")
    return [
        (os.path.join(pyenv, "versions"), version + ".*"),
        (uv, "cpython-%s.*-*" % version),
    ]


def _newest_first(paths: list[str]) -> list[str]:
    """Interpreter paths ordered by the patch release in their install folder, newest first."""

    def patch(path: str) -> int:
        folder = os.path.basename(os.path.dirname(os.path.dirname(path)))
        digits = folder.replace("cpython-", "").split("-")[0].split(".")
        return int(digits[2]) if len(digits) > 2 and digits[2].isdigit() else -1

    return sorted(paths, key=lambda p: (-patch(p), p))


def _python_is(executable: str, version: str) -> bool:
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.decode().strip() == version


# ----------------------------------------------------------------------------- state files


class RunFolder:
    def __init__(self, run_dir: str) -> None:
        self.dir = os.path.abspath(run_dir)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def read_job(self) -> dict[str, Any]:
        with open(self.path("job.json")) as f:
            job: dict[str, Any] = json.load(f)
        return job

    def write_atomic(self, name: str, text: str) -> None:
        tmp = self.path(".%s.tmp%d" % (name, os.getpid()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.path(name))

    def read_state(self) -> dict[str, Any]:
        try:
            with open(self.path("state.json")) as f:
                state: dict[str, Any] = json.load(f)
                return state
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        self.write_atomic("state.json", json.dumps(state, sort_keys=True))
        if state.get("exit_code") is not None:
            self.write_atomic("exit_code", "%d\n" % state["exit_code"])
        self.write_atomic("status", state["status"] + "\n")

    def note(self, text: str) -> None:
        """A line of the runner's own in the log, marked so users can tell it from the job's;
        on a line of its own even when the job's last line has no newline."""
        fd = os.open(self.path("log"), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            glued = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            os.write(fd, ("%s[iacrun] %s\n" % ("\n" if glued else "", text)).encode())
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- GPU utilization

CUDA_BIN = "/usr/local/cuda/bin"
NVIDIA_SMI_QUERY = ["--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits"]


def utilization_reason(job: dict[str, Any]) -> str | None:
    policy = job.get("utilization_policy")
    if not policy:
        return None
    return "gpu utilization below %d%%" % policy["min_gpu_utilization"]


def sample_gpus(gpus: str | None) -> dict[int, float] | None:
    """Utilization % per GPU index from `nvidia-smi` (only the job's GPUs when it has some);
    None when nvidia-smi cannot be run or says nothing readable."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, *NVIDIA_SMI_QUERY],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    wanted = {int(i) for i in gpus.split(",") if i.strip().isdigit()} if gpus else None
    figures: dict[int, float] = {}
    for line in out.stdout.decode(errors="replace").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not parts[0].isdigit():
            continue
        try:
            value = float(parts[1])
        except ValueError:
            continue  # [N/A] and the like: no figure this time
        if wanted is None or int(parts[0]) in wanted:
            figures[int(parts[0])] = value
    return figures or None


class UtilizationWatch:
    """dstack's utilization_policy: the job ends when any of its GPUs stays under the minimum
    for the whole time window. nvidia-smi is asked every `every` seconds; a GPU's low streak
    starts at its first low sample and ends at any sample at or above the minimum."""

    def __init__(self, job: dict[str, Any], folder: RunFolder, started: float) -> None:
        policy = job["utilization_policy"]
        self.minimum = float(policy["min_gpu_utilization"])
        self.window = int(policy["time_window"])
        self.every = max(0.2, min(10.0, self.window / 30.0))
        self.gpus = job.get("gpus")
        self.folder = folder
        self.reason = utilization_reason(job) or ""
        self.next_at = started
        self.low_since: dict[int, float] = {}
        self.blind_noted = False

    @classmethod
    def of(cls, job: dict[str, Any], folder: RunFolder) -> UtilizationWatch | None:
        if not job.get("utilization_policy"):
            return None
        return cls(job, folder, time.time())

    def too_low(self, now: float) -> bool:
        if now < self.next_at:
            return False
        self.next_at = now + self.every
        figures = sample_gpus(self.gpus)
        if figures is None:
            if not self.blind_noted:
                self.folder.note("utilization_policy: nvidia-smi gave no figures; not enforced")
                self.blind_noted = True
            self.low_since.clear()  # a gap in the samples is no proof of idleness
            return False
        for index, value in figures.items():
            if value >= self.minimum:
                self.low_since.pop(index, None)
            else:
                self.low_since.setdefault(index, now)
        return any(now - since >= self.window for since in self.low_since.values())


# ----------------------------------------------------------------------------- running


class Stop(Exception):
    pass


class Runner:
    def __init__(self, run_dir: str) -> None:
        self.folder = RunFolder(run_dir)
        self.job = self.folder.read_job()
        self.stop_reason: str | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self.state: dict[str, Any] = {
            "status": "running",
            "attempts": [],
            "runner_pid": os.getpid(),
        }

    def _on_term(self, signum: int, frame: Any) -> None:
        if self.stop_reason is None:
            try:
                with open(self.folder.path("stop_request")) as f:
                    self.stop_reason = f.read().strip() or "stopped by user"
            except OSError:
                self.stop_reason = "stopped by user" if signum == signal.SIGTERM else "interrupted"

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.folder.write_atomic("pid", "%d\n" % os.getpid())
        self.state["started_at"] = time.time()
        self.folder.save_state(self.state)
        problem = self._place()
        if problem is not None:
            self.state["reason"] = problem
            return self._finish("failed", None)
        max_duration = self.job.get("max_duration")
        deadline = self.state["started_at"] + max_duration if max_duration else None
        retry = self.job.get("retry")
        retry_until = self.state["started_at"] + retry["duration"] if retry else None
        backoff = 1.0
        attempt = 0
        while True:
            attempt += 1
            code, reason = self._attempt(attempt, deadline)
            self.state["attempts"].append(
                {"attempt": attempt, "exit_code": code, "reason": reason, "ended_at": time.time()}
            )
            self.state["exit_code"] = code
            self.state["reason"] = reason
            if self.stop_reason is not None or reason in (
                "max duration exceeded",
                utilization_reason(self.job),
            ):
                return self._finish("terminated", code)
            if code == 0:
                return self._finish("done", code)
            now = time.time()
            if retry_until is None or now + backoff > retry_until:
                return self._finish("failed", code)
            self.folder.note("attempt %d %s; retrying in %gs" % (attempt, reason, backoff))
            self.state["status"] = "pending"
            self.state["reason"] = "retrying after %s" % reason
            self.folder.save_state(self.state)
            if not self._sleep(backoff, deadline):
                self.state["reason"] = self.stop_reason or "max duration exceeded"
                return self._finish("terminated", code)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _place(self) -> str | None:
        """The task's repo and files in place; a reason to fail the run otherwise."""
        if not self.job.get("files") and not self.job.get("repos"):
            return None
        log = os.open(self.folder.path("log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            place_payload(self.job, self.folder.dir, self.folder.note, log)
        except PlaceError as exc:
            self.folder.note(str(exc))
            return str(exc)
        finally:
            os.close(log)
        return None

    def _finish(self, status: str, code: int | None) -> int:
        if status == "terminated" and self.stop_reason is not None:
            # the latest stop's reason: an abort that cut a graceful stop short says so
            self.stop_reason = _read_text(self.folder.path("stop_request")) or self.stop_reason
            self.state["reason"] = self.stop_reason
        self.state["status"] = status
        self.state["finished_at"] = time.time()
        # the last line before the final state: a follower that sees the state final (or the
        # registry that records it) and reads the log once more has every line
        self.folder.note("run %s: %s" % (status, self.state.get("reason")))
        self.folder.save_state(self.state)
        return 0

    def _sleep(self, seconds: float, deadline: float | None) -> bool:
        end = time.time() + seconds
        while time.time() < end:
            if self.stop_reason is not None or (deadline is not None and time.time() >= deadline):
                return False
            time.sleep(0.05)
        return True

    def _attempt(self, attempt: int, deadline: float | None) -> tuple[int, str]:
        self.state.update(
            {"status": "running", "attempt": attempt, "reason": None, "exit_code": None}
        )
        self.folder.save_state(self.state)
        env = dict(os.environ)
        env.update(self.job.get("env", {}))
        env["IACRUN_RUN_NAME"] = env["DSTACK_RUN_NAME"] = self.job["run_name"]
        env["IACRUN_RUN_DIR"] = self.folder.dir
        if self.job.get("gpus"):
            env["CUDA_VISIBLE_DEVICES"] = self.job["gpus"]
        if self.job.get("nvcc") and os.path.isdir(CUDA_BIN):
            env["PATH"] = CUDA_BIN + os.pathsep + env.get("PATH", "")
        if self.job.get("python"):
            problem = self._prepare_python(self.job["python"], env)
            if problem:
                self.folder.note(problem)
                return 127, problem
        interpreter = "/bin/sh" if self.job.get("image") else shell_path(self.job)
        if shutil.which(interpreter) is None:
            problem = "cannot start the shell %s: %s" % (interpreter, os.strerror(errno.ENOENT))
            self.folder.note(problem)
            return 127, problem
        _remove(self.folder.path("job_exit"))
        log = os.open(self.folder.path("log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        env.pop(UMASK_ENV, None)
        try:
            # the task's arguments are the script's positional parameters, never its text
            self.child = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    EXIT_WRAPPER,
                    "iacrun-job",
                    interpreter,
                    self.folder.path("job.sh"),
                    self.folder.path("job_exit"),
                    # the task's arguments: the script's positional parameters, never its text
                    *job_args(self.job),
                ],
                cwd=self.folder.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_user_umask,  # the job's files are the user's: their umask
            )
        except OSError as exc:
            problem = "cannot start the shell %s: %s" % (interpreter, exc.strerror or exc)
            self.folder.note(problem)
            return 127, problem
        finally:
            os.close(log)
        # its own session: the group id is the child's pid, and outlives this runner
        self.folder.write_atomic("pgid", "%d\n" % self.child.pid)
        self.folder.write_atomic("job_pid", "%d\n" % self.child.pid)
        watch = UtilizationWatch.of(self.job, self.folder)
        reason = None
        while True:
            code = self.child.poll()
            if code is not None:
                break
            if self.stop_reason is not None:
                reason = self.stop_reason
            elif deadline is not None and time.time() >= deadline:
                reason = "max duration exceeded"
                self.folder.note("max duration exceeded; stopping the job")
            elif watch is not None and watch.too_low(time.time()):
                reason = watch.reason
                self.folder.note("%s for %ds; stopping the job" % (reason, watch.window))
            if reason is not None:
                code = self._kill_job()
                break
            time.sleep(POLL_SECONDS)
        self._reap_group()
        code = 128 - code if code < 0 else code
        return code, reason or "exited (%d)" % code

    def _kill_job(self) -> int:
        """SIGTERM, the stop's grace, SIGKILL; an abort (grace 0) is SIGKILL alone. The grace
        is read again while it runs: an abort recorded meanwhile ends it at once."""
        assert self.child is not None
        started = time.time()
        if stop_grace(self.folder, self.job) > 0:
            _killpg(self.child.pid, signal.SIGTERM)
        while True:
            code = self.child.poll()
            if code is not None:
                return code
            if time.time() - started >= stop_grace(self.folder, self.job):
                kill_job_now(self.job, self.child.pid)
                return self.child.wait()
            time.sleep(POLL_SECONDS)

    def _reap_group(self) -> None:
        """Whatever the job left running in its process group ends with it."""
        assert self.child is not None
        if _group_alive(self.child.pid):
            grace = min(stop_grace(self.folder, self.job), 5.0)
            if grace > 0:
                _killpg(self.child.pid, signal.SIGTERM)
            end = time.time() + grace
            while _group_alive(self.child.pid) and time.time() < end:
                time.sleep(0.05)
            kill_job_now(self.job, self.child.pid)

    def _prepare_python(self, version: str, env: dict[str, str]) -> str | None:
        venv = self.folder.path("venv")
        if os.path.exists(os.path.join(venv, "bin", "python")):
            return None
        uv = shutil.which("uv")
        log = os.open(self.folder.path("log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            interpreter = find_python(version)
            if interpreter is not None:
                self.folder.note("creating a virtual environment with %s" % interpreter)
                argv = [interpreter, "-m", "venv", venv]
            elif uv is not None:
                self.folder.note("creating a Python %s virtual environment with uv" % version)
                argv = [uv, "venv", "--seed", "--python", version, venv]
            else:
                return (
                    "python %s is not installed on this host; install it or drop 'python:'"
                    % version
                )
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
        finally:
            os.close(log)
        if done.returncode != 0:
            return "could not create a Python %s virtual environment (exit %d)" % (
                version,
                done.returncode,
            )
        return None


#: the umask of the user who started the run (set by iacrun, or by `main` from the shell's)
UMASK_ENV = "IACRUN_UMASK"


def private_umask() -> None:
    """The runner's own files (state, log, job) are 0600 and its folders 0700 whatever the
    umask of the shell or service that started it; that umask is kept for the job."""
    old = os.umask(0o077)
    os.environ.setdefault(UMASK_ENV, "%03o" % old)


def _user_umask() -> None:
    try:
        os.umask(int(os.environ.get(UMASK_ENV, "022"), 8))
    except ValueError:
        os.umask(0o022)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_grace(folder: RunFolder, job: dict[str, Any]) -> float:
    """The seconds a stop gives the job between SIGTERM and SIGKILL: the job's `stop_duration`
    unless a stop asked for less (`stop_grace`; 0 for an abort)."""
    grace = float(job.get("stop_duration", 15))
    asked = _read_float(folder.path("stop_grace"))
    return grace if asked is None else max(0.0, min(grace, asked))


def kill_job_now(job: dict[str, Any], pgid: int) -> None:
    """SIGKILL to the job: its container first (the engine's client does not pass a SIGKILL
    on, and a container outlives its client), then its whole process group."""
    if job.get("image"):
        engine = job.get("container_engine") or "docker"
        try:
            subprocess.run(
                [engine, "kill", "iacrun-%s" % job["run_name"]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass  # no engine, or it hangs: the group's SIGKILL still ends the client
    _killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of the group count as gone
    for pid in _pids_in_group(pgid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                return True
        except OSError:
            continue
    return False


def _pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                pids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


# ----------------------------------------------------------------------------- commands


def start(run_dir: str, timeout: float = 10.0) -> int:
    """Start the runner detached from this session; return once its pid file exists."""
    folder = RunFolder(run_dir)
    err = open(folder.path("runner.err"), "ab")
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "run", folder.dir],
        stdin=subprocess.DEVNULL,
        stdout=err,
        stderr=err,
        start_new_session=True,
        close_fds=True,
    )
    err.close()
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(folder.path("status")):
            print(proc.pid)
            return 0
        if proc.poll() is not None:
            sys.stderr.write("the runner exited at once; see %s\n" % folder.path("runner.err"))
            return 1
        time.sleep(0.01)
    sys.stderr.write("the runner did not start within %gs\n" % timeout)
    return 1


def stop(run_dir: str, reason: str, grace: float | None = None) -> int:
    """Stop the job (SIGTERM, grace, SIGKILL) and return once its status is final.

    `grace`: seconds between SIGTERM and SIGKILL, None for the job's `stop_duration`, 0 for an
    abort (SIGKILL at once). A stop while another is in its grace can only shorten it: an abort
    cuts it short, and a plain stop after an abort leaves it an abort (and its reason).

    Asked of the runner while it lives; if it is gone, or dies or hangs meanwhile, the job's
    process group is ended here and the final status written once no process of it is left."""
    folder = RunFolder(run_dir)
    state = folder.read_state()
    if state.get("status") in FINAL_STATUSES:
        return 0
    job = _job(folder)
    asked = _read_float(folder.path("stop_grace"))
    if grace is not None and (asked is None or grace < asked):
        folder.write_atomic("stop_grace", "%g\n" % max(0.0, grace))
        folder.write_atomic("stop_request", reason + "\n")
    elif asked is None or not os.path.exists(folder.path("stop_request")):
        folder.write_atomic("stop_request", reason + "\n")
    wait = stop_grace(folder, job) + 10
    runner_pid = runner_alive(folder)
    if runner_pid is not None:
        os.kill(runner_pid, signal.SIGTERM)
        end = time.time() + wait
        while time.time() < end:
            if folder.read_state().get("status") in FINAL_STATUSES:
                return 0
            if runner_alive(folder) is None:  # died while stopping: finish its work here
                break
            time.sleep(0.05)
        else:
            sys.stderr.write("the runner did not stop within %gs; ending the job itself\n" % wait)
            _kill(runner_pid, signal.SIGKILL)
        if folder.read_state().get("status") in FINAL_STATUSES:
            return 0
    ended, signalled = end_group(folder, job)
    if not ended:
        sys.stderr.write("processes of the job outlived SIGKILL; status left as it was\n")
        return 1
    state = folder.read_state()
    if state.get("status") in FINAL_STATUSES:  # an abort that cut this stop short wrote it
        return 0
    code = _read_int(folder.path("job_exit"))
    if code is None and signalled is not None:
        code = 128 + signalled  # as a shell reports a job ended by that signal
    reason = _read_text(folder.path("stop_request")) or reason  # the latest stop's
    state.update({"status": "terminated", "reason": reason, "finished_at": time.time()})
    if code is not None:
        state["exit_code"] = code
    folder.note("run terminated: %s" % reason)  # before the final state, as in Runner._finish
    folder.save_state(state)
    return 0


def settle(run_dir: str) -> dict[str, Any]:
    """The run's state; if the runner died before the job ended, settled from what is left.

    While a process of the job's group lives the job goes on and the state is left as it is;
    once none is left, the job's own `job_exit` (or its absence) says how it ended."""
    folder = RunFolder(run_dir)
    state = folder.read_state()
    if not state or state.get("status") in FINAL_STATUSES or runner_alive(folder) is not None:
        return state
    pgid = _read_int(folder.path("pgid"))
    if pgid is not None and _group_alive(pgid):
        if not os.path.exists(folder.path("runner_lost")):
            folder.write_atomic("runner_lost", "%f\n" % time.time())
            folder.note("the runner exited; the job goes on and is still followed")
        return state
    if runner_alive(folder) is not None or folder.read_state().get("status") in FINAL_STATUSES:
        return folder.read_state()
    code = _read_int(folder.path("job_exit"))
    if os.path.exists(folder.path("stop_request")):
        status, reason = "terminated", _read_text(folder.path("stop_request")) or "stopped"
    elif code is None:
        status, reason = "failed", "the runner and the job ended without an exit code"
    else:
        status = "done" if code == 0 else "failed"
        reason = "exited (%d); the runner had died" % code
    state.update({"status": status, "reason": reason, "finished_at": time.time()})
    if code is not None:
        state["exit_code"] = code
    folder.note("run %s: %s" % (status, reason))  # before the final state, as in Runner._finish
    folder.save_state(state)
    return state


def end_group(folder: RunFolder, job: dict[str, Any]) -> tuple[bool, int | None]:
    """SIGTERM to the job's process group, the stop's grace (`stop_grace`, read again while it
    runs: an abort cuts it short), SIGKILL; an abort is SIGKILL alone.

    Returns whether none of the group is left, and the last signal it took to end it (None
    when no process of it was running)."""
    pgid = _read_int(folder.path("pgid")) or _read_int(folder.path("job_pid"))
    if pgid is None or not _group_alive(pgid):
        return True, None
    started = time.time()
    if stop_grace(folder, job) > 0:
        _killpg(pgid, signal.SIGTERM)
    while _group_alive(pgid) and time.time() - started < stop_grace(folder, job):
        time.sleep(0.05)
    if not _group_alive(pgid):
        # ended by the SIGTERM, or by the SIGKILL of an abort that cut this grace short
        aborted = stop_grace(folder, job) == 0
        return True, int(signal.SIGKILL if aborted else signal.SIGTERM)
    kill_job_now(job, pgid)
    end = time.time() + 10.0
    while _group_alive(pgid) and time.time() < end:
        time.sleep(0.05)
    return not _group_alive(pgid), int(signal.SIGKILL)


def runner_alive(folder: RunFolder) -> int | None:
    """The runner's pid while it runs (a reused pid running something else does not count)."""
    pid = _read_int(folder.path("pid"))
    if pid is None or not pid_alive(pid):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"runner.py" not in f.read():
                return None
    except OSError:
        pass  # no /proc (macOS): the pid is trusted
    return pid


def _job(folder: RunFolder) -> dict[str, Any]:
    """The job, or nothing readable (its defaults apply)."""
    try:
        return folder.read_job()
    except (OSError, ValueError):
        return {}


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _read_float(path: str) -> float | None:
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("start", "run", "stop", "state", "settle"):
        sys.stderr.write(__doc__ or "")
        return 2
    command, run_dir = argv[0], argv[1]
    private_umask()
    if command == "start":
        return start(run_dir)
    if command == "run":
        return Runner(run_dir).run()
    if command == "stop":
        reason = argv[argv.index("--reason") + 1] if "--reason" in argv else "stopped by user"
        grace = float(argv[argv.index("--grace") + 1]) if "--grace" in argv else None
        return stop(run_dir, reason, grace)
    if command == "settle":
        print(json.dumps(settle(run_dir)))
        return 0
    print(json.dumps(RunFolder(run_dir).read_state()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

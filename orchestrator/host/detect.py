"""What an SSH host has (CPUs, memory, free disk, NVIDIA GPUs), found over a transport and cached.

One shell script gathers everything in a single round trip; `parse_facts` turns its output into
`HostFacts`, so parsing is tested as data. `HostFactsCache` keeps the result in
`~/.iacrun/ssh-hosts.json` for `ttl` seconds, since `nvidia-smi` can take seconds on a big host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, ValidationError

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.host.gpus import parse_gpu_line
from iacrun.orchestrator.host.transport import Transport
from iacrun.orchestrator.offers.model import Gpu, InstanceResources

DETECT_SCRIPT = r"""
echo "home=$HOME"
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "arch=$(uname -m)"
echo "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "disk_kb=$(df -Pk "$HOME" 2>/dev/null | awk 'NR==2 {print $4}')"
echo "python3=$(command -v python3 2>/dev/null)"
for engine in docker podman; do
  if command -v "$engine" >/dev/null 2>&1 && "$engine" info >/dev/null 2>&1; then
    echo "container_engine=$engine"; break
  fi
done
echo "nvcc=$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits 2>/dev/null \
    | sed 's/^/gpu=/'
fi
"""

DEFAULT_TTL = 600.0


class HostFacts(BaseModel):
    """A host's resources, its home folder and its python3 (the runner needs one)."""

    resources: InstanceResources
    home: str
    python3: str | None = None
    #: docker or podman when one runs there (its daemon answers), for `image:` tasks
    container_engine: str | None = None
    nvcc: str | None = None
    detected_at: float = 0.0


def parse_facts(text: str, *, label: str, now: float | None = None) -> HostFacts:
    """HostFacts from the output of DETECT_SCRIPT; BackendError when it is not that output."""
    values: dict[str, str] = {}
    gpus: list[tuple[int, Gpu]] = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "gpu":
            gpu = parse_gpu_line(value)
            if gpu is not None:
                gpus.append(gpu)
        else:
            values[key] = value.strip()
    try:
        cpus = int(values["cpus"])
        memory_gb = int(values["mem_kb"]) / 1024**2
        home = values["home"]
    except (KeyError, ValueError) as exc:
        raise BackendError(
            f"cannot detect the resources of {label}: unexpected output {text[:200]!r}"
        ) from exc
    disk_kb = values.get("disk_kb", "")
    arch = "arm" if values.get("arch", "").startswith(("aarch64", "arm")) else "x86"
    resources = InstanceResources(
        cpus=cpus,
        memory_gb=round(memory_gb, 2),
        gpus=tuple(g for _, g in sorted(gpus, key=lambda item: item[0])),
        disk_gb=round(int(disk_kb) / 1024**2, 2) if disk_kb.isdigit() else None,
        cpu_arch=arch,
    )
    return HostFacts(
        resources=resources,
        home=home,
        python3=values.get("python3") or None,
        container_engine=values.get("container_engine") or None,
        nvcc=values.get("nvcc") or None,
        detected_at=time.time() if now is None else now,
    )


async def detect(transport: Transport, *, label: str) -> HostFacts:
    """Run DETECT_SCRIPT on the host and parse it."""
    rc, out, err = await transport.run(["sh", "-c", DETECT_SCRIPT])
    if rc != 0:
        raise BackendError(
            f"cannot detect the resources of {label}: exit {rc}: {err.decode(errors='replace')}"
        )
    return parse_facts(out.decode(errors="replace"), label=label)


class HostFactsCache:
    """HostFacts per host key (`user@address:port`) in one JSON file, fresh for `ttl` seconds."""

    def __init__(
        self, path: Path, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.ttl = ttl
        self.clock = clock

    def get(self, key: str, *, stale_ok: bool = False) -> HostFacts | None:
        facts = self._load().get(key)
        if facts is None:
            return None
        if not stale_ok and self.clock() - facts.detected_at > self.ttl:
            return None
        return facts

    def put(self, key: str, facts: HostFacts) -> None:
        with self._locked():
            entries = self._load()
            entries[key] = facts
            self._save(entries)

    def forget(self, key: str) -> None:
        with self._locked():
            entries = self._load()
            if entries.pop(key, None) is not None:
                self._save(entries)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across processes and a server's supervisor threads alike (an
        flock on a file opened for each use excludes both), so no entry written is lost."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _save(self, entries: dict[str, HostFacts]) -> None:
        data = {k: v.model_dump(mode="json") for k, v in entries.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def _load(self) -> dict[str, HostFacts]:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        entries: dict[str, HostFacts] = {}
        if isinstance(raw, dict):
            for key, value in raw.items():
                with contextlib.suppress(ValidationError):
                    entries[key] = HostFacts.model_validate(value)
        return entries

"""`Client(url, token)`: iacrun's verbs over a server's REST API (httpx), with the
Orchestrator's models back and its error tree raised (the error's `type` names the class)."""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from iacrun.client.errors import error_named, error_of
from iacrun.orchestrator import errors
from iacrun.orchestrator.host.cluster import NodeRecord
from iacrun.orchestrator.host.payload import pack_upload
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.paths import iacrun_home
from iacrun.orchestrator.registry import RunEvent, RunRecord, RunStatus
from iacrun.orchestrator.registry.schedules import ScheduleRecord
from iacrun.server.schema import (
    BackendStatus,
    CreatedUser,
    Destroyed,
    DownResponse,
    NewToken,
    PlanResponse,
    Role,
    RunPage,
    ScheduleList,
    ScheduleStopRequest,
    ServerInfo,
    StackInfo,
    TokenInfo,
    User,
)

if TYPE_CHECKING:
    from iacrun.client.ports import Forwards, PortChannel

M = TypeVar("M", bound=BaseModel)
API = "/api/v1"
#: how long a stop, a teardown or a stack's destroy may take (a cloud's can take minutes)
SLOW = 900.0
#: how long `follow` keeps reconnecting to a server that dropped the stream, in seconds
RECONNECT_FOR = 120.0


@dataclass(frozen=True)
class LogChunk:
    """Bytes of a run's log from an offset; `offset` is where the next read starts."""

    data: bytes
    offset: int
    status: RunStatus


@dataclass
class LogEnd:
    status: RunStatus
    exit_code: int | None
    reason: str | None


class Client:
    """A connection to `iacrun server` at `url` with an API token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        upload_limit_gb: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.upload_limit_gb = upload_limit_gb
        self._http = httpx.Client(
            base_url=self.url + API,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the plumbing ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.is_error:
            raise error_from(response)
        return response

    def _unreachable(self, exc: Exception) -> errors.ServerUnreachableError:
        return errors.ServerUnreachableError(
            f"the iacrun server at {self.url} does not answer ({exc or type(exc).__name__}); "
            "check the URL and that it runs"
        )

    def _json(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._send(method, path, **kwargs).json())

    def _list(self, model: type[M], path: str, **kwargs: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_python(  # type: ignore[valid-type]
            self._send("GET", path, **kwargs).json()
        )

    # -- the server -----------------------------------------------------------------------------

    def info(self) -> ServerInfo:
        return self._json(ServerInfo, "GET", "/server/info")

    # -- a run's ports ----------------------------------------------------------------------------

    async def open_port(self, name: str, port: int) -> PortChannel:
        """One TCP connection to task port `port` of run `name`, relayed by the server over a
        WebSocket (a `relay.Channel`: bytes in and out). Refusals raise the error tree, as every
        call does: InputError for a port the run does not list, RunNotRunningError, ..."""
        from iacrun.client.ports import open_port

        return await open_port(self.url, self.token, name, port)

    def forward_ports(self, name: str, on_note: Callable[[str], None] | None = None) -> Forwards:
        """Local ports forwarded to run `name`'s ports (`Forwards.forward(local, task)`), each
        connection over its own WebSocket; close it to stop them."""
        from iacrun.client.ports import Forwards

        return Forwards(self.url, self.token, name, on_note)

    # -- planning and submitting ------------------------------------------------------------------

    def upload(self, spec: RunSpec) -> str:
        """Pack the run's files as the supervisor would ship them (working folder, `files`, a
        local repo), send them unless the server has them, and return their SHA-256."""
        limit = self.upload_limit_gb
        if limit is None:
            limit = _local_upload_limit()
        with tempfile.TemporaryDirectory(prefix="iacrun-upload-") as tmp:
            archive = Path(tmp) / "upload.tar.gz"
            pack_upload(spec, archive, limit, exclude=(iacrun_home(),))
            sha256 = _sha256(archive)
            if self._has_upload(sha256):
                return sha256
            with open(archive, "rb") as body:
                self._send(
                    "PUT",
                    f"/uploads/{sha256}",
                    content=body,
                    headers={"Content-Type": "application/octet-stream"},
                )
        return sha256

    def _has_upload(self, sha256: str) -> bool:
        try:
            self._send("HEAD", f"/uploads/{sha256}")
        except errors.NotFoundError:
            return False
        return True

    def plan(
        self, spec: RunSpec, *, upload: str | None = None, dry_run: bool = False
    ) -> PlanResponse:
        body = {"spec": spec.model_dump(mode="json"), "upload": upload, "dry_run": dry_run}
        return self._json(PlanResponse, "POST", "/plan", json=body)

    def submit(self, spec: RunSpec, upload: str | None = None) -> RunRecord:
        """Upload the run's files (unless `upload` names them already) and submit the run."""
        if spec.schedule is not None:
            raise errors.InputError(
                "the task has a schedule: the server keeps it as a schedule (Client.schedule)"
            )
        sha256 = upload or self.upload(spec)
        body = {"spec": spec.model_dump(mode="json"), "upload": sha256}
        return self._json(RunRecord, "POST", "/runs", json=body)

    # -- schedules ------------------------------------------------------------------------------

    def schedule(self, spec: RunSpec, upload: str | None = None) -> ScheduleRecord:
        """Keep a task with `schedule` on the server: it starts a run at each of its times."""
        sha256 = upload or self.upload(spec)
        body = {"spec": spec.model_dump(mode="json"), "upload": sha256}
        return self._json(ScheduleRecord, "POST", "/schedules", json=body)

    def schedules(self, *, all_schedules: bool = False) -> list[ScheduleRecord]:
        """The active schedules with their next time (and the stopped ones, with all)."""
        params = {"all": "true"} if all_schedules else {}
        return self._json(ScheduleList, "GET", "/schedules", params=params).schedules

    def get_schedule(self, name: str) -> ScheduleRecord:
        return self._json(ScheduleRecord, "GET", f"/schedules/{name}")

    def stop_schedule(self, name: str, *, abort: bool = False) -> ScheduleRecord:
        """End the schedule and stop its active run (killed at once with `abort`, as `iacrun
        stop -x`); safe to repeat."""
        body = ScheduleStopRequest(abort=abort).model_dump(mode="json")
        return self._json(ScheduleRecord, "POST", f"/schedules/{name}/stop", json=body)

    # -- reading --------------------------------------------------------------------------------

    def page(
        self,
        *,
        status: str | None = None,
        user: str | None = None,
        active: bool | None = None,
        recent: bool = False,
        limit: int = 50,
        before: int | None = None,
    ) -> RunPage:
        params = _params(
            status=status, user=user, active=active, recent=recent, limit=limit, before=before
        )
        return self._json(RunPage, "GET", "/runs", params=params)

    def runs(self, *, all_runs: bool = False, **filters: Any) -> list[RunRecord]:
        """Every run that matches, newest first (all pages); without `all_runs`, what `iacrun
        ps` shows: active runs and those that ended in the last hour."""
        found: list[RunRecord] = []
        before: int | None = None
        while True:
            page = self.page(recent=not all_runs, limit=500, before=before, **filters)
            found += page.runs
            if page.next is None:
                return found
            before = page.next

    def get(self, name: str) -> RunRecord:
        return self._json(RunRecord, "GET", f"/runs/{name}")

    def history(self, name: str) -> list[RunEvent]:
        return self._list(RunEvent, f"/runs/{name}/history")

    def nodes(self, name: str) -> list[NodeRecord]:
        """Every node's job of the run in rank order (the master alone for a one-node run):
        its host, and how it ended (a node still running shows the run's status)."""
        return self._list(NodeRecord, f"/runs/{name}/nodes")

    def logs(
        self, name: str, offset: int = 0, limit: int | None = None, *, node: int = 0
    ) -> LogChunk:
        """The log's bytes from `offset` as they are now (no waiting): the master's, or node
        `node`'s of a multi-node run (an InputError for a node the run does not have)."""
        params = _params(offset=offset, limit=limit, node=node or None)
        response = self._send("GET", f"/runs/{name}/logs", params=params)
        return LogChunk(
            data=response.content,
            offset=int(response.headers["X-Log-Offset"]),
            status=RunStatus(response.headers["X-Run-Status"]),
        )

    def follow(self, name: str, offset: int = 0, *, node: int = 0) -> LogFollow:
        """The log (the master's, or node `node`'s) from `offset` until the run ends, as chunks
        of bytes; a dropped connection is resumed where it stopped (`Last-Event-ID`). After the
        last chunk, `.end` holds the run's final status, exit code and reason."""
        return LogFollow(self, name, offset, node=node)

    # -- stopping -------------------------------------------------------------------------------

    def stop(
        self,
        name: str,
        *,
        abort: bool = False,
        wait: bool = True,
        reason: str | None = None,
    ) -> RunRecord:
        """Stop the run and tear it down. `abort` (`iacrun stop -x`): its job is killed at once,
        without its stop_duration grace; the call returns once that is recorded. `wait=False`:
        a graceful stop, recorded, and the call returns at once. Otherwise the call returns once
        the run has ended. `reason` is recorded after who stopped it: `stopped by USER: REASON`
        (`aborted by USER: REASON`)."""
        body: dict[str, object] = {"abort": abort, "wait": wait}
        if reason is not None:
            body["reason"] = reason
        return self._json(RunRecord, "POST", f"/runs/{name}/stop", json=body, timeout=SLOW)

    def down(self, name: str) -> str:
        return self._json(DownResponse, "POST", f"/runs/{name}/down", timeout=SLOW).message

    # -- offers, backends, stacks ---------------------------------------------------------------

    def offers(self, **filters: Any) -> PlanResponse:
        """`iacrun offers` on the server: gpu=, cpu=, memory=, disk=, spot= (spot, on-demand,
        auto), max_price=, backend=[...], region=[...], instance_type=[...], configured_only=."""
        return self._json(PlanResponse, "GET", "/offers", params=_params(**filters))

    def backends(self) -> list[BackendStatus]:
        return self._list(BackendStatus, "/backends")

    def stacks(self) -> list[StackInfo]:
        return self._list(StackInfo, "/stacks")

    def destroy_stack(self, stack_name: str) -> str:
        return self._json(Destroyed, "DELETE", f"/stacks/{stack_name}", timeout=SLOW).message

    # -- accounts -------------------------------------------------------------------------------

    def users(self) -> list[User]:
        return self._list(User, "/users")

    def create_user(
        self, name: str, role: Role = "member", *, token_name: str | None = None
    ) -> CreatedUser:
        body = {"name": name, "role": role, "token_name": token_name}
        return self._json(CreatedUser, "POST", "/users", json=body)

    def tokens(self) -> list[TokenInfo]:
        return self._list(TokenInfo, "/tokens")

    def create_token(
        self, name: str, *, user: str | None = None, expires_at: float | None = None
    ) -> NewToken:
        body = {"name": name, "user": user, "expires_at": expires_at}
        return self._json(NewToken, "POST", "/tokens", json=body)

    def revoke_token(self, token_id: int) -> TokenInfo:
        return self._json(TokenInfo, "DELETE", f"/tokens/{token_id}")


class LogFollow:
    """An iterator over a run's log chunks, read from the server's Server-Sent Events."""

    def __init__(self, client: Client, name: str, offset: int, *, node: int = 0) -> None:
        self.client = client
        self.name = name
        self.node = node
        #: the offset after the last chunk handed out
        self.offset = offset
        self.end: LogEnd | None = None

    def __iter__(self) -> Iterator[bytes]:
        give_up = time.monotonic() + RECONNECT_FOR
        while self.end is None:
            try:
                for chunk in self._stream():
                    give_up = time.monotonic() + RECONNECT_FOR  # the server answers again
                    yield chunk
            except (httpx.TransportError, httpx.StreamError) as exc:
                if time.monotonic() > give_up:
                    raise self.client._unreachable(exc) from exc
                time.sleep(0.5)

    def _stream(self) -> Iterator[bytes]:
        path = f"/runs/{self.name}/logs/stream"
        headers = {"Last-Event-ID": str(self.offset), "Accept": "text/event-stream"}
        http = self.client._http
        timeout = httpx.Timeout(10.0, read=60.0)  # the server sends a keep-alive every 15s
        params = _params(node=self.node or None)
        with http.stream("GET", path, params=params, headers=headers, timeout=timeout) as response:
            if response.is_error:
                response.read()
                raise error_from(response)
            # as the bytes arrive: iter_bytes(size) would hold them back until `size` came
            for event in _events(response.iter_bytes()):
                kind = event.get("event", "message")
                if kind == "log":
                    self.offset = int(event["id"])
                    yield base64.b64decode(event.get("data", ""))
                elif kind == "end":
                    end = json.loads(event.get("data", "{}"))
                    self.end = LogEnd(
                        status=RunStatus(end["status"]),
                        exit_code=end.get("exit_code"),
                        reason=end.get("reason"),
                    )
                    return
                elif kind == "error":
                    raise error_named(json.loads(event.get("data", "{}")))


def _events(stream: Iterator[bytes]) -> Iterator[dict[str, str]]:
    """Server-Sent Events from a byte stream, each as its fields (`data` lines joined by a
    newline; comments skipped). Parsed as bytes: a log's event is a megabyte of base64, and
    splitting it as text lines is ten times slower."""
    buffer = bytearray()
    for piece in stream:
        scan = max(0, len(buffer) - 1)  # what was there before held no event's end
        buffer += piece
        start = 0
        while (end := buffer.find(b"\n\n", max(start, scan))) != -1:
            block = bytes(buffer[start:end])
            start = end + 2
            event: dict[str, str] = {}
            for line in block.split(b"\n"):
                if not line or line.startswith(b":"):
                    continue
                field, _, value = line.partition(b":")
                text = value.removeprefix(b" ").decode()
                name = field.decode()
                event[name] = f"{event[name]}\n{text}" if name == "data" and name in event else text
            if event:
                yield event
        del buffer[:start]


def error_from(response: httpx.Response) -> errors.IacrunError:
    """The error of iacrun's tree that the server's answer names (`{"error": {"type", ...}}`)."""
    return error_of(response.status_code, response.content)


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters: None left out, booleans as true/false."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = str(value).lower() if isinstance(value, bool) else value
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _local_upload_limit() -> float:
    """This machine's `upload_limit` (config.yml), the limit the client packs to; the server
    holds the upload to its own too."""
    from iacrun.orchestrator.models.settings import load_settings
    from iacrun.orchestrator.paths import config_file

    return load_settings(config_file(iacrun_home())).upload_limit_gb

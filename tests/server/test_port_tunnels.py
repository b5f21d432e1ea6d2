"""A run's ports through a real server: `WS /api/v1/runs/{name}/ports/{port}` relays one TCP
connection to the port of a local-backend run's job (the client's `open_port`); the refusals
come before the tunnel opens, as iacrun's error tree."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from iacrun.client import Client
from iacrun.client.ports import PortChannel, port_url
from iacrun.orchestrator.errors import (
    AuthError,
    InputError,
    PortClosedError,
    RunNotFoundError,
    RunNotRunningError,
)
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.server.auth import SESSION_COOKIE
from tests.conftest import write_task
from tests.orchestrator.host.sshd import free_port
from tests.server.conftest import ADMIN_TOKEN, Server, start_server, stop_server, wait_for
from tests.server.serving import HELLO, expected_bytes, write_serving_task

# the relay is the server's code above the registry: SQLite is enough here
pytestmark = pytest.mark.parametrize("server_env", ["sqlite"], indirect=True)


@pytest.fixture
def served(server: Server, project: Path) -> Iterator[tuple[Client, str, int]]:
    """An admin's client, and run `web` serving HTTP on its task port, running."""
    task_port = free_port()
    write_serving_task(project, task_port)
    client = server.client()
    client.submit(build_run_spec(project / "task.dstack.yml", Overrides(name="web")))
    wait_for(lambda: client.get("web").status == "running")
    yield client, "web", task_port


async def exchange(channel: PortChannel, request: bytes, half_close: bool = False) -> bytes:
    """Send `request` (then a half-close, when asked) and read until the other side ends."""
    await channel.send(request)
    if half_close:
        await channel.send(b"")
    got = bytearray()
    while data := await channel.receive():
        got += data
    await channel.close()
    return bytes(got)


async def post_until_eof(channel: PortChannel) -> bytes:
    """A POST whose body has no length, then a half-close: the task reads the body until the
    half-close and only then answers (`got 5000 bytes`); it never answers if it is not passed on."""
    request = b"POST /count HTTP/1.0\r\n\r\n" + b"b" * 5000
    return await asyncio.wait_for(exchange(channel, request, half_close=True), 30)


async def get(client: Client, name: str, port: int, path: str, wait: float = 60.0) -> bytes:
    """An HTTP/1.0 GET through the tunnel; the body (retried while the task's server starts)."""
    end = asyncio.get_running_loop().time() + wait
    while True:
        try:
            channel = await client.open_port(name, port)
        except PortClosedError:
            if asyncio.get_running_loop().time() > end:
                raise
            await asyncio.sleep(0.2)
            continue
        answer = await exchange(channel, f"GET {path} HTTP/1.0\r\n\r\n".encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].endswith(b" 200 OK"), head
        return body


def test_a_runs_port_through_the_server_byte_exact_and_many_at_once(
    served: tuple[Client, str, int], server: Server
) -> None:
    client, name, port = served
    member = client.create_user("ann", "member", token_name="laptop").token
    assert member is not None
    as_member = server.client(member.token)  # any signed-in user reaches a team's run

    async def check() -> None:
        assert await get(as_member, name, port, "/") == HELLO
        size = 6 * 1024 * 1024 + 7
        assert await get(client, name, port, f"/bytes/{size}") == expected_bytes(size)
        sizes = [100_000 + 4099 * index for index in range(20)]
        bodies = await asyncio.gather(*(get(client, name, port, f"/bytes/{s}") for s in sizes))
        assert [len(b) for b in bodies] == sizes
        assert all(body == expected_bytes(s) for body, s in zip(bodies, sizes, strict=True))

    asyncio.run(check())


def test_a_half_close_is_passed_on(served: tuple[Client, str, int]) -> None:
    """The client's end of sending reaches the task (which reads its request's body until it),
    and the task still answers after it."""
    client, name, port = served

    async def check() -> bytes:
        await get(client, name, port, "/")  # the task's server is up
        channel = await client.open_port(name, port)
        return await post_until_eof(channel)

    assert asyncio.run(check()).endswith(b"\r\n\r\ngot 5000 bytes\n")


def test_refusals_are_the_error_tree_before_the_tunnel_opens(
    served: tuple[Client, str, int], server: Server
) -> None:
    client, name, port = served
    other = port + 1 if port < 65535 else port - 1

    def refused(client: Client, name: str, port: int) -> Exception:
        async def open_it() -> None:
            channel = await client.open_port(name, port)
            await channel.close()

        with pytest.raises(Exception) as caught:
            asyncio.run(open_it())
        return caught.value

    no_token = refused(server.client(token=""), name, port)
    assert isinstance(no_token, AuthError)
    assert str(no_token) == "no API token: send it as `Authorization: Bearer iacrun_…`"
    wrong = refused(server.client(token="iacrun_wrong"), name, port)
    assert isinstance(wrong, AuthError) and "not valid" in str(wrong)
    undeclared = refused(client, name, other)
    assert isinstance(undeclared, InputError)
    assert (
        str(undeclared)
        == f"port {other} is not one of the run's ports ({port}); forward one of those"
    )
    assert isinstance(refused(client, "nosuchrun", port), RunNotFoundError)

    client.stop(name)
    ended = refused(client, name, port)
    assert isinstance(ended, RunNotRunningError)
    assert str(ended) == f"run {name} has ended (terminated): its port {port} is gone"


def test_the_session_cookie_alone_opens_no_tunnel(
    served: tuple[Client, str, int], server: Server
) -> None:
    """A browser sends the dashboard's cookie with a WebSocket handshake from any site: the
    tunnel takes the bearer token only."""
    _, name, port = served

    async def with_cookie() -> int:
        headers = {"Cookie": f"{SESSION_COOKIE}={ADMIN_TOKEN}"}
        try:
            async with connect(port_url(server.url, name, port), additional_headers=headers):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(with_cookie()) == 401


def test_nothing_listening_and_a_run_not_started(server: Server, project: Path) -> None:
    client = server.client()
    port = free_port()
    write_task(project, f"ports: [{port}]\ncommands:\n  - sleep 300\n")
    client.submit(build_run_spec(project / "task.dstack.yml", Overrides(name="quiet")))

    async def open_it() -> None:
        await (await client.open_port("quiet", port)).close()

    try:
        asyncio.run(open_it())
    except RunNotRunningError as exc:  # asked before its job started
        assert str(exc).startswith("run quiet is ")
        assert str(exc).endswith(f"its port {port} is reachable once it runs; try again then")
    wait_for(lambda: client.get("quiet").status == "running")
    with pytest.raises(PortClosedError, match=f"nothing listens on port {port} of run quiet"):
        asyncio.run(open_it())


def test_a_stopping_server_ends_its_tunnels_and_the_run_goes_on(
    tmp_path: Path, project: Path, server_env: dict[str, str]
) -> None:
    """SIGTERM to a server with a tunnel open: the tunnel is closed (the client sees the end),
    the server exits cleanly, and the run goes on for the next server, which stops it."""
    home = tmp_path / "own-server"
    first = start_server(home, server_env)
    port = free_port()
    write_serving_task(project, port)
    try:
        client = first.client()
        client.submit(build_run_spec(project / "task.dstack.yml", Overrides(name="lasting")))
        wait_for(lambda: client.get("lasting").status == "running")

        async def open_then_stop() -> bytes | None:
            await get(client, "lasting", port, "/")  # the task's server is up
            channel = await client.open_port("lasting", port)
            stopping = asyncio.get_running_loop().run_in_executor(None, stop_server, first)
            ended = await channel.receive()  # nothing was asked: only the end can come
            assert await stopping == 0
            return ended

        assert asyncio.run(open_then_stop()) is None
    finally:
        if first.proc.poll() is None:
            stop_server(first)
        second = start_server(home, server_env)
        try:
            second.client().stop("lasting")
        finally:
            stop_server(second)

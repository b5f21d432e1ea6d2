"""A running VM's port 22 that never answers is reported early as filtered (scripted prober)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from iacrun.orchestrator.errors import HostUnreachableError, PortFilteredError
from iacrun.orchestrator.host import connect as connect_module
from iacrun.orchestrator.host.connect import ATTEMPT_TIMEOUT, SilenceWatch, connect
from iacrun.orchestrator.host.transport import Host
from iacrun.stacks.keys import generate_ed25519

CONNECT_TIMEOUT = 900.0
FILTERED_AFTER = 180.0


class Network:
    """A fake clock and a scripted SSH port: each try takes the seconds it would take for real.

    `script` holds the outcome of each try in turn ("timeout", "refused"); after it runs out the
    last outcome repeats. `probe_answers` is what the bare TCP probe says after a timeout."""

    def __init__(self, script: list[str], *, probe_answers: bool = False) -> None:
        self.now = 1000.0
        self.script = list(script)
        self.probe_answers = probe_answers
        self.tries: list[tuple[float, str, float]] = []
        self.probes = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def probe(self, address: str, port: int, timeout: float) -> bool:
        self.probes += 1
        self.now += timeout if not self.probe_answers else 0.01
        return self.probe_answers

    async def ssh(self, address: str, port: int, **options: Any) -> Any:
        outcome = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        limit = float(options["connect_timeout"])
        self.tries.append((self.now, outcome, limit))
        if outcome == "refused":
            self.now += 0.01
            raise ConnectionRefusedError(111, "Connection refused")
        if outcome == "denied":  # sshd up, the run's key not installed yet
            self.now += 0.5
            raise connect_module.asyncssh.PermissionDenied("no key")
        self.now += limit
        raise TimeoutError()


def vm() -> Host:
    return Host(
        kind="ssh",
        run_dir="/opt/iacrun/run",
        address="192.0.2.44",
        user="ubuntu",
        host_key=generate_ed25519("vm").public_openssh,
        connect_timeout=CONNECT_TIMEOUT,
        boot="cloud-init",
    )


def attempt(net: Network, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> BaseException:
    monkeypatch.setattr(connect_module.asyncssh, "connect", net.ssh)
    host = vm()

    async def go() -> None:
        await connect(
            host,
            deadline=net.now + CONNECT_TIMEOUT,
            retry_auth=True,
            clock=net.clock,
            sleep=net.sleep,
            probe=net.probe,
            **kwargs,
        )

    with pytest.raises(HostUnreachableError) as caught:
        asyncio.run(go())
    return caught.value


def test_a_port_that_never_answers_is_filtered_early(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(["timeout"])
    started = net.now
    error = attempt(net, monkeypatch, filtered_after=FILTERED_AFTER)
    assert isinstance(error, PortFilteredError)
    text = str(error)
    assert text.startswith("port 22 of 192.0.2.44 is filtered")
    assert "ssh_cidrs" in text and "security group / NSG" in text and "\n" not in text
    # decided once the silence reached the limit, long before the 900 s connect timeout
    assert FILTERED_AFTER <= net.now - started < FILTERED_AFTER + 2 * ATTEMPT_TIMEOUT + 20
    assert all(limit == ATTEMPT_TIMEOUT for _, _, limit in net.tries)  # each try is bounded
    assert net.probes == len(net.tries)


def test_a_booting_vm_that_refuses_is_not_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals (the network is up, sshd not yet) reset the count: only the deadline ends it."""
    net = Network((["timeout"] * 4 + ["refused"]) * 40)  # ~2 minutes of silence at most
    started = net.now
    error = attempt(net, monkeypatch, filtered_after=FILTERED_AFTER)
    assert not isinstance(error, PortFilteredError)
    assert "gave up after" in str(error)
    assert net.now - started >= CONNECT_TIMEOUT


def test_sshd_refusing_the_key_for_a_while_is_not_filtered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = Network((["timeout"] * 4 + ["denied"]) * 40)
    error = attempt(net, monkeypatch, filtered_after=FILTERED_AFTER)
    assert not isinstance(error, PortFilteredError)
    assert "gave up after" in str(error)


def test_a_slow_handshake_on_an_open_port_is_not_filtered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = Network(["timeout"], probe_answers=True)  # TCP connects; SSH is what is slow
    error = attempt(net, monkeypatch, filtered_after=FILTERED_AFTER)
    assert not isinstance(error, PortFilteredError)
    assert net.probes == len(net.tries) > 1


def test_without_the_watch_only_the_deadline_ends_it(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(["timeout"])
    error = attempt(net, monkeypatch)
    assert not isinstance(error, PortFilteredError)
    assert net.probes == 0
    assert net.tries[0][2] == CONNECT_TIMEOUT  # one try may use all the time, as before


@pytest.mark.parametrize(
    ("tries", "filtered_at"),
    [
        # (answered, tried_at, now) per try; the index of the try that decides, or None
        ([(False, 0, 20), (False, 25, 45), (False, 170, 190)], 2),
        ([(False, 0, 20), (True, 25, 26), (False, 30, 50), (False, 150, 170)], None),
        ([(False, 0, 20), (True, 25, 26), (False, 30, 50), (False, 190, 210)], 3),
        ([(True, 0, 1), (True, 200, 201)], None),
    ],
)
def test_silence_watch_as_data(
    tries: list[tuple[bool, float, float]], filtered_at: int | None
) -> None:
    watch = SilenceWatch(180)
    verdicts = [watch.observe(answered, tried_at, now) for answered, tried_at, now in tries]
    expected = [False] * len(tries)
    if filtered_at is not None:
        expected[filtered_at] = True
    assert verdicts == expected


def test_only_a_cloud_vms_first_connection_is_watched() -> None:
    from iacrun.orchestrator.host.reconnecting import ReconnectingTransport

    seen: list[float | None] = []

    async def fake_connect(host: Host, **kwargs: Any) -> Any:
        seen.append(kwargs.get("filtered_after"))
        return object()

    original = connect_module.connect
    connect_module.connect = fake_connect  # type: ignore[assignment]
    try:
        transport = ReconnectingTransport(vm())
        asyncio.run(transport.connect())
        asyncio.run(transport.connect())  # a reconnection mid-run
        own = ReconnectingTransport(vm().model_copy(update={"boot": "runner"}))
        asyncio.run(own.connect())
    finally:
        connect_module.connect = original  # type: ignore[assignment]
    assert seen == [connect_module.FILTERED_AFTER, None, None]


def test_a_filtered_port_ends_the_run_as_failed_and_tears_down(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor's side: the reason is the run's, and the machine is given back."""
    from iacrun.orchestrator import supervisor
    from iacrun.orchestrator.registry import RunStatus
    from tests.orchestrator.test_supervisor import World

    message = connect_module.filtered_message(vm(), 300)

    async def filtered(host: Host, **_: Any) -> Any:
        raise PortFilteredError(message)

    monkeypatch.setattr(supervisor, "open_transport", filtered)
    world = World(tmp_path)
    try:
        run = world.submit("true")
        world.supervisor.supervise(run.id)
        final = world.record(run)
        assert (final.status, final.reason) == (RunStatus.FAILED, message)
        assert world.backend.terminated == [RunStatus.TERMINATING]
    finally:
        world.orch.registry.close()

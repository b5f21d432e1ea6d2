"""The caller's address from two loopback services standing in for checkip and ipify."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from iacrun.orchestrator.backends.caller_address import caller_address, host_cidr
from iacrun.orchestrator.errors import BackendError


class Service:
    """A loopback web service that answers every GET with `answer` and counts the requests."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.hits = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.hits += 1
                data = f"{service.answer}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    made: list[Service] = []
    yield made
    for service in made:
        service.close()


def two(services: list[Service], first: str, second: str) -> list[str]:
    services += [Service(first), Service(second)]
    return [s.url for s in services]


def test_two_sources_that_agree(services: list[Service]) -> None:
    assert caller_address(two(services, "198.51.100.7", "198.51.100.7")) == "198.51.100.7"
    assert [s.hits for s in services] == [1, 1]


def test_two_sources_that_disagree_ask_for_ssh_cidrs(services: list[Service]) -> None:
    urls = two(services, "198.51.100.7", "203.0.113.9")
    with pytest.raises(BackendError) as caught:
        caller_address(urls)
    text = str(caught.value)
    assert "ambiguous" in text and "198.51.100.7" in text and "203.0.113.9" in text
    assert "set ssh_cidrs for the backend in ~/.iacrun/config.yml" in text
    assert "\n" not in text


def test_one_source_down_asks_for_ssh_cidrs(services: list[Service]) -> None:
    services.append(Service("198.51.100.7"))
    down = "http://127.0.0.1:9/"  # discard port: refused
    with pytest.raises(BackendError, match=r"127\.0\.0\.1:9/.*set ssh_cidrs"):
        caller_address([services[0].url, down])


def test_an_answer_that_is_no_address_asks_for_ssh_cidrs(services: list[Service]) -> None:
    urls = two(services, "198.51.100.7", "<html>captive portal</html>")
    with pytest.raises(BackendError, match="set ssh_cidrs"):
        caller_address(urls)


def test_proxies_in_the_environment_are_ignored(
    services: list[Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy's address is not where SSH comes from: the lookup never goes through one."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a proxy that is not there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    urls = two(services, "198.51.100.7", "198.51.100.7")
    assert caller_address(urls) == "198.51.100.7"
    assert [s.hits for s in services] == [1, 1]


def test_the_default_sources_are_two_different_services() -> None:
    from iacrun.orchestrator.backends.caller_address import SOURCES

    hosts = {url.split("/")[2].split(".")[-2] for url in SOURCES}
    assert len(SOURCES) == 2 and len(hosts) == 2  # amazonaws, ipify


def test_host_cidr() -> None:
    assert host_cidr("198.51.100.7") == "198.51.100.7/32"
    assert host_cidr("2001:db8::1") == "2001:db8::1/128"

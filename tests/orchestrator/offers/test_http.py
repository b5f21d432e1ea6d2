"""The urllib seam against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.offers.catalog.http import UrllibHttp

from .conftest import FIXTURES


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        path = FIXTURES / name
        if not name or not path.is_file():
            self.send_error(404, "no such fixture")
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Agent", self.headers.get("User-Agent", ""))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_get_text_and_lines(server: str) -> None:
    http = UrllibHttp(timeout=5)
    text = http.get_text(f"{server}/aws-spot.js")
    assert text.startswith("callback(")
    lines = list(http.get_lines(f"{server}/aws-pricelist-us-west-2.csv"))
    assert lines[0].startswith('"FormatVersion"')
    assert len(lines) == (FIXTURES / "aws-pricelist-us-west-2.csv").read_text().count("\n")


def test_http_errors_name_the_url(server: str) -> None:
    with pytest.raises(BackendError, match="answered HTTP 404"):
        UrllibHttp(timeout=5).get_text(f"{server}/missing.json")


def test_unreachable_host_is_a_backend_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BackendError, match=f"could not reach http://127.0.0.1:{port}/"):
        UrllibHttp(timeout=5).get_text(f"http://127.0.0.1:{port}/x")

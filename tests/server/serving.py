"""A task that serves HTTP on its port, for the tests and the benchmark of a run's ports
forwarded through a server: `/` says hello, `/bytes/N` answers N bytes of a seeded random
stream (to compare byte for byte), `/zeros/N` streams N zero bytes (for throughput); a POST
reads its body until the client half-closes, and only then says how many bytes came."""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import write_task

SERVE_PY = """
import http.server, random, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "zeros":
            size = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = bytes(1 << 20)
            while size > 0:
                self.wfile.write(block[: min(size, len(block))])
                size -= len(block)
            return
        body = random.Random(int(parts[1])).randbytes(int(parts[1])) if parts[0] == "bytes" \\
            else b"hello from the task\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # the body ends at the client's half-close: answered only after it
        body = self.rfile.read()
        answer = b"got %d bytes\\n" % len(body)
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = True

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer.request_queue_size = 128  # 20 connects at once: none dropped
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

HELLO = b"hello from the task\n"


def write_serving_task(project: Path, task_port: int, extra: str = "") -> None:
    (project / "serve.py").write_text(SERVE_PY)
    write_task(
        project,
        f"ports: [{task_port}]\n{extra}commands:\n"
        f"  - echo serving\n  - python3 serve.py {task_port}\n",
    )


def expected_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def fetch(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        data: bytes = answer.read()
        return data


def fetch_when_up(url: str, wait: float = 60.0) -> bytes:
    """`url`'s body, retried while the task's server is still starting (a connection closed or
    refused meanwhile)."""
    end = time.monotonic() + wait
    while True:
        try:
            return fetch(url)
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > end:
                raise
            time.sleep(0.2)

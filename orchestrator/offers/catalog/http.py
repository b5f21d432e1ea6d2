"""The one seam where the catalog fetchers reach the network (stdlib urllib); tests inject."""

from __future__ import annotations

import http.client
import io
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Protocol

from iacrun.orchestrator.errors import BackendError

USER_AGENT = "iacrun-catalog/1 (+https://github.com/iacrun)"


class Http(Protocol):
    """GET a URL as text (small documents) or as lines (price lists of hundreds of MB)."""

    def get_text(self, url: str, headers: Mapping[str, str] | None = None) -> str: ...

    def get_lines(self, url: str, headers: Mapping[str, str] | None = None) -> Iterator[str]: ...


class UrllibHttp:
    """Plain HTTPS with a timeout; failures become BackendError naming the URL."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout

    def _open(self, url: str, headers: Mapping[str, str] | None) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(
                request, timeout=self.timeout
            )
        except urllib.error.HTTPError as exc:
            raise BackendError(f"{url} answered HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendError(f"could not reach {url}: {reason}") from exc
        return response

    def get_text(self, url: str, headers: Mapping[str, str] | None = None) -> str:
        with self._open(url, headers) as response:
            try:
                return response.read().decode("utf-8")
            except OSError as exc:
                raise BackendError(f"reading {url} failed: {exc}") from exc

    def get_lines(self, url: str, headers: Mapping[str, str] | None = None) -> Iterator[str]:
        with self._open(url, headers) as response:
            try:
                yield from io.TextIOWrapper(response, encoding="utf-8", newline="")
            except OSError as exc:
                raise BackendError(f"reading {url} failed: {exc}") from exc

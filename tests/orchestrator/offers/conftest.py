"""Isolated catalog state and a recorded-response HTTP client for the fetchers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.offers.catalog import store

FIXTURES = Path(__file__).parent / "fixtures"


class RecordedHttp:
    """Answers each URL with a fixture file; any other URL is a test failure, not a fetch."""

    def __init__(self, routes: Mapping[str, str | Path]) -> None:
        self.routes = {url: FIXTURES / p if isinstance(p, str) else p for url, p in routes.items()}
        self.requested: list[tuple[str, dict[str, str]]] = []

    def _path(self, url: str, headers: Mapping[str, str] | None) -> Path:
        self.requested.append((url, dict(headers or {})))
        if url not in self.routes:
            raise BackendError(f"unexpected request to {url}")
        return self.routes[url]

    def get_text(self, url: str, headers: Mapping[str, str] | None = None) -> str:
        return self._path(url, headers).read_text()

    def get_lines(self, url: str, headers: Mapping[str, str] | None = None) -> Iterator[str]:
        with self._path(url, headers).open(newline="") as fh:
            yield from fh


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh IACRUN_HOME (so no refreshed catalog of the developer's leaks in), empty cache."""
    home = tmp_path / "iacrun-home"
    monkeypatch.setenv("IACRUN_HOME", str(home))
    monkeypatch.delenv("AZURE_ACCESS_TOKEN", raising=False)
    store.clear_cache()
    yield home
    store.clear_cache()

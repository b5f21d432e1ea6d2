"""The API's schema is checked in (server/openapi.json): a change to the API shows in review."""

from __future__ import annotations

import json
from pathlib import Path

from iacrun.server.app import create_app
from iacrun.server.config import ServerConfig
from iacrun.server.state import ServerState

CHECKED_IN = Path(__file__).parents[2] / "server" / "openapi.json"
REGENERATE = "python -m iacrun.server.openapi > server/openapi.json"


def test_the_checked_in_schema_is_the_apps(tmp_path: Path) -> None:
    app = create_app(ServerState(ServerConfig(home=tmp_path / "home")))
    current = json.loads(json.dumps(app.openapi()))
    checked_in = json.loads(CHECKED_IN.read_text())
    assert current == checked_in, f"server/openapi.json is out of date: run {REGENERATE}"


def test_every_route_is_under_api_v1_and_only_info_is_open(tmp_path: Path) -> None:
    schema = json.loads(CHECKED_IN.read_text())
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    open_ = [
        f"{method.upper()} {path}"
        for path, methods in schema["paths"].items()
        for method, op in methods.items()
        if not op.get("security")
    ]
    assert open_ == ["GET /api/v1/server/info"]

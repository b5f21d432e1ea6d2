"""Print the API's OpenAPI schema: `python -m iacrun.server.openapi > server/openapi.json`
(the checked-in copy a test compares with the app's)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def schema_text() -> str:
    from iacrun.server.app import create_app
    from iacrun.server.config import ServerConfig
    from iacrun.server.state import ServerState

    with tempfile.TemporaryDirectory(prefix="iacrun-openapi-") as home:
        app = create_app(ServerState(ServerConfig(home=Path(home))))
        return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())

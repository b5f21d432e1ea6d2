"""A Python client of `iacrun server`: `from iacrun.client import Client`.

    client = Client("https://iacrun.example.com", token)
    run = client.submit(spec)              # uploads the run's files once, then submits
    for chunk in client.follow(run.name):  # the log, resumed across dropped connections
        sys.stdout.buffer.write(chunk)

The same verbs as the Orchestrator, the same models back, the same errors raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iacrun.client.client import Client, LogChunk

__all__ = ["Client", "LogChunk"]


def __getattr__(name: str) -> Any:  # httpx is imported when the client is first used
    if name in __all__:
        from iacrun.client import client

        return getattr(client, name)
    raise AttributeError(name)

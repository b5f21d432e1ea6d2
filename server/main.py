"""`iacrun server`: start the API with uvicorn (`serve`); the CLI only parses its flags.

    python -m iacrun.server.main [--host 127.0.0.1] [--port 3000] [--lease-seconds 30]
                                        the same, without the CLI

Ctrl-C or SIGTERM stops the server cleanly; runs go on (their jobs keep running), and the next
server on the same database takes them over once their leases expire (server/supervision.py).
"""

from __future__ import annotations

import argparse
import signal
import sys

from iacrun.server.config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig


def startup_lines(config: ServerConfig, generated_token: str | None) -> list[str]:
    lines = []
    where = f"http://{config.host}:{config.port}"
    if generated_token is not None:
        lines += [
            "The first admin's API token (shown this once; it is stored only as a hash):",
            "",
            f"    {generated_token}",
            "",
            f"Use it with `iacrun login {where}`, or set IACRUN_SERVER_URL={where} and",
            "IACRUN_TOKEN to it.",
            "",
        ]
    lines.append(f"iacrun server listening on {where} (database: {config.shown_database})")
    return lines


def serve(config: ServerConfig) -> None:
    """Open the database (migrating it), make the first admin if there is none, and serve until
    Ctrl-C or SIGTERM."""
    import uvicorn

    from iacrun.server.app import create_app
    from iacrun.server.state import ServerState

    state = ServerState(config)
    generated = state.accounts.bootstrap(config.admin_token)
    app = create_app(state)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    # said once the socket is bound, so a script that waits for this line can connect at once
    started = server.startup

    async def startup(sockets: object = None) -> None:
        await started(sockets)  # type: ignore[arg-type]
        if server.started:
            print("\n".join(startup_lines(config, generated)), flush=True)

    server.startup = startup  # type: ignore[method-assign]
    # uvicorn catches SIGINT and SIGTERM, shuts down gracefully, then raises the signal again
    # to the handler that was there before: this one, so a stop is an exit 0, not a traceback
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: None)
    server.run()
    if not server.started:
        sys.exit(1)
    print("iacrun server stopped; runs go on, and are supervised again at the next start")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m iacrun.server.main")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--lease-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    serve(ServerConfig.from_env(host=args.host, port=args.port, lease_seconds=args.lease_seconds))


if __name__ == "__main__":
    main()

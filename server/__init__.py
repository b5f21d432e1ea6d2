"""`iacrun server`: the orchestrator behind a REST API (FastAPI, under `/api/v1`), for teams and
CI pipelines. `app.create_app(ServerState)` builds the app; `main.serve(ServerConfig)` runs it
with uvicorn; `supervision.SupervisionPool` supervises its runs in threads, under leases in the
registry. Nothing here is imported by the CLI until `iacrun server` runs.
"""

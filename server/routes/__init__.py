"""The API's resources, one module each, all under `/api/v1`. Routes are plain `def` functions
where they call the Orchestrator: FastAPI runs those in its thread pool, off the event loop."""

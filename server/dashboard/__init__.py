"""The web dashboard `iacrun server` serves at `/`: server-rendered pages (Jinja2 templates), one
CSS file and a little plain JavaScript shipped as package data, no build step.

- `session.py`: sign-in with a token (an HttpOnly, SameSite=Strict cookie), sign-out, the pages'
  user (a page without a valid session redirects to sign-in), the CSRF token of forms;
- `render.py`: the templates' environment and the formatting they share (status words and
  colours, prices, durations);
- `runs.py`: the runs list (filters, paging, live updates by polling `runs.json`), a run's page
  (spec, offer, history, live log through the API's SSE stream) and the stop form;
- `schedules.py`: the scheduled tasks (cron, next time, latest run), live, and their stop form;
- `views.py`: offers, stacks (leaks; destroy for admins), cost, tokens and users;
- `costs.py`: spend per day, user and backend over 30 days, and its SVG bar charts.
- `questions.py`: what a stop, destroy or revoke asks first (in the browser, or as a page).

Every page asks `iacrun.server.auth.authenticate`, the one check the API uses, so nothing the
API forbids is reachable through a page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the dashboard's pages at `/` and its static files at `/static`."""
    from iacrun.server.dashboard import runs, schedules, session, views

    session.install(app)
    for module in (session, runs, schedules, views):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

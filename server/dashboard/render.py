"""The dashboard's templates and the formatting they share."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from iacrun.orchestrator.models.units import format_price
from iacrun.server.accounts import Principal
from iacrun.server.auth import SESSION_COOKIE, csrf_token
from iacrun.server.dashboard import questions
from iacrun.server.dashboard.costs import day_chart, share_chart

TEMPLATES = Path(__file__).parent / "templates"

#: each status's colour class (dash.css); the word is always shown beside the colour
STATUS_TONE = {
    "submitted": "wait",
    "pending": "wait",
    "provisioning": "wait",
    "running": "run",
    "terminating": "wait",
    "done": "ok",
    "failed": "bad",
    "terminated": "off",
}

#: what every page is sent with: no framing, no inline script, no other origin
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def price(value: float | None) -> str:
    return "-" if value is None else f"{format_price(value)}/h"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}" if value >= 0.01 or value == 0 else "<$0.01"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(timestamp: float | None) -> str:
    """A time as UTC, to the second (the same for every reader of a team's page)."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "-"
    delta = max(0, int((now or time.time()) - timestamp))
    if delta < 60:
        return f"{delta}s ago"
    if delta < 3600:
        return f"{delta // 60}m ago"
    if delta < 86400:
        return f"{delta // 3600}h ago"
    return f"{delta // 86400}d ago"


def until(timestamp: float | None, now: float | None = None) -> str:
    """How long until a time to come (`in 5m`); `due now` once it has come."""
    if timestamp is None:
        return "-"
    delta = int(timestamp - (time.time() if now is None else now))
    if delta <= 0:
        return "due now"
    if delta < 60:
        return f"in {delta}s"
    return "in " + duration(delta)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(price=price, money=money, duration=duration, when=when, ago=ago, until=until)
    env.globals["tone"] = lambda status: STATUS_TONE.get(str(status), "off")
    env.globals.update(day_chart=day_chart, share_chart=share_chart, questions=questions)
    return env


ENV = _environment()


def page(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A rendered page, with the signed-in user and the session's CSRF token for its forms."""
    secret = request.cookies.get(SESSION_COOKIE)
    html = ENV.get_template(template).render(
        request=request,
        user=principal,
        csrf=csrf_token(secret) if secret and principal is not None else "",
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def fragment(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)

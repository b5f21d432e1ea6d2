"""Spend over the last 30 days, per day (UTC), per user and per backend, and its charts (SVG
drawn here, on the server: no chart library, no script).

A run's cost is its price per hour over the time it ran (`RunRecord.cost`'s rule: from
`started_at` to `finished_at`, or now while it runs), split between the days it ran on."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

from iacrun.orchestrator.registry import Registry

DAYS = 30
DAY = 86400.0


@dataclass(frozen=True)
class Spend:
    start: float
    #: each day's (date, dollars), oldest first, every day of the window (0 when nothing ran)
    days: list[tuple[str, float]]
    #: (user, dollars), highest first; runs submitted in embedded mode count as "local"
    users: list[tuple[str, float]]
    #: (backend, dollars), highest first
    backends: list[tuple[str, float]]

    @property
    def total(self) -> float:
        return sum(value for _, value in self.days)


def spend(registry: Registry, now: float | None = None, days: int = DAYS) -> Spend:
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today.timestamp() - (days - 1) * DAY
    rows = registry.db.rows(
        "SELECT submitted_by, backend, price, status, started_at, finished_at FROM runs "
        "WHERE price IS NOT NULL AND started_at IS NOT NULL "
        "AND (finished_at IS NULL OR finished_at > ?)",
        (start,),
    )
    per_day = [0.0] * days
    per_user: dict[str, float] = defaultdict(float)
    per_backend: dict[str, float] = defaultdict(float)
    final = ("done", "failed", "terminated")
    for row in rows:
        began = max(float(row["started_at"]), start)
        ended = row["finished_at"]
        if ended is None:
            ended = float(row["started_at"]) if row["status"] in final else now
        ended = min(float(ended), now)
        if ended <= began:
            continue
        price = float(row["price"])
        per_user[row["submitted_by"] or "local"] += price * (ended - began) / 3600
        per_backend[row["backend"] or "-"] += price * (ended - began) / 3600
        index = int((began - start) // DAY)
        while index < days:
            day_start = start + index * DAY
            overlap = min(ended, day_start + DAY) - max(began, day_start)
            if overlap <= 0:
                break
            per_day[index] += price * overlap / 3600
            index += 1
    labels = [
        datetime.fromtimestamp(start + i * DAY, UTC).strftime("%Y-%m-%d") for i in range(days)
    ]
    return Spend(
        start=start,
        days=list(zip(labels, per_day, strict=True)),
        users=sorted(per_user.items(), key=lambda kv: -kv[1]),
        backends=sorted(per_backend.items(), key=lambda kv: -kv[1]),
    )


def _dollars(value: float) -> str:
    return f"${value:,.2f}"


def day_chart(days: list[tuple[str, float]], title: str) -> Markup:
    """Vertical bars, one per day; each bar has its figure as a tooltip and the chart a text
    alternative (the table beside it has the same figures)."""
    width, height, left, bottom, top = 720, 220, 56, 40, 12
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((v for _, v in days), default=0.0) or 1.0
    step = plot_w / max(len(days), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_dollars(peak * fraction))}</text>"
        )
    for i, (label, value) in enumerate(days):
        bar_h = plot_h * value / peak
        x = left + i * step + step * 0.15
        y = top + plot_h - bar_h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
            f'height="{bar_h:.1f}"><title>{escape(label)}: {escape(_dollars(value))}</title></rect>'
        )
        if i % 5 == 0 or i == len(days) - 1:
            parts.append(
                f'<text class="axis" x="{x + step * 0.35:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(label[5:])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def share_chart(items: list[tuple[str, float]], title: str) -> Markup:
    """Horizontal bars, one per user or backend, labelled with the name and the figure."""
    row, width, label_w = 28, 720, 160
    height = max(len(items), 1) * row + 8
    peak = max((v for _, v in items), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMinYMin meet">',
        f"<title>{escape(title)}</title>",
    ]
    if not items:
        parts.append(f'<text class="axis" x="0" y="20">{escape("nothing spent")}</text>')
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        bar_w = (width - label_w - 90) * value / peak
        parts.append(
            f'<text class="axis" x="{label_w - 8}" y="{y + 17}" text-anchor="end">'
            f"{escape(name[:24])}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{bar_w:.1f}" height="{row - 10}">'
            f"<title>{escape(name)}: {escape(_dollars(value))}</title></rect>"
            f'<text class="axis" x="{label_w + bar_w + 6:.1f}" y="{y + 17}">'
            f"{escape(_dollars(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))

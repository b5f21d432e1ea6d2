"""The offers table, as dstack prints it: cheapest first, the first N, then a summary line."""

from __future__ import annotations

from collections.abc import Sequence

from iacrun.orchestrator.offers import Offer


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def format_price(price: float) -> str:
    return f"${price:.4f}".rstrip("0").rstrip(".") if price else "$0"


def offers_table(offers: Sequence[Offer], max_offers: int | None = 3) -> str:
    shown = list(offers if max_offers is None else offers[:max_offers])
    rows = [
        [
            str(i),
            o.backend,
            o.region,
            o.instance_type,
            o.resources.render(),
            "yes" if o.spot else "no",
            format_price(o.price) + ("" if o.available else f" ({o.note or 'unavailable'})"),
        ]
        for i, o in enumerate(shown, 1)
    ]
    table = render_table(["#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE"], rows)
    if len(shown) < len(offers):
        top = max(o.price for o in offers)
        table += f"\n\nShown {len(shown)} of {len(offers)} offers, {format_price(top)} max"
    return table

"""The offers table, as dstack prints it: cheapest first, the first N, then a summary line.

::

     #  BACKEND  REGION     INSTANCE      RESOURCES                                SPOT  PRICE
     1  aws      us-east-2  g6.xlarge     4xCPU, 16GB, 1xL4 (24GB), 100GB disk     yes   $0.3
     2  aws      us-east-1  g6.xlarge     4xCPU, 16GB, 1xL4 (24GB), 100GB disk     no    $0.8048

    Shown 2 of 144 offers, $1.4954 max

Pure functions of the offers: the CLI prints what they return.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from iacrun.orchestrator.models.units import format_price, format_size_gb
from iacrun.orchestrator.offers.model import Offer

GROUP_KEYS = ("gpu", "backend", "region", "instance")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def offers_table(offers: Sequence[Offer], max_offers: int | None = 3, nodes: int = 1) -> str:
    """The offers; for a multi-node run (`nodes` > 1) also each type's cluster network (EFA,
    InfiniBand) and the price of the whole cluster beside the price of one node."""
    shown = list(offers if max_offers is None else offers[:max_offers])
    rows = []
    for i, o in enumerate(shown, 1):
        why = "" if o.available else f" ({o.note or 'unavailable'})"
        row = [
            str(i),
            o.backend,
            o.region,
            o.instance_type,
            o.resources.render() if o.resources.cpus else "-",  # a host never reached
            "yes" if o.spot else "no",
        ]
        if nodes > 1:
            row += [o.cluster_network or "-", format_price(o.price), format_price(o.price * nodes)]
        else:
            row.append(format_price(o.price))
        row[-1] += why
        rows.append(row)
    headers = ["#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT"]
    headers += ["NET", "PRICE/NODE", f"TOTAL ({nodes} NODES)"] if nodes > 1 else ["PRICE"]
    table = render_table(headers, rows)
    if len(shown) < len(offers):
        table += "\n\n" + summary_line(len(shown), offers)
    return table


def summary_line(shown: int, offers: Sequence[Offer]) -> str:
    top = max((o.price for o in offers), default=0.0)
    return f"Shown {shown} of {len(offers)} offers, {format_price(top)} max"


def gpu_key(o: Offer) -> str:
    """`A100:80GB:8` (dstack's spelling of a GPU configuration), or `-` without GPUs."""
    gpus = o.resources.gpus
    if not gpus:
        return "-"
    return f"{gpus[0].name}:{format_size_gb(gpus[0].memory_gb)}:{len(gpus)}"


def parse_group_by(text: str | None) -> list[str]:
    """`gpu,backend` → ["gpu", "backend"]; unknown keys raise ValueError naming the valid ones."""
    if not text:
        return []
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in GROUP_KEYS]
    if bad:
        raise ValueError(f"cannot group by {', '.join(bad)}; use {', '.join(GROUP_KEYS)}")
    return list(dict.fromkeys(keys))


@dataclass
class OfferGroup:
    key: tuple[str, ...]
    offers: list[Offer]

    @property
    def cheapest(self) -> Offer:
        return min(self.offers, key=lambda o: o.price)

    @property
    def price_range(self) -> tuple[float, float]:
        prices = [o.price for o in self.offers]
        return min(prices), max(prices)


def group_offers(offers: Sequence[Offer], keys: Sequence[str]) -> list[OfferGroup]:
    """Offers grouped by `keys`, groups ordered by their cheapest offer."""
    getters: dict[str, Callable[[Offer], str]] = {
        "gpu": gpu_key,
        "backend": lambda o: o.backend,
        "region": lambda o: o.region,
        "instance": lambda o: o.instance_type,
    }
    groups: dict[tuple[str, ...], list[Offer]] = {}
    for o in offers:
        groups.setdefault(tuple(getters[k](o) for k in keys), []).append(o)
    out = [OfferGroup(key, items) for key, items in groups.items()]
    out.sort(key=lambda g: (g.cheapest.price, g.key))
    return out


def groups_table(offers: Sequence[Offer], keys: Sequence[str], max_rows: int | None = None) -> str:
    """One row per group: the keys, spot kinds, price range, $/GPU range, count, cheapest type."""
    groups = group_offers(offers, keys)
    shown = groups if max_rows is None else groups[:max_rows]
    rows = []
    for i, g in enumerate(shown, 1):
        low, high = g.price_range
        kinds = sorted({"spot" if o.spot else "on-demand" for o in g.offers}, reverse=True)
        per_gpu = [o.price / len(o.resources.gpus) for o in g.offers if o.resources.gpus]
        rows.append(
            [
                str(i),
                *g.key,
                ",".join(kinds),
                _range(low, high),
                _range(min(per_gpu), max(per_gpu)) if per_gpu else "-",
                str(len(g.offers)),
                f"{g.cheapest.backend} {g.cheapest.instance_type}",
            ]
        )
    headers = ["#", *[k.upper() for k in keys], "SPOT", "PRICE", "$/GPU", "OFFERS", "CHEAPEST"]
    table = render_table(headers, rows)
    if len(shown) < len(groups):
        table += f"\n\nShown {len(shown)} of {len(groups)} groups ({len(offers)} offers)"
    return table


def _range(low: float, high: float) -> str:
    return (
        format_price(low)
        if abs(high - low) < 1e-9
        else f"{format_price(low)}..{format_price(high)}"
    )


def offers_json(
    offers: Sequence[Offer],
    max_offers: int | None = None,
    *,
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> str:
    """The offers as JSON for scripts: every field of each shown offer, and the totals."""
    shown = list(offers if max_offers is None else offers[:max_offers])
    doc: dict[str, Any] = {
        "offers": [o.model_dump(mode="json") for o in shown],
        "shown": len(shown),
        "total": len(offers),
        "max_price": max((o.price for o in offers), default=None),
        "notes": list(notes),
    }
    if extra:
        doc.update(extra)
    return json.dumps(doc, indent=2)

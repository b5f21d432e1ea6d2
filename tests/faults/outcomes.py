"""The rows of the fault-injection table, kept for the terminal summary."""

from __future__ import annotations

#: one row per case run: backend, phase, victim, status, exit code, leftovers, stop/down
OUTCOMES: list[dict[str, str]] = []

COLUMNS = ("backend", "phase", "victim", "status", "exit", "left over", "stop+down")
#: the phases in the order a run goes through them
PHASES = ("provisioning", "upload", "running", "stopping", "teardown")


def render_table(rows: list[dict[str, str]]) -> list[str]:
    widths = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]

    def order(row: dict[str, str]) -> tuple[str, int, str]:
        phase = PHASES.index(row["phase"]) if row["phase"] in PHASES else len(PHASES)
        return row["backend"], phase, row["victim"]

    for row in sorted(rows, key=order):
        cells = [row.get(c, "").ljust(w) for c, w in zip(COLUMNS, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines

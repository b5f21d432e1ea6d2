"""Text the CLI prints: the plan, the runs table. Pure functions of data, tested as data."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from iacrun.cli.tables import render_table
from iacrun.orchestrator.models.units import format_duration, format_price

if TYPE_CHECKING:
    from iacrun.orchestrator.host.cluster import NodeRecord
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.registry import RunRecord
    from iacrun.orchestrator.registry.schedules import ScheduleRecord


def plan_text(spec: RunSpec) -> str:
    req = spec.requirements
    retry = "no"
    if spec.retry is not None:
        retry = f"{','.join(spec.retry.on_events)} for {format_duration(spec.retry.duration)}"
    rows = [
        ("Configuration", spec.config_path),
        ("Run name", spec.run_name or "(generated)"),
        ("Type", "task"),
        ("Resources", req.resources.render()),
        *([("Nodes", str(spec.nodes))] if spec.nodes > 1 else []),
        ("Spot policy", req.spot_policy),
        ("Max price", f"${req.max_price:g}/h" if req.max_price else "-"),
        ("Max duration", format_duration(spec.max_duration) if spec.max_duration else "off"),
        ("Retry policy", retry),
    ]
    if spec.schedule is not None:
        following = spec.schedule.next_time(time.time())
        rows.append(
            (
                "Schedule",
                f"{', '.join(spec.schedule.cron)} (UTC); next {utc_minute(following)}"
                + ("; runs may overlap" if spec.schedule.concurrent else ""),
            )
        )
    if spec.ports:
        rows.append(("Ports", ", ".join(p.render() for p in spec.ports)))
    if spec.env:
        rows.append(("Env", ", ".join(f"{k}=***" for k in sorted(spec.env))))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f" {k.ljust(width)}  {v}" for k, v in rows)


def utc_minute(timestamp: float) -> str:
    """A time as schedules are written: UTC, to the minute."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(timestamp: float, now: float | None = None) -> str:
    delta = max(0, int((now or time.time()) - timestamp))
    if delta < 60:
        return f"{delta} sec ago"
    if delta < 3600:
        return f"{delta // 60} min ago"
    if delta < 86400:
        return f"{delta // 3600} hours ago"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def one_line(text: str) -> str:
    """`text` with its control characters escaped (`\\n`), so a name from a broken registry
    row or a hand-edited file cannot break a table or a line of output."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def local_user() -> str:
    """Who submits a run in-process: `$USER@host`."""
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}"


def submitter(run: RunRecord, *, remote: bool) -> str | None:
    """Who submitted the run: the server's user; in-process, the local user (a run the server
    holds without one was submitted on the server's machine, in-process: None)."""
    if run.submitted_by is not None:
        return run.submitted_by
    return None if remote else local_user()


def runs_table(runs: Sequence[RunRecord], now: float | None = None, *, users: bool = False) -> str:
    """The runs as `iacrun ps` shows them; `users` adds who submitted each (a server's runs)."""
    rows = []
    for run in runs:
        resources = run.offer.resources.render() if run.offer else ""
        if resources and run.spec.nodes > 1:
            resources = f"{run.spec.nodes} nodes x {resources}"
        status = str(run.status)
        if run.reason and run.status not in ("running", "submitted", "provisioning"):
            reason = one_line(run.reason)
            reason = reason if len(reason) <= 60 else reason[:59] + "…"
            status = f"{run.status} ({reason})"
        rows.append(
            [
                one_line(run.name),
                run.backend or "-",
                resources or "-",
                format_price(run.price) if run.price is not None else "-",
                status,
                *([one_line(run.submitted_by or "-")] if users else []),
                ago(run.submitted_at, now),
            ]
        )
    user = ["USER"] if users else []
    return render_table(
        ["NAME", "BACKEND", "RESOURCES", "PRICE", "STATUS", *user, "SUBMITTED"], rows
    )


def schedules_table(schedules: Sequence[ScheduleRecord]) -> str:
    """Schedules as `ps` lists them under the runs: when each fires next, and its latest run."""
    rows = []
    for schedule in schedules:
        last = "-"
        if schedule.last_run_name is not None:
            last = f"{one_line(schedule.last_run_name)} ({schedule.last_run_status or '?'})"
        rows.append(
            [
                one_line(schedule.name),
                one_line(", ".join(schedule.crons)),
                utc_minute(schedule.next_at) if schedule.active else "stopped",
                last,
                one_line(schedule.submitted_by or "-"),
            ]
        )
    return render_table(["SCHEDULE", "CRON (UTC)", "NEXT", "LAST RUN", "BY"], rows)


def schedule_json(schedule: ScheduleRecord) -> dict[str, object]:
    """A schedule for scripts, as `ps --json` lists it after the runs (`type`: "schedule")."""
    return {
        "type": "schedule",
        "name": schedule.name,
        "crons": schedule.crons,
        "active": schedule.active,
        "next_at": schedule.next_at if schedule.active else None,
        "stopped_at": schedule.stopped_at,
        "concurrent": schedule.concurrent,
        "last_run": schedule.last_run_name,
        "last_run_status": None
        if schedule.last_run_status is None
        else schedule.last_run_status.value,
        "user": schedule.submitted_by,
        "created_at": schedule.created_at,
    }


def run_json(
    run: RunRecord, nodes: Sequence[NodeRecord] = (), *, remote: bool = False
) -> dict[str, object]:
    """A run for scripts (`type`: "run"); `nodes`: every node's job (rank, host, how it
    ended); `user`: who submitted it (see `submitter`)."""
    data: dict[str, object] = {"type": "run"}
    # `node_hosts` (the hosts a multi-node run claimed) is what `nodes` shows, node by node
    data.update(run.model_dump(mode="json", exclude={"spec", "supervisor_pid", "node_hosts"}))
    data["user"] = submitter(run, remote=remote)
    data["duration"] = run.duration
    data["cost"] = run.cost
    data["nodes"] = [
        {
            "rank": n.rank,
            "address": n.host.address,
            "internal_ip": n.host.internal_ip,
            "run_dir": n.host.run_dir,
            "status": n.status,
            "exit_code": n.exit_code,
            "reason": n.reason,
        }
        for n in nodes
    ]
    return data

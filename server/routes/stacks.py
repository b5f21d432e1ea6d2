"""Stacks in the state backend, leaks flagged; destroying a leaked one (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from iacrun.server.auth import Admin, User
from iacrun.server.errors import RESPONSES
from iacrun.server.schema import Destroyed, StackInfo
from iacrun.server.state import state_of

router = APIRouter(tags=["stacks"], responses=RESPONSES)


@router.get("/stacks")
def stacks(request: Request, principal: User) -> list[StackInfo]:
    return [
        StackInfo(
            name=row.stack.name,
            resources=row.stack.resource_count,
            last_update=row.stack.last_update.timestamp() if row.stack.last_update else None,
            result=row.stack.result,
            update_in_progress=row.stack.update_in_progress,
            run=row.run.name if row.run else None,
            run_status=row.run.status.value if row.run else None,
            owner=row.owner.label,
            leak=row.leak,
            note=row.note,
        )
        for row in state_of(request).orchestrator.stacks()
    ]


@router.delete("/stacks/{stack}")
def destroy_stack(stack: str, request: Request, principal: Admin) -> Destroyed:
    """Destroy and remove a stack no live run owns; only this server's home's (never --force
    through the API: another home's stack is refused, saying whose it is)."""
    return Destroyed(message=state_of(request).orchestrator.destroy_stack(stack))

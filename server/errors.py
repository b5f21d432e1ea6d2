"""Errors as the API returns them: `{"error": {"type", "message", "exit_code"}}`, where `type` is
the class of iacrun's error tree (orchestrator/errors.py) the client raises again, and `message`
the one line the CLI prints."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException

from iacrun.orchestrator import errors
from iacrun.orchestrator.models.validation import problem

#: the HTTP status of each kind of error; the first class in this order that matches wins
STATUS: tuple[tuple[type[errors.IacrunError], int], ...] = (
    (errors.AuthError, 401),
    (errors.ForbiddenError, 403),
    (errors.NotFoundError, 404),
    (errors.ServerUnreachableError, 502),
    (errors.RunNotFoundError, 404),
    (errors.RunNameTakenError, 409),
    (errors.RunNotRunningError, 409),
    (errors.PortClosedError, 502),
    (errors.InputError, 400),
    (errors.NoOfferError, 503),
    (errors.BackendError, 503),
)


class ErrorDetail(BaseModel):
    type: str
    message: str
    exit_code: int


class ErrorBody(BaseModel):
    error: ErrorDetail


def status_of(exc: errors.IacrunError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def error_response(status: int, type_: str, message: str, exit_code: int) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(type=type_, message=message, exit_code=exit_code))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _iacrun_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.IacrunError)
    return error_response(status_of(exc), type(exc).__name__, str(exc), exc.exit_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details: list[Any] = list(exc.errors())
    if not details:
        return error_response(422, "InputError", "invalid request", errors.InputError.exit_code)
    first: ErrorDetails = details[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    line = problem(first)  # the one formatter of pydantic's errors
    message = f"{where}: {line}" if where else line
    return error_response(422, "InputError", message, errors.InputError.exit_code)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = "NotFoundError" if exc.status_code == 404 else "IacrunError"
    return error_response(exc.status_code, kind, str(exc.detail), 1)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.IacrunError, _iacrun_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


#: for routes' OpenAPI: the error body under each status they may answer
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422, 503)
}

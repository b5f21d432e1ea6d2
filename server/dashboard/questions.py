"""What the dashboard asks before a form stops, destroys or revokes something, in one place.

The question is asked twice over: the page's form carries it (`data-confirm`, asked by dash.js with
`window.confirm`, which then marks the form `confirmed`), and a form posted without that mark (no
JavaScript, or a form sent by hand) gets the same question as a page of its own (`ask`), whose
button posts the form again, confirmed. Nothing is stopped or destroyed unasked."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form

#: the form field that says the question was answered yes
CONFIRMED = "confirmed"

#: the form's field: "yes" once the user said so
Confirmed = Annotated[str, Form(alias=CONFIRMED)]


def stop_run(name: str) -> str:
    return f"Stop the run {name}? Its job is stopped and its machine torn down."


def stop_schedule(name: str) -> str:
    return (
        f"Stop the schedule {name}? No run starts from it any more, and its active run is stopped."
    )


def destroy_stack(name: str) -> str:
    return f"Destroy the stack {name} and everything in it?"


def revoke_token(name: str, user: str) -> str:
    return f"Revoke the token {name} of {user}? Whoever uses it is refused from now on."


def answered(value: str) -> bool:
    return value == "yes"

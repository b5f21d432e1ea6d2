"""Run names: the one rule every name obeys wherever it comes from (a task file's `name`,
`-n`, the registry), and names like `brave-otter-1` for tasks that do not name themselves.

A name becomes a folder under ~/.iacrun/runs, a stack name and a container name, so it is
held to dstack's rule: lowercase letters, digits and dashes, starting with a letter, at most
41 characters; nothing else (no `/`, `.`, newline) can reach a path or a command line."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

from iacrun.orchestrator.errors import InputError

RUN_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,40}")
RUN_NAME_RULE = "use lowercase letters, digits and dashes, starting with a letter (at most 41)"


def run_name_problem(name: object) -> str | None:
    """Why `name` cannot be a run's name, or None when it can."""
    if isinstance(name, str) and RUN_NAME_RE.fullmatch(name):
        return None
    return f"{name!r} is not a valid run name; {RUN_NAME_RULE}"


def valid_run_name(value: str | None) -> str | None:
    """For model fields (`RunName`): None passes; a name that breaks the rule is a ValueError."""
    problem = None if value is None else run_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: an optional run name, checked by the one rule wherever a model takes one
RunName = Annotated[str | None, AfterValidator(valid_run_name)]


def check_run_name(name: str, flag: str | None = None) -> str:
    """`name` if it is a valid run name, else an InputError (prefixed with the flag, if any)."""
    problem = run_name_problem(name)
    if problem is not None:
        raise InputError(f"{flag}: {problem}" if flag else problem)
    return name


ADJECTIVES = [
    "brave",
    "calm",
    "clever",
    "eager",
    "fancy",
    "gentle",
    "happy",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "mighty",
    "nimble",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "shiny",
    "smart",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "witty",
    "young",
    "bold",
    "bright",
    "cosmic",
]
ANIMALS = [
    "otter",
    "panda",
    "falcon",
    "badger",
    "beaver",
    "bison",
    "cobra",
    "crane",
    "dingo",
    "eagle",
    "ferret",
    "gecko",
    "heron",
    "ibex",
    "jaguar",
    "koala",
    "lemur",
    "lynx",
    "marten",
    "moose",
    "newt",
    "ocelot",
    "orca",
    "puffin",
    "quail",
    "raven",
    "seal",
    "tiger",
    "walrus",
]


def generate_name(in_use: Callable[[str], set[str]], rng: random.Random | None = None) -> str:
    """`adjective-animal-N`, N the smallest number not used before with that pair."""
    rng = rng or random.Random()
    prefix = f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}-"
    taken = in_use(prefix)
    number = 1
    while f"{prefix}{number}" in taken:
        number += 1
    return f"{prefix}{number}"

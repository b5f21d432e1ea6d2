"""Run names like `brave-otter-1` for tasks that do not name themselves."""

from __future__ import annotations

import random
from collections.abc import Callable

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

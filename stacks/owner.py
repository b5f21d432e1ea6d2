"""Who made a stack: the iacrun home (its home tag) and, for people, `user@host`.

Every iacrun home draws a home tag once (`orchestrator/paths.home_tag`): a short random id that
ends every stack name the home makes (`<run>-<id>-<home tag>`, `orchestrator/backends/stack_spec`),
so two homes sharing one state backend never pick the same name. The owner is also recorded in
the stack (its config `iacrun:owner`, which the state backend keeps with every update) and on
every cloud resource (the tag `iacrun:owner`), as one value::

    k3x9q2ab alice@laptop

The home tag decides; `user@host` is for the people who read `iacrun stacks`.
"""

from __future__ import annotations

import getpass
import re
import secrets
import socket
import string
from dataclasses import dataclass

#: the stack config key (and cloud tag) that records the owner
OWNER_KEY = "iacrun:owner"
#: a home tag: 8 characters, a lowercase letter first (so `<run>-<id>-<tag>` never reads as an
#: older `<run>-<id>` name, whose last part is all digits), then lowercase letters and digits
HOME_TAG = re.compile(r"[a-z][a-z0-9]{7}")
#: what a tag value may hold on AWS (letters, digits, spaces and `_ . : / = + - @`)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/=+@-]")


def new_home_tag() -> str:
    """A fresh random home tag (26 * 36**7, about 2e12 possibilities)."""
    first = secrets.choice(string.ascii_lowercase)
    rest = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(7))
    return first + rest


def this_user() -> str:
    """`user@host` of this process, reduced to what a cloud tag value may hold."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a bare container)
        user = "unknown"
    who = f"{user}@{socket.gethostname() or 'unknown'}"
    return _UNSAFE.sub("-", who)[:200]


@dataclass(frozen=True)
class Owner:
    """The home that made a stack (`home`, its tag) and who ran it there (`who`, or "")."""

    home: str
    who: str = ""

    @property
    def value(self) -> str:
        """The recorded form: `<home tag> <user@host>`."""
        return f"{self.home} {self.who}".strip()

    @classmethod
    def parse(cls, value: str | None) -> Owner | None:
        """The owner a recorded value names; None for none, or a value not of this form."""
        if not value:
            return None
        home, _, who = value.strip().partition(" ")
        if not HOME_TAG.fullmatch(home):
            return None
        return cls(home=home, who=who.strip())

    def describe(self) -> str:
        """How messages name it: `alice@laptop (home k3x9q2ab)`, or `home k3x9q2ab`."""
        return f"{self.who} (home {self.home})" if self.who else f"home {self.home}"

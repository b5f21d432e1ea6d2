"""SIGTERM and SIGHUP while the CLI follows a run: how CI systems cancel a step.

GitHub Actions and GitLab CI end a cancelled step with SIGINT or SIGTERM and, some seconds later,
SIGKILL; a closed terminal sends SIGHUP. From the moment `up` submits a run (and during `iacrun
attach`), these stop the run, as Ctrl-C does without a terminal (see cli/attach.py), and the CLI
exits with 128 + the signal's number.

`catch()` installs the handlers, `release()` puts the previous ones back. Until `arm()` a
signal is only remembered, so that `up`'s submit is never cut in half (the run would be recorded
with nobody to stop it); once armed, the first signal raises `StopSignal` wherever the CLI is
(following the log, waiting for the machine). While the run is being stopped (`stopping()`), any
further SIGTERM, SIGHUP or SIGINT is only counted: the stop request is never abandoned halfway,
and the wait for its end is cut short.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

#: the signals that stop a followed run besides Ctrl-C
STOPPING = (signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived while a run was followed.

    A KeyboardInterrupt, because asyncio lets only those (and SystemExit) out of a callback that
    raises them; any other exception raised by a signal handler there would be logged and lost.
    Catch it before KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Signals:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.armed = False
        self.got: int | None = None
        #: signals that came after the first one, while the run was being stopped
        self.again = 0
        #: the handlers ours replaced, put back by `release()`
        self.previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.got is not None:
            self.again += 1
            return
        self.got = signum
        if self.armed:
            raise StopSignal(signum)

    def _install(self, sig: int) -> None:
        if sig not in self.previous:
            self.previous[sig] = signal.signal(sig, self._on_signal)

    def catch(self) -> None:
        for sig in STOPPING:
            self._install(sig)

    def arm(self) -> None:
        """Raise StopSignal now for a signal that came while disarmed, and at once from now on."""
        self.catch()
        self.armed = True
        if self.got is not None:
            raise StopSignal(self.got)

    def stopping(self) -> None:
        """A stop has begun: every further signal, Ctrl-C included, is only counted."""
        self.got = self.got or signal.SIGINT
        self._install(signal.SIGINT)

    def release(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self._reset()


_signals = _Signals()


def catch() -> None:
    """Catch SIGTERM and SIGHUP from now on; they take effect at `arm()`."""
    _signals.catch()


def arm() -> None:
    _signals.arm()


def stopping() -> None:
    _signals.stopping()


def release() -> None:
    """Put the previous handlers back and forget what came (the run is followed no more)."""
    _signals.release()


def signalled_again() -> bool:
    """Whether a signal came after the stop began (the CI is about to kill us)."""
    return _signals.again > 0

"""Stop signals: what a terminal, a CI runner or a scheduler sends to end a run.

A terminal sends SIGINT (Ctrl-C) and SIGHUP (closed); CI runners cancel a job with SIGTERM
(GitHub Actions, GitLab, Kubernetes, Slurm at the end of the time limit); Slurm's
``--signal`` sends SIGUSR1 or SIGUSR2, whose default action also kills the process. With
their default disposition each kills Python on the spot: no ``finally``, no flush, finished
work lost. :class:`SignalGuard` turns each of them into an exception in the main thread
(:class:`Stopped`, a KeyboardInterrupt, so pytest and every ``finally`` unwind as for
Ctrl-C), once; a signal that arrives while the guard is **holding** (the end of a session,
writing files) is only recorded, so the writes finish whole.

Handlers are installed only from the main thread and only over the default disposition
(``SIG_DFL``, or Python's own SIGINT handler): a handler someone else set, or an ignored
signal (``nohup``), is left alone. :meth:`SignalGuard.restore` puts the previous handlers
back. The exit status after a stop is ``128 + signal`` (143 for SIGTERM), the shell's
convention.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

#: the signals that stop a run, by name (those this platform has are used)
STOP_SIGNALS: tuple[str, ...] = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """The shell's exit status of a process ended by ``signum``: 128 + the number."""
    return 128 + int(signum)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived: raised in the main thread, once."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"stopped by {signal_name(self.signum)}")

    @property
    def name(self) -> str:
        return signal_name(self.signum)

    @property
    def exit_status(self) -> int:
        return exit_status(self.signum)


def _default(current: Any) -> bool:
    return current is signal.SIG_DFL or current is signal.default_int_handler


class SignalGuard:
    """Stop signals as one exception in the main thread; see the module docstring.

    ``sigint``: the exception SIGINT raises: :class:`Stopped` (the default), or
    ``KeyboardInterrupt`` itself, as pytest expects of Ctrl-C.
    """

    def __init__(self, sigint: Callable[[int], BaseException] = Stopped) -> None:
        self._sigint = sigint
        self._previous: dict[int, Any] = {}
        self._holding = 0
        self._finishing = False
        self._raised = False
        #: the signals received, in order
        self.received: list[int] = []

    # -- installing --------------------------------------------------------------------
    def install(self) -> SignalGuard:
        """Install the handlers (main thread only; over default dispositions only).
        Returns self; :attr:`installed` lists what was taken over."""
        global _active
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                current = signal.getsignal(signum)
                if not _default(current):
                    continue  # someone else's handler, or ignored: theirs to keep
                signal.signal(signum, self._handle)
            except (OSError, ValueError):  # pragma: no cover - not settable here
                continue
            self._previous[int(signum)] = current
        if self._previous and _active is None:
            _active = self
        return self

    @property
    def installed(self) -> list[str]:
        return [signal_name(s) for s in self._previous]

    def restore(self) -> None:
        """Put back the handlers found at :meth:`install` (where ours is still there)."""
        global _active
        for signum, previous in self._previous.items():
            try:
                if signal.getsignal(signum) == self._handle:
                    signal.signal(signum, previous)
            except (OSError, ValueError):  # pragma: no cover
                pass
        self._previous.clear()
        if _active is self:
            _active = None

    # -- receiving ---------------------------------------------------------------------
    @property
    def signum(self) -> int | None:
        """The first stop signal received, or None."""
        return self.received[0] if self.received else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(int(signum))
        if self._holding or self._finishing or self._raised:
            return  # recorded: the held block or the session's end acts on it
        self._raised = True
        raise self._exception(signum)

    def _exception(self, signum: int) -> BaseException:
        if signum == signal.SIGINT:
            return self._sigint(signum)
        return Stopped(signum)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Within the block a stop signal is only recorded; leaving it raises what a
        signal received meanwhile would have raised (unless one was raised already, or
        the run is finishing)."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if (
            not self._holding
            and not self._finishing
            and not self._raised
            and self.signum is not None
        ):
            self._raised = True
            raise self._exception(self.signum)

    def finish(self) -> None:
        """The run is ending (flushing what it finished): from now on a stop signal is
        only recorded, never raised."""
        self._finishing = True


#: the guard installed by this process's main thread (see :func:`held`)
_active: SignalGuard | None = None


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold stop signals for the block (several files written as one), when a guard is
    installed; else nothing."""
    guard = _active
    if guard is None:
        yield
        return
    with guard.hold():
        yield


__all__ = [
    "STOP_SIGNALS",
    "SignalGuard",
    "Stopped",
    "exit_status",
    "held",
    "signal_name",
]

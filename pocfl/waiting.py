"""Waiting on a live project, in one place: by the chain's clock, through outages, one line per state change.

The long-running commands (``pocfl train``, ``pocfl aggregate --follow``) share these pieces:

* the **chain's time** is the timestamp of its latest block: the time every ``eth_call`` and gas estimate sees.
  A local node that mines on demand lags the wall clock until the next block, so a window "open by the wall
  clock" may still be closed for the contract; waiting by the wall clock is what made trainers fail with
  ``RoundNotOpen`` and the aggregator with ``SubmissionWindowOpen``;
* :func:`start_when_up` runs their startup (connecting, reading the project and its manifest) until the chain and
  the store answer: started during an outage, they wait instead of exiting;
* :func:`is_transient` tells an outage (an unreachable store or chain, a timeout) from a real error;
* :class:`Backoff` spaces the retries of an outage (capped exponential), and :class:`StatusLine` says what is
  awaited once per change instead of once per poll;
* :func:`check_deadline` refuses to send a window-bound transaction whose deadline is so close that the block
  it lands in may be stamped past it (the transaction would revert and still cost gas).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from pocfl.errors import ChainError, ChainUnavailableError
from pocfl.store.errors import StoreUnavailableError

__all__ = [
    "DEADLINE_MARGIN",
    "Backoff",
    "DeadlineTooCloseError",
    "StatusLine",
    "check_deadline",
    "clock_lag_hint",
    "hhmmss",
    "is_transient",
    "outage_line",
    "retry_transient",
    "start_when_up",
]

T = TypeVar("T")

DEADLINE_MARGIN = 4
"""Seconds before a deadline under which a window-bound transaction is not sent (a few blocks of a local node)."""

MAX_BACKOFF = 15.0
"""Longest wait between two retries of an outage."""

LAG_HINT_AFTER = 20
"""Seconds the chain's latest block may trail the wall clock before the waiting line says so."""

_TRANSIENT_NAMES = frozenset(
    {
        # requests / urllib3 / web3 names: matched by name so this module imports none of them
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "TimeExhausted",
        "ChunkedEncodingError",
        "ProtocolError",
        "RemoteDisconnected",
    }
)


class DeadlineTooCloseError(ChainError):
    """A window-bound transaction was not sent: the chain's time is within the safety margin of its deadline."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage worth waiting out: an unreachable store or node, a dropped connection, a timeout.

    Contract reverts and pocfl's other named errors are not: retrying them changes nothing.
    """
    if isinstance(exc, StoreUnavailableError | ChainUnavailableError | ConnectionError | TimeoutError):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


class Backoff:
    """Capped exponential delays: ``first``, ``2 * first``, ... up to ``cap``; :meth:`reset` after a success."""

    def __init__(self, first: float = 0.5, cap: float = MAX_BACKOFF, factor: float = 2.0) -> None:
        if first < 0 or cap < first or factor < 1:
            raise ValueError(f"need 0 <= first <= cap and factor >= 1, got {first}, {cap}, {factor}")
        self.first, self.cap, self.factor = first, cap, factor
        self._next = first

    def next(self) -> float:
        """The delay to wait now (and double the following one, up to the cap)."""
        delay = self._next
        self._next = min(self._next * self.factor, self.cap)
        return delay

    def reset(self) -> None:
        """Start again from ``first`` (the outage is over)."""
        self._next = self.first


class StatusLine:
    """Passes a waiting message on only when its ``key`` (the state awaited) changes: no line per poll."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.key: str | None = None

    def __call__(self, key: str, text: str) -> None:
        """Say ``text`` if the state ``key`` differs from the last one said."""
        if key != self.key:
            self.key = key
            self.say(text)

    def clear(self) -> None:
        """Forget the last state (something else was printed since)."""
        self.key = None


def retry_transient(
    what: str,
    fn: Callable[[], T],
    *,
    sleep: Callable[[float], None],
    status: StatusLine,
    backoff: Backoff | None = None,
    attempts: int | None = None,
) -> T:
    """Run ``fn`` until it returns, waiting out transient failures (:func:`is_transient`) with capped backoff.

    Parameters
    ----------
    what
        What ``fn`` does, for the waiting line (``"fetch the global model"``).
    attempts
        Give up (re-raise) after this many attempts; None retries for as long as the outage lasts.

    Raises
    ------
    Exception
        Whatever ``fn`` raised that is not transient, or the last transient error after ``attempts``.
    """
    backoff = backoff or Backoff()
    attempt = 0
    while True:
        attempt += 1
        try:
            result = fn()
        except Exception as exc:
            if not is_transient(exc) or (attempts is not None and attempt >= attempts):
                raise
            status(*outage_line(exc, what))
            sleep(backoff.next())
            continue
        if attempt > 1:
            status("recovered", f"{what}: back after {attempt - 1} failed attempt(s)")
        return result


def start_when_up(
    what: str,
    fn: Callable[[], T],
    *,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    cap: float = MAX_BACKOFF,
) -> T:
    """A long-running command's startup: run ``fn`` until it returns, waiting out outages for as long as they last.

    The same waiting as the commands' loops (:func:`retry_transient` without an attempt limit): one status line per
    kind of outage through ``say``, capped backoff. Started while the chain or the store is down, ``pocfl train``
    and ``pocfl aggregate --follow`` so wait for it instead of exiting; ``fn`` must be safe to run again.

    Raises
    ------
    Exception
        Whatever ``fn`` raised that is not transient (a bad option, a missing deployment, a revert).
    """
    return retry_transient(what, fn, sleep=sleep, status=StatusLine(say), backoff=Backoff(cap=cap), attempts=None)


def outage_line(exc: BaseException, what: str = "") -> tuple[str, str]:
    """The :class:`StatusLine` key and text of an outage: one key per kind of outage, whoever meets it."""
    name = type(exc).__name__
    doing = f" ({what})" if what else ""
    return f"outage {name}", f"waiting out an outage{doing}: {name}: {exc}; retrying, at most {MAX_BACKOFF:g} s apart"


def check_deadline(now: int, deadline: int, margin: int, what: str) -> None:
    """Refuse a transaction that must be mined before ``deadline`` when the chain's time ``now`` is too close.

    Raises
    ------
    DeadlineTooCloseError
        ``now + margin >= deadline``: the next blocks may be stamped at or past the deadline, the contract
        would revert and the sender would pay gas for nothing. Nothing was sent.
    """
    if now + margin >= deadline:
        left = deadline - now
        when = f"{left} s left" if left > 0 else f"passed {-left} s ago"
        raise DeadlineTooCloseError(
            f"not sent: {what} must be mined before {hhmmss(deadline)} ({when} by the chain's clock, "
            f"margin {margin} s); it would likely revert and still cost gas"
        )


def hhmmss(timestamp: int) -> str:
    """``12:34:56 UTC`` for a unix timestamp (waiting lines stay the same while the target does)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S UTC")


def clock_lag_hint(chain_time: int, wall: float | None = None) -> str:
    """A hint when the chain's latest block trails the wall clock by more than :data:`LAG_HINT_AFTER` s, else ``""``.

    A node that mines only on demand keeps its clock still until a transaction arrives; windows then open and
    close by its blocks, not by the wall clock.
    """
    lag = int((time.time() if wall is None else wall) - chain_time)
    if lag <= LAG_HINT_AFTER:
        return ""
    return (
        f" (the chain's latest block is {lag} s behind the wall clock: is the node mining? "
        "`pocfl chain up` mines a block every second)"
    )

"""Conveniences of local development chains (anvil, Hardhat, the embedded chain): funding accounts, moving the clock.

The functions behind ``pocfl chain fund`` and ``pocfl chain advance``. Public chains refuse both: the messages say
so, naming the chain as the user gave it (``rpc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pocfl.errors import ChainError, ChainRequestError, ConfigError

if TYPE_CHECKING:
    from pocfl.chain.backends import Chain
    from pocfl.connection import Connection

ADVANCE_POINTS = ("start", "submission-close", "aggregation-close")
"""The points of a project's current round ``advance_clock`` can move the clock to exactly."""


@dataclass(frozen=True)
class Funding:
    """ETH sent to ``address`` from the node's dev account, and its balance afterwards."""

    address: str
    funded_wei: int
    balance_wei: int


def fund_account(chain: Chain, rpc: str, address: str, wei: int) -> Funding:
    """Send ``wei`` to ``address`` from the node's pre-funded dev account (local nodes only).

    Raises
    ------
    ConfigError
        The node has no unlocked dev account (a public chain).
    ChainError
        The node refused the transfer.
    """
    if not chain.w3.eth.accounts:
        raise ConfigError(
            f"{rpc} has no unlocked dev account: `pocfl chain fund` works on local nodes "
            "(`pocfl chain up`); on public chains use a faucet"
        )
    try:
        chain.fund(address, wei)
    except ChainError:
        raise
    except Exception as exc:
        raise ChainError(f"the node refused to fund {address}: {exc}") from None
    return Funding(address, wei, int(chain.w3.eth.get_balance(address)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClockMove:
    """The chain's clock before and after a move, and the timestamp asked for."""

    before: int
    timestamp: int
    target: int

    @property
    def advanced(self) -> int:
        """Seconds the clock moved."""
        return self.timestamp - self.before


def advance_clock(
    conn: Connection, seconds: int | None = None, to: str | None = None, project: int | None = None
) -> ClockMove:
    """Move a local node's clock forward and mine a block: by ``seconds``, or exactly to ``to``.

    ``to`` is a point of ``project``'s current round (:data:`ADVANCE_POINTS`) or a unix timestamp; the clock never
    moves backwards (a target already passed leaves it where it is).

    Raises
    ------
    ConfigError
        Neither or both of ``seconds`` and ``to``; an unknown point; a point without an existing ``project``; a
        node that does not let its clock be moved.
    """
    if (seconds is None) == (to is None):
        raise ConfigError("give SECONDS or --to POINT|TIMESTAMP (one of them)")
    chain = conn.chain()
    before = chain.now()
    target = before + seconds if seconds is not None else _target(conn, str(to), project)
    try:
        if seconds is not None:
            after = chain.increase_time(seconds)
        elif target > before:
            after = chain.set_time(target)
        else:
            after = before
    except ChainRequestError as exc:
        raise ConfigError(
            f"{conn.rpc} does not let pocfl move its clock ({exc}): only local anvil/Hardhat nodes do"
        ) from None
    return ClockMove(before, after, target)


def _target(conn: Connection, to: str, project: int | None) -> int:
    """The timestamp ``to`` names: a point of the project's current round, or a unix time."""
    if to.isdigit():
        return int(to)
    if to not in ADVANCE_POINTS:
        raise ConfigError(f"--to must be one of {', '.join(ADVANCE_POINTS)} or a unix timestamp, got {to!r}")
    if project is None:
        raise ConfigError(f"--to {to} needs --project ID")
    state = conn.market(signer=False).project(project)
    if state.status.name == "NONE":
        raise ConfigError(f"project {project} does not exist on this marketplace")
    return {
        "start": state.params.start_time,
        "submission-close": state.submission_deadline,
        "aggregation-close": state.aggregation_deadline,
    }[to]

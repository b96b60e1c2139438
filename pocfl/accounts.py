"""What an account does and holds on the marketplace: joining and leaving projects, stakes, credits, withdrawals.

The functions behind ``pocfl register``, ``leave``, ``release-stake``, ``claim`` and ``account show``: each sends at
most one transaction and returns a frozen result (the receipt included) for the caller to render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pocfl.errors import ConfigError

if TYPE_CHECKING:
    from pocfl.chain.client import MarketplaceClient
    from pocfl.chain.types import Receipt
    from pocfl.connection import Connection


@dataclass(frozen=True)
class StakeMove:
    """A stake paid into a project (``register``) or credited back to the trainer (``leave``, ``release-stake``)."""

    project_id: int
    trainer: str
    amount_wei: int
    receipt: Receipt


def register(market: MarketplaceClient, project_id: int) -> StakeMove:
    """Register the signing account as a trainer of a project, paying its stake (refunded after the project ends)."""
    stake = market.project(project_id).params.stake
    receipt = market.register(project_id, stake)
    return StakeMove(project_id, market.sender, stake, receipt)


def leave(market: MarketplaceClient, project_id: int) -> StakeMove:
    """Unregister before training starts; the stake is credited back (withdraw with :func:`claim`)."""
    return _credited(project_id, market.sender, market.leave(project_id), "TrainerLeft", "stakeCredited")


def release_stake(market: MarketplaceClient, project_id: int) -> StakeMove:
    """Get the stake of an ended project credited back (withdraw with :func:`claim`)."""
    return _credited(project_id, market.sender, market.release_stake(project_id), "StakeReleased", "amount")


def _credited(project_id: int, trainer: str, receipt: Receipt, event: str, field: str) -> StakeMove:
    """The stake credited back, as the transaction's ``event`` reports it in ``field``."""
    return StakeMove(project_id, trainer, int(receipt.event(event).args[field]), receipt)


@dataclass(frozen=True)
class Withdrawal:
    """Credits withdrawn from ``account`` to ``to``; no transaction (``receipt`` None) when nothing was owed."""

    account: str
    to: str
    amount_wei: int
    receipt: Receipt | None


def claim(market: MarketplaceClient, to: str | None = None) -> Withdrawal:
    """Withdraw everything the signing account is owed (rewards and released stakes, all projects).

    The balance is read first: with nothing owed no transaction is sent (no gas spent) and the amount is 0.
    """
    recipient = to or market.sender
    if market.credits(market.sender) == 0:
        return Withdrawal(market.sender, recipient, 0, None)
    amount, receipt = market.claim(to)
    return Withdrawal(market.sender, recipient, amount, receipt)


@dataclass(frozen=True)
class AccountView:
    """An account's ETH balance and claimable credits.

    ``credits_wei`` is None when the chain has no marketplace to ask (``credits_error`` says why).
    """

    address: str
    chain_id: int
    balance_wei: int
    credits_wei: int | None
    credits_error: ConfigError | None


def show_account(conn: Connection) -> AccountView:
    """The signing account of ``conn``: its address, balance and credits on the connection's marketplace."""
    account = conn.account()
    chain = conn.chain()
    balance = int(chain.w3.eth.get_balance(account.address))
    credits: int | None = None
    error: ConfigError | None = None
    try:
        credits = conn.market(signer=False).credits(account.address)
    except ConfigError as exc:
        error = exc
    return AccountView(account.address, chain.chain_id, balance, credits, error)

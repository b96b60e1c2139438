"""Trainer commands: ``pocfl register``, ``leave``, ``release-stake`` and ``claim``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pocfl.cli.common import option, tx_doc
from pocfl.cli.output import eth, eth_wei, guarded
from pocfl.cli.parse import parse_address
from pocfl.cli.session import Session, connected

if TYPE_CHECKING:
    from pocfl.accounts import StakeMove

ProjectId = Annotated[int, typer.Argument(min=1, metavar="ID", help="Project id (see `pocfl project list`).")]


@guarded
@connected(deadline=True)
def register(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Register as a trainer of a project, paying its stake (refunded after the project ends)."""
    from pocfl import accounts

    paid = accounts.register(s.market(), project_id)
    s.out.result(
        {"project_id": project_id, "trainer": paid.trainer, "stake_wei": paid.amount_wei, "tx": tx_doc(paid.receipt)},
        lambda: s.out.print(
            f"Registered {paid.trainer} in project {project_id}"
            + (f", staking {eth_wei(paid.amount_wei)}." if paid.amount_wei else " (no stake).")
        ),
    )


@guarded
@connected(deadline=True)
def leave(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Unregister before training starts; the stake is credited back (withdraw with `pocfl claim`)."""
    from pocfl import accounts

    refund = accounts.leave(s.market(), project_id)
    _credited(
        s,
        refund,
        "stake_credited_wei",
        f"Left project {project_id}; {eth(refund.amount_wei)} ETH stake credited (withdraw with `pocfl claim`).",
    )


@guarded
@connected()
def release_stake(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Get the stake of an ended project credited back (withdraw with `pocfl claim`)."""
    from pocfl import accounts

    released = accounts.release_stake(s.market(), project_id)
    _credited(
        s, released, "amount_wei", f"Stake of {eth_wei(released.amount_wei)} credited; withdraw it with `pocfl claim`."
    )


def _credited(s: Session, move: StakeMove, amount_key: str, text: str) -> None:
    """Render a stake credited back: the JSON document names the amount ``amount_key``."""
    s.out.result(
        {
            "project_id": move.project_id,
            "trainer": move.trainer,
            amount_key: move.amount_wei,
            "tx": tx_doc(move.receipt),
        },
        lambda: s.out.print(text),
    )


@guarded
@connected()
def claim(
    to: Annotated[str | None, option(metavar="ADDRESS", help="Send the ether here instead.")] = None,
    *,
    s: Session,
) -> None:
    """Withdraw everything the account is owed (rewards and stakes, all projects).

    The stakes of ended projects are released first (one transaction each, listed), so no `pocfl release-stake`
    is needed before. Nothing owed is not a failure: the balance is read first (no transaction, no gas) and the
    command says so and exits 0, so scripts need no `|| true` that would hide real failures.
    """
    from pocfl import accounts

    dest = parse_address(to, "--to") if to else None
    w = accounts.claim(s.market(), dest, from_block=s.from_block)
    document = {
        "account": w.account,
        "to": w.to,
        "amount_wei": w.amount_wei,
        "amount_eth": eth(w.amount_wei),
        "tx": tx_doc(w.receipt) if w.receipt is not None else None,
        "released_stakes": [
            {"project_id": m.project_id, "amount_wei": m.amount_wei, "tx": tx_doc(m.receipt)} for m in w.released
        ],
    }

    def human() -> None:
        for m in w.released:
            s.out.print(f"Released the stake of ended project {m.project_id}: {eth_wei(m.amount_wei)}.")
        if w.receipt is None:
            s.out.print(f"nothing to withdraw for {w.account}: 0 ETH credited")
        else:
            s.out.print(f"Claimed {eth_wei(w.amount_wei)} to {w.to}.")

    s.out.result(document, human)

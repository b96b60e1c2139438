"""Trainer commands: ``pocfl register``, ``leave``, ``release-stake`` and ``claim``."""

from __future__ import annotations

from typing import Annotated

import typer

from pocfl.cli.common import tx_doc
from pocfl.cli.output import eth, eth_wei, guarded
from pocfl.cli.parse import parse_address
from pocfl.cli.session import (
    Session,
    connected,
)

ProjectId = Annotated[int, typer.Argument(min=1, metavar="ID", help="Project id (see `pocfl project list`).")]


@guarded
@connected(deadline=True)
def register(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Register as a trainer of a project, paying its stake (refunded after the project ends)."""
    m = s.market()
    stake = m.project(project_id).params.stake
    receipt = m.register(project_id, stake)
    s.out.result(
        {"project_id": project_id, "trainer": m.sender, "stake_wei": stake, "tx": tx_doc(receipt)},
        lambda: s.out.print(
            f"Registered {m.sender} in project {project_id}"
            + (f", staking {eth_wei(stake)}." if stake else " (no stake).")
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
    m = s.market()
    receipt = m.leave(project_id)
    refund = int(receipt.event("TrainerLeft").args["stakeCredited"])
    s.out.result(
        {"project_id": project_id, "trainer": m.sender, "stake_credited_wei": refund, "tx": tx_doc(receipt)},
        lambda: s.out.print(
            f"Left project {project_id}; {eth(refund)} ETH stake credited (withdraw with `pocfl claim`)."
        ),
    )


@guarded
@connected()
def release_stake(
    project_id: ProjectId,
    *,
    s: Session,
) -> None:
    """Get the stake of an ended project credited back (withdraw with `pocfl claim`)."""
    m = s.market()
    receipt = m.release_stake(project_id)
    amount = int(receipt.event("StakeReleased").args["amount"])
    s.out.result(
        {"project_id": project_id, "trainer": m.sender, "amount_wei": amount, "tx": tx_doc(receipt)},
        lambda: s.out.print(f"Stake of {eth_wei(amount)} credited; withdraw it with `pocfl claim`."),
    )


@guarded
@connected()
def claim(
    to: Annotated[str | None, typer.Option(metavar="ADDRESS", help="Send the ether here instead.")] = None,
    *,
    s: Session,
) -> None:
    """Withdraw everything the account is owed (rewards and released stakes, all projects).

    Nothing owed is not a failure: the balance is read first (no transaction, no gas) and the command says so and
    exits 0, so scripts need no `|| true` that would hide real failures.
    """
    dest = parse_address(to, "--to") if to else None
    m = s.market()
    recipient = dest or m.sender
    if m.credits(m.sender) == 0:
        s.out.result(
            {"account": m.sender, "to": recipient, "amount_wei": 0, "amount_eth": eth(0), "tx": None},
            lambda: s.out.print(f"nothing to withdraw for {m.sender}: 0 ETH credited"),
        )
        return
    amount, receipt = m.claim(dest)
    s.out.result(
        {
            "account": m.sender,
            "to": recipient,
            "amount_wei": amount,
            "amount_eth": eth(amount),
            "tx": tx_doc(receipt),
        },
        lambda: s.out.print(f"Claimed {eth_wei(amount)} to {recipient}."),
    )

"""The demos' books: every transaction and its fee, every stored object, every expected credit, every problem.

Both demos reconcile through one :class:`Ledger`: each round's ``TrainerCredited`` amounts against
:func:`pocfl.payouts.allocate` (:meth:`Ledger.credit_round`), every party's balance change (with the gas of every
transaction it sent added back, and its transaction count checked against its nonce) against the credits
(:meth:`Ledger.balances`), and every stored object read back and re-hashed (:func:`check_objects`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from eth_typing import HexStr

from pocfl.demo.result import PartyBalance, TrainerCredit
from pocfl.errors import PocflError
from pocfl.store import ContentStore, compute_cid

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from pocfl.chain.backends import Chain
    from pocfl.chain.types import Receipt


class Ledger:
    """What each party sent and paid, what the demo stored and expects to be credited, and what did not check out."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.txs: dict[str, list[str]] = {}
        self.fees: dict[str, int] = {}
        self.credits: dict[str, int] = {}
        self.stored: list[str] = []
        self.problems: list[str] = []

    def paid(self, party: str, receipt: Receipt) -> Receipt:
        """Record a transaction ``party`` sent, with its fee."""
        self.txs.setdefault(party, []).append(receipt.tx_hash)
        self.fees[party] = self.fees.get(party, 0) + receipt.fee_wei
        return receipt

    def paid_hash(self, party: str, tx_hash: str | None) -> None:
        """Record a transaction sent by library code (trainer client, aggregator node) by its hash."""
        if tx_hash is None:
            self.problems.append(f"{party}: a transaction without a hash")
            return
        raw = self.chain.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        self.txs.setdefault(party, []).append(tx_hash)
        self.fees[party] = self.fees.get(party, 0) + int(raw["gasUsed"]) * int(raw["effectiveGasPrice"])

    @property
    def transactions(self) -> int:
        """Transactions recorded so far."""
        return sum(len(v) for v in self.txs.values())

    def credit_round(
        self,
        round_: int,
        credits: Sequence[TrainerCredit],
        events: int,
        submissions: int,
        credited: int,
        expected_total: int,
    ) -> None:
        """Book a posted round's expected credits and note every credit that does not match.

        Parameters
        ----------
        round_
            The round.
        credits
            One per credited trainer.
        events, submissions
            ``TrainerCredited`` events the post emitted and the round's submissions (one event each).
        credited, expected_total
            Wei the contract credited in all (``RoundPosted.credited``) and what the payout rule predicts.
        """
        if events != submissions:
            self.problems.append(f"round {round_}: {events} TrainerCredited events for {submissions} submissions")
        for c in credits:
            self.credits[c.trainer] = self.credits.get(c.trainer, 0) + c.expected
            if c.credited != c.expected:
                self.problems.append(f"round {round_}: {c.trainer} credited {c.credited} wei, expected {c.expected}")
        if credited != expected_total:
            self.problems.append(f"round {round_}: credited {credited} wei in total, expected {expected_total}")

    def balances(
        self, accounts: Mapping[str, LocalAccount], start: Mapping[str, int], nonces: Mapping[str, int], payer: str
    ) -> tuple[PartyBalance, ...]:
        """Every party's balance change against the credits booked (``payer`` paid them all); notes mismatches.

        Each party's transaction count since ``nonces`` must also equal the transactions recorded for it, so no
        fee goes unaccounted.
        """
        w3 = self.chain.w3
        expected = {name: self.credits.get(name, 0) for name in accounts}
        expected[payer] = -sum(v for name, v in self.credits.items() if name != payer)
        parties = tuple(
            PartyBalance(
                party=name,
                address=a.address,
                start=start[name],
                end=int(w3.eth.get_balance(a.address)),
                gas=self.fees.get(name, 0),
                expected=expected[name],
            )
            for name, a in accounts.items()
        )
        self.problems += [f"{p.party}: net {p.net} wei, expected {p.expected}" for p in parties if not p.reconciled]
        for name, a in accounts.items():
            sent = int(w3.eth.get_transaction_count(a.address)) - nonces[name]
            if sent != len(self.txs.get(name, [])):
                self.problems.append(
                    f"{name} sent {sent} transactions, the demo accounted for {len(self.txs.get(name, []))}"
                )
        return parties


def check_objects(store: ContentStore, cids: Sequence[str]) -> list[str]:
    """Read back and re-hash every object the demo stored; one problem per object that fails."""
    problems = []
    for cid in cids:
        try:
            if compute_cid(store.get_bytes(cid)) != cid:
                problems.append(f"stored object {cid} reads back as other bytes")
        except PocflError as exc:
            problems.append(f"stored object {cid} does not read back: {type(exc).__name__}: {exc}")
    return problems

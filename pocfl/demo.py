"""The scripted end-to-end demo behind ``pocfl demo``.

One project goes through its whole life on a chain (the embedded one by default, so nothing needs to be
installed or started): an owner deploys the marketplace and escrows a budget, three trainers stake and
register, and scripted rounds run with fixed scores:

- uneven positive scores, whose pro-rata split leaves rounding dust;
- one trainer flagged as an outlier and one with a negative score (neither earns);
- the aggregator misses its window, so a trainer fails the round and its budget stays in escrow.

(With more rounds the pattern repeats.) Then trainers release their stakes and claim, and the owner
withdraws what nobody earned. Every party's balance change is reconciled to the wei against an
independent computation with :mod:`pocfl.payouts`, counting the gas each party paid, and the contract
must end with a balance of exactly zero.

:func:`run_demo` returns a :class:`DemoResult`; the CLI only renders it.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain, connect
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.types import ProjectParams, ProjectStatus, Receipt, RoundPost
from pocfl.payouts import allocate, round_budget

ETH = 10**18
FUNDING = 10 * ETH
STAKE = ETH // 10
ROUND_BUDGET = ETH
NUM_TRAINERS = 3
START_IN = 60
SUBMISSION_WINDOW = 600
AGGREGATION_WINDOW = 600

Progress = Callable[[str], None]


def raw_cid(data: bytes) -> str:
    """A CIDv1 (raw codec, sha2-256, base32) of ``data``: how an IPFS client would name the file."""
    multihash = b"\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(b"\x01\x55" + multihash).decode().lower().rstrip("=")


@dataclass(frozen=True)
class RoundScript:
    """What happens in one demo round.

    Attributes
    ----------
    round
        Round index.
    scores
        One score per trainer (in submission order), or ``None`` when the aggregator misses its window.
    outliers
        One outlier flag per trainer.
    note
        What the round shows.
    """

    round: int
    scores: tuple[int, ...] | None
    outliers: tuple[bool, ...]
    note: str


_PATTERN: tuple[tuple[tuple[int, ...] | None, tuple[bool, ...], str], ...] = (
    ((5, 3, 1), (False, False, False), "uneven positive scores: 1 wei of rounding dust stays in escrow"),
    ((4, -2, 7), (False, False, True), "trainer-2 scores negative, trainer-3 is an outlier: neither earns"),
    (None, (False, False, False), "the aggregator misses its window; trainer-1 fails the round"),
)


def script(num_rounds: int) -> tuple[RoundScript, ...]:
    """The demo's rounds: the three-round pattern above, repeated to ``num_rounds``."""
    if num_rounds < 1:
        raise ValueError("the demo needs at least one round")
    return tuple(RoundScript(r, *_PATTERN[r % len(_PATTERN)]) for r in range(num_rounds))


@dataclass(frozen=True)
class CreditRow:
    """One trainer's result in a posted round: the on-chain credit and the independently expected one."""

    round: int
    trainer: str
    address: str
    score: int
    outlier: bool
    credited: int
    expected: int

    @property
    def reconciled(self) -> bool:
        """Whether the contract credited exactly what :func:`pocfl.payouts.allocate` predicts."""
        return self.credited == self.expected


@dataclass(frozen=True)
class RoundOutcome:
    """A settled demo round."""

    round: int
    outcome: str
    note: str
    budget: int
    credited: int
    unallocated: int
    rows: tuple[CreditRow, ...] = ()
    tx_hash: str = ""


@dataclass(frozen=True)
class PartyBalance:
    """One party's ether before and after the demo.

    ``net = end - start + gas`` is what the marketplace paid the party (negative: what the party paid
    into it); it must equal ``expected``, computed from the scripted scores alone.
    """

    party: str
    address: str
    start: int
    end: int
    gas: int
    expected: int

    @property
    def net(self) -> int:
        """Balance change with the gas paid added back."""
        return self.end - self.start + self.gas

    @property
    def reconciled(self) -> bool:
        """Whether ``net == expected`` to the wei."""
        return self.net == self.expected


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo did and the numbers to check it."""

    chain: str
    chain_id: int
    market: str
    project_id: int
    num_rounds: int
    budget: int
    stake: int
    rounds: tuple[RoundOutcome, ...]
    parties: tuple[PartyBalance, ...]
    contract_balance: int
    final_status: str
    transactions: int
    elapsed_s: float
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reconciled(self) -> bool:
        """Every credit, every balance and the contract's final zero balance check out."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (amounts in wei, as integers)."""
        return {
            "reconciled": self.reconciled,
            "problems": list(self.problems),
            "chain": self.chain,
            "chain_id": self.chain_id,
            "market": self.market,
            "project_id": self.project_id,
            "num_rounds": self.num_rounds,
            "budget_wei": self.budget,
            "stake_wei": self.stake,
            "final_status": self.final_status,
            "contract_balance_wei": self.contract_balance,
            "transactions": self.transactions,
            "elapsed_s": round(self.elapsed_s, 3),
            "rounds": [
                {
                    "round": r.round,
                    "outcome": r.outcome,
                    "note": r.note,
                    "budget_wei": r.budget,
                    "credited_wei": r.credited,
                    "unallocated_wei": r.unallocated,
                    "tx_hash": r.tx_hash,
                    "credits": [
                        {
                            "trainer": c.trainer,
                            "address": c.address,
                            "score": c.score,
                            "outlier": c.outlier,
                            "credited_wei": c.credited,
                            "expected_wei": c.expected,
                            "reconciled": c.reconciled,
                        }
                        for c in r.rows
                    ],
                }
                for r in self.rounds
            ],
            "parties": [
                {
                    "party": p.party,
                    "address": p.address,
                    "start_wei": p.start,
                    "end_wei": p.end,
                    "gas_wei": p.gas,
                    "net_wei": p.net,
                    "expected_wei": p.expected,
                    "reconciled": p.reconciled,
                }
                for p in self.parties
            ],
        }


class _Gas:
    """Gas each party paid: ``gasUsed * effectiveGasPrice`` of its receipts."""

    def __init__(self) -> None:
        self.paid: dict[str, int] = {}
        self.count = 0

    def __call__(self, party: str, receipt: Receipt) -> Receipt:
        self.paid[party] = self.paid.get(party, 0) + receipt.fee_wei
        self.count += 1
        return receipt


def _advance_to(chain: Chain, timestamp: int) -> None:
    """Move the chain's clock so the next block is at or after ``timestamp``."""
    now = chain.now()
    if now < timestamp:
        chain.increase_time(timestamp - now)


def run_demo(rpc: str | None = "embedded", num_rounds: int = 3, progress: Progress | None = None) -> DemoResult:
    """Run the scripted project on ``rpc`` and reconcile every balance.

    Parameters
    ----------
    rpc
        ``"embedded"`` (default, in-process), ``"anvil"`` (a throwaway local node) or the URL of a local
        node whose clock can be moved (``evm_increaseTime``) and that has an unlocked funded account.
    num_rounds
        Rounds of the project (the three-round pattern repeats).
    progress
        Called with a short line before each step (the CLI shows it on stderr).

    Returns
    -------
    DemoResult
        The rounds, the per-party balances and any reconciliation problems (none when all is well).
    """
    say = progress or (lambda _msg: None)
    rounds_script = script(num_rounds)
    t0 = time.monotonic()
    say(f"connecting to {rpc or 'embedded'} chain")
    chain = connect(rpc)
    try:
        return _run(chain, rpc or "embedded", rounds_script, say, t0)
    finally:
        chain.close()


def _run(chain: Chain, label: str, rounds_script: tuple[RoundScript, ...], say: Progress, t0: float) -> DemoResult:
    num_rounds = len(rounds_script)
    budget = ROUND_BUDGET * num_rounds
    owner, aggregator = new_account(), new_account()
    trainers = [new_account() for _ in range(NUM_TRAINERS)]
    names: dict[str, LocalAccount] = {"owner": owner, "aggregator": aggregator}
    names.update({f"trainer-{i + 1}": t for i, t in enumerate(trainers)})
    say("funding five fresh accounts with 10 ETH each")
    for account in names.values():
        chain.fund(account.address, FUNDING)
    w3 = chain.w3
    start = {name: int(w3.eth.get_balance(a.address)) for name, a in names.items()}
    gas = _Gas()

    say("owner deploys PocMarketplace")
    market, receipt = MarketplaceClient.deploy(chain, owner)
    gas("owner", receipt)
    as_: dict[str, MarketplaceClient] = {name: market.as_account(a) for name, a in names.items()}

    start_time = max(chain.now(), int(time.time())) + START_IN
    params = ProjectParams(
        aggregator=aggregator.address,
        start_time=start_time,
        num_rounds=num_rounds,
        submission_window=SUBMISSION_WINDOW,
        aggregation_window=AGGREGATION_WINDOW,
        min_trainers=NUM_TRAINERS,
        max_trainers=NUM_TRAINERS,
        stake=STAKE,
        validation_set_commitment=hashlib.sha256(b"pocfl demo validation set").digest(),
        initial_model_cid=raw_cid(b"pocfl demo initial model"),
    )
    say(f"owner creates a project escrowing {budget // ETH} ETH over {num_rounds} rounds")
    project_id, receipt = as_["owner"].create_project(params, budget)
    gas("owner", receipt)
    trainer_names = [f"trainer-{i + 1}" for i in range(NUM_TRAINERS)]
    for name in trainer_names:
        say(f"{name} registers, staking 0.1 ETH")
        gas(name, as_[name].register(project_id, STAKE))
    _advance_to(chain, start_time)

    per_round = round_budget(budget, num_rounds)
    expected_credit = dict.fromkeys(names, 0)
    outcomes: list[RoundOutcome] = []
    problems: list[str] = []
    by_address: dict[str, str] = {str(a.address): name for name, a in names.items()}
    for rs in rounds_script:
        r = rs.round
        round_start_block = int(chain.w3.eth.block_number)
        for name in trainer_names:
            say(f"round {r}: {name} submits its update")
            update = f"demo update, round {r}, {name}".encode()
            receipt = as_[name].submit(project_id, r, raw_cid(update), hashlib.sha256(update).digest())
            gas(name, receipt)
        state = market.project(project_id)
        _advance_to(chain, state.submission_deadline)
        if rs.scores is None:
            _advance_to(chain, state.aggregation_deadline)
            say(f"round {r}: the aggregator missed its window; trainer-1 fails the round")
            receipt = gas("trainer-1", as_["trainer-1"].fail_round(project_id, r))
            outcomes.append(RoundOutcome(r, "failed", rs.note, per_round, 0, per_round, (), receipt.tx_hash))
            continue
        submissions = market.submissions(project_id, r, from_block=round_start_block)
        order = [by_address[s.trainer] for s in submissions]
        score_of = dict(zip(trainer_names, rs.scores, strict=True))
        outlier_of = dict(zip(trainer_names, rs.outliers, strict=True))
        scores = tuple(score_of[n] for n in order)
        outliers = tuple(outlier_of[n] for n in order)
        post = RoundPost(
            model_cid=raw_cid(f"demo global model after round {r}".encode()),
            submissions=tuple(submissions),
            scores=scores,
            outliers=outliers,
            report_hash=hashlib.sha256(f"demo report {r}".encode()).digest(),
        )
        say(f"round {r}: the aggregator posts scores {list(scores)}")
        receipt = gas("aggregator", as_["aggregator"].post_round(project_id, r, post))
        allocation = allocate(per_round, scores, outliers)
        credited_events = [e for e in receipt.events if e.name == "TrainerCredited"]
        rows = []
        for k, event in enumerate(credited_events):
            name = by_address[str(event.args["trainer"])]
            expected_credit[name] += allocation.shares[k]
            rows.append(
                CreditRow(
                    round=r,
                    trainer=name,
                    address=str(event.args["trainer"]),
                    score=int(event.args["score"]),
                    outlier=bool(event.args["outlier"]),
                    credited=int(event.args["amount"]),
                    expected=allocation.shares[k],
                )
            )
        posted = receipt.event("RoundPosted").args
        outcomes.append(
            RoundOutcome(
                r,
                "posted",
                rs.note,
                per_round,
                int(posted["credited"]),
                int(posted["unallocated"]),
                tuple(rows),
                receipt.tx_hash,
            )
        )
        if len(rows) != len(order):
            problems.append(f"round {r}: {len(rows)} TrainerCredited events for {len(order)} submissions")
        problems += [
            f"round {r}: {c.trainer} credited {c.credited} wei, expected {c.expected}" for c in rows if not c.reconciled
        ]
        if int(posted["credited"]) != allocation.credited:
            problems.append(f"round {r}: credited {posted['credited']} wei in total, expected {allocation.credited}")

    final = market.project(project_id)
    if final.status != ProjectStatus.FINISHED:
        problems.append(f"project ended {final.status.name.lower()}, expected finished")
    for name in trainer_names:
        say(f"{name} releases its stake and claims")
        gas(name, as_[name].release_stake(project_id))
        _amount, receipt = as_[name].claim()
        gas(name, receipt)
    say("owner withdraws what nobody earned")
    _amount, receipt = as_["owner"].withdraw_remaining(project_id)
    gas("owner", receipt)

    total_credited = sum(expected_credit.values())
    expected_credit["owner"] = -total_credited
    parties = tuple(
        PartyBalance(
            party=name,
            address=a.address,
            start=start[name],
            end=int(w3.eth.get_balance(a.address)),
            gas=gas.paid.get(name, 0),
            expected=expected_credit[name],
        )
        for name, a in names.items()
    )
    problems += [f"{p.party}: net {p.net} wei, expected {p.expected}" for p in parties if not p.reconciled]
    contract_balance = market.balance()
    if contract_balance != 0:
        problems.append(f"the contract still holds {contract_balance} wei")
    return DemoResult(
        chain=label,
        chain_id=chain.chain_id,
        market=market.address,
        project_id=project_id,
        num_rounds=num_rounds,
        budget=budget,
        stake=STAKE,
        rounds=tuple(outcomes),
        parties=parties,
        contract_balance=contract_balance,
        final_status=market.project(project_id).status.name.lower(),
        transactions=gas.count,
        elapsed_s=time.monotonic() - t0,
        problems=tuple(problems),
    )

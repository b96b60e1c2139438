"""The scripted end-to-end demo behind ``pocfl demo``.

One project goes through its whole life on a chain (the embedded one by default, so nothing needs to be
installed or started) with real files in a content store (a temporary embedded store by default): an owner
deploys the marketplace, stores a small random model and escrows a budget, three trainers stake and register,
and scripted rounds run with fixed scores:

- uneven positive scores, whose pro-rata split leaves rounding dust;
- one trainer flagged as an outlier (its update is a scaled-up "poisoned" one) and one with a negative score
  (neither earns);
- the aggregator misses its window, so a trainer fails the round and its budget stays in escrow.

(With more rounds the pattern repeats.) Each round every trainer encodes a deterministic random delta as a pocfl
update file, stores it and submits its CID with the real commitment (trainer-2 encrypts its round-0 update to
the aggregator's key). The aggregator fetches every update by CID (verified), decrypts it if needed, checks the
commitment, decodes it against the model spec, adds the mean of the non-outlier deltas to the current global
model (itself fetched by the CID on chain), and posts the new model and a JSON round report through the store.

Then trainers release their stakes and claim, and the owner withdraws what nobody earned. Every party's
balance change is reconciled to the wei against an independent computation with :mod:`pocfl.payouts`,
counting the gas each party paid, and the contract must end with a balance of exactly zero. Every object the
demo stored is read back and re-hashed at the end.

:func:`run_demo` returns a :class:`DemoResult`; the CLI only renders it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount
from numpy.typing import NDArray

from pocfl.chain.accounts import new_account
from pocfl.chain.backends import Chain, connect
from pocfl.chain.client import MarketplaceClient
from pocfl.chain.types import ProjectParams, ProjectStatus, Receipt
from pocfl.errors import PocflError
from pocfl.market import Market, SubmittedUpdate
from pocfl.payouts import allocate, round_budget
from pocfl.store import ContentStore, EmbeddedStore, compute_cid, open_store
from pocfl.updates import (
    ENVELOPE_OVERHEAD,
    EncryptionKeyPair,
    ModelSpec,
    decode_update,
    encode_update,
    encrypt_update,
    update_commitment,
)

ETH = 10**18
FUNDING = 10 * ETH
STAKE = ETH // 10
ROUND_BUDGET = ETH
NUM_TRAINERS = 3
START_IN = 60
SUBMISSION_WINDOW = 600
AGGREGATION_WINDOW = 600
SEED = 2023
"""Seed of the initial model and of every trainer's update: the plaintext files are the same on every run."""
POISON_SCALE = 100.0
"""How much larger than an honest delta the update of a trainer the script flags as an outlier is."""

MODEL_SPEC = ModelSpec(
    (
        ("fc1.weight", (16, 8), "F32"),
        ("fc1.bias", (16,), "F32"),
        ("fc2.weight", (2, 16), "F32"),
        ("fc2.bias", (2,), "F32"),
    ),
    name="pocfl-demo-mlp",
)
"""The demo's model: a tiny two-layer perceptron (178 parameters)."""
MAX_UPDATE_SIZE = MODEL_SPEC.nbytes + 4096 + ENVELOPE_OVERHEAD
"""The aggregator refuses any update object larger than the model's tensors plus header room."""
REPORT_FORMAT = "pocfl-demo-report/1"

Progress = Callable[[str], None]


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
        One outlier flag per trainer (a flagged trainer submits a poisoned update).
    note
        What the round shows.
    encrypted
        Which trainers encrypt their update to the aggregator's key.
    """

    round: int
    scores: tuple[int, ...] | None
    outliers: tuple[bool, ...]
    note: str
    encrypted: tuple[bool, ...] = (False,) * NUM_TRAINERS


_PATTERN: tuple[tuple[tuple[int, ...] | None, tuple[bool, ...], str, tuple[bool, ...]], ...] = (
    (
        (5, 3, 1),
        (False, False, False),
        "uneven positive scores: 1 wei of rounding dust stays in escrow; trainer-2's update is encrypted",
        (False, True, False),
    ),
    (
        (4, -2, 7),
        (False, False, True),
        "trainer-2 scores negative, trainer-3 is an outlier: neither earns",
        (False, False, False),
    ),
    (None, (False, False, False), "the aggregator misses its window; trainer-1 fails the round", (False, False, False)),
)


def script(num_rounds: int) -> tuple[RoundScript, ...]:
    """The demo's rounds: the three-round pattern above, repeated to ``num_rounds``."""
    if num_rounds < 1:
        raise ValueError("the demo needs at least one round")
    return tuple(RoundScript(r, *_PATTERN[r % len(_PATTERN)]) for r in range(num_rounds))


@dataclass(frozen=True)
class StoredUpdate:
    """One trainer's update as submitted: where it is stored and what it committed to."""

    round: int
    index: int
    trainer: str
    address: str
    cid: str
    size: int
    encrypted: bool
    commitment: bytes


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
    cid: str = ""
    encrypted: bool = False

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
    submissions: tuple[StoredUpdate, ...] = ()
    model_cid: str = ""
    report_cid: str = ""


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
    """Everything the demo did and the numbers to check it.

    ``store`` is where the files went (``store_kept`` is false for the default temporary store, deleted
    after the run); ``objects`` lists every CID the demo stored, all read back and re-hashed at the end.
    """

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
    store: str = ""
    store_kept: bool = False
    initial_model_cid: str = ""
    final_model_cid: str = ""
    objects: tuple[str, ...] = ()

    @property
    def reconciled(self) -> bool:
        """Every credit, every balance, every stored file and the contract's final zero balance check out."""
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
            "store": self.store,
            "store_kept": self.store_kept,
            "model_spec": {
                "name": MODEL_SPEC.name,
                "fingerprint": MODEL_SPEC.fingerprint,
                "parameters": MODEL_SPEC.size,
            },
            "initial_model_cid": self.initial_model_cid,
            "final_model_cid": self.final_model_cid,
            "objects": list(self.objects),
            "rounds": [
                {
                    "round": r.round,
                    "outcome": r.outcome,
                    "note": r.note,
                    "budget_wei": r.budget,
                    "credited_wei": r.credited,
                    "unallocated_wei": r.unallocated,
                    "tx_hash": r.tx_hash,
                    "model_cid": r.model_cid or None,
                    "report_cid": r.report_cid or None,
                    "submissions": [
                        {
                            "index": u.index,
                            "trainer": u.trainer,
                            "address": u.address,
                            "cid": u.cid,
                            "size": u.size,
                            "encrypted": u.encrypted,
                            "commitment": "0x" + u.commitment.hex(),
                        }
                        for u in r.submissions
                    ],
                    "credits": [
                        {
                            "trainer": c.trainer,
                            "address": c.address,
                            "score": c.score,
                            "outlier": c.outlier,
                            "credited_wei": c.credited,
                            "expected_wei": c.expected,
                            "reconciled": c.reconciled,
                            "cid": c.cid,
                            "encrypted": c.encrypted,
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


# --- the files ----------------------------------------------------------------------------------------------


def initial_model() -> bytes:
    """The initial global model: small random weights (seeded), encoded as a pocfl ``weights`` file."""
    rng = np.random.default_rng((SEED, 0xFFFF))
    tensors = {t.name: rng.normal(0.0, 0.1, t.shape).astype(np.float32) for t in MODEL_SPEC}
    return encode_update(tensors, MODEL_SPEC, kind="weights")


def trainer_update(round_: int, trainer: int, poisoned: bool = False) -> bytes:
    """A trainer's update for a round: a seeded random delta (scaled up when poisoned), as a pocfl ``delta`` file."""
    rng = np.random.default_rng((SEED, round_, trainer))
    scale = 0.01 * (POISON_SCALE if poisoned else 1.0)
    tensors = {t.name: rng.normal(0.0, scale, t.shape).astype(np.float32) for t in MODEL_SPEC}
    return encode_update(tensors, MODEL_SPEC, kind="delta")


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


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


def run_demo(
    rpc: str | None = "embedded",
    num_rounds: int = 3,
    progress: Progress | None = None,
    ipfs: str | None = None,
) -> DemoResult:
    """Run the scripted project on ``rpc`` with real files in a content store, and reconcile every balance.

    Parameters
    ----------
    rpc
        ``"embedded"`` (default, in-process), ``"anvil"`` (a throwaway local node) or the URL of a local
        node whose clock can be moved (``evm_increaseTime``) and that has an unlocked funded account.
    num_rounds
        Rounds of the project (the three-round pattern repeats).
    progress
        Called with a short line before each step (the CLI shows it on stderr).
    ipfs
        The content store, as :func:`pocfl.store.open_store` takes it (an IPFS node's RPC URL or a
        directory); ``None`` for a temporary embedded store deleted after the run.

    Returns
    -------
    DemoResult
        The rounds, the per-party balances and any reconciliation problems (none when all is well).
    """
    say = progress or (lambda _msg: None)
    rounds_script = script(num_rounds)
    t0 = time.monotonic()
    with ExitStack() as stack:
        if ipfs is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="pocfl-demo-store-"))
            store: ContentStore = EmbeddedStore(root)
        else:
            store = open_store(ipfs)
        stack.callback(store.close)
        say(f"connecting to {rpc or 'embedded'} chain; files go to {store.location}")
        chain = connect(rpc)
        stack.callback(chain.close)
        result = _run(chain, rpc or "embedded", rounds_script, store, say, t0)
        label = store.location if ipfs is not None else "temporary embedded store (deleted after the run)"
        return replace(result, store=label, store_kept=ipfs is not None, elapsed_s=time.monotonic() - t0)


def _run(
    chain: Chain,
    label: str,
    rounds_script: tuple[RoundScript, ...],
    store: ContentStore,
    say: Progress,
    t0: float,
) -> DemoResult:
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
    on: dict[str, Market] = {name: Market(client, store) for name, client in as_.items()}
    aggregator_key = EncryptionKeyPair.generate()  # the aggregator publishes its public key; trainers may encrypt
    stored: list[str] = []

    say("owner stores the initial model (a pocfl weights file) in the content store")
    model_cid = on["owner"].publish(initial_model())
    stored.append(model_cid)
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
        initial_model_cid=model_cid,
    )
    say(f"owner creates a project escrowing {budget // ETH} ETH over {num_rounds} rounds")
    # Market.create_project stores the model too, but drops the receipt whose gas the reconciliation needs.
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
        submitted: list[StoredUpdate] = []
        for i, name in enumerate(trainer_names):
            plaintext = trainer_update(r, i, poisoned=rs.outliers[i])
            commitment = update_commitment(
                plaintext,
                chain_id=chain.chain_id,
                market=market.address,
                project_id=project_id,
                round=r,
                trainer=names[name].address,
            )
            payload = encrypt_update(plaintext, aggregator_key.public_key) if rs.encrypted[i] else plaintext
            say(f"round {r}: {name} stores and submits its update{' (encrypted)' if rs.encrypted[i] else ''}")
            cid, receipt = on[name].submit_update(project_id, r, payload, commitment)
            gas(name, receipt)
            stored.append(cid)
            index = int(receipt.event("UpdateSubmitted").args["index"])
            submitted.append(
                StoredUpdate(r, index, name, names[name].address, cid, len(payload), rs.encrypted[i], commitment)
            )
        state = market.project(project_id)
        _advance_to(chain, state.submission_deadline)
        if rs.scores is None:
            _advance_to(chain, state.aggregation_deadline)
            say(f"round {r}: the aggregator missed its window; trainer-1 fails the round")
            receipt = gas("trainer-1", as_["trainer-1"].fail_round(project_id, r))
            outcomes.append(
                RoundOutcome(r, "failed", rs.note, per_round, 0, per_round, (), receipt.tx_hash, tuple(submitted))
            )
            continue

        say(f"round {r}: the aggregator fetches, decrypts, checks and decodes every update")
        agg = on["aggregator"]
        updates = agg.submitted_updates(project_id, r, from_block=round_start_block)
        vectors, refused = _read_updates(agg, updates, aggregator_key, project_id, r)
        problems += [f"round {r}: {by_address.get(u.trainer, u.trainer)}'s update refused: {why}" for u, why in refused]
        order = [by_address[u.trainer] for u in updates]
        score_of = dict(zip(trainer_names, rs.scores, strict=True))
        outlier_of = dict(zip(trainer_names, rs.outliers, strict=True))
        scores = tuple(score_of[n] for n in order)
        outliers = tuple(outlier_of[n] for n in order)
        current_cid, current = agg.fetch_model(project_id, max_size=MAX_UPDATE_SIZE)
        model = decode_update(current, MODEL_SPEC, kind="weights").vector()
        kept = [vectors[u.index] for u, flag in zip(updates, outliers, strict=True) if not flag and u.index in vectors]
        new_model = _apply(model, kept)
        inputs = list(zip(updates, scores, outliers, strict=True))
        report = _report(market, project_id, r, current_cid, new_model, inputs, vectors, submitted)
        say(f"round {r}: the aggregator stores the new model and its report, and posts scores {list(scores)}")
        post, receipt = agg.post_round(
            project_id,
            r,
            model=new_model,
            report=report,
            submissions=[u.submission for u in updates],
            scores=scores,
            outliers=outliers,
        )
        gas("aggregator", receipt)
        report_cid = compute_cid(report)
        stored += [post.model_cid, report_cid]
        if agg.fetch_model(project_id) != (post.model_cid, new_model):
            problems.append(f"round {r}: the model on chain does not fetch back as the one posted")
        if agg.fetch_report(post.report_hash) != (report_cid, report):
            problems.append(f"round {r}: the report hash on chain does not fetch back as the report posted")
        allocation = allocate(per_round, scores, outliers)
        credited_events = [e for e in receipt.events if e.name == "TrainerCredited"]
        cid_of = {u.address: u for u in submitted}
        rows = []
        for k, event in enumerate(credited_events):
            address = str(event.args["trainer"])
            name = by_address[address]
            expected_credit[name] += allocation.shares[k]
            rows.append(
                CreditRow(
                    round=r,
                    trainer=name,
                    address=address,
                    score=int(event.args["score"]),
                    outlier=bool(event.args["outlier"]),
                    credited=int(event.args["amount"]),
                    expected=allocation.shares[k],
                    cid=cid_of[address].cid,
                    encrypted=cid_of[address].encrypted,
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
                tuple(submitted),
                post.model_cid,
                report_cid,
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
    say("re-reading every stored file")
    objects = tuple(dict.fromkeys(stored))
    problems += _check_objects(store, objects)
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
        store=store.location,
        initial_model_cid=model_cid,
        final_model_cid=final.model_cid,
        objects=objects,
    )


def _read_updates(
    agg: Market, updates: list[SubmittedUpdate], key: EncryptionKeyPair, project_id: int, round_: int
) -> tuple[dict[int, NDArray[np.float32]], list[tuple[SubmittedUpdate, str]]]:
    """What the aggregator does with each submission: fetch by CID (verified), decrypt, check, decode.

    Returns the flat delta of every update that passed, by submission index, and the refused ones with why.
    """
    vectors: dict[int, NDArray[np.float32]] = {}
    refused: list[tuple[SubmittedUpdate, str]] = []
    for u in updates:
        try:
            plaintext = agg.open_update(u, project_id, round_, key, max_size=MAX_UPDATE_SIZE).plaintext
            assert plaintext is not None  # the aggregator holds the key every envelope is sealed to
            vectors[u.index] = decode_update(plaintext, MODEL_SPEC, kind="delta").vector()
        except PocflError as exc:
            refused.append((u, f"{type(exc).__name__}: {exc}"))
    return vectors, refused


def _apply(model: NDArray[np.float32], deltas: list[NDArray[np.float32]]) -> bytes:
    """The new global model file: the mean of the kept deltas added to the model."""
    vector = model + np.mean(deltas, axis=0, dtype=np.float32) if deltas else model
    return encode_update(MODEL_SPEC.unflatten(vector), MODEL_SPEC, kind="weights")


def _report(
    market: MarketplaceClient,
    project_id: int,
    round_: int,
    model_in: str,
    model_out: bytes,
    scored: list[tuple[SubmittedUpdate, int, bool]],
    vectors: dict[int, NDArray[np.float32]],
    submitted: list[StoredUpdate],
) -> bytes:
    """The round report (canonical JSON): what went in (CIDs), what came out, and every score and flag."""
    encrypted = {u.cid: u.encrypted for u in submitted}
    inputs = [
        {
            "index": u.index,
            "trainer": u.trainer,
            "cid": u.cid,
            "commitment": "0x" + u.commitment.hex(),
            "encrypted": encrypted.get(u.cid, False),
            "accepted": u.index in vectors,
            "delta_norm": round(float(np.linalg.norm(vectors[u.index])), 6) if u.index in vectors else None,
            "score": score,
            "outlier": flag,
        }
        for u, score, flag in scored
    ]
    return _canonical_json(
        {
            "format": REPORT_FORMAT,
            "chain_id": market.chain.chain_id,
            "market": market.address,
            "project_id": project_id,
            "round": round_,
            "model_spec": MODEL_SPEC.fingerprint,
            "model_in": model_in,
            "model_out": compute_cid(model_out),
            "aggregation": "model + mean of the deltas not flagged as outliers",
            "inputs": inputs,
        }
    )


def _check_objects(store: ContentStore, cids: tuple[str, ...]) -> list[str]:
    """Read back and re-hash every object the demo stored; one problem per object that fails."""
    problems = []
    for cid in cids:
        try:
            store.get_bytes(cid)
        except PocflError as exc:
            problems.append(f"stored object {cid} does not read back: {type(exc).__name__}: {exc}")
    return problems

"""The scripted demo behind ``pocfl demo --scripted``: a scenario of the demo engine with fixed scores.

The engine (:mod:`pocfl.demo.engine`) runs the project's life on a chain with real files in a content store; this
scenario's owner stores a small random model, three trainers stake and register, and scripted rounds run with
fixed scores:

- uneven positive scores, whose pro-rata split leaves rounding dust;
- one trainer flagged as an outlier (its update is a scaled-up "poisoned" one) and one with a negative score
  (neither earns);
- the aggregator misses its window, so a trainer fails the round and its budget stays in escrow.

(With more rounds the pattern repeats.) Each round every trainer encodes a deterministic random delta as a pocfl
update file, stores it and submits its CID with the real commitment (trainer-2 encrypts its round-0 update to
the aggregator's key). The aggregator fetches every update by CID (verified), decrypts it if needed, checks the
commitment, decodes it against the model spec, adds the mean of the non-outlier deltas to the current global
model (itself fetched by the CID on chain), and posts the new model and a JSON round report through the store.

The engine then settles the project and reconciles every credit and balance to the wei against
:func:`pocfl.payouts.allocate` of the scripted scores, and re-hashes every stored object.

:func:`run_demo` returns a :class:`~pocfl.demo.result.DemoResult`; the CLI only renders it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from pocfl.chain.accounts import new_account
from pocfl.demo.config import MAX_UPDATE_SIZE, MODEL_SPEC, NUM_TRAINERS, POISON_SCALE, REPORT_FORMAT, SEED, STAKE
from pocfl.demo.engine import DemoReporter, DemoRun, Scenario, run_scenario
from pocfl.demo.result import CreditRow, DemoResult, RoundOutcome, Settlement, StoredUpdate
from pocfl.errors import PocflError
from pocfl.payouts import allocate
from pocfl.store import compute_cid
from pocfl.updates import EncryptionKeyPair, decode_update, encode_update, encrypt_update, update_commitment

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from pocfl.chain.client import MarketplaceClient
    from pocfl.chain.types import Receipt
    from pocfl.market import Market, SubmittedUpdate

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
        "uneven positive scores: 1 wei of rounding dust stays in escrow",
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


def script(num_rounds: int, *, encrypt: bool = True) -> tuple[RoundScript, ...]:
    """The demo's rounds: the three-round pattern above, repeated to ``num_rounds``.

    ``encrypt=False``: every update goes in plaintext (no trainer encrypts).
    """
    if num_rounds < 1:
        raise ValueError("the demo needs at least one round")
    rounds = []
    for r in range(num_rounds):
        scores, outliers, note, encrypted = _PATTERN[r % len(_PATTERN)]
        if not encrypt:
            encrypted = (False,) * NUM_TRAINERS
        sealed = [f"trainer-{i + 1}" for i, e in enumerate(encrypted) if e]
        note += "".join(f"; {name}'s update is encrypted" for name in sealed)
        rounds.append(RoundScript(r, scores, outliers, note, encrypted))
    return tuple(rounds)


# --- the files ----------------------------------------------------------------------------------------------


def initial_model(seed: int = SEED) -> bytes:
    """The initial global model: small random weights (seeded), encoded as a pocfl ``weights`` file."""
    rng = np.random.default_rng((seed, 0xFFFF))
    tensors = {t.name: rng.normal(0.0, 0.1, t.shape).astype(np.float32) for t in MODEL_SPEC}
    return encode_update(tensors, MODEL_SPEC, kind="weights")


def trainer_update(round_: int, trainer: int, poisoned: bool = False, seed: int = SEED) -> bytes:
    """A trainer's update for a round: a seeded random delta (scaled up when poisoned), as a pocfl ``delta`` file."""
    rng = np.random.default_rng((seed, round_, trainer))
    scale = 0.01 * (POISON_SCALE if poisoned else 1.0)
    tensors = {t.name: rng.normal(0.0, scale, t.shape).astype(np.float32) for t in MODEL_SPEC}
    return encode_update(tensors, MODEL_SPEC, kind="delta")


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- the scenario -------------------------------------------------------------------------------------------


class _Lines(DemoReporter):
    """A progress callable as a reporter: one line per step."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def stage(self, text: str) -> None:
        self.progress(text)


class ScriptedScenario(Scenario[DemoResult]):
    """Three trainers submit seeded random updates; the aggregator posts the script's scores (or misses a round)."""

    work_prefix = "pocfl-demo-"

    def __init__(self, num_rounds: int, *, seed: int = SEED, encrypt: bool = True) -> None:
        self.script = script(num_rounds, encrypt=encrypt)
        self.seed = seed
        self.key = EncryptionKeyPair.generate()  # the aggregator publishes its public key; trainers may encrypt
        self.outcomes: list[RoundOutcome] = []
        self.model_cid = ""

    @property
    def rounds(self) -> int:
        """Rounds of the script."""
        return len(self.script)

    @property
    def trainer_names(self) -> tuple[str, ...]:
        """``trainer-1`` to ``trainer-3``."""
        return tuple(f"trainer-{i + 1}" for i in range(NUM_TRAINERS))

    def account(self, name: str) -> LocalAccount:
        """A fresh random account."""
        return new_account()

    def create_project(self, run: DemoRun) -> tuple[int, Receipt]:
        """Store the initial model (a pocfl weights file) and escrow the budget."""
        from pocfl.projects import ProjectRequest, create_project

        run.say.stage("owner stores the initial model (a pocfl weights file) in the content store")
        self.model_cid = run.on["owner"].publish(initial_model(self.seed))
        run.ledger.stored.append(self.model_cid)
        commitment = hashlib.sha256(b"pocfl demo validation set").digest()
        params = run.project_params(self.model_cid, validation_set_commitment=commitment)
        run.say.stage(f"owner creates a project escrowing {run.budget // 10**18} ETH over {self.rounds} rounds")
        created = create_project(run.on["owner"], ProjectRequest.from_params(params, run.budget))
        return created.project_id, created.receipt

    def register(self, run: DemoRun, index: int, name: str) -> None:
        """The trainer stakes and registers."""
        run.say.stage(f"{name} registers, staking {STAKE / 10**18:g} ETH")
        run.register(name)

    def play_round(self, run: DemoRun, round_: int) -> None:
        """Every trainer submits; then the aggregator posts the script's scores, or misses its window."""
        rs = self.script[round_]
        from_block = int(run.chain.w3.eth.block_number)
        submitted = tuple(self._submit(run, rs, i, name) for i, name in enumerate(run.trainer_names))
        state = run.client.project(run.project_id)
        run.advance_to(state.submission_deadline)
        if rs.scores is None:
            run.advance_to(state.aggregation_deadline)
            run.say.stage(f"round {round_}: the aggregator missed its window; trainer-1 fails the round")
            receipt = run.ledger.paid("trainer-1", run.on["trainer-1"].client.fail_round(run.project_id, round_))
            self.outcomes.append(
                RoundOutcome(round_, "failed", rs.note, run.per_round, 0, run.per_round, (), receipt.tx_hash, submitted)
            )
            return
        self.outcomes.append(self._post(run, rs, from_block, submitted))

    def _submit(self, run: DemoRun, rs: RoundScript, i: int, name: str) -> StoredUpdate:
        """Trainer ``name`` stores its update (encrypted if the script says so) and submits its CID."""
        r, address = rs.round, run.accounts[name].address
        plaintext = trainer_update(r, i, poisoned=rs.outliers[i], seed=self.seed)
        commitment = update_commitment(
            plaintext,
            chain_id=run.chain.chain_id,
            market=run.client.address,
            project_id=run.project_id,
            round=r,
            trainer=address,
        )
        payload = encrypt_update(plaintext, self.key.public_key) if rs.encrypted[i] else plaintext
        run.say.stage(f"round {r}: {name} stores and submits its update{' (encrypted)' if rs.encrypted[i] else ''}")
        cid, receipt = run.on[name].submit_update(run.project_id, r, payload, commitment)
        run.ledger.paid(name, receipt)
        run.ledger.stored.append(cid)
        index = int(receipt.event("UpdateSubmitted").args["index"])
        return StoredUpdate(r, index, name, address, cid, len(payload), rs.encrypted[i], commitment)

    def _post(
        self, run: DemoRun, rs: RoundScript, from_block: int, submitted: tuple[StoredUpdate, ...]
    ) -> RoundOutcome:
        """The aggregator builds the new model and report from the updates and posts the script's scores."""
        r, agg, ledger = rs.round, run.on["aggregator"], run.ledger
        assert rs.scores is not None
        run.say.stage(f"round {r}: the aggregator fetches, decrypts, checks and decodes every update")
        updates = agg.submitted_updates(run.project_id, r, from_block=from_block)
        by_address = {str(a.address): name for name, a in run.accounts.items()}
        score_of = dict(zip(run.trainer_names, rs.scores, strict=True))
        outlier_of = dict(zip(run.trainer_names, rs.outliers, strict=True))
        scores = tuple(score_of[by_address[u.trainer]] for u in updates)
        outliers = tuple(outlier_of[by_address[u.trainer]] for u in updates)
        new_model, report = self._aggregate(run, r, updates, scores, outliers, submitted)
        run.say.stage(f"round {r}: the aggregator stores the new model and its report, and posts scores {list(scores)}")
        post, receipt = agg.post_round(
            run.project_id,
            r,
            model=new_model,
            report=report,
            submissions=[u.submission for u in updates],
            scores=scores,
            outliers=outliers,
        )
        ledger.paid("aggregator", receipt)
        report_cid = compute_cid(report)
        ledger.stored += [post.model_cid, report_cid]
        if agg.fetch_model(run.project_id) != (post.model_cid, new_model):
            ledger.problems.append(f"round {r}: the model on chain does not fetch back as the one posted")
        if agg.fetch_report(post.report_hash) != (report_cid, report):
            ledger.problems.append(f"round {r}: the report hash on chain does not fetch back as the report posted")
        allocation = allocate(run.per_round, scores, outliers)
        update_of = {u.address: u for u in submitted}
        rows = tuple(
            CreditRow(
                round=r,
                trainer=by_address[str(e.args["trainer"])],
                address=str(e.args["trainer"]),
                score=int(e.args["score"]),
                outlier=bool(e.args["outlier"]),
                credited=int(e.args["amount"]),
                expected=allocation.shares[k],
                cid=update_of[str(e.args["trainer"])].cid,
                encrypted=update_of[str(e.args["trainer"])].encrypted,
            )
            for k, e in enumerate(e for e in receipt.events if e.name == "TrainerCredited")
        )
        posted = receipt.event("RoundPosted").args
        ledger.credit_round(r, rows, len(rows), len(updates), int(posted["credited"]), allocation.credited)
        return RoundOutcome(
            r,
            "posted",
            rs.note,
            run.per_round,
            int(posted["credited"]),
            int(posted["unallocated"]),
            rows,
            receipt.tx_hash,
            submitted,
            post.model_cid,
            report_cid,
        )

    def _aggregate(
        self,
        run: DemoRun,
        r: int,
        updates: list[SubmittedUpdate],
        scores: tuple[int, ...],
        outliers: tuple[bool, ...],
        submitted: tuple[StoredUpdate, ...],
    ) -> tuple[bytes, bytes]:
        """The new model file (the current one plus the mean of the kept deltas) and the round report."""
        agg = run.on["aggregator"]
        vectors, refused = _read_updates(agg, updates, self.key, run.project_id, r)
        name_of = {str(a.address): name for name, a in run.accounts.items()}
        for u, why in refused:
            run.ledger.problems.append(f"round {r}: {name_of.get(u.trainer, u.trainer)}'s update refused: {why}")
        current_cid, current = agg.fetch_model(run.project_id, max_size=MAX_UPDATE_SIZE)
        model = decode_update(current, MODEL_SPEC, kind="weights").vector()
        kept = [vectors[u.index] for u, flag in zip(updates, outliers, strict=True) if not flag and u.index in vectors]
        new_model = _apply(model, kept)
        inputs = list(zip(updates, scores, outliers, strict=True))
        report = _report(run.client, run.project_id, r, current_cid, new_model, inputs, vectors, submitted)
        return new_model, report

    def finish(self, run: DemoRun, settled: Settlement) -> DemoResult:
        """The rounds, the balances and the problems."""
        return DemoResult(
            **run.project_fields(settled),
            num_rounds=self.rounds,
            rounds=tuple(self.outcomes),
            initial_model_cid=self.model_cid,
        )


def run_demo(
    rpc: str | None = "embedded",
    num_rounds: int = 3,
    progress: Progress | None = None,
    ipfs: str | None = None,
    *,
    seed: int = SEED,
    encrypt: bool = True,
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
    seed
        Seed of the initial model and of every trainer's update.
    encrypt
        Whether the script's encrypting trainers seal their update to the aggregator's key.

    Returns
    -------
    DemoResult
        The rounds, the per-party balances and any reconciliation problems (none when all is well).
    """
    scenario = ScriptedScenario(num_rounds, seed=seed, encrypt=encrypt)
    reporter = _Lines(progress) if progress is not None else None
    # Every request goes to the chain as sent, as the scripted demo always did (no read cache, native gas estimates).
    return run_scenario(scenario, rpc=rpc, ipfs=ipfs, reporter=reporter, fast_chain=False)


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
    submitted: tuple[StoredUpdate, ...],
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

"""What the demos return: per-party balances, rounds and credits, and their ``--json`` documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pocfl.demo.config import MODEL_SPEC, FlDemoConfig, group_of


@dataclass(frozen=True)
class PartyBalance:
    """One party's ether before and after the demo.

    ``net = end - start + gas`` is what the marketplace paid the party (negative: what the party paid
    into it); it must equal ``expected``, computed from the scores alone.
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

    def to_json(self) -> dict[str, Any]:
        """The party's row of ``--json`` (amounts in wei)."""
        return {
            "party": self.party,
            "address": self.address,
            "start_wei": self.start,
            "end_wei": self.end,
            "gas_wei": self.gas,
            "net_wei": self.net,
            "expected_wei": self.expected,
            "reconciled": self.reconciled,
        }


@dataclass(frozen=True)
class Settlement:
    """How a demo project ended: every party's balance, the contract's, the project's state, the stored objects."""

    parties: tuple[PartyBalance, ...]
    contract_balance: int
    final_status: str
    final_model_cid: str
    transactions: int
    objects: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ProjectResult:
    """What every demo reports of its project: where it ran, the money, the stored objects and the problems.

    ``store`` is where the files went (``store_kept`` is false for the default temporary store, deleted
    after the run); ``objects`` lists every CID the demo stored, all read back and re-hashed at the end.
    """

    chain: str
    chain_id: int
    market: str
    project_id: int
    budget: int
    stake: int
    parties: tuple[PartyBalance, ...]
    contract_balance: int
    final_status: str
    transactions: int
    elapsed_s: float
    problems: tuple[str, ...] = ()
    store: str = ""
    store_kept: bool = False
    final_model_cid: str = ""
    objects: tuple[str, ...] = ()

    @property
    def reconciled(self) -> bool:
        """Every credit, every balance, every stored file and the contract's final zero balance check out."""
        return not self.problems

    def _where_json(self) -> dict[str, Any]:
        return {"chain": self.chain, "chain_id": self.chain_id, "market": self.market, "project_id": self.project_id}

    def _money_json(self) -> dict[str, Any]:
        return {
            "budget_wei": self.budget,
            "stake_wei": self.stake,
            "final_status": self.final_status,
            "contract_balance_wei": self.contract_balance,
            "transactions": self.transactions,
            "elapsed_s": round(self.elapsed_s, 3),
        }


# --- the scripted demo ------------------------------------------------------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        """The submission's row of ``--json``."""
        return {
            "index": self.index,
            "trainer": self.trainer,
            "address": self.address,
            "cid": self.cid,
            "size": self.size,
            "encrypted": self.encrypted,
            "commitment": "0x" + self.commitment.hex(),
        }


@dataclass(frozen=True, kw_only=True)
class TrainerCredit:
    """One trainer's credit in a posted round: the contract's and the one :func:`pocfl.payouts.allocate` predicts."""

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

    def _paid_json(self) -> dict[str, Any]:
        return {"credited_wei": self.credited, "expected_wei": self.expected, "reconciled": self.reconciled}


@dataclass(frozen=True, kw_only=True)
class CreditRow(TrainerCredit):
    """A trainer's credit in a posted scripted round (score and flag as the ``TrainerCredited`` event has them)."""

    round: int

    def to_json(self) -> dict[str, Any]:
        """The credit's row of ``--json`` (amounts in wei)."""
        return {
            "trainer": self.trainer,
            "address": self.address,
            "score": self.score,
            "outlier": self.outlier,
            **self._paid_json(),
            "cid": self.cid,
            "encrypted": self.encrypted,
        }


@dataclass(frozen=True)
class RoundOutcome:
    """A settled scripted round."""

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

    def to_json(self) -> dict[str, Any]:
        """The round's entry of ``--json`` (amounts in wei)."""
        return {
            "round": self.round,
            "outcome": self.outcome,
            "note": self.note,
            "budget_wei": self.budget,
            "credited_wei": self.credited,
            "unallocated_wei": self.unallocated,
            "tx_hash": self.tx_hash,
            "model_cid": self.model_cid or None,
            "report_cid": self.report_cid or None,
            "submissions": [u.to_json() for u in self.submissions],
            "credits": [c.to_json() for c in self.rows],
        }


@dataclass(frozen=True, kw_only=True)
class DemoResult(ProjectResult):
    """Everything the scripted demo did and the numbers to check it (the common part: :class:`ProjectResult`)."""

    num_rounds: int
    rounds: tuple[RoundOutcome, ...]
    initial_model_cid: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (amounts in wei, as integers)."""
        return {
            "reconciled": self.reconciled,
            "problems": list(self.problems),
            **self._where_json(),
            "num_rounds": self.num_rounds,
            **self._money_json(),
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
            "rounds": [r.to_json() for r in self.rounds],
            "parties": [p.to_json() for p in self.parties],
        }


# --- the federated-learning demo --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainerInfo:
    """A demo trainer: who it is, what it does, what data it owns."""

    name: str
    address: str
    role: str
    data: str
    samples: int
    classes: int

    @property
    def group(self) -> str:
        """``honest``, ``attacker`` or ``free rider``."""
        return group_of(self.role)


@dataclass(frozen=True, kw_only=True)
class FlEntry(TrainerCredit):
    """One trainer's submission in a posted federated-learning round (as its report has it) and its credit."""

    role: str
    plaintext_cid: str | None
    status: str
    value: float
    weight: float

    def to_json(self) -> dict[str, Any]:
        """The entry's row of ``--json`` (amounts in wei)."""
        return {
            "trainer": self.trainer,
            "address": self.address,
            "role": self.role,
            "cid": self.cid,
            "encrypted": self.encrypted,
            "plaintext_cid": self.plaintext_cid,
            "status": self.status,
            "outlier": self.outlier,
            "score": self.score,
            "value": self.value,
            "weight": self.weight,
            **self._paid_json(),
        }


@dataclass(frozen=True)
class FlRound:
    """A settled federated-learning round."""

    round: int
    outcome: str
    accuracy_before: float
    accuracy: float
    loss: float
    budget: int
    credited: int
    unallocated: int
    entries: tuple[FlEntry, ...]
    model_cid: str
    report_cid: str
    tx_hash: str
    shapley_method: str
    timings: dict[str, float]
    proven: bool = False
    """The contract verified a zero-knowledge proof of the round's flags and scores (``RoundPosted.proven``)."""
    prove_seconds: float | None = None

    @property
    def outliers(self) -> tuple[str, ...]:
        """Names of the trainers flagged as outliers."""
        return tuple(e.trainer for e in self.entries if e.outlier)

    def to_json(self) -> dict[str, Any]:
        """The round's entry of ``--json`` (amounts in wei)."""
        return {
            "round": self.round,
            "outcome": self.outcome,
            "accuracy_before": self.accuracy_before,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "outliers": list(self.outliers),
            "budget_wei": self.budget,
            "credited_wei": self.credited,
            "unallocated_wei": self.unallocated,
            "model_cid": self.model_cid,
            "report_cid": self.report_cid,
            "tx_hash": self.tx_hash,
            "shapley_method": self.shapley_method,
            "proven": self.proven,
            "prove_seconds": self.prove_seconds,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "entries": [e.to_json() for e in self.entries],
        }


@dataclass(frozen=True, kw_only=True)
class FlDemoResult(ProjectResult):
    """Everything the federated-learning demo did and the numbers to check it (see :mod:`pocfl.demo.fl`)."""

    config: FlDemoConfig
    trainers: tuple[TrainerInfo, ...]
    rounds: tuple[FlRound, ...]
    timings: dict[str, float]
    manifest_cid: str = ""
    initial_weights_cid: str = ""
    validation_commitment: str = ""
    chain_methods: dict[str, tuple[int, float]] = field(default_factory=dict)
    audit_ok: bool | None = None
    audit_warnings: tuple[str, ...] = ()
    verifier: dict[str, Any] | None = None
    """The deployed verifier pair of a ``--prove`` run (addresses, circuit, sizes)."""

    def earned(self) -> dict[str, int]:
        """Wei each trainer was credited over all rounds."""
        totals = {t.name: 0 for t in self.trainers}
        for r in self.rounds:
            for e in r.entries:
                totals[e.trainer] += e.credited
        return totals

    def groups(self) -> dict[str, dict[str, int]]:
        """Per group (honest / attacker / free rider): trainers, min, max and total wei earned."""
        earned = self.earned()
        out: dict[str, dict[str, int]] = {}
        for t in self.trainers:
            g = out.setdefault(t.group, {"trainers": 0, "min_wei": earned[t.name], "max_wei": 0, "total_wei": 0})
            g["trainers"] += 1
            g["min_wei"] = min(g["min_wei"], earned[t.name])
            g["max_wei"] = max(g["max_wei"], earned[t.name])
            g["total_wei"] += earned[t.name]
        return out

    @property
    def incentives_hold(self) -> bool:
        """Every attacker and free rider earned less than every honest trainer."""
        groups = self.groups()
        honest_min = groups.get("honest", {}).get("min_wei", 0)
        others = [g["max_wei"] for name, g in groups.items() if name != "honest"]
        return all(m < honest_min for m in others)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (amounts in wei, as integers)."""
        return {
            "demo": "fl",
            "reconciled": self.reconciled,
            "audit_ok": self.audit_ok,
            "audit_warnings": list(self.audit_warnings),
            "problems": list(self.problems),
            "incentives_hold": self.incentives_hold,
            **self._where_json(),
            "num_rounds": self.config.rounds,
            "config": self.config.to_json(),
            **self._money_json(),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "chain_methods": {k: {"requests": n, "seconds": round(t, 4)} for k, (n, t) in self.chain_methods.items()},
            "store": self.store,
            "store_kept": self.store_kept,
            "manifest_cid": self.manifest_cid,
            "verifier": self.verifier,
            "initial_weights_cid": self.initial_weights_cid,
            "final_model_cid": self.final_model_cid,
            "validation_set_commitment": self.validation_commitment,
            "objects": list(self.objects),
            "trainers": self._trainers_json(),
            "groups": self.groups(),
            "rounds": [r.to_json() for r in self.rounds],
            "parties": [p.to_json() for p in self.parties],
        }

    def _trainers_json(self) -> list[dict[str, Any]]:
        earned = self.earned()
        return [
            {
                "name": t.name,
                "address": t.address,
                "role": t.role,
                "group": t.group,
                "data": t.data,
                "samples": t.samples,
                "classes": t.classes,
                "earned_wei": earned[t.name],
                "rounds_flagged": sum(e.outlier for r in self.rounds for e in r.entries if e.trainer == t.name),
            }
            for t in self.trainers
        ]

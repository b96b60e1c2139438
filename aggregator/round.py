"""One round's decision as a pure function: outliers, aggregate, scores, next hyper-parameters.

The aggregator node calls :func:`decide_round` to post a round and ``pocfl audit`` calls it again on the public
inputs to recompute what was posted; so everything here is deterministic given its arguments (seeds come from
the chain, never from the aggregator):

1. Submissions that failed validation (``None``: missing, wrong CID, bad commitment, wrong architecture, NaN, ...)
   are outliers with score 0.
2. Rule ``trust`` (the default, issue 12; :mod:`aggregator.trust`): a reference update trained on the owner's
   validation set (:func:`server_reference`) gives every accepted update a trust (cosine); untrusted updates and
   norm anomalies are outliers, the rest are clipped, near-copies form clusters that enter as one update, and
   the aggregate is trust-weighted. Rule ``flag``: the Flag Aggregator (:func:`aggregator.flag.flag_aggregate`)
   decides the outliers from a CountSketch of every accepted update (:mod:`pocfl.sketch`; the sketch seed
   comes from the round's final submissions digest, unknown while trainers can still submit). Proven projects
   pass the circuit's ``outlier_flags`` instead.
3. Contribution values over the non-outliers (:func:`aggregator.shapley.round_scores`: free riders and copies
   are screened out first): Shapley values under ``flag``; under ``trust`` Banzhaf values (``RoundConfig.
   contribution``) with each cluster one player whose value its members split by trust, on
   the validation utility chosen in :class:`RoundConfig`, become int128 scores. Under ``trust`` a round whose
   validation gain is inside the validation noise (:func:`gain_noise_floor`) posts all scores 0: nobody is
   credited and the round budget stays in escrow for the owner.
4. The next round's hyper-parameters follow from the validation-accuracy history
   (:func:`pocfl.rounds.hyperparams.next_hyperparams`).

Payout shares are not computed here: the contract computes them from the posted scores and flags, and
:func:`pocfl.payouts.allocate` mirrors it to the wei.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from eth_utils.crypto import keccak
from numpy.typing import NDArray

from aggregator.flag import apply_decision, decision_from_flags, flag_aggregate
from aggregator.seeds import shapley_seed
from aggregator.shapley import ScoringConfig, Status, Value, round_scores, to_int_scores
from aggregator.trust import TrustConfig, TrustResult, trust_aggregate
from pocfl.rounds.hyperparams import HyperParamRule, HyperParams, next_hyperparams

Vector = NDArray[np.float32]
SKETCH_SEED_DOMAIN = b"pocfl.sketch.seed.v1"
MIN_FLAG_UPDATES = 3
"""Below this many accepted updates there is no majority to compare against: no outlier filtering."""


@dataclass(frozen=True)
class RoundSeeds:
    """The round's seeds, both derived from values fixed on chain once submissions closed."""

    shapley: bytes
    sketch: bytes

    @classmethod
    def derive(cls, chain_id: int, market: str, project_id: int, round_: int, submissions_digest: bytes) -> RoundSeeds:
        """Derive both seeds.

        ``shapley = keccak256(abi.encode(...))`` (see :func:`aggregator.seeds.shapley_seed`) and
        ``sketch = keccak256("pocfl.sketch.seed.v1" || shapley)``.
        """
        s = shapley_seed(chain_id, market, project_id, round_, submissions_digest)
        return cls(shapley=s, sketch=keccak(SKETCH_SEED_DOMAIN + s))


@dataclass(frozen=True)
class RoundConfig:
    """Settings of :func:`decide_round` (from the project manifest).

    Attributes
    ----------
    sketch_dim
        CountSketch size the outlier decision is computed on; 0 decides on the full updates.
    metric
        Validation utility of the Shapley game: ``neg_loss`` (smooth; the default) or ``accuracy``.
    scoring
        Estimator and screening settings.
    hyper_rule
        Constants of the hyper-parameter rule.
    n_classes
        Output width of the model.
    rule
        ``trust``: validation-anchored filter and weights (:mod:`aggregator.trust`); ``flag``: the Flag
        Aggregator on the updates alone (the rule before issue 12).
    trust
        Constants of the ``trust`` rule.
    contribution
        ``trust`` rule only: the semivalue its clusters are scored by. ``banzhaf`` (default): every coalition
        of the other players weighs alike, so a player is valued mostly by what it adds to mid-sized and
        large coalitions; ``shapley`` weighs each coalition size alike, so a player that summarises the
        others (ALIE) or carries the owner's reference direction (the adaptive attack) earns most in the
        tiny coalitions where that summary is new. Measured on the tuning seeds (docs/benchmarks.md):
        ALIE's pay 20 -> 8 %, the adaptive attack's 70 -> 42 %, honest trainer-rounds paid 0 about
        35 -> 15 %.
    noise_z
        ``trust`` rule only: a round whose validation gain is not above ``noise_z`` standard errors of the
        paired per-sample difference (:func:`gain_noise_floor`) credits nobody; its budget stays in escrow
        for the owner (the contract's existing all-zero-weights rule, exact to the wei).
    """

    sketch_dim: int = 128
    metric: Literal["neg_loss", "accuracy"] = "neg_loss"
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    hyper_rule: HyperParamRule = field(default_factory=HyperParamRule)
    n_classes: int = 10
    rule: Literal["trust", "flag"] = "trust"
    trust: TrustConfig = field(default_factory=TrustConfig)
    contribution: Value = "banzhaf"
    noise_z: float = 2.0


@dataclass(frozen=True, eq=False)
class RoundDecision:
    """What a round posts and records, every per-submission field in submission order.

    Attributes
    ----------
    outliers, scores
        Exactly what ``postRound`` carries.
    statuses
        ``rejected`` (failed validation), ``outlier`` (Flag Aggregator or trust rule), ``free_rider``,
        ``copy``, ``stale`` (screening), ``scored``, or ``unpaid`` (would be scored, but the round's gain was
        inside the validation noise).
    values
        Float Shapley values (utility units; 0 for everything not scored).
    weights
        Aggregation weights (0 for rejected and outliers; sum 1 over the rest).
    ratios
        ``trust``: norm over the median norm; ``flag``: Flag Aggregator reconstruction ratios (0 for rejected).
    new_global
        The new global model (current + aggregate).
    accuracy, loss
        Validation accuracy and loss of the new global model; ``accuracy_before``/``loss_before`` of the old.
    next_hyperparams
        Hyper-parameters of the next round.
    shapley_method, shapley_evaluations
        Which estimator ran and how many coalition utilities it evaluated.
    gain, noise_floor
        The round's validation gain (utility units) and the floor it had to exceed to pay (``trust`` rule).
    """

    outliers: tuple[bool, ...]
    scores: tuple[int, ...]
    statuses: tuple[str, ...]
    values: tuple[float, ...]
    weights: tuple[float, ...]
    ratios: tuple[float, ...]
    new_global: Vector
    accuracy_before: float
    loss_before: float
    accuracy: float
    loss: float
    next_hyperparams: HyperParams
    shapley_method: str
    shapley_evaluations: int
    gain: float = 0.0
    noise_floor: float = 0.0


Evaluate = Callable[[NDArray[np.floating]], tuple[float, float]]


def _validation_evaluate(validation: tuple[NDArray[np.floating], NDArray[np.integer]], n_classes: int) -> Evaluate:
    """``(vector) -> (accuracy, loss)`` of the MLP on the owner's validation set."""
    from pocfl.ml.training import evaluate as ml_evaluate

    x_val, y_val = validation

    def evaluate(v: NDArray[np.floating]) -> tuple[float, float]:
        return ml_evaluate(v, x_val, y_val, n_classes=n_classes)

    return evaluate


def _utility(evaluate: Evaluate, config: RoundConfig) -> Callable[[NDArray[np.floating]], float]:
    """The coalition utility the scores use: validation accuracy, or minus the loss."""

    def utility(v: NDArray[np.floating]) -> float:
        accuracy, loss = evaluate(np.asarray(v, dtype=np.float32))
        return accuracy if config.metric == "accuracy" else -loss

    return utility


@dataclass
class _Rows:
    """The per-submission columns of a decision, filled from the accepted updates' part."""

    statuses: list[str]
    outliers: list[bool]
    weights: list[float]
    ratios: list[float]
    scores: list[int]
    values: list[float]
    trust: TrustResult | None = None
    """The ``trust`` rule's result (None under ``flag``, or with no accepted update)."""
    method: str = "none"
    evaluations: int = 0

    @classmethod
    def rejected(cls, n: int) -> _Rows:
        """Every submission rejected until its accepted update is decided."""
        return cls(["rejected"] * n, [True] * n, [0.0] * n, [0.0] * n, [0] * n, [0.0] * n)

    def fill(self, accepted: Sequence[int], part: _Accepted) -> None:
        """Spread the accepted updates' results to their submissions."""
        for j, i in enumerate(accepted):
            self.outliers[i], self.weights[i], self.ratios[i] = part.outliers[j], part.weights[j], part.ratios[j]
            self.scores[i], self.values[i] = int(part.scored.scores[j]), float(part.scored.values[j])
            self.statuses[i] = "outlier" if part.outliers[j] else status_name(part.scored.status[j])
        self.trust, self.method, self.evaluations = part.trust, part.scored.method, part.scored.evaluations

    def columns(self) -> dict[str, tuple[Any, ...]]:
        """The per-submission fields of :class:`RoundDecision`."""
        names = ("outliers", "scores", "statuses", "values", "weights", "ratios")
        return {name: tuple(getattr(self, name)) for name in names}

    def unpay(self) -> None:
        """Credit nobody: every score 0 and each scored update ``unpaid``."""
        self.scores = [0] * len(self.scores)
        self.statuses = ["unpaid" if st == "scored" else st for st in self.statuses]


def decide_round(
    global_vector: NDArray[np.floating],
    updates: Sequence[NDArray[np.floating] | None],
    *,
    validation: tuple[NDArray[np.floating], NDArray[np.integer]],
    seeds: RoundSeeds,
    hyperparams: HyperParams,
    accuracy_history: Sequence[float] = (),
    prior_updates: Sequence[NDArray[np.floating]] = (),
    config: RoundConfig = RoundConfig(),
    evaluate: Callable[[NDArray[np.floating]], tuple[float, float]] | None = None,
    outlier_flags: Sequence[bool] | None = None,
    reference: NDArray[np.floating] | None = None,
) -> RoundDecision:
    """Decide a round from its validated updates.

    Parameters
    ----------
    global_vector
        The round's starting global model (flat).
    updates
        One entry per on-chain submission, in submission order: the decoded delta, or None if it was rejected.
    validation
        The owner's validation features and labels.
    seeds
        :meth:`RoundSeeds.derive` of the round.
    hyperparams
        The hyper-parameters this round was trained with.
    accuracy_history
        Validation accuracy after each earlier round (oldest first).
    prior_updates
        Public earlier aggregate deltas (stale-copy screening).
    config
        Settings from the project manifest.
    evaluate
        ``(vector) -> (accuracy, loss)`` on the validation set; defaults to :func:`pocfl.ml.training.evaluate`.
    outlier_flags
        One flag per submission decided elsewhere (the round circuit of a proven project, ``zk/``): used instead of
        the Flag Aggregator's own decision, whatever the number of accepted updates; the full updates are still
        aggregated by :func:`aggregator.flag.apply_decision` (subspace refit on the accepted ones).
    reference
        The ``trust`` rule's reference update; defaults to :func:`server_reference` (the MLP trained one pass
        on the validation set with this round's hyper-parameters and a seed from the chain).
    """
    own_evaluate = evaluate is None
    evaluate = evaluate or _validation_evaluate(validation, config.n_classes)
    g, n = np.asarray(global_vector, dtype=np.float32), len(updates)
    accepted = [i for i, u in enumerate(updates) if u is not None]
    rows = _Rows.rejected(n)
    acc_before, loss_before = evaluate(g)
    new_global = g.copy()
    if accepted:
        if outlier_flags is not None and len(outlier_flags) != n:
            raise ValueError(f"outlier_flags has {len(outlier_flags)} entries for {n} submissions")
        flags = None if outlier_flags is None else [bool(outlier_flags[i]) for i in accepted]
        matrix = np.stack([np.asarray(updates[i], dtype=np.float32) for i in accepted])
        if flags is None and config.rule == "trust" and len(accepted) >= MIN_FLAG_UPDATES and reference is None:
            reference = server_reference(g, validation, hyperparams, seeds.shapley, config.n_classes)
        part = _decide_accepted(g, matrix, flags, reference, _utility(evaluate, config), seeds, prior_updates, config)
        new_global = (g + part.aggregate).astype(np.float32)
        rows.fill(accepted, part)
    accuracy, loss = evaluate(new_global)
    gain = accuracy - acc_before if config.metric == "accuracy" else loss_before - loss
    trusted = rows.trust is not None
    floor = config.noise_z * gain_noise_floor(g, new_global, validation, config) if trusted and own_evaluate else 0.0
    if trusted and not gain > floor:  # gains inside the validation noise buy nothing: nobody is credited
        rows.unpay()
    return RoundDecision(
        **rows.columns(),
        new_global=new_global,
        accuracy_before=float(acc_before),
        loss_before=float(loss_before),
        accuracy=float(accuracy),
        loss=float(loss),
        next_hyperparams=next_hyperparams(hyperparams, [*accuracy_history, accuracy], config.hyper_rule),
        shapley_method=rows.method,
        shapley_evaluations=rows.evaluations,
        gain=float(gain),
        noise_floor=float(floor),
    )


@dataclass(frozen=True, eq=False)
class _Accepted:
    """The decision over the accepted updates, in their order."""

    outliers: list[bool]
    weights: list[float]
    ratios: list[float]
    aggregate: NDArray[np.float32]
    scored: _Scored
    trust: TrustResult | None


def _decide_accepted(
    g: NDArray[np.float32],
    matrix: NDArray[np.float32],
    flags: list[bool] | None,
    reference: NDArray[np.floating] | None,
    utility: Callable[[NDArray[np.floating]], float],
    seeds: RoundSeeds,
    prior_updates: Sequence[NDArray[np.floating]],
    config: RoundConfig,
) -> _Accepted:
    """Filter, aggregate and score the accepted updates (:func:`decide_round`, steps 2 and 3)."""
    outliers, weights, ratios, aggregate, tr = _filter(matrix, flags, reference, seeds, config)
    priors = [np.asarray(p, dtype=np.float64) for p in prior_updates]
    if tr is not None:
        scoring = replace(config.scoring, value=config.contribution)
        scored = _cluster_scores(g.astype(np.float64), tr, utility, seeds.shapley, priors, scoring)
        if config.trust.drop_negative:
            outliers, weights, aggregate, scored = _drop_negative(tr, scored)
        return _Accepted(outliers, weights, ratios, aggregate, scored, tr)
    rs = round_scores(
        g.astype(np.float64),
        [row.astype(np.float64) for row in matrix],
        utility,
        seeds.shapley,
        outliers=outliers,
        weights=weights,
        prior_updates=priors,
        config=config.scoring,
    )
    values = tuple(float(v) for v in rs.values)
    scored = _Scored(rs.scores, values, rs.screening.status, rs.result.method, rs.result.evaluations)
    return _Accepted(outliers, weights, ratios, aggregate, scored, None)


def gain_noise_floor(
    before: NDArray[np.floating],
    after: NDArray[np.floating],
    validation: tuple[NDArray[np.floating], NDArray[np.integer]],
    config: RoundConfig,
) -> float:
    """Standard error of the round's validation gain: ``std(m_after - m_before) / sqrt(n)`` over samples.

    ``m`` is the per-sample loss (``neg_loss``) or correctness (``accuracy``) of the two models on the same
    validation samples (a paired comparison).
    """
    from pocfl.ml.training import sample_losses

    x_val, y_val = validation
    old_loss, old_ok = sample_losses(before, x_val, y_val, n_classes=config.n_classes)
    new_loss, new_ok = sample_losses(after, x_val, y_val, n_classes=config.n_classes)
    diff = new_ok - old_ok if config.metric == "accuracy" else new_loss - old_loss
    return float(np.std(diff, ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0


def _filter(
    matrix: NDArray[np.float32],
    flags: list[bool] | None,
    reference: NDArray[np.floating] | None,
    seeds: RoundSeeds,
    config: RoundConfig,
) -> tuple[list[bool], list[float], list[float], NDArray[np.float32], TrustResult | None]:
    """Outlier flags, aggregation weights, ratios and the aggregate of the accepted updates (``matrix``).

    ``flags`` from a circuit win; else the ``trust`` rule (``reference`` given) or the Flag Aggregator; below
    :data:`MIN_FLAG_UPDATES` updates, the plain mean.
    """
    k = matrix.shape[0]
    if flags is not None:
        fa = apply_decision(matrix, decision_from_flags(flags))  # nothing accepted: a zero aggregate
        return flags, [float(w) for w in fa.weights], [0.0] * k, np.asarray(fa.aggregate, dtype=np.float32), None
    if k < MIN_FLAG_UPDATES:
        return [False] * k, [1.0 / k] * k, [1.0] * k, matrix.mean(axis=0, dtype=np.float32), None
    if config.rule == "trust" and reference is not None:
        tr = trust_aggregate(matrix, reference, config.trust)
        return list(tr.outliers), list(tr.weights), list(tr.norm_ratios), tr.aggregate.astype(np.float32), tr
    res = flag_aggregate(
        matrix, sketch_seed=seeds.sketch if config.sketch_dim else None, sketch_dim=config.sketch_dim or 128
    )
    outliers, weights = [bool(o) for o in res.outliers], [float(w) for w in res.weights]
    return outliers, weights, [float(r) for r in res.ratios], np.asarray(res.aggregate, dtype=np.float32), None


def server_reference(
    global_vector: NDArray[np.floating],
    validation: tuple[NDArray[np.floating], NDArray[np.integer]],
    hyperparams: HyperParams,
    seed: bytes,
    n_classes: int,
) -> NDArray[np.float64]:
    """The ``trust`` rule's reference: one local-training run on the validation set (FLTrust's server update).

    Same trainer code and hyper-parameters as the trainers (so the norms compare), batch order from the
    chain-derived seed, so the audit recomputes it bit for bit.
    """
    from pocfl.ml.training import local_train

    x_val, y_val = validation
    delta = local_train(
        global_vector,
        x_val,
        y_val,
        epochs=hyperparams.local_epochs,
        lr=hyperparams.learning_rate,
        batch_size=hyperparams.batch_size,
        seed=int.from_bytes(keccak(b"pocfl.reference.seed.v1" + seed)[:8], "big"),
        n_classes=n_classes,
    )
    return np.asarray(delta, dtype=np.float64)


@dataclass(frozen=True)
class _Scored:
    scores: tuple[int, ...]
    values: tuple[float, ...]
    status: tuple[Status, ...]
    method: str
    evaluations: int


def _cluster_scores(
    g: NDArray[np.float64],
    tr: TrustResult,
    utility: Callable[[NDArray[np.floating]], float],
    seed: bytes,
    priors: Sequence[NDArray[np.float64]],
    scoring: ScoringConfig,
) -> _Scored:
    """Shapley values with each cluster of near-identical updates as one player, split within the cluster.

    The cluster plays as its representative (its only member with aggregation weight), exactly as it enters
    the aggregate, so a copy changes nobody's value; the value is split over the members in proportion to
    their trust, which no submission order changes. Outliers score 0.
    """
    k = len(tr.outliers)
    ids = sorted({c for c in tr.clusters if c >= 0})
    members = [[i for i in range(k) if tr.clusters[i] == c] for c in ids]
    w = np.asarray(tr.weights)
    trust = np.maximum(np.asarray(tr.trust), 0.0)
    reps = [m[int(np.argmax(w[m]))] for m in members]
    if not ids:
        return _Scored((0,) * k, (0.0,) * k, (Status.OUTLIER,) * k, "none", 0)
    rs = round_scores(
        g,
        [tr.clipped[i] for i in reps],
        utility,
        seed,
        weights=[float(w[i]) for i in reps],
        prior_updates=priors,
        config=scoring,
    )
    values = [0.0] * k
    status = [Status.OUTLIER] * k
    for c, m in enumerate(members):
        total = float(np.sum(trust[m]))
        for i in m:
            values[i] = float(rs.values[c]) * (float(trust[i]) / total if total > 0 else 1.0 / len(m))
            status[i] = rs.screening.status[c]
    return _Scored(
        to_int_scores(values, scoring.scale), tuple(values), tuple(status), rs.result.method, int(rs.result.evaluations)
    )


def _drop_negative(tr: TrustResult, scored: _Scored) -> tuple[list[bool], list[float], NDArray[np.float32], _Scored]:
    """Contribution-aware aggregation: clusters whose contribution value is negative leave the model.

    They are outliers (score 0); the others keep their weights, renormalised, and their scores (the values
    of the game with everyone in, an approximation that needs no second Shapley run).
    """
    bad = [o or (v < 0 and st is Status.OK) for o, v, st in zip(tr.outliers, scored.values, scored.status, strict=True)]
    w = np.where(bad, 0.0, np.asarray(tr.weights))
    total = float(np.sum(w))
    w = w / total if total > 0 else w
    aggregate = (w @ tr.clipped).astype(np.float32)
    scores = tuple(0 if b else s for b, s in zip(bad, scored.scores, strict=True))
    values = tuple(0.0 if b else v for b, v in zip(bad, scored.values, strict=True))
    status = tuple(Status.OUTLIER if b else st for b, st in zip(bad, scored.status, strict=True))
    return bad, [float(x) for x in w], aggregate, _Scored(scores, values, status, scored.method, scored.evaluations)


def status_name(status: Status) -> str:
    """A scoring status as the round report names it (``scored`` for an update that was scored)."""
    return "scored" if status is Status.OK else str(status.value)

"""Robustness benchmark: final accuracy of FL on digits under attack, Flag Aggregator vs Flower baselines.

Setup (all fixed by --seeds): scikit-learn digits (1,437 train / 360 validation), Dirichlet non-IID
alpha = 0.5 over 15 trainers, a random set of --attackers of them Byzantine, the 64-32-10 MLP, local
SGD (2 epochs, lr 0.1, batch 16), --rounds rounds, server step ``global += aggregate``. Every
(attack, aggregator) pair is one independent run from the same initial model and the same data.

Aggregators: FA (``aggregator.flag.flag_aggregate``, full and sketched), Krum, Multi-Krum, Bulyan,
coordinate-wise median, trimmed mean (Flower's implementations, given the true f; Bulyan at most the
f it accepts), FedAvg. The "none" attack row is the clean run; its FedAvg cell is the reference.
A second reference, honest-only FedAvg, trains without the attackers at all: the accuracy any rule
that discards the attackers' updates (and with them their share of the data) can hope for.

Goals: FA within 3 points of clean FedAvg under every attack, and at least as good as every baseline.

``decide_trust`` / ``decide_flag`` run the whole :func:`aggregator.round.decide_round` (rule ``trust`` or ``flag``)
as the node does, with its own hyper-parameter schedule and a 180-sample owner validation set held out of the
training pool, and record the attackers' aggregation weight and pay; a goals table (issue 12) is printed for
each. Extra attacks (``--attacks``): min_max, min_sum, adaptive, sleeper, stale, alie_opt, ipm_opt; ``--alpha``
and ``--task synthetic`` change the data (docs/benchmarks.md, "Round decision under attack"). Attacker weight and
pay in the goals table are budget shares over the rounds in which the attack is on (for ``sleeper`` the rounds
from SLEEP_ROUNDS on, for every other attack all rounds); "att. pay (all rounds)" is the share over every round.
A miss names its measured cause (``CAUSES``, footnotes under the table) or says that none is recorded.

``alie_opt`` / ``ipm_opt`` are ByzFL's optimal ALIE and IPM (Allouah et al.; the ByzFL benchmark): each round a
line search over the attack factor (ALIE ``mu - z * sigma``, z in 0.25 ... 8; IPM ``-eps * mu``, eps in 0.1 ... 8;
mu, sigma the coordinate-wise mean and std of the honest updates, all attackers sending the same vector) picks
the factor maximising the distance ``||aggregate - mu||`` of the aggregate the target rule computes that round
(for decide_trust with the owner's validation reference, for decide_flag with the round's sketch) from the
honest mean. A factor at the edge of its grid is noted in the run's notes.

``--json`` dumps every per-seed result (and the settings, under ``_meta``); ``--from-json a.json,b.json``
renders the tables from such dumps without running anything, concatenating the seeds of separate runs.

    .venv/bin/python scripts/bench_robustness.py                 # seed 0: ~5 minutes on one core
    .venv/bin/python scripts/bench_robustness.py --seeds 0,1,2   # mean over three partitions/attacker sets
    .venv/bin/python scripts/bench_robustness.py --seeds 1 --json s1.json   # one seed per process, then
    .venv/bin/python scripts/bench_robustness.py --from-json s0.json,s1.json --plot ''   # the tables of both
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.baselines import aggregate as baseline_aggregate  # noqa: E402
from aggregator.baselines import bulyan_max_f  # noqa: E402
from aggregator.round import RoundConfig, RoundSeeds, decide_round  # noqa: E402
from aggregator.trust import TrustConfig  # noqa: E402
from pocfl.ml import dirichlet_partition, evaluate, initial_vector, load_digits_split, local_train  # noqa: E402
from pocfl.payouts import allocate  # noqa: E402
from pocfl.rounds.hyperparams import HyperParams  # noqa: E402
from pocfl.testing.attacks import Attack, apply_attack, flip_labels  # noqa: E402

N_TRAINERS = 15
ALPHA = 0.5
EPOCHS, LR, BATCH = 2, 0.1, 16
GOAL_POINTS = 3.0
OWNER_VAL = 180

# (label, attack, parameters): the bench's attack grid; "none" is the clean reference run.
ATTACKS: list[tuple[str, Attack, dict[str, float]]] = [
    ("none", Attack.NONE, {}),
    ("sign_flip", Attack.SIGN_FLIP, {}),
    ("scaling x10", Attack.SCALING, {"factor": 10.0}),
    ("gaussian s=0.1", Attack.GAUSSIAN_NOISE, {"sigma": 0.1}),
    ("alie", Attack.ALIE, {}),
    ("ipm e=0.5", Attack.IPM, {"eps": 0.5}),
    ("ipm e=3", Attack.IPM, {"eps": 3.0}),
    ("label_flip", Attack.LABEL_FLIP, {}),
    ("free_rider", Attack.FREE_RIDER, {}),
    ("copycat", Attack.COPYCAT, {}),
]
# Not in the default grid (to keep it to a few minutes); select with --attacks stale,min_max,...
EXTRA_ATTACKS: list[tuple[str, Attack, dict[str, float]]] = [
    ("stale", Attack.STALE, {}),
    ("min_max", Attack.NONE, {}),
    ("min_sum", Attack.NONE, {}),
    ("adaptive", Attack.NONE, {}),
    ("sleeper", Attack.NONE, {}),
    ("alie_opt", Attack.NONE, {}),
    ("ipm_opt", Attack.NONE, {}),
]
BASELINE_NAMES = ["krum", "multi_krum", "bulyan", "median", "trimmed_mean", "fedavg"]
AGGREGATORS = ["decide_trust", "decide_flag", "fa", "fa_sketch", *BASELINE_NAMES]

Vector = NDArray[np.float32]
# (updates, sample counts, f, round seed) -> (aggregate, flagged indices or None)
AggOut = tuple[NDArray[np.floating], list[int] | None]
AggFn = Callable[[NDArray[np.float64], NDArray[np.int64], int, bytes], AggOut]
DECIDE_RULES = {"decide_flag": "flag", "decide_trust": "trust"}
ROUND_BUDGET = 10**18


@dataclass
class Owner:
    """State a decide_round aggregator carries between rounds (the node's view of the project)."""

    x_val: NDArray[np.float32]
    y_val: NDArray[np.int64]
    rule: str
    hyper: HyperParams
    trust: TrustConfig = field(default_factory=TrustConfig)
    history: list[float] = field(default_factory=list)
    attacker_weight: float = 0.0
    attacker_pay: int = 0
    paid: int = 0
    rounds: int = 0
    active_weight: float = 0.0  # the same sums over the rounds in which the attack is on
    active_pay: int = 0
    active_rounds: int = 0


@dataclass
class Setup:
    x_tr: NDArray[np.float32]
    y_tr: NDArray[np.int64]
    x_va: NDArray[np.float32]
    y_va: NDArray[np.int64]
    parts: list[NDArray[np.int64]]
    attackers: list[int]
    init: Vector
    seed: int
    x_own: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 64), dtype=np.float32))
    y_own: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class RunResult:
    attack: str
    aggregator: str
    accuracy: float
    loss: float
    curve: list[float]
    flagged_attackers: int = 0
    flagged_honest: int = 0
    missed_attackers: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    attacker_weight: float = 0.0  # mean over rounds of the attackers' total aggregation weight
    attacker_pay: float = 0.0  # attackers' credits / total budget of the run
    paid: float = 0.0  # credited / total budget of the run
    final_lr: float = LR
    final_epochs: float = EPOCHS
    active_weight: float = 0.0  # attacker_weight over the rounds in which the attack is on (sleeper: awake)
    active_pay: float = 0.0  # attackers' credits / total budget of those rounds
    active_rounds: float = 0.0  # how many rounds the attack was on (a mean over seeds after merge)
    seed_accuracies: list[float] = field(default_factory=list)  # per seed, in seed order (set by merge)


def _outlier_indices(raw: object, k: int) -> list[int]:
    """FlagResult.outliers as indices, whether it is a bool mask or an index list."""
    arr = np.asarray(raw)
    if arr.dtype == np.bool_ and arr.shape == (k,):
        return np.flatnonzero(arr).tolist()
    return sorted(int(i) for i in arr.reshape(-1))


@dataclass
class AttackContext:
    """What the stronger attackers know: the global model, the round's seed and the owner's reference."""

    w: Vector
    setup: Setup
    round: int
    seed: bytes
    hyper: HyperParams


def _benign_stats(honest: NDArray[np.float64], attackers: list[int]) -> NDArray[np.float64]:
    # attackers' own honest updates: what colluders have (Shejwalkar and Houmansadr's "agnostic" setting
    # uses only their own benign updates; with them all honest ones, the stronger "full knowledge" variant)
    return honest[[i for i in range(honest.shape[0]) if i not in attackers]]


def _min_max_sum(honest: NDArray[np.float64], attackers: list[int], use_sum: bool) -> NDArray[np.float64]:
    """Min-max / min-sum (NDSS 2021): ``mean - gamma * unit(mean)``, gamma the largest keeping the malicious
    update's max (sum of squared) distance to the benign ones within the benign updates' own maximum."""
    benign = _benign_stats(honest, attackers)
    mean = benign.mean(axis=0)
    p = mean / (np.linalg.norm(mean) or 1.0)
    d2 = np.sum((benign[:, None, :] - benign[None, :, :]) ** 2, axis=2)
    bound = float(np.max(d2.sum(axis=1)) if use_sum else np.max(d2))

    def ok(gamma: float) -> bool:
        dist = np.sum((benign - (mean - gamma * p)) ** 2, axis=1)
        return float(dist.sum() if use_sum else dist.max()) <= bound

    lo, hi = 0.0, 10.0 * float(np.sqrt(bound) + 1.0)
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    out = honest.copy()
    out[attackers] = mean - lo * p
    return out


def _adaptive(honest: NDArray[np.float64], attackers: list[int], ctx: AttackContext) -> NDArray[np.float64]:
    """Knows the trust rule and the owner's reference ``r``: sends, at the median norm, 45 degrees between ``r``
    (trust 0.71, above every honest trainer's) and the harmful direction ``-mean`` made orthogonal to ``r``,
    each attacker with its own random twist so no two reach the cluster cosine."""
    from aggregator.round import server_reference

    r = server_reference(ctx.w, (ctx.setup.x_own, ctx.setup.y_own), ctx.hyper, ctx.seed, 10)
    rhat = r / np.linalg.norm(r)
    benign = _benign_stats(honest, attackers)
    median = float(np.median(np.linalg.norm(benign, axis=1)))
    harm = -benign.mean(axis=0)
    harm -= (harm @ rhat) * rhat
    rng = np.random.default_rng(ctx.round)
    out = honest.copy()
    for a in attackers:
        twist = rng.normal(size=harm.shape)
        twist -= (twist @ rhat) * rhat
        m = harm / np.linalg.norm(harm) + 0.8 * twist / np.linalg.norm(twist)
        out[a] = median * (np.sqrt(0.5) * rhat + np.sqrt(0.5) * m / np.linalg.norm(m))
    return out


def _sleeper(honest: NDArray[np.float64], attackers: list[int], ctx: AttackContext) -> NDArray[np.float64]:
    """Honest for SLEEP_ROUNDS rounds, then sign flip."""
    out = honest.copy()
    if ctx.round >= SLEEP_ROUNDS:
        out[attackers] = -honest[attackers]
    return out


SLEEP_ROUNDS = 10
CUSTOM_ATTACKS: dict[str, Callable[[NDArray[np.float64], list[int], AttackContext], NDArray[np.float64]]] = {
    "min_max": lambda u, a, ctx: _min_max_sum(u, a, use_sum=False),
    "min_sum": lambda u, a, ctx: _min_max_sum(u, a, use_sum=True),
    "adaptive": _adaptive,
    "sleeper": _sleeper,
}

# ByzFL's optimal ALIE / IPM: the factor grids of the per-round line search (module docstring)
OPT_GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "alie_opt": ("z", (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)),
    "ipm_opt": ("eps", (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)),
}
# the aggregate the target rule would compute this round from a matrix of sent updates
Probe = Callable[[NDArray[np.float64]], NDArray[np.floating]]


def _optimal_attack(
    label: str, honest: NDArray[np.float64], attackers: list[int], probe: Probe
) -> tuple[NDArray[np.float64], float]:
    """Every attacker sends the same ALIE (``mu - z * sigma``) or IPM (``-eps * mu``) vector, the factor from
    OPT_GRIDS maximising ``||probe(sent) - mu||``; returns the sent matrix and the chosen factor."""
    benign = _benign_stats(honest, attackers)
    mu, sigma = benign.mean(axis=0), benign.std(axis=0)
    grid = OPT_GRIDS[label][1]
    best, best_dist, best_param = honest, -1.0, grid[0]
    for param in grid:
        sent = honest.copy()
        sent[attackers] = mu - param * sigma if label == "alie_opt" else -param * mu
        agg = np.asarray(probe(sent), dtype=np.float64)
        dist = float(np.linalg.norm(agg - mu)) if np.all(np.isfinite(agg)) else float("inf")
        if dist > best_dist:
            best, best_dist, best_param = sent, dist, param
    return best, best_param


def make_probe(
    owner: Owner | None, w: Vector, agg: AggFn, counts: NDArray[np.int64], f: int, round_seed: bytes
) -> Probe:
    """The aggregate the run's rule computes on a round (decide_round's aggregation step for the decide rules)."""
    if owner is None:
        return lambda sent: agg(sent, counts, f, round_seed)[0]
    if owner.rule == "trust":
        from aggregator.round import server_reference
        from aggregator.trust import trust_aggregate

        # exactly decide_round's reference: decide_step passes the round seed as the shapley seed
        reference = server_reference(w, (owner.x_val, owner.y_val), owner.hyper, round_seed, 10)
        config = owner.trust
        return lambda sent: trust_aggregate(sent, reference, config).aggregate
    from aggregator.flag import flag_aggregate

    sketch_seed = hashlib.sha256(round_seed).digest()
    return lambda sent: np.asarray(flag_aggregate(sent, sketch_seed=sketch_seed, sketch_dim=64).aggregate)


def make_aggregators(sketch_dim: int) -> dict[str, AggFn]:
    def fa(sketch: bool) -> AggFn:
        def run(
            u: NDArray[np.float64], n: NDArray[np.int64], f: int, seed: bytes
        ) -> tuple[NDArray[np.floating], list[int]]:
            from aggregator.flag import flag_aggregate

            res = flag_aggregate(u, sketch_seed=seed if sketch else None, sketch_dim=sketch_dim)
            return np.asarray(res.aggregate), _outlier_indices(res.outliers, u.shape[0])

        return run

    def baseline(name: str) -> AggFn:
        def run(u: NDArray[np.float64], n: NDArray[np.int64], f: int, seed: bytes) -> AggOut:
            f_used = min(f, bulyan_max_f(u.shape[0])) if name == "bulyan" else f
            return baseline_aggregate(name, u, n, f_used), None

        return run

    table: dict[str, AggFn] = {"fa": fa(False), "fa_sketch": fa(True)}
    table.update({name: baseline(name) for name in BASELINE_NAMES})
    table.update({name: baseline("fedavg") for name in DECIDE_RULES})  # unused: run_one calls decide_step
    return table


def load_task(
    task: str, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """``digits`` (tuned on) or ``synthetic``: scikit-learn make_classification, 1,797 samples, 64 features
    (24 informative), 10 classes, two clusters per class, standardised: same shapes and model as digits, a task
    the trust rule's constants were not tuned on."""
    if task == "digits":
        return load_digits_split(seed)
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=1797, n_features=64, n_informative=24, n_redundant=8, n_classes=10, random_state=seed
    )
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    f32 = np.float32
    return x_tr.astype(f32), y_tr.astype(np.int64), x_te.astype(f32), y_te.astype(np.int64)


def make_setup(seed: int, n_attackers: int, alpha: float = ALPHA, task: str = "digits") -> Setup:
    """Partition, attackers and the owner's validation set (OWNER_VAL samples held out of the training pool,
    disjoint from the test set every accuracy is measured on)."""
    x_tr, y_tr, x_te, y_te = load_task(task, seed)
    held = np.random.default_rng(seed + 11).permutation(len(y_tr))
    owner, pool = held[:OWNER_VAL], np.sort(held[OWNER_VAL:])
    parts = [pool[p] for p in dirichlet_partition(y_tr[pool], N_TRAINERS, alpha, seed, min_size=8)]
    rng = np.random.default_rng(seed + 7)
    attackers = sorted(rng.choice(N_TRAINERS, size=n_attackers, replace=False).tolist())
    setup = Setup(x_tr, y_tr, x_te, y_te, parts, attackers, initial_vector(seed), seed)
    setup.x_own, setup.y_own = x_tr[owner], y_tr[owner]
    return setup


def run_one(
    setup: Setup,
    label: str,
    attack: Attack,
    params: dict[str, float],
    agg_name: str,
    agg: AggFn,
    rounds: int,
    drop: frozenset[int] = frozenset(),
    trust: TrustConfig | None = None,
) -> RunResult:
    """One FL run; ``drop`` removes trainers entirely (the honest-only reference drops the attackers)."""
    started = time.perf_counter()
    clients = [i for i in range(N_TRAINERS) if i not in drop]
    # positions (in the matrix the aggregator sees) of the attackers
    attacking = attack is not Attack.NONE or label in CUSTOM_ATTACKS or label in OPT_GRIDS
    attackers = [clients.index(a) for a in setup.attackers if a in clients] if attacking else []
    f = len(setup.attackers)  # robust rules are told the true f, also in the clean run
    counts = np.array([len(setup.parts[i]) for i in clients], dtype=np.int64)
    client_data: list[tuple[int, NDArray[np.float32], NDArray[np.integer]]] = []
    for pos, i in enumerate(clients):
        idx = setup.parts[i]
        y: NDArray[np.integer] = setup.y_tr[idx]
        if attack.poisons_data and pos in attackers:
            y = flip_labels(y)
        client_data.append((i, setup.x_tr[idx], y))

    w = setup.init.copy()
    prev_delta = np.zeros_like(w, dtype=np.float64)
    curve: list[float] = []
    result = RunResult(label, agg_name, 0.0, 0.0, curve)
    owner = None
    if agg_name in DECIDE_RULES:
        owner = Owner(setup.x_own, setup.y_own, DECIDE_RULES[agg_name], HyperParams(0, LR, EPOCHS, BATCH))
        owner.trust = trust or TrustConfig()
    edge_rounds: list[tuple[int, float]] = []  # (round, factor) where an optimal attack chose a grid edge
    for r in range(rounds):
        lr, epochs = (owner.hyper.learning_rate, owner.hyper.local_epochs) if owner else (LR, EPOCHS)
        honest = np.stack(
            [
                local_train(w, x, y, epochs=epochs, lr=lr, batch_size=BATCH, seed=setup.seed * 1_000_000 + r * 100 + i)
                for i, x, y in client_data
            ]
        ).astype(np.float64)
        round_seed = hashlib.sha256(f"bench_robustness/{setup.seed}/{r}".encode()).digest()
        if label in CUSTOM_ATTACKS:
            ctx = AttackContext(w, setup, r, round_seed, HyperParams(r, lr, epochs, BATCH))
            sent = CUSTOM_ATTACKS[label](honest, attackers, ctx)
        elif label in OPT_GRIDS:
            probe = make_probe(owner, w, agg, counts, f, round_seed)
            sent, param = _optimal_attack(label, honest, attackers, probe)
            if param in (OPT_GRIDS[label][1][0], OPT_GRIDS[label][1][-1]):
                edge_rounds.append((r, param))
        else:
            sent = np.asarray(
                apply_attack(
                    attack, honest, attackers, seed=setup.seed * 1000 + r, previous_delta=prev_delta, **params
                ),
                dtype=np.float64,
            )
        if owner is not None:
            active = label != "sleeper" or r >= SLEEP_ROUNDS  # the attack is on (the sleeper is awake)
            raw_delta, flagged = decide_step(owner, w, sent, attackers, round_seed, active)
        else:
            raw_delta, flagged = agg(sent, counts, f, round_seed)
        delta = np.asarray(raw_delta, dtype=np.float64)
        if not np.all(np.isfinite(delta)):
            result.notes.append(f"non-finite aggregate at round {r}")
            break
        w = (w + delta).astype(np.float32)
        prev_delta = delta
        if flagged is not None:
            bad = set(attackers)
            result.flagged_attackers += len(bad.intersection(flagged))
            result.flagged_honest += len(set(flagged) - bad)
            result.missed_attackers += len(bad - set(flagged))
        curve.append(evaluate(w, setup.x_va, setup.y_va)[0] if np.all(np.isfinite(w)) else 0.0)
    if edge_rounds:  # one short note per run
        (r0, p0), name = edge_rounds[0], OPT_GRIDS[label][0]
        result.notes.append(f"{label} {name} at grid edge {p0:g} in round {r0} ({len(edge_rounds)}/{rounds} rounds)")
    if np.all(np.isfinite(w)):
        result.accuracy, result.loss = evaluate(w, setup.x_va, setup.y_va)
    else:
        result.accuracy, result.loss = 0.0, float("inf")
    result.seconds = time.perf_counter() - started
    if owner is not None and owner.rounds:
        result.attacker_weight = owner.attacker_weight / owner.rounds
        result.attacker_pay = owner.attacker_pay / (ROUND_BUDGET * owner.rounds)
        result.paid = owner.paid / (ROUND_BUDGET * owner.rounds)
        result.final_lr = owner.hyper.learning_rate
        result.final_epochs = owner.hyper.local_epochs
    if owner is not None and owner.active_rounds:
        result.active_weight = owner.active_weight / owner.active_rounds
        result.active_pay = owner.active_pay / (ROUND_BUDGET * owner.active_rounds)
        result.active_rounds = owner.active_rounds
    return result


def decide_step(
    owner: Owner, w: Vector, sent: NDArray[np.float64], attackers: list[int], seed: bytes, active: bool = True
) -> AggOut:
    """One round through :func:`aggregator.round.decide_round`, as the node runs it; records weight and pay
    (also in the ``active_*`` sums when the attack is on this round)."""
    decision = decide_round(
        w,
        list(sent),
        validation=(owner.x_val, owner.y_val),
        seeds=RoundSeeds(shapley=seed, sketch=hashlib.sha256(seed).digest()),
        hyperparams=owner.hyper,
        accuracy_history=owner.history,
        config=RoundConfig(rule=owner.rule, sketch_dim=64, trust=owner.trust),  # type: ignore[arg-type]
    )
    owner.history.append(decision.accuracy)
    owner.hyper = decision.next_hyperparams
    shares = allocate(ROUND_BUDGET, decision.scores, decision.outliers).shares
    weight, pay = sum(decision.weights[a] for a in attackers), sum(shares[a] for a in attackers)
    owner.attacker_weight += weight
    owner.attacker_pay += pay
    if active:
        owner.active_weight += weight
        owner.active_pay += pay
        owner.active_rounds += 1
    owner.paid += sum(shares)
    owner.rounds += 1
    delta = np.asarray(decision.new_global, dtype=np.float64) - np.asarray(w, dtype=np.float64)
    return delta, [i for i, o in enumerate(decision.outliers) if o]


Results = dict[tuple[str, str], RunResult]
HONEST_ONLY = ("honest_only", "fedavg")

_ADAPTIVE = (
    "the attacker sends the owner's own reference direction (computed from the public validation set) plus harm; "
    "every validation-anchored rule trusts and pays it: validation data that is public at scoring time cannot tell "
    "an update trained on it from a helpful one (fix: a committed validation split revealed after scoring, "
    "docs/payouts.md)"
)
_COPYCAT = (
    "an in-round copy at 1 % noise is indistinguishable from its original without using submission order (which "
    "front-running would exploit); the pair is one cluster and splits the original's value, so the pair earns no "
    "more than the original alone (bench_replication.py); sealed projects make in-round copies impossible"
)
_ALIE = (
    "full-knowledge ALIE sends a summary of the honest updates, which helps the model; it is one cluster (one "
    "player), and its value is a function of the others' information; needs the honest updates of the round, "
    "which sealed projects hide"
)
_ALIE_WEIGHT = (
    "the identical ALIE updates form one cluster that weighs as one median honest trainer (about 1/11 of the "
    "weight); its direction is close to the honest mean, so the model is unharmed"
)
_LABEL_FLIP = (
    "label-flipped updates of label-skewed trainers have cosines near 0 to the reference (median -0.06 median "
    "trusts on the tuning seeds, Dirichlet 0.1), like skewed honest trainers'; those above -0.5 are kept at the "
    "floor weight and some earn a positive value"
)
# (attack label, goal key) -> the measured cause of a miss; goal keys: acc_honest (acc < honest-only - 2),
# acc_flower (acc < the best Flower rule), weight, pay, clean (clean accuracy below FedAvg), honest_flagged
CAUSES: dict[tuple[str, str], str] = {
    **{("adaptive", key): _ADAPTIVE for key in ("weight", "pay", "acc_honest", "acc_flower")},
    ("copycat", "weight"): _COPYCAT,
    ("copycat", "pay"): _COPYCAT,
    ("alie", "pay"): _ALIE,
    ("alie_opt", "pay"): _ALIE,
    ("none", "clean"): (
        "trust weights ignore sample counts (self-reported, so not trusted) and down-weight trainers whose label "
        "mix differs from the owner's validation set"
    ),
    ("none", "honest_flagged"): (
        "honest updates clearly against the reference (cosine at or below -0.5 median trusts) are flagged: a trainer "
        "whose classes the owner's validation step does not improve, or, on a hard task (synthetic, 35 % accuracy), "
        "a reference step that is itself mostly noise"
    ),
    ("alie", "weight"): _ALIE_WEIGHT,
    ("alie_opt", "weight"): _ALIE_WEIGHT,
    ("scaling x10", "acc_flower"): (
        "scaled updates are honest updates times 10, so they carry their trainers' data; the trust rule drops them "
        "as norm anomalies (as a perfect filter would: it stays at the honest-only level), while the coordinate "
        "median keeps their direction"
    ),
    ("*", "acc_honest"): (
        "honest trainer-rounds flagged (the 'honest flagged' column) take their data out of the model, which "
        "honest-only FedAvg keeps; most on label-skewed partitions (Dirichlet 0.1, the synthetic task), where "
        "trainers holding one or two classes point away from the class-balanced reference"
    ),
    **{
        ("gaussian s=0.1", key): (
            "noise updates whose norm passes the 4-median test and whose cosine to the reference is near 0 are kept "
            "at the floor weight (0.1 median trusts); their value on the 180-sample validation utility is noisy and "
            "now and then positive"
        )
        for key in ("weight", "pay")
    },
    ("label_flip", "weight"): _LABEL_FLIP,
    ("label_flip", "pay"): _LABEL_FLIP,
}
NOISE_Z = 2.0
"""An accuracy shortfall whose paired mean over seeds is within NOISE_Z standard errors is reported as noise."""


def paired_shortfall(ours: list[float], theirs: list[float]) -> str | None:
    """``"-0.9 +- 0.6 over 3 seeds, not significant"`` when ours is below theirs by less than NOISE_Z paired
    standard errors (the per-seed differences' std / sqrt(n)), else None (a real shortfall, or one seed)."""
    d = 100 * (np.asarray(ours) - np.asarray(theirs))
    if d.size < 2:
        return None
    se = float(np.std(d, ddof=1) / np.sqrt(d.size))
    mean = float(np.mean(d))
    if mean + NOISE_Z * se < 0:
        return None
    below = int(np.sum(d < 0))
    return (
        f"{mean:+.1f} +- {se:.1f} pts paired over {d.size} seeds (below in {below} of {d.size}): within "
        f"{NOISE_Z:g} standard errors, not significant"
    )


def merge(runs: list[RunResult]) -> RunResult:
    """Mean accuracy/loss/curve over seeds; flag counts and times summed."""
    first = runs[0]
    return RunResult(
        first.attack,
        first.aggregator,
        float(np.mean([r.accuracy for r in runs])),
        float(np.mean([r.loss for r in runs])),
        [float(v) for v in np.mean([r.curve for r in runs if len(r.curve) == len(first.curve)], axis=0)],
        sum(r.flagged_attackers for r in runs),
        sum(r.flagged_honest for r in runs),
        sum(r.missed_attackers for r in runs),
        sum(r.seconds for r in runs),
        [n for r in runs for n in r.notes],
        float(np.mean([r.attacker_weight for r in runs])),
        float(np.mean([r.attacker_pay for r in runs])),
        float(np.mean([r.paid for r in runs])),
        float(np.mean([r.final_lr for r in runs])),
        float(np.mean([r.final_epochs for r in runs])),
        float(np.mean([r.active_weight for r in runs])),
        float(np.mean([r.active_pay for r in runs])),
        float(np.mean([r.active_rounds for r in runs])),
        [r.accuracy for r in runs],
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def render(results: Results, labels: list[str], aggs: list[str], f: int) -> str:
    clean = results[("none", "fedavg")].accuracy
    honest_only = results[HONEST_ONLY].accuracy
    bul = f"bulyan (f={min(f, bulyan_max_f(N_TRAINERS))})" if f > bulyan_max_f(N_TRAINERS) else "bulyan"
    names = [bul if a == "bulyan" else a for a in aggs]
    lines = [
        f"Final validation accuracy (%); clean FedAvg (all {N_TRAINERS} honest) = {_pct(clean)} %, honest-only "
        f"FedAvg (the {N_TRAINERS - f} honest trainers alone) = {_pct(honest_only)} %.",
        "",
        "| attack | " + " | ".join(names) + " | FA - clean FedAvg | FA - best baseline |",
        "|---|" + "---:|" * len(aggs) + "---:|---:|",
    ]
    for label in labels:
        cells = [_pct(results[(label, a)].accuracy) for a in aggs]
        fa = results[(label, "fa")].accuracy
        best_base = max(results[(label, b)].accuracy for b in aggs if b in BASELINE_NAMES)
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {100 * (fa - clean):+.1f} | {100 * (fa - best_base):+.1f} |"
        )
    lines += [
        "",
        "FA outlier flags summed over all rounds (precision = flagged attackers / flagged; "
        "recall = flagged attackers / attacker-rounds; honest flagged = false positives, of "
        f"{N_TRAINERS - f} honest trainer-rounds per round):",
        "",
        "| attack | FA precision | FA recall | FA honest flagged | sketch precision | sketch recall | "
        "sketch honest flagged |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label in labels:
        cells = []
        for a in ("fa", "fa_sketch"):
            if (label, a) not in results:
                cells += ["-", "-", "-"]
                continue
            res = results[(label, a)]
            flagged = res.flagged_attackers + res.flagged_honest
            total = res.flagged_attackers + res.missed_attackers
            precision = f"{res.flagged_attackers / flagged:.2f}" if flagged else "-"
            recall = f"{res.flagged_attackers / total:.2f}" if total else "-"
            cells += [precision, recall, str(res.flagged_honest)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(results: Results, labels: list[str], aggs: list[str], rule: str, n_seeds: int, f: int) -> str:
    """Issue 12's goals for one decide_round rule, met/missed per attack (means over seeds)."""
    if (labels[0], rule) not in results:
        return ""
    honest_only = results[HONEST_ONLY].accuracy
    clean_fedavg = results[("none", "fedavg")].accuracy
    lines = [
        f"Goals for {rule} (acc >= honest-only - 2 = {_pct(honest_only - 0.02)} and >= the best Flower rule told f; "
        "attackers' weight <= 5 %, pay <= 1 % of the budget; clean: within 0.5 of FedAvg, honest flagged <= 2 %; "
        "paid = share of the budget credited, the rest returned to the owner by the noise-floor rule):",
        "",
        "| attack | acc | best Flower rule | acc goal | att. weight | att. pay | att. pay (all rounds) | paid | "
        "honest flagged | goals |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    footnotes: dict[tuple[str, str], tuple[int, list[str]]] = {}  # (label, cause) -> (number, goal keys)

    def cite(label: str, key: str, text: str, measured: str | None = None) -> str:
        known = CAUSES.get((label, key), CAUSES.get(("*", key)))
        cause = "; ".join(c for c in (measured, known) if c) or None
        if cause is None:
            return f"{text} [no cause recorded]"
        number, keys = footnotes.setdefault((label, cause), (len(footnotes) + 1, []))
        keys.append(key)
        return f"{text} [c{number}]"

    for label in labels:
        res = results[(label, rule)]
        flower = [b for b in aggs if b in BASELINE_NAMES and b != "fedavg"]
        best = max(flower, key=lambda b: results[(label, b)].accuracy) if flower else "fedavg"
        best_acc = results[(label, best)].accuracy
        honest = N_TRAINERS - (0 if label == "none" else f)
        honest_rounds = res.flagged_honest / max(1, n_seeds * len(res.curve) * honest)
        missed = []
        ours = res.seed_accuracies
        if label == "none":
            if res.accuracy < clean_fedavg - 0.005:
                noise = paired_shortfall(ours, [a - 0.005 for a in results[("none", "fedavg")].seed_accuracies])
                missed.append(
                    cite(label, "clean", f"clean {100 * (clean_fedavg - res.accuracy):.1f} below FedAvg", noise)
                )
            if honest_rounds > 0.02:
                missed.append(cite(label, "honest_flagged", "honest flagged"))
        else:
            if res.accuracy < honest_only - 0.02:
                noise = paired_shortfall(ours, [a - 0.02 for a in results[HONEST_ONLY].seed_accuracies])
                missed.append(cite(label, "acc_honest", "acc < honest-only - 2", noise))
            if res.accuracy < best_acc - 1e-9:  # a tie is not a miss
                noise = paired_shortfall(ours, results[(label, best)].seed_accuracies)
                missed.append(cite(label, "acc_flower", f"acc < {best}", noise))
            if res.active_weight > 0.05:  # while attacking: a sleeper's honest rounds are not attacker weight/pay
                missed.append(cite(label, "weight", "weight"))
            if res.active_pay > 0.01:
                missed.append(cite(label, "pay", "pay"))
        lines.append(
            f"| {label} | {_pct(res.accuracy)} | {best} {_pct(best_acc)} | {_pct(honest_only - 0.02)} | "
            f"{_pct(res.active_weight)} | {_pct(res.active_pay)} | {_pct(res.attacker_pay)} | {_pct(res.paid)} | "
            f"{100 * honest_rounds:.1f} | " + ("met" if not missed else "MISSED: " + ", ".join(missed)) + " |"
        )
    if footnotes:
        lines.append("")
        lines += [f"[c{n}] {label} / {', '.join(keys)}: {cause}" for (label, cause), (n, keys) in footnotes.items()]
    return "\n".join(lines)


def verdict(results: Results, labels: list[str], aggs: list[str]) -> list[str]:
    clean = results[("none", "fedavg")].accuracy
    out = []
    for label in labels:
        fa = results[(label, "fa")].accuracy
        gap = 100 * (clean - fa)
        ahead = [
            f"{b} by {100 * (results[(label, b)].accuracy - fa):.1f}"
            for b in aggs
            if b in BASELINE_NAMES and results[(label, b)].accuracy > fa
        ]
        within = "yes" if gap <= GOAL_POINTS else f"NO ({gap:.1f} pts below)"
        beats = "yes" if not ahead else "NO (" + ", ".join(ahead) + " pts ahead)"
        out.append(f"{label:>15}: within {GOAL_POINTS:.0f} pts of clean FedAvg: {within}; >= every baseline: {beats}")
    return out


def plot(results: Results, labels: list[str], aggs: list[str], n_attackers: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(10.0, 1.3 * len(labels)), 5.6))
    width = 0.8 / len(aggs)
    xs = np.arange(len(labels))
    for j, a in enumerate(aggs):
        heights = [100 * results[(lab, a)].accuracy for lab in labels]
        ax.bar(xs + j * width - 0.4 + width / 2, heights, width, label=a)
    ax.axhline(100 * results[("none", "fedavg")].accuracy, color="k", linestyle="--", lw=1, label="clean FedAvg")
    ax.axhline(100 * results[HONEST_ONLY].accuracy, color="k", linestyle=":", lw=1, label="honest-only FedAvg")
    ax.set_xticks(xs, labels, rotation=20, ha="right")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"digits, {N_TRAINERS} trainers ({n_attackers} attackers), Dirichlet alpha={ALPHA}")
    ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_dumps(paths: list[Path]) -> tuple[dict[tuple[str, str], list[RunResult]], dict[str, object]]:
    """Per-seed results of ``--json`` dumps, each key's lists concatenated across files (seeds run in separate
    processes), and their merged settings (``_meta``; absent in older dumps)."""
    per_seed: dict[tuple[str, str], list[RunResult]] = {}
    meta: dict[str, object] = {}
    seeds: list[object] = []
    for path in paths:
        dump = json.loads(path.read_text(encoding="utf-8"))
        file_meta = dump.pop("_meta", None)
        if isinstance(file_meta, dict):
            for k, v in file_meta.items():
                if k == "seeds" and isinstance(v, list):
                    seeds += v
                elif meta.setdefault(k, v) != v:
                    print(f"warning: {path}: {k} = {v}, earlier files {meta[k]}", file=sys.stderr)
        for key, runs in dump.items():
            label, agg = key.split("|", 1)
            for run in runs:
                if "active_rounds" not in run and label != "sleeper":  # older dump: on in every round
                    run = {**run, "active_weight": run.get("attacker_weight", 0.0)}
                    run["active_pay"] = run.get("attacker_pay", 0.0)
                    run["active_rounds"] = float(len(run.get("curve", [])))
                per_seed.setdefault((label, agg), []).append(RunResult(**run))
    if seeds:
        meta["seeds"] = seeds
    return per_seed, meta


def report(
    per_seed: dict[tuple[str, str], list[RunResult]],
    labels: list[str],
    aggs: list[str],
    n_attackers: int,
    header: str,
    plot_path: str,
) -> None:
    """The tables, verdicts and goals of a run (or of saved runs), and the plot unless ``plot_path`` is empty."""
    results = {key: merge(runs) for key, runs in per_seed.items()}
    n_seeds = len(per_seed[HONEST_ONLY])
    print(f"\n{header}\n")
    print(render(results, labels, aggs, n_attackers))
    print()
    print("\n".join(verdict(results, labels, aggs)))
    for rule in DECIDE_RULES:
        if rule in aggs:
            print("\n" + goals(results, labels, aggs, rule, n_seeds, n_attackers))
    if plot_path:
        plot(results, labels, aggs, n_attackers, Path(plot_path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--attackers", type=int, default=5, help="Byzantine trainers of 15 (default 5, i.e. 33%%)")
    parser.add_argument("--seeds", default="0", help="comma list; accuracies are averaged over seeds")
    parser.add_argument("--trust", default="", help="TrustConfig overrides, e.g. min_trust=0.5,cluster_cosine=0.9")
    parser.add_argument("--task", choices=["digits", "synthetic"], default="digits")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="Dirichlet concentration of the partition")
    parser.add_argument("--sketch-dim", type=int, default=64)
    parser.add_argument("--attacks", default="", help="comma list of attack labels (default: all but 'stale')")
    parser.add_argument("--aggregators", default="", help="comma list (default: all)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "img" / "bench_robustness.png"), help="'' for no plot")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's result here")
    parser.add_argument(
        "--from-json", default="", help="comma list of --json dumps: print their tables (seeds combined), run nothing"
    )
    args = parser.parse_args(argv)
    all_labels = [s[0] for s in ATTACKS + EXTRA_ATTACKS]

    if args.from_json:
        per_seed, meta = load_dumps([Path(p) for p in args.from_json.split(",") if p])
        if HONEST_ONLY not in per_seed:
            print("no honest-only reference in the dumps", file=sys.stderr)
            return 1
        present = {key[0] for key in per_seed}
        labels = [label for label in all_labels if label in present]
        aggs = [a for a in AGGREGATORS if any((label, a) in per_seed for label in labels)]
        n_attackers = int(str(meta.get("attackers", args.attackers)))
        settings = ", ".join(f"{k} {meta[k]}" for k in ("task", "alpha") if k in meta)
        header = (
            f"seeds {meta.get('seeds', '?')}, {meta.get('rounds', '?')} rounds, {n_attackers} of {N_TRAINERS} "
            f"trainers attack; {settings + '; ' if settings else ''}{meta.get('versions', 'versions not recorded')}"
        )
        report(per_seed, labels, aggs, n_attackers, header, args.plot)
        n_runs, run_s = sum(len(v) for v in per_seed.values()), sum(r.seconds for v in per_seed.values() for r in v)
        print(f"\n{n_runs} runs from {args.from_json} ({run_s:.0f} s of run time when run)")
        return 0

    torch.set_num_threads(1)
    wanted = args.attacks.split(",") if args.attacks else [s[0] for s in ATTACKS]
    specs = [ATTACKS[0]] + [s for s in ATTACKS[1:] + EXTRA_ATTACKS if s[0] in wanted]
    labels = [s[0] for s in specs]
    aggs = [a for a in AGGREGATORS if not args.aggregators or a in args.aggregators.split(",")]
    aggs += [a for a in ("fa", "fedavg") if a not in aggs]
    table = make_aggregators(args.sketch_dim)
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = dict(kv.split("=") for kv in args.trust.split(",") if kv)
    flags = ("trust_weighted", "drop_negative", "cap_trust")
    trust_kwargs: dict[str, Any] = {k: (v == "1") if k in flags else float(v) for k, v in overrides.items()}
    trust = TrustConfig(**trust_kwargs)

    # FA is under development: record which version the numbers are for (read before it is imported)
    versions = ", ".join(
        f"{path.name} sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
        for path in (ROOT / "aggregator" / "flag.py", ROOT / "pocfl" / "sketch.py")
        if path.exists()
    )
    importlib.import_module("aggregator.flag")  # now, so the hashes above are of the code that runs
    per_seed = {}
    started = time.perf_counter()
    for seed in seeds:
        setup = make_setup(seed, args.attackers, args.alpha, args.task)
        print(f"seed {seed}: attackers {setup.attackers}; samples per trainer {[len(p) for p in setup.parts]}")
        jobs = [(label, attack, params, a) for label, attack, params in specs for a in aggs]
        for label, attack, params, a in jobs:
            res = run_one(setup, label, attack, params, a, table[a], args.rounds, trust=trust)
            per_seed.setdefault((label, a), []).append(res)
            extra = ""
            if a in DECIDE_RULES:
                extra = (
                    f" att.weight {_pct(res.active_weight)} % att.pay {_pct(res.active_pay)} % (attacking, "
                    f"{res.active_rounds:g} rounds; all rounds {_pct(res.attacker_pay)} %) "
                    f"paid {_pct(res.paid)} % lr {res.final_lr:.3g} ep {res.final_epochs} "
                    f"flagged att {res.flagged_attackers} "
                    f"hon {res.flagged_honest}"
                )
            notes = " ".join(res.notes)
            print(f"  {label:>15} {a:>13}: {_pct(res.accuracy):>5} %  ({res.seconds:.1f} s){extra} {notes}")
        ref = run_one(
            setup, "honest_only", Attack.NONE, {}, "fedavg", table["fedavg"], args.rounds, frozenset(setup.attackers)
        )
        per_seed.setdefault(HONEST_ONLY, []).append(ref)
        print(f"  {'honest-only':>15} {'fedavg':>13}: {_pct(ref.accuracy):>5} %")
    elapsed = time.perf_counter() - started
    header = (
        f"seeds {seeds}, {args.rounds} rounds, {args.attackers} of {N_TRAINERS} trainers attack; task {args.task}, "
        f"alpha {args.alpha}; {versions}"
    )
    report(per_seed, labels, aggs, args.attackers, header, args.plot)
    print(f"\n{sum(len(v) for v in per_seed.values())} runs x {args.rounds} rounds in {elapsed:.0f} s")
    if args.json:
        meta = {
            "rounds": args.rounds,
            "alpha": args.alpha,
            "task": args.task,
            "seeds": seeds,
            "attackers": args.attackers,
            "versions": versions,
        }
        dump: dict[str, object] = {"_meta": meta}
        dump.update({f"{k[0]}|{k[1]}": [asdict(r) for r in v] for k, v in per_seed.items()})
        args.json.write_text(json.dumps(dump, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

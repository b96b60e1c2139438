"""Shapley accuracy vs exact on real utilities (scikit-learn digits, Dirichlet non-IID split).

Setup (self-contained, numpy only, deterministic): digits 8x8 (1,797 images) scaled to [0, 1]; 450
images held out as the aggregator's validation set; the rest split among N trainers with a Dirichlet
(alpha = 0.5) label partition. Model: multinomial logistic regression (650 parameters). The global
model is the result of ``--warm-rounds`` FedAvg rounds from zero; in the benchmarked round every
trainer runs 2 local epochs of minibatch SGD (batch 16, lr 0.5) from it and submits its delta. The
utility of a coalition is the validation metric of ``global + mean of the coalition's deltas``:
negative cross-entropy ("loss", smooth; the default) or accuracy ("acc", a step function of 450
samples). Ground truth: exact Shapley (2**N evaluations).

For each (data seed, sampler seed) the estimators run on a fresh cache; the table averages Spearman,
Pearson and max absolute error against exact over all pairs. Sampler seeds come from
``aggregator.seeds.shapley_seed`` with synthetic chain values. GTG's within-round tolerance is tuned
on data seeds disjoint from the reported ones (``--tune``).

Usage::

    .venv/bin/python scripts/bench_shapley.py            # table + docs/img/bench_shapley.png
    .venv/bin/python scripts/bench_shapley.py --tune     # GTG tolerance sweep on tuning seeds
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.stats import pearsonr, spearmanr
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator.seeds import shapley_seed  # noqa: E402
from aggregator.shapley import (  # noqa: E402
    ScoringConfig,
    ShapleyResult,
    banzhaf_msr,
    exact_shapley,
    gtg_shapley,
    leave_one_out,
    permutation_shapley,
    round_scores,
    surrogate_shapley,
    to_int_scores,
)
from aggregator.utility import CachedUtility, delta_utility  # noqa: E402
from pocfl.payouts import allocate  # noqa: E402

Vec = NDArray[np.float64]
N_FEATURES, N_CLASSES = 64, 10
DIM = N_FEATURES * N_CLASSES + N_CLASSES
MARKETPLACE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
GTG_TOL = 0.5  # best mean Spearman over N = 8, 10 in --tune on seeds 100..107 (see docs/benchmarks.md)


# --------------------------------------------------------------------------- data and model


def _logits(p: Vec, x: Vec) -> Vec:
    w, b = p[: N_FEATURES * N_CLASSES].reshape(N_FEATURES, N_CLASSES), p[N_FEATURES * N_CLASSES :]
    z: Vec = x @ w + b
    shifted: Vec = z - z.max(axis=1, keepdims=True)  # stable softmax
    return shifted


def neg_loss(p: Vec, x: Vec, y: NDArray[np.int64]) -> float:
    z = _logits(p, x)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(logp[np.arange(len(y)), y].mean())


def accuracy(p: Vec, x: Vec, y: NDArray[np.int64]) -> float:
    return float((_logits(p, x).argmax(axis=1) == y).mean())


def _grad(p: Vec, x: Vec, y: NDArray[np.int64]) -> Vec:
    z = _logits(p, x)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    prob[np.arange(len(y)), y] -= 1.0
    prob /= len(y)
    return np.concatenate([(x.T @ prob).ravel(), prob.sum(axis=0)])


def local_train(p: Vec, x: Vec, y: NDArray[np.int64], rng: np.random.Generator, epochs: int = 2) -> Vec:
    p = p.copy()
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), 16):
            batch = order[start : start + 16]
            p -= 0.5 * _grad(p, x[batch], y[batch])
    return p


@dataclass
class Round:
    global_params: Vec
    updates: list[Vec]
    sizes: list[int]
    x_val: Vec
    y_val: NDArray[np.int64]


def make_round(data_seed: int, n: int, warm_rounds: int, alpha: float = 0.5) -> Round:
    """Deterministic non-IID round: Dirichlet label split, warm-up FedAvg, one round of local updates."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float64) / 16.0
    y = y.astype(np.int64)
    rng = np.random.default_rng(data_seed)
    order = rng.permutation(len(y))
    val, pool = order[:450], order[450:]
    parts: list[list[int]] = [[] for _ in range(n)]
    for c in range(N_CLASSES):
        idx = rng.permutation(pool[y[pool] == c])
        cuts = (np.cumsum(rng.dirichlet(alpha * np.ones(n)))[:-1] * len(idx)).astype(int)
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].extend(chunk.tolist())
    shards = [np.array(p, dtype=np.int64) for p in parts]
    g = np.zeros(DIM)
    for _ in range(warm_rounds):
        g = g + np.mean([local_train(g, x[s], y[s], rng) - g for s in shards], axis=0)
    updates = [local_train(g, x[s], y[s], rng) - g for s in shards]
    return Round(g, updates, [len(s) for s in shards], x[val], y[val])


def utility_of(rnd: Round, metric: str) -> Callable[[], CachedUtility]:
    """Fresh cached utility per estimator run, all sharing one memo of the raw evaluations."""
    fn = neg_loss if metric == "loss" else accuracy
    memo = delta_utility(rnd.global_params, rnd.updates, lambda p: fn(p, rnd.x_val, rnd.y_val))
    return lambda: CachedUtility(lambda c: memo(c), memo.n_players)


# --------------------------------------------------------------------------- estimators

Estimator = Callable[[CachedUtility, bytes], ShapleyResult]


def singleton_gains(u: CachedUtility) -> ShapleyResult:
    """Reference, not an estimator of the library: rank by ``U({i}) - U(empty)`` (N + 1 evaluations)."""
    start = u.evaluations
    values = np.array([u([i]) - u([]) for i in range(u.n_players)])
    return ShapleyResult(values, u.evaluations - start, 0, "singletons")


def permutation_at(budget: int) -> Estimator:
    return lambda u, s: permutation_shapley(u, s, max_permutations=None, max_evaluations=budget)


def gtg_at(tol: float, budget: int) -> Estimator:
    return lambda u, s: gtg_shapley(u, s, within_tol=tol, max_evaluations=budget)


def surrogate_at(budget: int) -> Estimator:
    return lambda u, s: surrogate_shapley(u, s, max_evaluations=budget)


def estimators(budget: int, gtg_tol: float = GTG_TOL) -> dict[str, Estimator]:
    return {
        "leave-one-out": lambda u, s: leave_one_out(u),
        "singleton gains U({i}) - U(empty)": lambda u, s: singleton_gains(u),
        f"permutation (<= {budget})": permutation_at(budget),
        f"gtg, paper tol 0.01 (<= {budget})": gtg_at(0.01, budget),
        f"gtg, tuned tol {gtg_tol} (<= {budget})": gtg_at(gtg_tol, budget),
        f"surrogate (<= {budget})": surrogate_at(budget),
    }


def banzhaf_estimators(budget: int) -> dict[str, Estimator]:
    """The trust rule's estimators of Banzhaf values (the truth is exact Banzhaf)."""
    return {
        "leave-one-out": lambda u, s: leave_one_out(u),
        f"msr, no stopping (<= {budget})": lambda u, s: banzhaf_msr(u, s, max_evaluations=budget, rel_tol=0.0),
        f"surrogate (<= {budget})": lambda u, s: surrogate_shapley(u, s, max_evaluations=budget, value="banzhaf"),
        "msr, default (<= 1024, stops at 10 % SE)": lambda u, s: banzhaf_msr(u, s),
    }


def sampler_seed(data_seed: int, k: int) -> bytes:
    digest = int.to_bytes(0xB0 + k, 32, "big")
    return shapley_seed(31337, MARKETPLACE, data_seed, k, digest)


@dataclass
class Score:
    spearman: list[float]
    pearson: list[float]
    max_err: list[float]
    evals: list[int]

    def add(self, est: Vec, truth: Vec, evals: int) -> None:
        self.spearman.append(float(spearmanr(est, truth).statistic))
        self.pearson.append(float(pearsonr(est, truth).statistic))
        self.max_err.append(float(np.max(np.abs(est - truth))))
        self.evals.append(evals)


def evaluate(
    data_seeds: list[int],
    sampler_seeds: int,
    n: int,
    metric: str,
    warm: int,
    ests: dict[str, Estimator],
    value: Literal["shapley", "banzhaf"] = "shapley",
) -> dict[str, Score]:
    scores = {name: Score([], [], [], []) for name in ["exact", *ests]}
    for ds in data_seeds:
        fresh = utility_of(make_round(ds, n, warm), metric)
        exact = exact_shapley(fresh(), value)
        scores["exact"].add(exact.values, exact.values, exact.evaluations)
        for name, est in ests.items():
            deterministic = name.startswith(("leave-one-out", "singleton"))
            for k in range(1 if deterministic else sampler_seeds):
                res = est(fresh(), sampler_seed(ds, k))
                scores[name].add(res.values, exact.values, res.evaluations)
    return scores


# --------------------------------------------------------------------------- attacks


def attack_table(data_seeds: list[int], n: int, warm: int) -> tuple[list[tuple[str, str, float, float]], float]:
    """Round-budget shares with and without the screening of ``round_scores`` (exact Shapley, loss).

    Trainer 0 is the victim/original; the attacker is appended as trainer ``n``. Returns rows
    (scenario, scoring, attacker share, pair share minus the original's share without the attacker)
    and the mean over seeds of the largest cosine similarity between two honest updates.
    """
    budget = 10**18
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    honest_cos: list[float] = []
    for ds in data_seeds:
        rnd = make_round(ds, n, warm)
        ev = lambda p, r=rnd: neg_loss(p, r.x_val, r.y_val)  # noqa: E731
        seed = sampler_seed(ds, 0)
        u = np.array(rnd.updates)
        norms = np.linalg.norm(u, axis=1)
        cos = (u @ u.T) / np.outer(norms, norms)
        honest_cos.append(float(cos[~np.eye(n, dtype=bool)].max()))
        noise_rng = np.random.default_rng(1000 + ds)
        exact = ScoringConfig(method="exact")
        base = round_scores(rnd.global_params, rnd.updates, ev, seed, config=exact)
        alone = allocate(budget, base.scores, [False] * n).shares[0] / budget

        scale0 = float(norms[0]) / math.sqrt(DIM)  # per-coordinate sd of noise with 100% of the norm
        attackers = {
            "free rider: zero update": np.zeros(DIM),
            "free rider: global sent back + 1e-6 noise": noise_rng.normal(0, 1e-6, DIM),
            "copycat of trainer 0, +1% noise": rnd.updates[0] + noise_rng.normal(0, 0.01 * scale0, DIM),
            "copycat of trainer 0, +10% noise": rnd.updates[0] + noise_rng.normal(0, 0.10 * scale0, DIM),
            "copycat of trainer 0, +30% noise (cos ~0.96, undetected)": rnd.updates[0]
            + noise_rng.normal(0, 0.30 * scale0, DIM),
        }
        for name, upd in attackers.items():
            subs = [*rnd.updates, upd]
            screened = round_scores(rnd.global_params, subs, ev, seed, config=exact).scores
            # raw: exact Shapley over every submission, no screening
            raw = to_int_scores(exact_shapley(delta_utility(rnd.global_params, subs, ev)).values)
            for scoring, scores in (("screened (default)", screened), ("raw Shapley", raw)):
                shares = allocate(budget, scores, [False] * (n + 1)).shares
                pair = (shares[0] + shares[n]) / budget - alone
                rows.setdefault((name, scoring), []).append((shares[n] / budget, pair))
    out = [(k[0], k[1], float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for k, v in rows.items()]
    return out, float(np.mean(honest_cos))


# --------------------------------------------------------------------------- output


def table(rows: list[tuple[str, str, int, Score]]) -> str:
    lines = [
        "| estimator | utility | N | Spearman (mean / min) | Pearson | max abs error | utility evaluations |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, metric, n, s in rows:
        lines.append(
            f"| {name} | {metric} | {n} | {np.mean(s.spearman):.3f} / {np.min(s.spearman):.3f} | "
            f"{np.mean(s.pearson):.3f} | {np.mean(s.max_err):.4f} | {np.mean(s.evals):.1f} |"
        )
    return "\n".join(lines)


def plot(path: Path, data_seeds: list[int], sampler_seeds: int, warm: int, tol: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [25, 50, 75, 100, 150, 200, 300, 500]
    curves: dict[str, list[float]] = {"permutation": [], "gtg (tol 0.01)": [], f"gtg (tol {tol})": [], "surrogate": []}
    for b in budgets:
        ests: dict[str, Estimator] = {
            "permutation": permutation_at(b),
            "gtg (tol 0.01)": gtg_at(0.01, b),
            f"gtg (tol {tol})": gtg_at(tol, b),
            "surrogate": surrogate_at(b),
        }
        res = evaluate(data_seeds, sampler_seeds, 10, "loss", warm, ests)
        for name in curves:
            curves[name].append(float(np.mean(res[name].spearman)))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, ys in curves.items():
        ax.plot(budgets, ys, marker="o", label=name)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=1, label="target 0.95")
    ax.axvline(100, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("utility evaluations (exact: 1024)")
    ax.set_ylabel("Spearman vs exact Shapley")
    ax.set_title("N = 10, digits, Dirichlet 0.5, utility = -val loss")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    lines = ["| budget | " + " | ".join(curves) + " |", "|---:|" + "---:|" * len(curves)]
    for i, b in enumerate(budgets):
        lines.append(f"| {b} | " + " | ".join(f"{curves[k][i]:.3f}" for k in curves) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-seeds", type=int, default=8, help="data seeds 0..k-1 (reported)")
    ap.add_argument("--sampler-seeds", type=int, default=4, help="sampler seeds per data seed")
    ap.add_argument("--budget", type=int, default=100, help="utility evaluations for the samplers")
    ap.add_argument("--warm-rounds", type=int, default=1, help="FedAvg rounds before the benchmarked round")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "bench_shapley.png")
    ap.add_argument("--tune", action="store_true", help="sweep GTG's within_tol on tuning seeds 100..107")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()

    if args.tune:
        tols = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5]
        ests: dict[str, Estimator] = {f"gtg tol {t}": gtg_at(t, args.budget) for t in tols}
        rows = []
        for n in (8, 10):
            res = evaluate(list(range(100, 108)), args.sampler_seeds, n, "loss", args.warm_rounds, ests)
            rows += [(name, "loss", n, res[name]) for name in ests]
        print(table(rows))
        return

    seeds = list(range(args.data_seeds))
    rows = []
    for metric, ns in (("loss", (8, 10)), ("acc", (10,))):
        for n in ns:
            res = evaluate(seeds, args.sampler_seeds, n, metric, args.warm_rounds, estimators(args.budget))
            rows += [(name, metric, n, s) for name, s in res.items()]
    print(table(rows))
    print()
    rows = []
    for n in (8, 10):
        ests = banzhaf_estimators(args.budget)
        res = evaluate(seeds, args.sampler_seeds, n, "loss", args.warm_rounds, ests, "banzhaf")
        rows += [(name, "loss", n, res[name]) for name in res]
    print("Banzhaf values (the trust rule's scores), against exact Banzhaf:")
    print(table(rows))
    print()
    attacks, cos = attack_table(seeds, 10, args.warm_rounds)
    print("Attacks: 10 honest trainers + 1 attacker, exact Shapley on the loss utility, mean over data seeds.")
    print(f"Largest cosine between two honest updates: {cos:.3f} (copy threshold 0.99).")
    print("| attacker | scoring | attacker share of round budget | pair share - original alone |")
    print("|---|---|---:|---:|")
    for name, scoring, a, b in attacks:
        print(f"| {name} | {scoring} | {a:.4f} | {b:+.4f} |")
    if not args.no_plot:
        print()
        print(plot(args.out, seeds, args.sampler_seeds, args.warm_rounds, GTG_TOL))
        print(f"\nwrote {os.path.relpath(args.out, ROOT)}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""Replication robustness of the round decision: what a near-copy of another trainer's update earns.

Setup: digits, Dirichlet 0.5 over 10 honest trainers, 180 owner validation samples held out of training,
rounds 0-2 of FedAvg-like training (the decision's own aggregate). In every round the copycat takes the best
paid and the median paid trainer's update, adds Gaussian noise of norm ``noise * ||u||`` and submits it after
(or, front-running, before) the original. Reported per rule and noise level, over seeds x rounds x victims:
the worst ratio ``(pay of original + pay of copy) / pay of the original alone``, the worst share the original
keeps when front-run, and the worst ratio of the pair's aggregation weight to the original's alone.

    nice -n 15 .venv/bin/python scripts/bench_replication.py --seeds 0,1 --rules trust,flag
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.round import RoundConfig, RoundDecision, RoundSeeds, decide_round  # noqa: E402
from pocfl.ml import dirichlet_partition, initial_vector, load_digits_split, local_train  # noqa: E402
from pocfl.payouts import allocate  # noqa: E402
from pocfl.rounds.hyperparams import HyperParams  # noqa: E402

BUDGET = 10**18
NOISES = (0.01, 0.1, 0.3, 0.5)
HYPER = HyperParams(0, 0.1, 2, 16)


def run(seed: int, rule: str, rounds: int) -> dict[float, list[tuple[float, float, float, int]]]:
    """Per noise level: (pair/alone, original's share when front-run / alone, weight ratio, pair wei if alone=0)."""
    x, y, _, _ = load_digits_split(seed)
    perm = np.random.default_rng(seed + 11).permutation(len(y))
    own, pool = perm[:180], np.sort(perm[180:])
    parts = [pool[p] for p in dirichlet_partition(y[pool], 10, 0.5, seed, min_size=8)]
    w = initial_vector(seed)
    config = RoundConfig(rule=rule)  # type: ignore[arg-type]
    out: dict[float, list[tuple[float, float, float, int]]] = {n: [] for n in NOISES}
    for r in range(rounds):
        ups = [
            local_train(w, x[p], y[p], epochs=2, lr=0.1, batch_size=16, seed=100 * r + i) for i, p in enumerate(parts)
        ]
        tag = hashlib.sha256(f"replication/{seed}/{r}".encode()).digest()
        seeds = RoundSeeds(tag, hashlib.sha256(tag).digest())

        def decide(
            subs: list[NDArray[np.float32]], w: NDArray[np.float32] = w, seeds: RoundSeeds = seeds
        ) -> RoundDecision:
            val = (x[own], y[own])
            return decide_round(w, subs, validation=val, seeds=seeds, hyperparams=HYPER, config=config)

        base = decide(ups)
        alone = allocate(BUDGET, base.scores, base.outliers).shares
        order = np.argsort(alone)
        for v in (int(order[-1]), int(order[len(order) // 2])):
            z = np.random.default_rng(1000 * r + v).normal(size=ups[v].shape)
            for noise in NOISES:
                copy = (ups[v] + z / np.linalg.norm(z) * noise * np.linalg.norm(ups[v])).astype(np.float32)
                after = decide([*ups, copy])
                pay = allocate(BUDGET, after.scores, after.outliers).shares
                front = decide([copy, *ups])
                first = allocate(BUDGET, front.scores, front.outliers).shares
                pair = pay[v] + pay[-1]
                weight = (after.weights[v] + after.weights[-1]) / base.weights[v] if base.weights[v] else 0.0
                if alone[v]:
                    out[noise].append((pair / alone[v], first[v + 1] / alone[v], weight, 0))
                else:
                    out[noise].append((0.0, 1.0, weight, pair))
        w = base.new_global
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rules", default="trust,flag")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        "| rule | noise | worst pair/alone | goal <= 1.05 | worst original share when front-run | "
        "worst pair weight / original's | pair pay when the original earned 0 (share of budget) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for rule in args.rules.split(","):
        rows: dict[float, list[tuple[float, float, float, int]]] = {n: [] for n in NOISES}
        for seed in (int(s) for s in args.seeds.split(",")):
            for noise, found in run(seed, rule, args.rounds).items():
                rows[noise] += found
        for noise in NOISES:
            ratio = max(t[0] for t in rows[noise])
            front = min(t[1] for t in rows[noise])
            weight = max(t[2] for t in rows[noise])
            stray = max(t[3] for t in rows[noise]) / BUDGET
            print(
                f"| {rule} | {100 * noise:.0f} % | {ratio:.2f} | {'met' if ratio <= 1.05 else 'MISSED'} | "
                f"{front:.2f} | {weight:.2f} | {100 * stray:.1f} % |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

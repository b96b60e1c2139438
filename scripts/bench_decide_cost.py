"""Cost of one round decision: ``decide_round`` wall time, ``trust`` rule against the Flag Aggregator rule.

The model is the bundled MLP (64 inputs, 10 classes) with the hidden width that gives about ``d`` parameters;
the updates are the validation reference plus per-trainer noise, so both rules accept and score them all; the
validation set is 180 digits samples. Both rules run on the same inputs in one process, alternating.

    nice -n 15 .venv/bin/python scripts/bench_decide_cost.py --trainers 15,50 --dims 100000
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.round import RoundConfig, RoundSeeds, decide_round, server_reference  # noqa: E402
from pocfl.ml import initial_vector, load_digits_split  # noqa: E402
from pocfl.rounds.hyperparams import HyperParams  # noqa: E402


def one(k: int, d: int, rule: str, repeats: int) -> tuple[float, int, str]:
    hidden = max(1, round((d - 10) / 75))  # 64*h + h + h*10 + 10 parameters
    w = initial_vector(0, hidden=hidden)
    rng = np.random.default_rng(k)
    x, y, _, _ = load_digits_split(0)
    seed = hashlib.sha256(f"cost/{k}/{d}".encode()).digest()
    # updates along the validation reference plus as much noise (cosine about 0.7 to it, 0.5 to each other):
    # every update is accepted and scored, the expensive case for both rules
    base = server_reference(w, (x[:180], y[:180]), HyperParams(0, 0.1, 2, 16), seed, 10)
    scale = float(np.linalg.norm(base)) / np.sqrt(base.size)
    updates = [(base + rng.normal(scale=scale, size=w.shape)).astype(np.float32) for _ in range(k)]
    times = []
    used = ""
    for _ in range(repeats):
        started = time.perf_counter()
        decision = decide_round(
            w,
            updates,
            validation=(x[:180], y[:180]),
            seeds=RoundSeeds(seed, hashlib.sha256(seed).digest()),
            hyperparams=HyperParams(0, 0.1, 2, 16),
            config=RoundConfig(rule=rule),  # type: ignore[arg-type]
        )
        times.append(time.perf_counter() - started)
        used = f"{decision.shapley_method} {decision.shapley_evaluations}"
    return float(np.median(times)), int(w.size), used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--trainers", default="15,50")
    parser.add_argument("--dims", default="100000")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| K | d | flag rule (s) | trust rule (s) | flag: estimator, evaluations | trust: estimator, evaluations |")
    print("|---:|---:|---:|---:|---|---|")
    for d in (int(float(x)) for x in args.dims.split(",")):
        for k in (int(x) for x in args.trainers.split(",")):
            flag, size, flag_used = one(k, d, "flag", args.repeats)
            trust, _, trust_used = one(k, d, "trust", args.repeats)
            print(f"| {k} | {size} | {flag:.2f} | {trust:.2f} | {flag_used} | {trust_used} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

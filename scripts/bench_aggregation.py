#!/usr/bin/env python3
"""Aggregation time: the Flag Aggregator against Flower's Multi-Krum, median and trimmed mean.

Every method gets the same ``K = 15`` float32 updates (11 honest non-IID-like updates, 4 sign flips)
and only its math is timed: Flower's functions are called on prebuilt inputs (NDArrays lists for the
``flwr.server.strategy.aggregate`` functions; ``RecordDict`` objects for the Message-API Multi-Krum,
whose own deserialisation of the arrays happens inside ``select_multikrum`` and is reported apart).
Each cell is the median of ``--repeats`` runs after one warm-up run::

    .venv/bin/python scripts/bench_aggregation.py                   # table + docs/img/bench_aggregation.png
    .venv/bin/python scripts/bench_aggregation.py --markdown        # table for docs/benchmarks.md
    .venv/bin/python scripts/bench_aggregation.py --dims 100000 --repeats 3 --no-plot

BLAS is pinned to ``--threads`` threads (default 1) for every method, which keeps the comparison fair
and the numbers steadier on a shared machine. Goal from the issue: FA <= 1.2 x Multi-Krum. The exit
status is 1 if FA (full Gram) misses it against the faster Flower Multi-Krum at any ``d``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the checkout importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from threadpoolctl import threadpool_limits

from aggregator.flag import flag_aggregate, flag_decide, gram_matrix
from pocfl.sketch import sketch_updates

K = 15
F = 4  # attackers; Multi-Krum is told f = 4 and keeps K - f updates
TRIM = 0.2  # FedTrimmedAvg's default beta
SKETCH_DIM = 128
SEED = bytes(range(32))
GOAL = 1.2
PLOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "bench_aggregation.png"


@dataclass
class Row:
    method: str
    d: int
    median_s: float
    min_s: float


def make_updates(d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(d, dtype=np.float32)
    u = mean + 1.5 * rng.standard_normal((K, d), dtype=np.float32)
    u[K - F :] *= -1.0  # sign flips: realistic IRLS work and real outliers to drop
    return np.ascontiguousarray(u, dtype=np.float32)


def time_it(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up: first-touch page faults and lazy imports are not the method's cost
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def methods(u: np.ndarray) -> dict[str, Callable[[], object]]:
    from flwr.app import ArrayRecord, MetricRecord, RecordDict
    from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg
    from flwr.serverapp.strategy.multikrum import select_multikrum
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    results = [([u[i]], 1) for i in range(K)]  # views: no copy, the same arrays for every method
    records = [
        RecordDict({"arrays": ArrayRecord([u[i]]), "metrics": MetricRecord({"num-examples": 1})}) for i in range(K)
    ]

    def multikrum_message_api() -> object:
        return aggregate_arrayrecords(select_multikrum(records, F, K - F), "num-examples")

    return {
        "FA, full Gram (ours)": lambda: flag_aggregate(u),
        f"FA, sketch k={SKETCH_DIM} (ours)": lambda: flag_aggregate(u, sketch_seed=SEED, sketch_dim=SKETCH_DIM),
        "  of which: sketching": lambda: sketch_updates(u, SEED, SKETCH_DIM),
        "Multi-Krum, flwr aggregate_krum": lambda: aggregate_krum(results, F, K - F),
        "Multi-Krum, flwr select_multikrum": multikrum_message_api,
        "  of which: ArrayRecord decoding": lambda: [r["arrays"].to_numpy_ndarrays() for r in records],
        "Median, flwr aggregate_median": lambda: aggregate_median(results),
        f"Trimmed mean {TRIM}, flwr aggregate_trimmed_avg": lambda: aggregate_trimmed_avg(results, TRIM),
    }


def gram_precision(u: np.ndarray) -> str:
    """float32 BLAS Gram against float64: cosine error and whether the decisions change."""
    g32 = gram_matrix(u)
    g64 = gram_matrix(u.astype(np.float64))
    n32, n64 = np.sqrt(np.diag(g32)), np.sqrt(np.diag(g64))
    err = float(np.max(np.abs(g32 / np.outer(n32, n32) - g64 / np.outer(n64, n64))))
    same = np.array_equal(flag_decide(g32).outliers, flag_decide(g64).outliers)
    return f"max |cos32 - cos64| = {err:.1e}, same flags: {same}"


def run(dims: Sequence[int], repeats: int) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    notes: list[str] = []
    for d in dims:
        u = make_updates(d)
        res = flag_aggregate(u)
        notes.append(
            f"d={d}: FA flagged {int(res.outliers.sum())}/{K} (attackers {F}), {res.iterations} IRLS steps; "
            + gram_precision(u)
        )
        for name, fn in methods(u).items():
            med, best = time_it(fn, repeats)
            rows.append(Row(name, d, med, best))
    return rows, notes


def table(rows: list[Row], dims: Sequence[int], markdown: bool) -> str:
    names = list(dict.fromkeys(r.method for r in rows))
    cell = {(r.method, r.d): r for r in rows}
    head = ["Method"] + [f"d = {d:,} (median / min, ms)" for d in dims]
    lines = []
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|---" + "|---:" * len(dims) + "|")
    else:
        lines.append(f"{head[0]:<46}" + "".join(f"{h:>30}" for h in head[1:]))
    for name in names:
        vals = [f"{cell[name, d].median_s * 1e3:,.1f} / {cell[name, d].min_s * 1e3:,.1f}" for d in dims]
        if markdown:
            lines.append(f"| {name.strip()} | " + " | ".join(vals) + " |")
        else:
            lines.append(f"{name:<46}" + "".join(f"{v:>30}" for v in vals))
    return "\n".join(lines)


def goal_lines(rows: list[Row], dims: Sequence[int]) -> tuple[list[str], bool]:
    cell = {(r.method, r.d): r.median_s for r in rows}
    ok = True
    out = []
    for d in dims:
        fa = cell["FA, full Gram (ours)", d]
        mk = {m: cell[m, d] for m in ("Multi-Krum, flwr aggregate_krum", "Multi-Krum, flwr select_multikrum")}
        fastest = min(mk.values())
        ok &= fa <= GOAL * fastest
        ratios = ", ".join(f"{fa / t:.2f}x {m.split(', ')[1]}" for m, t in mk.items())
        verdict = "pass" if fa <= GOAL * fastest else "FAIL"
        out.append(f"d={d:,}: FA / Multi-Krum = {ratios} (goal <= {GOAL}x the faster): {verdict}")
    return out, ok


def plot(rows: list[Row], dims: Sequence[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in dict.fromkeys(r.method for r in rows) if not n.startswith("  ")]
    cell = {(r.method, r.d): r.median_s for r in rows}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(names)
    x = np.arange(len(dims))
    for i, name in enumerate(names):
        ax.bar(x + i * width, [cell[name, d] * 1e3 for d in dims], width, label=name)
    ax.set_xticks(x + width * (len(names) - 1) / 2, [f"d = {d:,}" for d in dims])
    ax.set_yscale("log")
    ax.set_ylabel("time per aggregation (ms, median, log scale)")
    ax.set_title(f"Aggregation of K = {K} float32 updates, 1 BLAS thread")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--dims", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for every method")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--plot-path", type=Path, default=PLOT)
    args = ap.parse_args(argv)
    with threadpool_limits(args.threads):
        rows, notes = run(args.dims, args.repeats)
    print(table(rows, args.dims, args.markdown))
    print()
    goals, ok = goal_lines(rows, args.dims)
    for line in notes + goals:
        print(("- " if args.markdown else "") + line)
    if not args.no_plot:
        plot(rows, args.dims, args.plot_path)
        print(f"plot: {args.plot_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

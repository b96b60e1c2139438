#!/usr/bin/env python
"""Wall time of the federated-learning demo and the time of each round, split into train / store / aggregate / chain.

Usage::

    .venv/bin/python scripts/bench_rounds.py [--rounds N] [--repeats N] [--rpc embedded|anvil] [--plain-chain]
                                             [--markdown] [--json]

Runs :func:`pocfl.demo.run_fl_demo` in-process (8 trainers, 2 attackers, 1 free rider, MLP 64-32-10, 3 local
epochs; the demo's defaults) ``--repeats`` times and prints, per round, the median over the repeats of:

- **train**: local training, encoding and sealing of the 8 updates (the trainer clients, in turn);
- **store**: every content-store call (trainers' puts, the aggregator's verified gets and puts);
- **aggregate**: the aggregator's validation, Flag Aggregator, Shapley scores, new model and report;
- **chain**: every JSON-RPC request (transactions, calls, logs; on the embedded chain this includes running the
  EVM) and the clock jump past the submission window.

Also printed: the process's wall time including imports, the demo's own time (setup, rounds, settlement) and the
JSON-RPC requests by method. Goal (issue 5): the whole demo under 30 s on 2 cores.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402 - the clock above starts before the imports
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHASES = ("train", "store", "aggregate", "chain", "total")


def run(rounds: int, rpc: str, fast_chain: bool) -> dict[str, Any]:
    """One demo run's JSON document (timings per round and per JSON-RPC method included)."""
    from pocfl.demo import FlDemoConfig, run_fl_demo

    return run_fl_demo(FlDemoConfig(rounds=rounds), rpc=rpc, fast_chain=fast_chain).to_json()


def main() -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rpc", default="embedded", help="embedded (default) or anvil")
    parser.add_argument(
        "--plain-chain",
        action="store_true",
        help="no read cache, log index or fast gas estimate: every request goes to the chain (for comparison)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--json", action="store_true", help="print every run's timings as JSON instead")
    args = parser.parse_args()

    # Import what the demo uses up front, so the runs below time the demo and the import time is shown apart.
    import sklearn.model_selection  # noqa: F401

    import aggregator.node  # noqa: F401
    import pocfl.chain.backends
    import pocfl.demo  # noqa: F401
    import trainer_client  # noqa: F401

    imported = time.perf_counter() - T_START
    docs = []
    for _ in range(args.repeats):
        docs.append(run(args.rounds, args.rpc, not args.plain_chain))
        if not docs[-1]["reconciled"]:
            print(f"the demo did not reconcile: {docs[-1]['problems']}", file=sys.stderr)
            return 1
    wall = time.perf_counter() - T_START
    if args.json:
        print(
            json.dumps(
                {
                    "wall_s": wall,
                    "import_s": imported,
                    "runs": [
                        {
                            "elapsed_s": d["elapsed_s"],
                            "timings_s": d["timings_s"],
                            "rounds": [r["timings_s"] for r in d["rounds"]],
                            "accuracy": [r["accuracy"] for r in d["rounds"]],
                            "chain_methods": d["chain_methods"],
                        }
                        for d in docs
                    ],
                },
                indent=2,
            )
        )
        return 0

    md = args.markdown
    head = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, chain {args.rpc}"
    head += " (plain requests)" if args.plain_chain else ""
    print(f"pocfl demo: {args.rounds} rounds, 8 trainers, {args.repeats} run(s), median per round; {head}")
    print()
    rows = []
    for i in range(args.rounds):
        per = {p: statistics.median(d["rounds"][i]["timings_s"][p] for d in docs) for p in PHASES}
        rows.append([str(i), *(f"{per[p]:.2f}" for p in PHASES)])
    mean = [
        "mean",
        *(f"{statistics.mean(float(r[1 + k]) for r in rows):.2f}" for k in range(len(PHASES))),
    ]
    _table(["round", "train (s)", "store (s)", "aggregate (s)", "chain (s)", "total (s)"], [*rows, mean], md)
    print()
    t = {k: statistics.median(float(d["timings_s"][k]) for d in docs) for k in docs[0]["timings_s"]}
    elapsed = statistics.median(float(d["elapsed_s"]) for d in docs)
    summary = [
        ["process wall time (imports + all runs)", f"{wall:.1f} s"],
        ["imports (torch, web3, py-evm, sklearn, ...)", f"{imported:.1f} s"],
        ["demo run (median)", f"{elapsed:.1f} s"],
        ["  setup: accounts, deploy, manifest, project, 8 registrations", f"{t['setup']:.1f} s"],
        [f"  {args.rounds} rounds", f"{t['rounds']:.1f} s"],
        ["  settlement: 8 stake releases + claims, withdrawal, re-hash", f"{t['settle']:.1f} s"],
        [
            "JSON-RPC requests (answered from the demo's read cache)",
            f"{t['chain_requests']:.0f} ({t['chain_cached']:.0f})",
        ],
        ["final accuracy", f"{docs[0]['rounds'][-1]['accuracy']:.3f}"],
    ]
    _table(["what", "time"], summary, md)
    print()
    methods = sorted(docs[0]["chain_methods"].items(), key=lambda kv: -float(kv[1]["seconds"]))
    _table(
        ["JSON-RPC method sent to the chain (first run)", "requests", "seconds"],
        [[k, str(v["requests"]), f"{v['seconds']:.2f}"] for k, v in methods],
        md,
    )
    return 0


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


if __name__ == "__main__":
    sys.exit(main())

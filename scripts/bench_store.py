#!/usr/bin/env python
"""Content-store throughput: local CID computation, and put/get on the embedded store and a real IPFS node.

Usage::

    .venv/bin/python scripts/bench_store.py [--ipfs URL] [--repeats N] [--no-node]

Without ``--ipfs`` a local daemon is started (Kubo if on PATH, else js-ipfs from tools/ipfs-node) and stopped
afterwards. Prints one table; figures are the best of N runs (wall clock, one process, one core for hashing).
Goals (issue 3): CID computation >= 300 MB/s; embedded put + get of 20 MiB under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocfl.store import ContentStore, EmbeddedStore, IpfsStore, compute_cid

MiB = 1 << 20


def best(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_backend(name: str, store: ContentStore, sizes: list[int], repeats: int) -> list[tuple[str, ...]]:
    """put and get (verified) timings for each size."""
    rows = []
    for size in sizes:
        # fresh bytes for every timed put, so no run hits an object that is already stored
        fresh = [os.urandom(size) for _ in range(repeats)]
        put = best(lambda f=fresh: store.put_bytes(f.pop()), repeats)  # type: ignore[misc]
        data = os.urandom(size)
        cid = store.put_bytes(data)
        get = best(lambda c=cid: store.get_bytes(c), repeats)  # type: ignore[misc]
        rows.append(
            (
                name,
                f"{size // MiB} MiB",
                f"{put * 1e3:.1f}",
                f"{size / put / 1e6:.0f}",
                f"{get * 1e3:.1f}",
                f"{size / get / 1e6:.0f}",
                f"{(put + get) * 1e3:.1f}",
            )
        )
    return rows


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipfs", help="RPC URL of a running node (default: start a local daemon)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-node", action="store_true", help="skip the IPFS node")
    args = parser.parse_args()
    sizes = [1 * MiB, 20 * MiB]

    cid_rows = []
    for size in [1 * MiB, 20 * MiB, 50 * MiB]:
        data = os.urandom(size)
        t = best(lambda d=data: compute_cid(d), args.repeats)  # type: ignore[misc]
        cid_rows.append((f"{size // MiB} MiB", f"{t * 1e3:.1f}", f"{size / t / 1e6:.0f}"))

    rows: list[tuple[str, ...]] = []
    node_note = ""
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        rows += bench_backend("embedded", EmbeddedStore(Path(tmp) / "store"), sizes, args.repeats)
        if not args.no_node:
            url = args.ipfs
            if url is None:
                from pocfl.store.daemon import IpfsDaemon

                daemon = IpfsDaemon.start(Path(tmp) / "repo")
                stack.callback(daemon.stop)
                url = daemon.url
                node_note = f" ({daemon.implementation})"
            node = stack.enter_context(IpfsStore(url))
            version = node.version().get("Version", "?")
            rows += bench_backend(f"ipfs {version}{node_note}", node, sizes, args.repeats)

    print(f"Local CID computation (CIDv1, raw leaves, 256 KiB chunks; best of {args.repeats}; one core)")
    print(f"| {'size':>6} | {'ms':>7} | {'MB/s':>6} |")
    print("|-------:|--------:|-------:|")
    for size, ms, rate in cid_rows:
        print(f"| {size:>6} | {ms:>7} | {rate:>6} |")
    print()
    print(f"Store put / verified get (best of {args.repeats})")
    header = ("backend", "size", "put ms", "put MB/s", "get ms", "get MB/s", "put+get ms")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the point-in-time component sweep (``features.network.sweep_components``) on
its worst case: one component that grows all year. Every application brings the gang's
shared referrer code and a device of its own, so each one merges a new value into the big
component (a union per application).

    .venv/bin/python bench/bench_sweep.py --apps 10000 30000 60000 [--out docs/benchmarks.md]

Pure pandas/Python on one core, no Spark: the sweep is what a worker runs per bucket inside
applyInPandas. Prints a Markdown table; with --out, appends it to the file.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one_growing_component(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 365 * 86_400 * 10**6, n))
    ids = [f"a{i:07d}" for i in range(n)]
    return pd.DataFrame({
        "application_id": ids + ids,
        "t": np.concatenate([t, t]),
        "value": ["referrer:R"] * n + [f"device:d{i}" for i in range(n)],
        "kind": 0,
    })


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--apps", type=int, nargs="+", default=[10_000, 30_000, 60_000])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from riskgraph.features.network import sweep_components

    table = "| applications in one component | events | sweep s | µs per application |\n|---|---|---|---|\n"
    for n in args.apps:
        ev = one_growing_component(n)
        t0 = time.perf_counter()
        out = sweep_components(ev, 24, None)
        s = time.perf_counter() - t0
        assert len(out) == n and out["pit_component_size"].iloc[-1] == n
        table += f"| {n:,} | {len(ev):,} | {s:.2f} | {s / n * 1e6:.0f} |\n"
    print(table)
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import append_markdown

        append_markdown(args.out, "bench_sweep.py", table)


if __name__ == "__main__":
    main()

"""Benchmark issue 12's stages (ingest_transfers, trace_funds, shared_neighbours) on simulated worlds of several sizes.

For each size: simulate the world with its transfers (no media), then run ingest and
build_graph (their inputs, not timed as new stages), shared_neighbours, ingest_transfers and
trace_funds in one Spark session for the whole period (an initial load), recording each
stage's seconds and peak memory of the process tree (driver JVM + Python workers). As the
single-machine yardstick, the same bronze transfers are loaded into pandas and the same
queries (tracing with truncation, temporal cycles) run as a plain Python depth-first search
with the same rules; its path and cycle counts must equal Spark's.

    .venv/bin/python bench/bench_money.py --sizes 100000 1000000 [--out docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import PeakRSS  # noqa: E402


def _sort_key(order: str):
    if order == "largest":
        return lambda r: (-r[1], r[0], r[2])
    if order == "earliest":
        return lambda r: (r[0], r[2])
    return lambda r: (-r[0], r[2])


def yardstick(cfg, run_date: str, from_date: str) -> dict:
    """The same tracing and cycles on one machine: pandas to load, Python dicts and a DFS."""
    import datetime as dt

    from deltalake import DeltaTable

    from riskgraph import tables as T

    m, c = cfg.money, cfg.money.cycles
    t0 = time.perf_counter()
    df = DeltaTable(T.BRONZE_TRANSFERS.uri(cfg)).to_pandas(
        columns=["transfer_id", "transfer_ts", "from_account_key", "to_account_key", "amount", "channel", "application_id",
                 "from_sector", "to_sector"])
    import pandas as pd

    end = dt.datetime.fromisoformat(run_date).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
    end_us = int(end.timestamp()) * 1_000_000 - 1
    start_us = int(dt.datetime.fromisoformat(from_date).replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    df["ts"] = pd.to_datetime(df["transfer_ts"], utc=True).astype("datetime64[us, UTC]").astype("int64")
    df = df[df["ts"] <= end_us]
    since = min(end_us - m.monitor_days * 86_400_000_000, start_us - 1)  # trace_funds' rule: monitor_days or the run's window
    disb = df[(df["channel"] == "disbursement") & (df["ts"] > since)]
    disb = disb.sort_values("ts").drop_duplicates("application_id")
    e = df[(df["channel"] != "disbursement") & (df["from_sector"] != "lender") & (df["to_sector"] != "lender")]
    out: dict[str, list] = {}
    for src, ts, amt, tid, dst, sec in zip(e["from_account_key"], e["ts"], e["amount"], e["transfer_id"], e["to_account_key"], e["to_sector"]):
        out.setdefault(src, []).append((ts, amt, tid, dst, sec))
    for v in out.values():
        v.sort()
    times = {k: [r[0] for r in v] for k, v in out.items()}
    load_s = time.perf_counter() - t0

    def eligible(acct, t_prev, t_max, a_prev, band):
        v = out.get(acct)
        if not v:
            return []
        i = bisect.bisect_right(times[acct], t_prev)
        j = bisect.bisect_right(times[acct], t_max)
        return [r for r in v[i:j] if a_prev * band[0] <= r[1] <= a_prev * band[1]]

    t0 = time.perf_counter()
    key, flagged, window = _sort_key(m.truncation_order), set(m.flagged_sectors), int(m.window_days * 86_400_000_000)
    n_paths = 0
    for b, t_d, amt in zip(disb["to_account_key"], disb["ts"], disb["amount"]):
        stack = [(b, t_d, amt, (b,), 0)]
        while stack:
            acct, t_prev, a_prev, visited, depth = stack.pop()
            cand = [r for r in eligible(acct, t_prev, t_d + window, a_prev, m.amount_band) if r[3] not in visited]
            for r in sorted(cand, key=key)[:m.truncation_k]:
                n_paths += 1
                if r[4] not in flagged and depth + 1 < m.max_hops:
                    stack.append((r[3], r[0], r[1], visited + (r[3],), depth + 1))
    trace_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    c_from = min(end_us - c.lookback_days * 86_400_000_000, start_us)
    c_window = int(c.window_days * 86_400_000_000)
    n_cycles = 0
    for src, ts, amt, dst in zip(e["from_account_key"], e["ts"], e["amount"], e["to_account_key"]):
        if ts < c_from:
            continue
        stack = [(dst, ts, amt, (src, dst), 1)]
        while stack:
            acct, t_prev, a_prev, visited, depth = stack.pop()
            cand = [r for r in eligible(acct, t_prev, ts + c_window, a_prev, c.amount_band)
                    if r[3] == src or (r[3] not in visited and depth + 1 < c.max_len)]
            for r in sorted(cand, key=key)[:c.truncation_k]:
                if r[3] == src:
                    n_cycles += 1
                else:
                    stack.append((r[3], r[0], r[1], visited + (r[3],), depth + 1))
    cycles_s = time.perf_counter() - t0
    return {"yard_load_s": round(load_s, 1), "yard_trace_s": round(trace_s, 1), "yard_cycles_s": round(cycles_s, 1),
            "yard_paths": n_paths, "yard_cycles": n_cycles, "transfers_loaded": int(len(df))}


def run_size(n: int, keep: bool, extra: dict[str, str]) -> dict:
    from riskgraph.cli import run_pipeline
    from riskgraph.config import load_config
    from riskgraph.session import get_spark
    from riskgraph.simulator import simulate_world

    work = Path(tempfile.mkdtemp(prefix=f"riskgraph-money-{n}-"))
    overrides = {"simulation.n_applications": str(n), "paths.root": str(work / "data"), "simulation.media.enabled": "false",
                 "paths.checkpoint_dir": str(work / "ckpt"),
                 "graph.sources": ["device", "phone", "ip", "gps", "email", "employer", "referrer"],
                 "graph.link_types": ["device", "phone", "ip", "email", "referrer"], **extra}
    cfg = load_config("local", overrides=overrides)
    t0 = time.perf_counter()
    summary = simulate_world(cfg.simulation, cfg.paths.root)
    sim_s = time.perf_counter() - t0
    spark = get_spark(cfg)
    row = {"applications": n, "transfers": summary["transfers"]["transfers"], "loans": summary["transfers"]["loans_disbursed"],
           "simulate_s": round(sim_s, 1)}
    details = {}
    for step in ("ingest", "build_graph", "shared_neighbours", "ingest_transfers", "trace_funds"):
        with PeakRSS() as mem:
            rec = run_pipeline(cfg, run_date=cfg.simulation.end_date, from_date=cfg.simulation.start_date, run_id="bench",
                               steps=[step], spark=spark)
        row[f"{step}_s"] = rec["step_seconds"][step]
        row[f"{step}_peak_gb"] = round(mem.peak / 2**30, 2)
        details[step] = rec["details"][step]
    tf = details["trace_funds"]
    row["sn_pairs"] = details["shared_neighbours"]["pairs"]
    row["new_stages_s"] = round(row["shared_neighbours_s"] + row["ingest_transfers_s"] + row["trace_funds_s"], 1)
    row.update({"trace_s": tf["seconds"].get("trace"), "cycles_s": tf["seconds"].get("cycles"), "paths": tf["paths_followed"],
                "cycles": tf["cycles"], "diverted": tf["loans_diverted"],
                "recall": (tf.get("diversion_quality") or {}).get("recall"),
                "precision": (tf.get("diversion_quality") or {}).get("precision"),
                "cycle_recall": (tf.get("cycle_quality") or {}).get("recall"),
                "decoys_reported": (tf.get("cycle_quality") or {}).get("decoy_cycles_reported")})
    yard = yardstick(cfg, cfg.simulation.end_date.isoformat(), cfg.simulation.start_date.isoformat())
    row.update(yard)
    row["counts_agree"] = yard["yard_paths"] == row["paths"] and yard["yard_cycles"] == row["cycles"]
    row["trace_vs_yard"] = round(row["trace_s"] / max(yard["yard_trace_s"], 1e-3), 1)
    row["cycles_vs_yard"] = round(row["cycles_s"] / max(yard["yard_cycles_s"], 1e-3), 1)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return row


COLUMNS = [("applications", "apps"), ("transfers", "transfers"), ("loans", "loans traced"), ("simulate_s", "simulate s"),
           ("shared_neighbours_s", "shared_neighbours s"), ("shared_neighbours_peak_gb", "SN peak GB"), ("sn_pairs", "SN pairs"),
           ("ingest_transfers_s", "ingest_transfers s"), ("ingest_transfers_peak_gb", "ingest_transfers peak GB"), ("trace_funds_s", "trace_funds s"),
           ("trace_funds_peak_gb", "trace_funds peak GB"), ("trace_s", "tracing s"), ("cycles_s", "cycles s"), ("paths", "paths"),
           ("cycles", "cycles"), ("yard_load_s", "pandas load s"), ("yard_trace_s", "Python tracing s"),
           ("yard_cycles_s", "Python cycles s"), ("counts_agree", "same counts"), ("trace_vs_yard", "tracing / Python"),
           ("cycles_vs_yard", "cycles / Python"), ("recall", "diversion R"), ("precision", "diversion P"),
           ("cycle_recall", "cycle R"), ("decoys_reported", "decoys reported"), ("new_stages_s", "new stages s")]


def markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    fmt = lambda v: f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else (f"{v:.3f}" if isinstance(v, float) and v < 1.5 else str(v))  # noqa: E731
    return head + "".join("| " + " | ".join(fmt(r.get(k)) for k, _ in COLUMNS) + " |\n" for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    p.add_argument("--out", default=None, help="append the table to this Markdown file")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    from riskgraph.runtime import setup_logging

    setup_logging()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    rows = []
    for n in args.sizes:
        print(f"== {n:,} applications", file=sys.stderr)
        rows.append(run_size(n, args.keep, dict(o.split("=", 1) for o in args.overrides)))
        print(json.dumps(rows[-1], default=str), file=sys.stderr)
    table = markdown(rows)
    print(table)
    if args.out:
        from _report import append_markdown

        append_markdown(args.out, "bench_money.py", table)


if __name__ == "__main__":
    main()

"""Benchmark the nightly pipeline on simulated worlds of several sizes.

For each size: simulate, run every step in one Spark session (an initial load over the
whole window), and record per-step seconds, peak memory of the process tree (driver JVM +
Python workers, sampled every 0.5 s), connected-component rounds, gang quality and KS.
As the single-machine yardstick, the same gang graph (application edges after the
super-node guard and time window) is loaded into igraph and its components computed.

    .venv/bin/python bench/bench_pipeline.py --sizes 100000 1000000 [--out docs/benchmarks.md]

Prints a Markdown table; with --out, appends it (with the command and machine) to the file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class PeakRSS:
    """Peak resident memory of this process and all its children (the Spark JVM, Python
    workers), sampled in a background thread."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self):
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def igraph_yardstick(spark, cfg, run_date: str) -> dict:
    """igraph build + connected components on the same application graph detect_gangs uses."""
    import igraph as ig
    from pyspark.sql import functions as F

    from riskgraph import tables as T
    from riskgraph.inputs import bronze_as_of
    from riskgraph.jobs.detect_gangs import build_gang_graph
    from riskgraph.runtime import JobContext
    from riskgraph.store import DeltaRsStore

    store = DeltaRsStore()
    v = store.read(spark, T.VERTICES.uri(cfg)).filter(F.col("run_date") == run_date)
    e = store.read(spark, T.EDGES.uri(cfg)).filter(F.col("run_date") == run_date)
    d = dt.date.fromisoformat(run_date)
    apps = bronze_as_of(spark, store, JobContext(cfg=cfg, run_date=d, from_date=d, run_id="bench"), T.BRONZE_APPLICATIONS)
    edges = build_gang_graph(v, e, apps, cfg.graph)[3].select("src", "dst")
    # The benchmark's own export: the yardstick needs the whole edge list on one machine.
    pdf = edges.toPandas()
    app_ids = v.filter(F.col("type") == "application").select("id").toPandas()["id"]
    t0 = time.perf_counter()
    index = {a: i for i, a in enumerate(app_ids)}
    g = ig.Graph(n=len(index), edges=list(zip(pdf["src"].map(index), pdf["dst"].map(index))))
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    comps = g.connected_components()
    t_cc = time.perf_counter() - t1
    return {"igraph_build_s": round(t_build, 2), "igraph_cc_s": round(t_cc, 2), "igraph_components": len(comps),
            "app_vertices": len(index), "app_edges": len(pdf)}


def run_size(n: int, keep: bool) -> dict:
    from riskgraph.cli import run_pipeline
    from riskgraph.config import load_config
    from riskgraph.session import get_spark
    from riskgraph.simulator import simulate_world

    work = Path(tempfile.mkdtemp(prefix=f"riskgraph-bench-{n}-"))
    overrides = {"simulation.n_applications": str(n), "paths.root": str(work / "data"),
                 "paths.checkpoint_dir": str(work / "ckpt"), "mlflow.tracking_uri": f"sqlite:///{work}/mlflow.db",
                 "mlflow.artifact_root": str(work / "mlflow")}
    cfg = load_config("local", overrides=overrides)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        simulate_world(cfg.simulation, cfg.paths.root)
        sim_s = time.perf_counter() - t0
        spark = get_spark(cfg)
        rec = run_pipeline(cfg, run_date=cfg.simulation.end_date, from_date=cfg.simulation.start_date,
                           spark=spark, extra_seconds={"simulate": round(sim_s, 1)})
    yard = igraph_yardstick(spark, cfg, rec["run_date"])
    gang_s = rec["step_seconds"]["detect_gangs"]
    out = {"applications": n, **rec["step_seconds"], "total_s": rec["total_seconds"], "peak_rss_gb": round(mem.peak / 2**30, 2),
           "cc_rounds": rec["details"]["detect_gangs"]["cc_rounds"], "edges": rec["details"]["build_graph"]["edges"],
           "gangs": rec["gangs"], "precision": rec["gang_pairwise_precision"], "recall": rec["gang_pairwise_recall"],
           "ari": rec["gang_ari"], "ks_uplift": rec["ks_uplift"], **yard,
           "gang_stage_vs_igraph": round(gang_s / max(yard["igraph_build_s"] + yard["igraph_cc_s"], 1e-3), 1)}
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


COLUMNS = [("applications", "apps"), ("simulate", "simulate s"), ("ingest", "ingest s"), ("build_graph", "graph s"),
           ("detect_gangs", "gangs s"), ("assemble_features", "features s"), ("write_feature_store", "write s"),
           ("evaluate", "evaluate s"), ("total_s", "total s"), ("peak_rss_gb", "peak RSS GB"), ("edges", "edges"),
           ("cc_rounds", "CC rounds"), ("igraph_build_s", "igraph build s"), ("igraph_cc_s", "igraph CC s"),
           ("gang_stage_vs_igraph", "gangs / igraph"), ("precision", "gang P"), ("recall", "gang R"), ("ari", "ARI"),
           ("ks_uplift", "KS uplift")]


def markdown(rows: list[dict]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    head = "| " + " | ".join(h for _, h in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "\n".join("| " + " | ".join(cell(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    p.add_argument("--out", default=None, help="append the table to this Markdown file")
    p.add_argument("--keep", action="store_true", help="keep the worlds' data folders")
    args = p.parse_args()
    from riskgraph.runtime import setup_logging

    setup_logging()  # per-step progress on stderr
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    rows = []
    for n in args.sizes:
        print(f"== {n:,} applications", file=sys.stderr)
        rows.append(run_size(n, args.keep))
        print(json.dumps(rows[-1]), file=sys.stderr)
    table = markdown(rows)
    print(table)
    if args.out:
        cmd = "python bench/bench_pipeline.py " + " ".join(sys.argv[1:])
        with open(args.out, "a") as f:
            f.write(f"\n### {dt.date.today().isoformat()} — `{cmd}`\n\n{platform.node()}: {psutil.cpu_count()} cores, "
                    f"{psutil.virtual_memory().total / 2**30:.0f} GB, Spark local[2]\n\n{table}")


if __name__ == "__main__":
    main()

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
    """igraph build + connected components (and Leiden with the same settings) on the same
    application graph detect_gangs uses: its linked applications and weighted pairs."""
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
    ctx = JobContext(cfg=cfg, run_date=d, from_date=d, run_id="bench")
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    applicants = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICANTS)
    edges = build_gang_graph(v, e, apps, cfg.graph, applicants, cfg.relationships)[3].select("src", "dst", "weight")
    # The benchmark's own export: the yardstick needs the whole edge list on one machine.
    pdf = edges.toPandas()
    t0 = time.perf_counter()
    # linked applications only, as in detect_gangs: an application without a link is its own
    # component and never enters CC or Leiden there either
    index = {a: i for i, a in enumerate(sorted(set(pdf["src"]) | set(pdf["dst"])))}
    g = ig.Graph(n=len(index), edges=list(zip(pdf["src"].map(index), pdf["dst"].map(index))))
    g.es["weight"] = pdf["weight"].tolist()
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    comps = g.connected_components()
    t_cc = time.perf_counter() - t1
    c = cfg.graph.communities
    t2 = time.perf_counter()
    g.community_leiden(objective_function=c.objective, weights="weight", resolution=c.resolution, n_iterations=c.leiden_iterations)
    t_leiden = time.perf_counter() - t2
    return {"igraph_build_s": round(t_build, 2), "igraph_cc_s": round(t_cc, 2), "igraph_leiden_s": round(t_leiden, 2),
            "igraph_components": len(comps), "app_vertices": len(index), "app_edges": len(pdf)}


def run_size(n: int, keep: bool, extra: dict[str, str] | None = None) -> dict:
    from riskgraph.cli import STEPS, run_pipeline
    from riskgraph.config import load_config
    from riskgraph.session import get_spark
    from riskgraph.simulator import simulate_world

    work = Path(tempfile.mkdtemp(prefix=f"riskgraph-bench-{n}-"))
    overrides = {"simulation.n_applications": str(n), "paths.root": str(work / "data"),
                 "paths.checkpoint_dir": str(work / "ckpt"), "mlflow.tracking_uri": f"sqlite:///{work}/mlflow.db",
                 "mlflow.artifact_root": str(work / "mlflow"), **(extra or {})}
    cfg = load_config("local", overrides=overrides)
    peaks = {}
    with PeakRSS() as mem:
        with PeakRSS() as m:
            t0 = time.perf_counter()
            simulate_world(cfg.simulation, cfg.paths.root)
            sim_s = time.perf_counter() - t0
            spark = get_spark(cfg)
        peaks["simulate"] = m.peak
        # one step at a time (same run id and session, as one nightly run) for each step's peak memory
        rec = {"details": {}, "step_seconds": {"simulate": round(sim_s, 1)}, "total_seconds": round(sim_s, 1)}
        for step in STEPS:
            with PeakRSS() as m:
                part = run_pipeline(cfg, run_date=cfg.simulation.end_date, from_date=cfg.simulation.start_date, run_id="bench",
                                    steps=[step], spark=spark)
            peaks[step] = m.peak
            rec["details"].update(part.pop("details"))
            rec["step_seconds"][step] = part.pop("step_seconds")[step]
            rec["total_seconds"] = round(rec["total_seconds"] + rec["step_seconds"][step], 1)
            part.pop("total_seconds", None)
            rec.update({k: v for k, v in part.items() if v is not None})
    yard = igraph_yardstick(spark, cfg, rec["run_date"])
    gang_s = rec["step_seconds"]["detect_gangs"]
    out = {"applications": n, **rec["step_seconds"], "total_s": rec["total_seconds"], "peak_rss_gb": round(mem.peak / 2**30, 2),
           "peak_rss_gb_by_step": {k: round(v / 2**30, 2) for k, v in peaks.items()},
           "cc_rounds": rec["details"]["detect_gangs"]["cc_rounds"], "edges": rec["details"]["build_graph"]["edges"],
           "gangs": rec["gangs"], "precision": rec["gang_pairwise_precision"], "recall": rec["gang_pairwise_recall"],
           "ari": rec["gang_ari"], "ks_uplift": rec["ks_uplift"], **yard,
           "gang_stage_vs_igraph": round(gang_s / max(yard["igraph_build_s"] + yard["igraph_cc_s"], 1e-3), 1),
           "gang_stage_vs_igraph_leiden": round(gang_s / max(yard["igraph_build_s"] + yard["igraph_cc_s"] + yard["igraph_leiden_s"], 1e-3), 1),
           "modularity": rec["details"]["detect_gangs"]["gang_modularity"], "quality_by_size": rec["details"]["detect_gangs"]["gang_quality_by_size"]}
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


COLUMNS = [("applications", "apps"), ("simulate", "simulate s"), ("ingest", "ingest s"), ("build_graph", "graph s"),
           ("detect_gangs", "gangs s"), ("assemble_features", "features s"), ("write_feature_store", "write s"),
           ("evaluate", "evaluate s"), ("total_s", "total s"), ("peak_rss_gb", "peak RSS GB"), ("edges", "edges"),
           ("app_edges", "gang graph edges"), ("cc_rounds", "CC rounds"), ("igraph_build_s", "igraph build s"),
           ("igraph_cc_s", "igraph CC s"), ("igraph_leiden_s", "igraph Leiden s"), ("gang_stage_vs_igraph", "gangs / igraph CC"),
           ("gang_stage_vs_igraph_leiden", "gangs / igraph CC+Leiden"), ("modularity", "modularity"), ("precision", "gang P"), ("recall", "gang R"), ("ari", "ARI"),
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


def markdown_memory(rows: list[dict]) -> str:
    """Peak RSS of the process tree (driver JVM + Python workers) while each step ran. The
    JVM keeps the heap it has grown to, so a step's peak includes what earlier steps left."""
    steps = list(rows[0]["peak_rss_gb_by_step"]) if rows else []
    out = "Peak RSS (GB) of the process tree while each step ran:\n\n"
    out += "| apps | " + " | ".join(steps) + " |\n|---|" + "---|" * len(steps) + "\n"
    for r in rows:
        out += f"| {r['applications']:,} | " + " | ".join(f"{r['peak_rss_gb_by_step'][s]:.2f}" for s in steps) + " |\n"
    return out


def markdown_by_size(rows: list[dict]) -> str:
    """Gang quality per size bucket: recall by planted-gang size, precision by found-gang size."""
    out = "Gang quality by size (pairwise; recall by planted-gang size, precision by found-gang size):\n\n"
    out += "| apps | size | planted gangs | recall | found gangs | precision |\n|---|---|---|---|---|---|\n"
    for r in rows:
        for b in r.get("quality_by_size") or []:
            f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            out += f"| {r['applications']:,} | {b['size']} | {b['true_gangs']:,} | {f(b['recall'])} | {b['found_gangs']:,} | {f(b['precision'])} |\n"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    p.add_argument("--out", default=None, help="append the table to this Markdown file")
    p.add_argument("--keep", action="store_true", help="keep the worlds' data folders")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every world, e.g. --set simulation.hub_noise=3 (a heavy-hub world)")
    args = p.parse_args()
    from riskgraph.runtime import setup_logging

    setup_logging()  # per-step progress on stderr
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    rows = []
    for n in args.sizes:
        print(f"== {n:,} applications", file=sys.stderr)
        rows.append(run_size(n, args.keep, dict(o.split("=", 1) for o in args.overrides)))
        print(json.dumps(rows[-1]), file=sys.stderr)
    table = markdown(rows) + "\n" + markdown_memory(rows) + "\n" + markdown_by_size(rows)
    print(table)
    if args.out:
        from _report import append_markdown

        append_markdown(args.out, "bench_pipeline.py", table)


if __name__ == "__main__":
    main()

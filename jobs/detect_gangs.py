"""Detect gangs as of the run date: super-node guard → connected components over the
remaining application–attribute links → gang members, gang summaries with evidence."""
from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features.components import CCStats, choose_graph_backend, connected_components
from riskgraph.features.gang_quality import gang_pair_quality
from riskgraph.features.gangs import application_edges, gang_links, gang_members, summarize_gangs
from riskgraph.features.graph import detect_super_nodes
from riskgraph.features.network import bad_known_events
from riskgraph.inputs import bronze_as_of, snapshot, with_run_date
from riskgraph.io import path_exists
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.detect_gangs")


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    store = choose_store(spark, cfg.store.backend)
    backend = choose_graph_backend(spark, cfg.graph_backend)
    vertices = snapshot(spark, store, ctx, T.VERTICES)
    edges = snapshot(spark, store, ctx, T.EDGES)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    bad = bad_known_events(bronze_as_of(spark, store, ctx, T.BRONZE_OUTCOMES))

    hubs = detect_super_nodes(vertices, max_degree=dict(cfg.graph.max_degree)).persist(StorageLevel.MEMORY_AND_DISK)
    links = gang_links(edges, hubs, link_types=tuple(cfg.graph.link_types)).persist(StorageLevel.MEMORY_AND_DISK)
    app_edges = application_edges(links, window_days=cfg.graph.link_window_days)
    stats = CCStats(backend)
    comps = connected_components(vertices.filter(F.col("type") == "application").select("id"), app_edges, backend=backend,
                                 max_iter=cfg.graph.cc_max_iter, checkpoint_every=cfg.graph.cc_checkpoint_every,
                                 reliable_checkpoint=cfg.graph.cc_reliable_checkpoint, stats=stats)
    members = gang_members(comps, apps, min_size=cfg.graph.gang_min_size).persist(StorageLevel.MEMORY_AND_DISK)
    summary = summarize_gangs(members, links, apps, bad)

    w = dict(partition_col=S.RUN_DATE, partitions=[ctx.run_date_str], run_id=ctx.run_id)
    m = store.write(with_run_date(members, ctx, S.GANG_MEMBERS), T.GANG_MEMBERS.uri(cfg), description=T.GANG_MEMBERS.description, **w)
    g = store.write(with_run_date(summary, ctx, S.GANGS), T.GANGS.uri(cfg), description=T.GANGS.description, **w)
    h = store.write(with_run_date(hubs, ctx, S.SUPER_NODES), T.SUPER_NODES.uri(cfg), description=T.SUPER_NODES.description, **w)
    quality = {}
    truth_path = f"{T.truth_dir(cfg)}/gang_membership.parquet"
    if path_exists(spark, truth_path):  # a simulated world: score the gangs against the planted ones
        quality = gang_pair_quality(apps, members, spark.read.parquet(truth_path).filter(F.col("gang_id").isNotNull()))
        log.info("gang quality vs planted truth: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in quality.items()})
    # bounded: one row per attribute type
    hubs_by_type = {r["type"]: r["n"] for r in hubs.groupBy("type").agg(F.count(F.lit(1)).alias("n")).collect()}
    for df in (hubs, links, members):
        df.unpersist()
    log.info("gangs %s: %d gangs, %d members; %d super-nodes %s; CC %s in %d rounds",
             ctx.run_date_str, g.rows, m.rows, h.rows, hubs_by_type, backend, stats.rounds)
    return {"gangs": g.rows, "gang_members": m.rows, "super_nodes": h.rows, "super_nodes_by_type": hubs_by_type,
            "graph_backend": backend, "cc_rounds": stats.rounds, "gang_table": T.GANGS.uri(cfg), **quality}


if __name__ == "__main__":
    job_main(run, "detect_gangs")

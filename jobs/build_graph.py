"""Build graph: the links of every enabled link source (riskgraph/link_sources.py) as of the
run date → vertices and edges in GraphFrames' layout, one snapshot partition per run date.
Column sources read bronze applications; table sources read the links an upstream step wrote
for this run date (media similarity and blacklist hits: the link_media step)."""
from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph import link_sources as LS
from riskgraph.features.graph import build_edges, build_vertices, column_links
from riskgraph.inputs import bronze_as_of, snapshot, with_run_date
from riskgraph.io import path_exists
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.build_graph")


def source_links(spark: SparkSession, store, ctx: JobContext, apps):
    """application_id, ts, type, value of every source in graph.sources: column sources from
    ``apps``, table sources from their table's partition for this run date (hub items and
    other rows that must not link are already excluded by the table's ``links`` flag)."""
    types = tuple(ctx.cfg.graph.sources)
    links = column_links(apps, types=types)
    by_table: dict[str, list[str]] = {}
    for t in types:
        if LS.get(t).table is not None:
            by_table.setdefault(LS.get(t).table, []).append(t)
    for name, ts in sorted(by_table.items()):
        table = getattr(T, name)
        if not path_exists(spark, table.uri(ctx.cfg)):
            raise FileNotFoundError(f"graph.sources {ts} read {table.uri(ctx.cfg)}, which does not exist: run the step that "
                                    f"writes it first (riskgraph run does), or drop them from graph.sources")
        rows = snapshot(spark, store, ctx, table).filter(F.col("type").isin(*ts) & F.col("links"))
        links = links.unionByName(rows.select("application_id", "ts", "type", "value"))
    return links


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    store = choose_store(spark, cfg.store.backend)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    edges = build_edges(source_links(spark, store, ctx, apps)).persist(StorageLevel.MEMORY_AND_DISK)
    vertices = build_vertices(apps, edges)
    e = store.write(with_run_date(edges, ctx, S.EDGES), T.EDGES.uri(cfg), partition_col=S.RUN_DATE,
                    partitions=[ctx.run_date_str], run_id=ctx.run_id, description=T.EDGES.description)
    v = store.write(with_run_date(vertices, ctx, S.VERTICES), T.VERTICES.uri(cfg), partition_col=S.RUN_DATE,
                    partitions=[ctx.run_date_str], run_id=ctx.run_id, description=T.VERTICES.description)
    edges.unpersist()
    log.info("graph %s: %d vertices, %d edges", ctx.run_date_str, v.rows, e.rows)
    return {"vertices": v.rows, "edges": e.rows, "graph_version": e.version}


if __name__ == "__main__":
    job_main(run, "build_graph")

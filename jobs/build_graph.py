"""Build graph: bronze applications (as of the run date) → vertices and edges in
GraphFrames' layout, one snapshot partition per run date."""
from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features.graph import build_edges, build_vertices
from riskgraph.inputs import bronze_as_of, with_run_date
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.build_graph")


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    store = choose_store(spark, cfg.store.backend)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    edges = build_edges(apps, attribute_types=tuple(cfg.graph.attribute_types)).persist(StorageLevel.MEMORY_AND_DISK)
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

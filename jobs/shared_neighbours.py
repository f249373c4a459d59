"""Shared neighbours: every application of the run's feature dates with its earlier partners
(other applicants' applications sharing attribute values that were not hubs at its time) →
graph/shared_neighbours, one snapshot per run date (features/shared_neighbours.py).

Reads the graph snapshot build_graph committed for this run (its edges are the links, with
their times) and bronze as of the run date; the sn_* features of assemble_features are
aggregated from this table, and an analyst queries it for an application's partners.
"""
from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features.network import application_links, bad_known_events
from riskgraph.features.relationships import classify, pair_cues, relationship_quality, truth_relation
from riskgraph.features.shared_neighbours import neighbour_pairs
from riskgraph.io import path_exists
from riskgraph.inputs import bronze_as_of, feature_dates, snapshot, with_run_date
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.shared_neighbours")


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    types = S.shared_neighbour_types(cfg)
    if not types:
        log.info("features.shared_neighbour_types names no graph source: shared neighbours are off")
        return {}
    store = choose_store(spark, cfg.store.backend)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    links = application_links(snapshot(spark, store, ctx, T.EDGES), apps).filter(F.col("type").isin(*types))
    bad = bad_known_events(bronze_as_of(spark, store, ctx, T.BRONZE_OUTCOMES))
    dates = feature_dates(spark, store, ctx)
    pairs = neighbour_pairs(links, apps, bad, max_degree=dict(cfg.graph.max_degree), dates=dates)
    pairs = with_run_date(pairs, ctx, S.SHARED_NEIGHBOURS).persist(StorageLevel.MEMORY_AND_DISK)
    res = store.write(pairs, T.SHARED_NEIGHBOURS.uri(cfg), partition_col=S.RUN_DATE, partitions=[ctx.run_date_str],
                      run_id=ctx.run_id, description=T.SHARED_NEIGHBOURS.description)
    r = pairs.agg(F.count(F.lit(1)).alias("pairs"), F.countDistinct("application_id").alias("apps"),
                  F.sum((F.col("shared_values") >= 2).cast("long")).alias("two")).first()
    rel = _relationships(spark, store, ctx, pairs, apps)
    pairs.unpersist()
    out = {"pairs": int(r["pairs"]), "applications_with_partners": int(r["apps"]), "pairs_sharing_2plus": int(r["two"] or 0),
           "types": list(types), "table": T.SHARED_NEIGHBOURS.uri(cfg), "committed": res.committed, **rel}
    log.info("shared neighbours: %d pair(s) for %d application(s) (%d sharing two or more values) over %s",
             out["pairs"], out["applications_with_partners"], out["pairs_sharing_2plus"], ", ".join(types))
    return out


def _relationships(spark: SparkSession, store, ctx: JobContext, pairs, apps) -> dict:
    """Each pair's inferred relation with its evidence → graph/relationships; scored against
    the planted relations when the world is simulated."""
    cfg, r = ctx.cfg, ctx.cfg.relationships
    if not r.enabled:
        return {}
    applicants = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICANTS)
    rel = classify(pair_cues(pairs.select("application_id", "partner_application_id"), apps, applicants),
                   home_radius_m=r.home_radius_m, household_max=r.household_max, friends_max=r.friends_max)
    rel = with_run_date(rel, ctx, S.RELATIONSHIPS).persist(StorageLevel.MEMORY_AND_DISK)
    store.write(rel, T.RELATIONSHIPS.uri(cfg), partition_col=S.RUN_DATE, partitions=[ctx.run_date_str],
                run_id=ctx.run_id, description=T.RELATIONSHIPS.description)
    # one row per relation
    by = {x["relation"]: int(x["n"]) for x in rel.groupBy("relation").agg(F.count(F.lit(1)).alias("n")).collect()}
    out = {"relationships": by, "relationship_table": T.RELATIONSHIPS.uri(cfg)}
    truth_path = f"{T.truth_dir(cfg)}/relations.parquet"
    if path_exists(spark, truth_path):
        q = relationship_quality(truth_relation(rel, spark.read.parquet(truth_path)))
        out["relationship_macro_f1"] = q["macro_f1"]
        out["relationship_quality"] = q
        log.info("relationships vs planted truth: macro-F1 %.3f (family / colleague / neither), %.3f over all five; %s",
                 q["macro_f1"], q["macro_f1_all"], {k: v["f1"] for k, v in q["by_relation_all"].items()})
    rel.unpersist()
    log.info("relationships: %s", by)
    return out


if __name__ == "__main__":
    job_main(run, "shared_neighbours")

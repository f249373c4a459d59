"""Detect gangs as of the run date: super-node guard → weighted application graph inside the
link window (+ GPS bursts) → connected components → communities inside components → gang
members, gang summaries with evidence, quality against planted truth when there is one."""
from __future__ import annotations

import datetime as dt
import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskgraph import link_sources as LS
from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.config import GraphSettings, RelationshipSettings
from riskgraph.features.communities import CommunityStats, partition_quality, split_components
from riskgraph.features.components import CCStats, choose_graph_backend, connected_components, cut_lineage
from riskgraph.features.gang_quality import gang_contingency, gang_pair_quality, gang_quality_by_size, gang_subset_quality
from riskgraph.features.gangs import add_pair_links, application_pairs, gang_links, gang_members, summarize_gangs
from riskgraph.features.gps_bursts import gps_burst_edges
from riskgraph.features.relationships import explained_gang_links
from riskgraph.features.graph import app_vertex, detect_super_nodes, hub_thresholds
from riskgraph.features.network import bad_known_events
from riskgraph.inputs import bronze_as_of, snapshot, with_run_date
from riskgraph.io import path_exists
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.detect_gangs")


class _Clock:
    """Wall seconds per part of the step (each part ends with a materialisation), for the
    run record and the benchmark."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 2)
        self._t = now


def build_gang_graph(vertices: DataFrame, edges: DataFrame, apps: DataFrame, g: GraphSettings,
                     applicants: DataFrame | None = None, rel: RelationshipSettings | None = None):
    """(hub thresholds, super-nodes, non-hub links, weighted application pairs, pairs dropped as
    explained by a relationship), materialised; shared with the benchmark's igraph yardstick so
    both solve the same graph. ``applicants`` + ``rel`` (enabled): a pair that a relationship
    explains (a family's home IP, friends' referral code) is not a gang link."""
    cut = lambda df: cut_lineage(df, reliable=g.cc_reliable_checkpoint)  # noqa: E731 - small plans for every later join
    thresholds = cut(hub_thresholds(vertices, max_degree=dict(g.max_degree), robust_k=g.super_nodes.robust_k,
                                    min_log_scale=g.super_nodes.min_log_scale, min_degree=g.super_nodes.min_degree))
    hubs = cut(detect_super_nodes(vertices, thresholds))
    links = cut(gang_links(edges, hubs, link_types=tuple(g.link_types)))
    pairs = application_pairs(links, window_days=g.link_window_days)
    if g.gps_burst_links.enabled:
        b = g.gps_burst_links
        pairs = add_pair_links(pairs, gps_burst_edges(apps, radius_m=b.radius_m, window_h=b.window_hours, min_apps=b.min_apps),
                               weight=b.weight, link_type="gps_burst")
    explained = None
    if applicants is not None and rel is not None and rel.enabled:
        pairs = cut(pairs)
        explained = cut(explained_gang_links(pairs, apps, applicants, home_radius_m=rel.home_radius_m, household_max=rel.household_max,
                                             friends_max=rel.friends_max, explains={k: list(v) for k, v in rel.explains.items()},
                                             together_hours=rel.together_hours))
        pairs = pairs.join(explained.select("src", "dst"), ["src", "dst"], "left_anti")
    return thresholds, hubs, links, cut(pairs), explained


def media_link_scores(spark: SparkSession, store, ctx: JobContext) -> DataFrame | None:
    """src, dst, similarity of the media links this run's graph holds (evidence sentences),
    or None when graph.sources has no media source."""
    if not any(LS.get(t).table for t in ctx.cfg.graph.sources):
        return None
    ml = snapshot(spark, store, ctx, T.MEDIA_LINKS).filter(F.col("links"))
    return ml.groupBy(app_vertex(F.col("application_id")).alias("src"), F.concat_ws(":", "type", "value").alias("dst")).agg(
        F.max("similarity").alias("similarity"))


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg, g = ctx.cfg, ctx.cfg.graph
    store = choose_store(spark, cfg.store.backend)
    backend = choose_graph_backend(spark, cfg.graph_backend)
    vertices = snapshot(spark, store, ctx, T.VERTICES)
    edges = snapshot(spark, store, ctx, T.EDGES)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    bad = bad_known_events(bronze_as_of(spark, store, ctx, T.BRONZE_OUTCOMES))

    clock = _Clock()
    applicants = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICANTS)
    thresholds, hubs, links, pairs, explained = build_gang_graph(vertices, edges, apps, g, applicants, cfg.relationships)
    # one row per relation
    explained_by = {} if explained is None else {r["relation"]: int(r["n"]) for r in explained.groupBy("relation").agg(F.count(F.lit(1)).alias("n")).collect()}
    clock.lap("graph")
    # Only linked applications can be in a gang: the others are their own component and need
    # no rounds (on the default world ~90% of applications).
    linked = pairs.select(F.col("src").alias("id")).unionByName(pairs.select(F.col("dst").alias("id"))).distinct()
    cc_stats, c_stats = CCStats(backend), CommunityStats()
    cut = lambda df: cut_lineage(df, reliable=g.cc_reliable_checkpoint)  # noqa: E731
    comps = cut(connected_components(linked, pairs, backend=backend, max_iter=g.cc_max_iter, checkpoint_every=g.cc_checkpoint_every,
                                     reliable_checkpoint=g.cc_reliable_checkpoint, stats=cc_stats))
    clock.lap("components")
    c = g.communities
    partition = cut(split_components(comps, pairs, min_component_size=c.min_component_size, objective=c.objective,
                                     resolution=c.resolution, leiden_max_edges=c.leiden_max_edges,
                                     leiden_iterations=c.leiden_iterations, lpa_max_iter=c.lpa_max_iter,
                                     checkpoint_every=g.cc_checkpoint_every, seed=c.seed, stats=c_stats))
    clock.lap("communities")
    members = cut(gang_members(partition, apps, min_size=g.gang_min_size))
    # a scalar: components that came out as more than one community
    split = partition.groupBy("component").agg(F.countDistinct("community").alias("k")).filter(F.col("k") > 1).count()
    as_of = dt.datetime.combine(ctx.run_date + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    summary = summarize_gangs(members, links, pairs, apps, bad, as_of_ts=as_of, window_days=g.link_window_days,
                              link_scores=media_link_scores(spark, store, ctx))

    w = dict(partition_col=S.RUN_DATE, partitions=[ctx.run_date_str], run_id=ctx.run_id)
    m = store.write(with_run_date(members, ctx, S.GANG_MEMBERS), T.GANG_MEMBERS.uri(cfg), description=T.GANG_MEMBERS.description, **w)
    gs = store.write(with_run_date(summary, ctx, S.GANGS), T.GANGS.uri(cfg), description=T.GANGS.description, **w)
    h = store.write(with_run_date(hubs, ctx, S.SUPER_NODES), T.SUPER_NODES.uri(cfg), description=T.SUPER_NODES.description, **w)
    clock.lap("summary_and_writes")
    quality = partition_quality(pairs, partition.select("id", "community"), resolution=c.resolution)
    truth_path = f"{T.truth_dir(cfg)}/gang_membership.parquet"
    by_size = []
    if path_exists(spark, truth_path):  # a simulated world: score the gangs against the planted ones
        truth = spark.read.parquet(truth_path).filter(F.col("gang_id").isNotNull())
        cont = cut(gang_contingency(apps, members, truth))  # small: about the gangs' membership
        quality.update(gang_pair_quality(cont))
        by_size = gang_quality_by_size(cont)
        stealth_path = f"{T.truth_dir(cfg)}/stealth_gangs.parquet"
        if path_exists(spark, stealth_path):  # the planted gangs that share no device/phone/IP/e-mail/referrer
            quality["media_only_gangs"] = gang_subset_quality(cont, spark.read.parquet(stealth_path))
            log.info("media-only planted gangs: %s", quality["media_only_gangs"])
        log.info("gang quality vs planted truth: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in quality.items()})
    clock.lap("quality")
    # bounded: one row per attribute type
    th = [r.asDict() for r in thresholds.orderBy("type").collect()]
    hubs_by_type = {r["type"]: r["n"] for r in hubs.groupBy("type").agg(F.count(F.lit(1)).alias("n")).collect()}
    log.info("gangs %s: %d gangs, %d members; %d super-nodes %s; CC %s in %s rounds; %d components to Leiden, %d to LPA, "
             "%d of them cut; modularity %.3f; seconds %s", ctx.run_date_str, gs.rows, m.rows, h.rows, hubs_by_type, backend,
             cc_stats.rounds, c_stats.components_to_leiden, c_stats.components_to_lpa, split, quality["modularity"], clock.seconds)
    return {"gangs": gs.rows, "gang_members": m.rows, "super_nodes": h.rows, "super_nodes_by_type": hubs_by_type,
            "hub_thresholds": {r["type"]: {"threshold": r["threshold"], "bound": r["bound"], "cap": r["cap"],
                                           "fence": round(r["fence"], 1), "median_degree": r["median_degree"]} for r in th},
            "graph_backend": backend, "cc_rounds": cc_stats.rounds, "components_leiden": c_stats.components_to_leiden,
            "components_lpa": c_stats.components_to_lpa, "components_cut": split, "lpa_rounds": c_stats.lpa_rounds, "lpa_converged": c_stats.lpa_converged,
            "gang_modularity": quality.pop("modularity"), "gang_cpm_quality": quality.pop("cpm_quality"),
            "gang_table": T.GANGS.uri(cfg), "gang_quality_by_size": by_size, "links_explained_by_relationship": explained_by, "stage_seconds": clock.seconds, **quality}


if __name__ == "__main__":
    job_main(run, "detect_gangs")

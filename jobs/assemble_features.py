"""Assemble point-in-time network features for the applications of the run's dates and
stage them as Parquet for write_feature_store."""
from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import link_sources as LS
from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features.components import choose_graph_backend
from riskgraph.features.gps_bursts import add_gps_burst_counts
from riskgraph.features.shared_neighbours import neighbour_features
from riskgraph.features.similarity import blacklist_features, similarity_features
from riskgraph.features.network import (
    add_prior_sharing_counts,
    application_links,
    assemble_features,
    bad_known_events,
    compute_pit_components,
    pivot_sharing_counts,
)
from riskgraph.inputs import bronze_as_of, feature_dates, snapshot
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.assemble_features")


def media_features(spark: SparkSession, store, ctx: JobContext, counts, bad, sweep: dict) -> list:
    """The multimodal columns of the catalog (schemas.media_feature_specs): similarity and
    blacklist features from graph/media_links, point-in-time similarity clusters (the sweep
    over one media source's anchors), and media-aware components when gangs link on media."""
    cfg = ctx.cfg
    sim_types = LS.with_feature(cfg.graph.sources, "similarity")
    out = []
    for m in sim_types:
        c = compute_pit_components(counts, attribute_types=(m,), **sweep)
        out.append(c.select("application_id", F.col("pit_component_size").alias(f"pit_{m}_cluster_size"),
                            F.col("pit_component_bad_known").alias(f"pit_{m}_cluster_bad_known")))
    if set(cfg.graph.link_types) - set(S.structured_link_types(cfg)):
        c = compute_pit_components(counts, attribute_types=tuple(cfg.graph.link_types), **sweep)
        burst = f"apps_{cfg.features.burst_hours}h"
        out.append(c.select("application_id", F.col("pit_component_size").alias("pit_mm_component_size"),
                            F.col("pit_component_bad_known").alias("pit_mm_component_bad_known"),
                            F.col(f"pit_component_{burst}").alias(f"pit_mm_component_{burst}")))
    want_bl = bool(LS.with_feature(cfg.graph.sources, "blacklist"))
    if sim_types or want_bl:
        links = snapshot(spark, store, ctx, T.MEDIA_LINKS)
        out += [similarity_features(links, bad, modality=m) for m in sim_types]
        if want_bl:
            out.append(blacklist_features(links, S.BLACKLIST_KINDS))
    return out


def shared_neighbours_of_run(store, spark: SparkSession, ctx: JobContext):
    """graph/shared_neighbours as this run's shared_neighbours step wrote it. Without that
    commit the sn_* features would silently be 0 for every application, so the step fails
    (when the run id was made up for a step run on its own, the latest snapshot of the run
    date is taken, as for the other hand-offs)."""
    uri = T.SHARED_NEIGHBOURS.uri(ctx.cfg)
    if store.version(uri) is None or (ctx.run_id_given and store.committed_version(uri, ctx.run_id) is None):
        raise T.HandOffError(f"no graph/shared_neighbours from run {ctx.run_id} at {uri}: run the shared_neighbours step "
                             "of this run first (or turn the family off: features.shared_neighbour_types: [])")
    return snapshot(spark, store, ctx, T.SHARED_NEIGHBOURS)


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    store = choose_store(spark, cfg.store.backend)
    types, windows = LS.with_feature(cfg.graph.sources, "sharing"), tuple(cfg.features.windows_days)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    edges = snapshot(spark, store, ctx, T.EDGES)
    bad = bad_known_events(bronze_as_of(spark, store, ctx, T.BRONZE_OUTCOMES))

    # Counts need every earlier application (history), but only rows of this run's
    # dates are emitted. Reuse (distinct applicants per value) comes with the shared-neighbour family.
    reuse = S.shared_neighbour_types(cfg)
    counts = add_prior_sharing_counts(application_links(edges, apps), bad, windows_days=windows,
                                      applicants=apps if reuse else None).persist(StorageLevel.MEMORY_AND_DISK)
    sharing = pivot_sharing_counts(counts, attribute_types=types, windows_days=windows, reuse_types=reuse,
                                   reuse_min_applicants=cfg.features.reuse_min_applicants)
    g = cfg.graph
    sweep = dict(bad_events=bad, max_degree=dict(g.max_degree), burst_hours=cfg.features.burst_hours,
                 buckets=cfg.features.sweep_buckets, events_per_bucket=cfg.features.sweep_events_per_bucket,
                 window_days=g.link_window_days, cc_backend=choose_graph_backend(spark, cfg.graph_backend),
                 cc_max_iter=g.cc_max_iter, cc_checkpoint_every=g.cc_checkpoint_every, cc_reliable_checkpoint=g.cc_reliable_checkpoint)
    pit = compute_pit_components(counts, attribute_types=S.structured_link_types(cfg), **sweep)
    extras = media_features(spark, store, ctx, counts, bad, sweep)
    if S.shared_neighbour_types(cfg):
        extras.append(neighbour_features(shared_neighbours_of_run(store, spark, ctx)))
    burst_col = S.gps_burst_column(cfg.features.gps_burst_radius_m, cfg.features.gps_burst_hours)
    bursts = add_gps_burst_counts(apps, radius_m=cfg.features.gps_burst_radius_m, window_h=cfg.features.gps_burst_hours,
                                  out_col=burst_col).select("application_id", burst_col)
    fdates = feature_dates(spark, store, ctx)  # the window's dates + those of late-landing applications
    if len(fdates) > len(ctx.dates()):
        log.info("late-landing applications: recomputing feature dates %s as well", sorted(set(fdates) - set(ctx.dates())))
    in_window = apps.filter(F.date_format("application_ts", "yyyy-MM-dd").isin(fdates))
    specs = S.feature_specs(cfg)
    feats = assemble_features(in_window, sharing, pit, bursts, *extras, columns=[s.name for s in specs], burst_hours=cfg.features.burst_hours)
    feats = feats.select(*[F.col(s.name).cast(s.dtype).alias(s.name, metadata={"comment": s.description}) for s in specs])
    out = T.staged_features_dir(cfg, ctx.run_id)
    # A plain Parquet hand-off folder owned by this run id (never a Delta table folder).
    feats.write.mode("overwrite").parquet(out)
    counts.unpersist()
    n = spark.read.parquet(out).count()
    log.info("features staged for %s..%s: %d rows at %s", ctx.from_date, ctx.run_date, n, out)
    return {"features_staged": n, "staged_path": out}


if __name__ == "__main__":
    job_main(run, "assemble_features")

"""Link media as of the run date: per modality, the embeddings of the configured model version
→ a faiss index (built by executor tasks) → every application item's nearest neighbours
(searched by executor tasks) → point-in-time "same room / voice / wording" links above a
threshold calibrated on the training period, hub items flagged → blacklist hits (media by
similarity, devices and phones exactly) → one snapshot of ``graph/media_links`` per run date,
which build_graph reads for the table link sources (riskgraph/link_sources.py)."""
from __future__ import annotations

import logging
import shutil
import time

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskgraph import link_sources as LS
from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.embedders.base import Embedder
from riskgraph.features.similarity import (IDENTICAL, blacklist_media_hits, blacklist_value_hits, calibrate_threshold,
                                           linked_pairs, media_links)
from riskgraph.features.vector_search import IndexSettings, build_index, search
from riskgraph.inputs import bronze_as_of, with_run_date
from riskgraph.runtime import JobContext, SparkProgress, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.link_media")


def wanted_types(cfg) -> tuple[str, ...]:
    """The table link sources graph.sources asks this step for."""
    return tuple(t for t in cfg.graph.sources if LS.get(t).table == LS.MEDIA_LINKS_TABLE)


def current_vectors(spark: SparkSession, store, ctx: JobContext, modality: str) -> tuple[DataFrame | None, Embedder | None]:
    """``(vectors, model)``: the modality's embeddings landed by the run date, of the model
    version the embed step uses now (older versions' rows stay in the table for whoever pinned
    them), and that model (its id, version and operating points); ``(None, None)`` without a
    table."""
    from riskgraph.embedders.registry import build_embedder
    from riskgraph.features.embeddings import model_settings
    from riskgraph.jobs.embed import embed_settings, modality_settings

    table = T.EMBEDDINGS[modality]
    if store.version(table.uri(ctx.cfg)) is None:
        return None, None
    es = embed_settings(ctx.cfg)
    emb = build_embedder(modality, model_settings(modality_settings(ctx.cfg, es, modality)), device="cpu")
    df = bronze_as_of(spark, store, ctx, table)
    return df.filter((F.col("model_id") == emb.model_id) & (F.col("model_version") == emb.model_version)).select(
        "media_key", "application_id", "blacklist_entry_id", "kind", "item_ts", "vector"), emb


def model_threshold(emb, modality: str, false_match_rate: float) -> dict:
    """The threshold at ``false_match_rate`` from the model's operating points (labelled
    development data), or a ValueError that says what to do."""
    points = getattr(emb, "operating_points", None) or []
    for p in points:
        if abs(float(p["false_match_rate"]) - false_match_rate) <= 1e-12 * max(1.0, false_match_rate):
            return {"source": "model", "threshold": float(p["threshold"]), "false_match_rate": false_match_rate,
                    "true_match_rate_dev": p.get("true_match_rate"), "model_id": emb.model_id, "model_version": emb.model_version}
    have = sorted(float(p["false_match_rate"]) for p in points)
    raise ValueError(f"similarity.{modality}.calibration is 'model' but model {emb.model_id} {emb.model_version} has no "
                     f"operating point at false_match_rate {false_match_rate:g} (it has {have or 'none'}): set "
                     f"similarity.{modality}.false_match_rate to one of those, measure them with the model's training job "
                     f"(jobs/train_background.py, jobs/train_voiceprint.py --operating-points-only), or use calibration: data. "
                     f"A folder's points also do not apply once embed.{modality}.params change the model's vectors")


def calibration_sample(items: DataFrame, *, train_until, n: int, min_items: int, seed: int):
    """A bounded sample (≤ ``n`` rows collected) of application items before ``train_until``;
    with fewer than ``min_items`` there, the earliest ``n`` items instead (recorded)."""
    before = items.filter(F.col("item_ts") < F.lit(str(train_until)).cast("timestamp"))
    n_before = before.count()
    period = f"before {train_until}"
    src = before
    if n_before < min_items:
        src = items.orderBy("item_ts", "media_key").limit(n)
        period = f"the earliest {n} items ({n_before} before {train_until}: too few)"
    frac = min(1.0, (n * 1.2) / max(n_before, 1)) if src is before else 1.0
    rows = src.sample(fraction=frac, seed=seed).orderBy("media_key").limit(n).select("applicant_id", "vector").collect()
    import numpy as np

    return np.asarray([r["vector"] for r in rows], dtype=np.float32), np.asarray([r["applicant_id"] for r in rows]), period


def _share_above(v, owners, threshold: float) -> float:
    """Share of the calibration sample's cross-applicant pairs at or above ``threshold``, over
    the pairs calibrate_threshold scores (identical vectors left out), so it reads as a rate."""
    import numpy as np

    above = total = 0
    for i in range(0, len(v), 512):  # blocks of rows, as calibrate_threshold
        s = v[i:i + 512] @ v.T
        keep = ((np.arange(len(v))[None, :] > np.arange(i, min(i + 512, len(v)))[:, None])
                & (owners[i:i + 512][:, None] != owners[None, :]) & (s < IDENTICAL))
        above += int((s[keep] >= threshold).sum())
        total += int(keep.sum())
    return above / max(total, 1)


def link_modality(spark: SparkSession, ctx: JobContext, store, modality: str, apps: DataFrame, samples: DataFrame) -> tuple[DataFrame | None, dict]:
    cfg, sc = ctx.cfg, ctx.cfg.similarity
    ms = getattr(sc, modality)
    t0 = time.perf_counter()
    vectors, emb = current_vectors(spark, store, ctx, modality)
    if vectors is None:
        return None, {"note": f"no embeddings/{modality} table"}
    from_model = model_threshold(emb, modality, ms.false_match_rate) if ms.calibration == "model" else None
    strict = None  # the operating point for pairs without a distance (similarity.<m>.unknown_distance_fmr)
    if ms.max_link_km is not None and ms.unknown_distance_fmr is not None and ms.calibration == "model":
        strict = model_threshold(emb, modality, ms.unknown_distance_fmr)["threshold"]
    vectors = vectors.persist(StorageLevel.MEMORY_AND_DISK)
    items = vectors.filter(F.col("application_id").isNotNull()).join(
        apps.select("application_id", "applicant_id", "gps_lat", "gps_lon"), "application_id")
    n_items = items.count()
    if n_items < sc.calibration_min_items:
        vectors.unpersist()
        return None, {"note": f"{n_items} items: fewer than similarity.calibration_min_items"}
    v, owners, period = calibration_sample(items, train_until=cfg.evaluate.train_until, n=sc.calibration_sample,
                                           min_items=sc.calibration_min_items, seed=sc.seed)
    # the data quantile is computed either way: with a model threshold it is the check of how far
    # this population's cross-applicant tail (gangs and households included) sits above the model's
    if from_model is None:
        cal = {**calibrate_threshold(v, owners, false_match_rate=ms.false_match_rate), "source": "data"}
    else:
        try:
            data = calibrate_threshold(v, owners, false_match_rate=ms.false_match_rate)
            cal = {**from_model, "data_threshold": data["threshold"], "data_n_pairs": data["n_pairs"]}
        except ValueError as e:  # too few items for the data check: the model's threshold stands
            cal = {**from_model, "data_threshold": None, "data_note": str(e)}
        cal["data_share_above"] = round(float(_share_above(v, owners, from_model["threshold"])), 8) if len(v) > 1 else None
    threshold = cal["threshold"]
    if ms.max_link_km is not None and ms.unknown_distance_fmr is not None and strict is None:
        try:
            strict = calibrate_threshold(v, owners, false_match_rate=ms.unknown_distance_fmr)["threshold"]
        except ValueError as e:  # a small calibration period: pairs without GPS pass at the main threshold
            cal["unknown_distance_note"] = (f"similarity.{modality}.unknown_distance_fmr {ms.unknown_distance_fmr:g} cannot be "
                                            f"estimated on this sample ({e}); pairs without a GPS fix use the main threshold")
            log.warning("link_media %s: %s", modality, cal["unknown_distance_note"])
    cal["unknown_distance_threshold"] = strict
    out_dir = cfg.paths.table("work", "index", ctx.run_id, modality)
    settings = IndexSettings(exact_max_vectors=sc.exact_max_vectors, nprobe=sc.nprobe, shards=sc.shards)
    manifest = build_index(vectors.select("media_key", "vector"), out_dir, settings=settings, seed=sc.seed)
    neighbours = search(items.select("media_key", "vector"), manifest, k=ms.search_k).persist(StorageLevel.MEMORY_AND_DISK)
    pairs = linked_pairs(neighbours, items, threshold=threshold)
    rows = media_links(items, pairs, modality=modality, hub_min_applicants=ms.hub_min_applicants,
                       hub_window_days=ms.hub_window_days, hub_spread_km=ms.hub_spread_km, hub_age_days=ms.hub_age_days, max_link_km=ms.max_link_km,
                       unknown_distance_threshold=strict, max_link_days=ms.max_link_days)
    bl_samples = vectors.filter(F.col("blacklist_entry_id").isNotNull()).join(
        samples.select(F.col("media_key"), "entry_id", "added_ts"), "media_key")
    bl = blacklist_media_hits(neighbours, items, bl_samples, modality=modality, threshold=threshold)
    out = rows.unionByName(bl).persist(StorageLevel.MEMORY_AND_DISK)
    # bounded: a handful of counters (this action runs the search on the executors)
    with SparkProgress(spark, f"link_media {modality}: search and links"):
        c = out.agg(
            F.sum(F.when((F.col("type") == modality) & (F.col("anchor_application_id") != F.col("application_id")), 1).otherwise(0)).alias("links"),
            F.sum(F.when((F.col("type") == modality) & F.col("links") & (F.col("anchor_application_id") != F.col("application_id")), 1).otherwise(0)).alias("live"),
            F.countDistinct(F.when(F.col("is_hub"), F.col("media_key"))).alias("hub_items"),
            F.sum(F.when(F.col("type") == "blacklist", 1).otherwise(0)).alias("blacklist_hits"),
        ).first()
    neighbours.unpersist()
    vectors.unpersist()
    details = {"items": n_items, "threshold": threshold, "calibration": {**cal, "period": period}, "index": manifest.kind,
               "index_vectors": manifest.n, "links_to_earlier": int(c["links"] or 0), "links_live": int(c["live"] or 0),
               "hub_items": int(c["hub_items"] or 0), "blacklist_hits": int(c["blacklist_hits"] or 0),
               "seconds": round(time.perf_counter() - t0, 1), "index_dir": out_dir}
    log.info("link_media %s: %d items, threshold %.4f (FMR %g, %s), %s index; %d links to earlier items (%d live), "
             "%d hub items, %d blacklist hits, %.1f s", modality, n_items, threshold, ms.false_match_rate,
             f"the model's operating point; data quantile {cal['data_threshold']} on {period}" if from_model else f"data: {period}",
             manifest.kind, details["links_to_earlier"], details["links_live"], details["hub_items"], details["blacklist_hits"],
             details["seconds"])
    return out, details


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    types = wanted_types(cfg)
    if not types:
        log.info("link_media: graph.sources asks for no media or blacklist links; nothing to do")
        return {"note": "no media link sources in graph.sources"}
    store = choose_store(spark, cfg.store.backend)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS)
    have_bl = store.version(T.BRONZE_BLACKLISTS.uri(cfg)) is not None
    entries = bronze_as_of(spark, store, ctx, T.BRONZE_BLACKLISTS) if have_bl else None
    samples = (entries.filter(F.col("media_key").isNotNull()) if have_bl
               else spark.createDataFrame([], "media_key string, entry_id string, added_ts timestamp"))
    parts, details = [], {}
    for modality in LS.MEDIA_MODALITIES:
        ms = getattr(cfg.similarity, modality)
        if modality not in types and "blacklist" not in types or not ms.enabled:
            continue
        df, d = link_modality(spark, ctx, store, modality, apps, samples)
        details[modality] = d
        if df is not None:
            parts.append(df.filter((F.col("type") != modality) | F.lit(modality in types)))
    if "blacklist" in types and have_bl:
        parts.append(blacklist_value_hits(apps, entries))
    if not parts:
        raise RuntimeError(f"link_media: graph.sources asks for {list(types)} but there are no embeddings or blacklists "
                           f"as of {ctx.run_date_str}: run ingest_media and embed first, or drop them from graph.sources")
    links = parts[0]
    for p in parts[1:]:
        links = links.unionByName(p)
    res = store.write(with_run_date(links, ctx, S.MEDIA_LINKS), T.MEDIA_LINKS.uri(cfg), partition_col=S.RUN_DATE,
                      partitions=[ctx.run_date_str], run_id=ctx.run_id, description=T.MEDIA_LINKS.description)
    for d in details.values():  # the indexes are this run's scratch: the table holds what they gave
        if "index_dir" in d:
            shutil.rmtree(d.pop("index_dir"), ignore_errors=True)
    log.info("link_media %s: %d rows in %s", ctx.run_date_str, res.rows, T.MEDIA_LINKS.uri(cfg))
    return {"media_links": res.rows, "media_links_version": res.version, "similarity": details}


if __name__ == "__main__":
    job_main(run, "link_media")

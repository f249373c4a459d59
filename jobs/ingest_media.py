"""Media ingest: raw media references + blacklists for the run's dates → bronze/media,
bronze/blacklists and bronze/media_quarantine (docs/media.md).

Every media reference (and every blacklist entry's sample file) ends up in exactly one
place: bronze/media or the media quarantine with a reason; every blacklist row in
bronze/blacklists or the quarantine. The job fails if either count does not reconcile.
Files are read on the executors (``features.media_validation.probe_media_items``), once per
run: the probed frame is persisted before anything counts or writes it.

The quarantine is its own table (QUARANTINE layout, source ``media`` / ``blacklists``), not
bronze/quarantine: the store replaces whole ``dt`` partitions, so a shared table would let
this job erase the structured ingest's quarantine rows of a date, and the reverse.
"""
from __future__ import annotations

import logging
import math
import time

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features import media_validation as MV
from riskgraph.features import validation as V
from riskgraph.inputs import earlier_rows, read_for_run
from riskgraph.landing import read_table_landing
from riskgraph.pseudonym import pseudonym_key
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.ingest_media")

# Items one reading task gets (at most 4 tasks per core): a day's references land in one
# CSV, so without a repartition one task would open every file of the day.
ITEMS_PER_READ_TASK = 500


class MediaIngestError(RuntimeError):
    pass


def _typed(df: DataFrame, columns: list[S.Column]) -> DataFrame:
    return df.select(*[F.col(c.name).cast(c.dtype).alias(c.name, metadata={"comment": c.description}) for c in columns])


def _counts_by_reason(q: DataFrame) -> dict[str, int]:
    # bounded: one row per (source, reason class); the details of a reason are dropped
    rows = q.groupBy(F.concat_ws("/", "source", MV.reason_class(F.col("reason"))).alias("r")).count().collect()
    return {r["r"]: r["count"] for r in sorted(rows, key=lambda r: r["r"])}


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg, dates = ctx.cfg, ctx.dates()
    store = choose_store(spark, cfg.store.backend)
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    refs_landing = read_table_landing(spark, T.raw_dir(cfg, "media_refs"), S.RAW_MEDIA_REFS, dates, table="media_refs",
                                      bad_header=cfg.ingest.bad_header)
    refs, missing = refs_landing.records, refs_landing.missing
    if missing:
        log.warning("media_refs: no landing folder for %d of %d date(s), e.g. %s", len(missing), len(dates), missing[:3])
    bl_landing = read_table_landing(spark, T.raw_dir(cfg, "blacklists"), S.RAW_BLACKLISTS, dates, table="blacklists",
                                    bad_header=cfg.ingest.bad_header)
    bl_raw, bl_missing = bl_landing.records, bl_landing.missing
    if bl_missing:
        log.warning("blacklists: no landing folder for %d of %d date(s), e.g. %s", len(bl_missing), len(dates), bl_missing[:3])
    details: dict = {"refs_in": 0, "blacklist_samples_in": 0, "items_in": 0, "kept": 0, "quarantined": 0,
                     "quarantined_by_reason": {}, "kept_by_modality": {}, "bytes_read": 0,
                     "blacklists": {"in": 0, "kept": 0, "quarantined": 0, "quarantined_by_reason": {}},
                     "quarantine_table": T.MEDIA_QUARANTINE.uri(cfg)}
    if refs is None and bl_raw is None:
        log.warning("no media references or blacklists landed for %s..%s; nothing to ingest", dates[0], dates[-1])
        return details

    persisted: list[DataFrame] = []
    item_frames = []
    if refs is not None:
        if store.version(T.BRONZE_APPLICATIONS.uri(cfg)) is None:
            raise MediaIngestError(f"no bronze/applications at {T.BRONZE_APPLICATIONS.uri(cfg)}: media items take their "
                                   "time from their application; run `riskgraph ingest` for these dates first")
        apps = read_for_run(spark, store, ctx, T.BRONZE_APPLICATIONS).select("application_id", "application_ts")
        item_frames.append(MV.media_ref_items(refs, applications=apps))
    bl = None
    if bl_raw is not None:
        bl = MV.validate_blacklists(bl_raw, key=pseudonym_key(), future_tolerance_minutes=cfg.ingest.future_tolerance_minutes)
        bl = V.flag_duplicates(bl, keys=["entry_id"], order_by=["added_ts", S.DT],
                               existing_keys=earlier_rows(store, spark, T.BRONZE_BLACKLISTS, cfg, dates, ["entry_id"]))
        bl = bl.persist(StorageLevel.MEMORY_AND_DISK)
        persisted.append(bl)
        item_frames.append(MV.blacklist_media_items(bl))
    items = V.union_all(item_frames).persist(StorageLevel.MEMORY_AND_DISK)
    persisted.append(items)
    # bounded: two rows (reference items, blacklist samples)
    by_origin = {r["sample"]: r["count"] for r in items.groupBy(F.col("blacklist_entry_id").isNotNull().alias("sample")).count().collect()}
    n_refs, n_samples = by_origin.get(False, 0), by_origin.get(True, 0)
    n_refs_raw = refs.count() if refs is not None else 0
    if n_refs != n_refs_raw:
        raise MediaIngestError(f"media_refs: {n_refs_raw} raw rows became {n_refs} items (a join multiplied or dropped rows)")
    n_items = n_refs + n_samples
    seconds["read_landing"] = round(time.perf_counter() - t, 1)
    log.info("landing read: %d media reference(s), %d blacklist sample(s) for %s..%s", n_refs, n_samples, dates[0], dates[-1])

    t = time.perf_counter()
    tasks = max(1, min(math.ceil(n_items / ITEMS_PER_READ_TASK), 4 * spark.sparkContext.defaultParallelism))
    probed = MV.probe_media_items(items, limits=cfg.media, base_uri=cfg.paths.root, read_partitions=tasks)
    probed = probed.persist(StorageLevel.MEMORY_AND_DISK)  # each file read once; every count below sees the same bytes
    persisted.append(probed)
    stats = probed.agg(F.count(F.lit(1)).alias("n"), F.coalesce(F.sum("size_bytes"), F.lit(0)).alias("bytes")).first()
    seconds["probe"] = round(time.perf_counter() - t, 1)
    details["bytes_read"] = int(stats["bytes"])
    log.info("probed %d item(s) in %d task(s): %.1f MB read in %.1f s", stats["n"], tasks, stats["bytes"] / 1e6, seconds["probe"])

    t = time.perf_counter()
    earlier_media = earlier_rows(store, spark, T.BRONZE_MEDIA, cfg, dates, ["media_key", "application_id", "blacklist_entry_id", "kind", S.DT])
    flagged = MV.flag_duplicate_content(probed, existing=earlier_media).persist(StorageLevel.MEMORY_AND_DISK)
    persisted.append(flagged)
    kept, media_q = MV.split_media(flagged)
    res = store.write(kept, T.BRONZE_MEDIA.uri(cfg), partition_col=S.DT, partitions=dates, run_id=ctx.run_id,
                      description=T.BRONZE_MEDIA.description)
    n_kept = res.rows if res.committed else kept.count()
    n_bad = media_q.count()
    if n_items != n_kept + n_bad:
        raise MediaIngestError(f"media: counts do not reconcile: in={n_items} kept={n_kept} quarantined={n_bad}")
    details.update(refs_in=n_refs, blacklist_samples_in=n_samples, items_in=n_items, kept=n_kept, quarantined=n_bad)
    # bounded: one row per modality
    details["kept_by_modality"] = {r["modality"]: r["count"] for r in kept.groupBy("modality").count().collect()}
    seconds["write_media"] = round(time.perf_counter() - t, 1)
    log.info("bronze/media: in=%d kept=%d quarantined=%d (%.1f s)", n_items, n_kept, n_bad, seconds["write_media"])

    quarantine = [media_q]
    if bl is not None:
        t = time.perf_counter()
        with_media = MV.attach_blacklist_media(bl, flagged)
        good, bad = V.split_valid(with_media, source="blacklists", bronze_columns=[c.name for c in S.BRONZE_BLACKLISTS])
        res = store.write(_typed(good, S.BRONZE_BLACKLISTS), T.BRONZE_BLACKLISTS.uri(cfg), partition_col=S.DT,
                          partitions=dates, run_id=ctx.run_id, description=T.BRONZE_BLACKLISTS.description)
        n_in, n_bl_bad = bl_raw.count(), bad.count()
        n_bl_kept = res.rows if res.committed else good.count()
        if n_in != n_bl_kept + n_bl_bad:
            raise MediaIngestError(f"blacklists: counts do not reconcile: in={n_in} kept={n_bl_kept} quarantined={n_bl_bad}")
        details["blacklists"].update({"in": n_in, "kept": n_bl_kept, "quarantined": n_bl_bad})
        quarantine.append(bad)
        seconds["write_blacklists"] = round(time.perf_counter() - t, 1)
        log.info("bronze/blacklists: in=%d kept=%d quarantined=%d (%.1f s)", n_in, n_bl_kept, n_bl_bad, seconds["write_blacklists"])

    t = time.perf_counter()
    q = _typed(V.union_all(quarantine), S.QUARANTINE).persist(StorageLevel.MEMORY_AND_DISK)
    persisted.append(q)
    store.write(q, T.MEDIA_QUARANTINE.uri(cfg), partition_col=S.DT, partitions=dates, run_id=ctx.run_id,
                description=T.MEDIA_QUARANTINE.description)
    by_reason = _counts_by_reason(q)
    details["quarantined_by_reason"] = {k.split("/", 1)[1]: v for k, v in by_reason.items() if k.startswith("media/")}
    details["blacklists"]["quarantined_by_reason"] = {k.split("/", 1)[1]: v for k, v in by_reason.items() if k.startswith("blacklists/")}
    seconds["write_quarantine"] = round(time.perf_counter() - t, 1)
    log.info("media quarantine: %s", by_reason)
    details["seconds_by_phase"] = seconds
    details["read_tasks"] = tasks
    details["file_problems"] = [{"table": t, **p} for t, la in (("media_refs", refs_landing), ("blacklists", bl_landing))
                                for p in la.problems()]
    for df in persisted:
        df.unpersist()
    refs_landing.unpersist()
    bl_landing.unpersist()
    return details


if __name__ == "__main__":
    job_main(run, "ingest_media")

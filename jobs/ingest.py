"""Ingest: raw landing CSVs for the run's dates → bronze Delta tables + quarantine.

Every source record ends up in exactly one place: its bronze table or the quarantine with a
reason (riskgraph/landing.py reads the files: columns by header name, file and line of every
record, structurally broken records masked). The job fails if the counts do not reconcile
(in = kept + quarantined, per table and per file, in source records) or if no applications
landed at all for the run's dates.
"""
from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features import validation as V
from riskgraph.inputs import earlier_rows
from riskgraph.landing import read_table_landing, reconcile_files
from riskgraph.pseudonym import pseudonym_key
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.ingest")


class IngestError(RuntimeError):
    pass


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg, dates = ctx.cfg, ctx.dates()
    store = choose_store(spark, cfg.store.backend)
    key = pseudonym_key()
    tol, grid = cfg.ingest.future_tolerance_minutes, cfg.ingest.gps_grid_m

    raw, landings = {}, {}
    for i, (name, cols) in enumerate(S.RAW_TABLES.items(), 1):
        log.info("[ingest %d/%d] %s: reading %d landing date(s) under %s", i, len(S.RAW_TABLES), name, len(dates),
                 T.raw_dir(cfg, name))
        landing = read_table_landing(spark, T.raw_dir(cfg, name), cols, dates, table=name, bad_header=cfg.ingest.bad_header)
        if landing.missing:
            log.warning("%s: no landing folder for %d of %d date(s), e.g. %s", name, len(landing.missing), len(dates), landing.missing[:3])
        raw[name], landings[name] = landing.records, landing
    if raw["applications"] is None:
        raise IngestError(f"no raw applications landed for {dates[0]}..{dates[-1]} under {T.raw_dir(cfg, 'applications')}/dt=<date>; "
                          "check the upstream file drop before re-running")

    apps = V.validate_applications(raw["applications"], key=key, future_tolerance_minutes=tol, gps_grid_m=grid)
    apps = V.flag_duplicates(apps, keys=["application_id"], order_by=["application_ts", S.DT],
                             existing_keys=earlier_rows(store, spark, T.BRONZE_APPLICATIONS, cfg, dates, ["application_id"]))
    validated = {"applications": apps.persist(StorageLevel.MEMORY_AND_DISK)}

    if raw["applicants"] is not None:
        people = V.validate_applicants(raw["applicants"], key=key)
        validated["applicants"] = V.flag_duplicates(
            people, keys=["applicant_id"], order_by=[S.DT],
            existing_keys=earlier_rows(store, spark, T.BRONZE_APPLICANTS, cfg, dates, ["applicant_id"]),
        ).persist(StorageLevel.MEMORY_AND_DISK)

    if raw["outcomes"] is not None:
        outs = V.validate_outcomes(raw["outcomes"], future_tolerance_minutes=tol)
        good_apps = validated["applications"].filter(F.size(V.REASONS) == 0).select("application_id", "application_ts")
        earlier_apps = earlier_rows(store, spark, T.BRONZE_APPLICATIONS, cfg, dates, ["application_id", "application_ts"])
        known_apps = good_apps if earlier_apps is None else good_apps.unionByName(earlier_apps)
        outs = V.flag_orphans(outs, known_apps)
        validated["outcomes"] = V.flag_duplicates(
            outs, keys=["application_id", "outcome"], order_by=["known_ts", S.DT],
            existing_keys=earlier_rows(store, spark, T.BRONZE_OUTCOMES, cfg, dates, ["application_id", "outcome"]),
        ).persist(StorageLevel.MEMORY_AND_DISK)

    metrics: dict = {"rows_in": 0, "rows_kept": 0, "rows_quarantined": 0, "by_table": {}, "reasons": {}, "files": {},
                     "file_problems": []}
    quarantine = []
    for name, df in validated.items():
        log.info("[ingest] %s: validating and writing bronze", name)
        bronze_cols = [c.name for c in S.BRONZE_TABLES[name]]
        good, bad = V.split_valid(df, source=name, bronze_columns=bronze_cols)
        good = good.select(*[F.col(c.name).cast(c.dtype).alias(c.name, metadata={"comment": c.description})
                             for c in S.BRONZE_TABLES[name]])
        n_in = raw[name].count()
        res = store.write(good, T.BRONZE[name].uri(cfg), partition_col=S.DT, partitions=dates, run_id=ctx.run_id,
                          description=T.BRONZE[name].description)
        n_bad = bad.count()
        n_kept = res.rows if res.committed else good.count()
        if n_in != n_kept + n_bad:
            raise IngestError(f"{name}: counts do not reconcile: in={n_in} kept={n_kept} quarantined={n_bad}")
        metrics["by_table"][name] = {"in": n_in, "kept": n_kept, "quarantined": n_bad}
        metrics["rows_in"] += n_in
        metrics["rows_kept"] += n_kept
        metrics["rows_quarantined"] += n_bad
        quarantine.append(bad)
        log.info("%s: in=%d kept=%d quarantined=%d", name, n_in, n_kept, n_bad)

    q = V.union_all(quarantine).select(*[F.col(c.name).cast(c.dtype).alias(c.name, metadata={"comment": c.description})
                                         for c in S.QUARANTINE]).persist(StorageLevel.MEMORY_AND_DISK)
    store.write(q, T.QUARANTINE.uri(cfg), partition_col=S.DT, partitions=dates, run_id=ctx.run_id,
                description=T.QUARANTINE.description)
    # bounded: one row per distinct reason
    metrics["reasons"] = {r["reason"]: r["count"] for r in q.groupBy("source", "reason").count()
                          .select(F.concat_ws("/", "source", "reason").alias("reason"), "count").collect()}
    metrics["files"], metrics["file_problems"] = reconcile_files(q, landings, metrics["by_table"])
    for df in validated.values():
        df.unpersist()
    for landing in landings.values():
        landing.unpersist()
    q.unpersist()
    return metrics


if __name__ == "__main__":
    job_main(run, "ingest")

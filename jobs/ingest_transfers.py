"""Transfer ingest: raw transfers for the run's dates → bronze/transfers + bronze/transfer_quarantine.

Same standards as the other landing tables (riskgraph/landing.py reads the files: columns by
header name, file and line of every record, structurally broken records masked;
features/money_validation.py types and checks each row). Every source record ends up in
exactly one place, and the job fails if in != kept + quarantined (per table and per file).
Account numbers become keyed pseudonyms; no raw account number is written anywhere.

No transfers landed for the run's dates (a lender without the money feed): the step logs it
and writes nothing.
"""
from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features import validation as V
from riskgraph.features.money_validation import validate_transfers
from riskgraph.inputs import earlier_rows
from riskgraph.jobs.ingest import IngestError
from riskgraph.landing import read_table_landing, reconcile_files
from riskgraph.pseudonym import pseudonym_key
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.ingest_transfers")


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg, dates = ctx.cfg, ctx.dates()
    store = choose_store(spark, cfg.store.backend)
    log.info("[ingest_transfers] reading %d landing date(s) under %s", len(dates), T.raw_dir(cfg, "transfers"))
    landing = read_table_landing(spark, T.raw_dir(cfg, "transfers"), S.RAW_TRANSFERS, dates, table="transfers",
                                 bad_header=cfg.ingest.bad_header)
    out: dict = {"in": 0, "kept": 0, "quarantined": 0, "reasons": {}, "files": {}, "file_problems": [],
                 "table": T.BRONZE_TRANSFERS.uri(cfg), "quarantine_table": T.TRANSFER_QUARANTINE.uri(cfg)}
    if landing.records is None:
        log.warning("no transfers landed for %s..%s under %s; nothing to ingest", dates[0], dates[-1], T.raw_dir(cfg, "transfers"))
        return out
    if landing.missing:
        log.warning("transfers: no landing folder for %d of %d date(s), e.g. %s", len(landing.missing), len(dates), landing.missing[:3])

    typed = validate_transfers(landing.records, key=pseudonym_key(), future_tolerance_minutes=cfg.ingest.future_tolerance_minutes)
    typed = V.flag_duplicates(typed, keys=["transfer_id"], order_by=["transfer_ts", S.DT],
                              existing_keys=earlier_rows(store, spark, T.BRONZE_TRANSFERS, cfg, dates, ["transfer_id"]))
    typed = typed.persist(StorageLevel.MEMORY_AND_DISK)
    good, bad = V.split_valid(typed, source="transfers", bronze_columns=[c.name for c in S.BRONZE_TRANSFERS])
    good = good.select(*[F.col(c.name).cast(c.dtype).alias(c.name, metadata={"comment": c.description}) for c in S.BRONZE_TRANSFERS])
    bad = bad.select(*[F.col(c.name).cast(c.dtype).alias(c.name, metadata={"comment": c.description}) for c in S.QUARANTINE])
    bad = bad.persist(StorageLevel.MEMORY_AND_DISK)
    n_in = landing.records.count()
    res = store.write(good, T.BRONZE_TRANSFERS.uri(cfg), partition_col=S.DT, partitions=dates, run_id=ctx.run_id,
                      description=T.BRONZE_TRANSFERS.description)
    store.write(bad, T.TRANSFER_QUARANTINE.uri(cfg), partition_col=S.DT, partitions=dates, run_id=ctx.run_id,
                description=T.TRANSFER_QUARANTINE.description)
    n_kept = res.rows if res.committed else good.count()
    n_bad = bad.count()
    if n_in != n_kept + n_bad:
        raise IngestError(f"transfers: counts do not reconcile: in={n_in} kept={n_kept} quarantined={n_bad}")
    # bounded: one row per distinct reason
    out["reasons"] = {r["reason"]: r["count"] for r in bad.groupBy("reason").count().collect()}
    files, problems = reconcile_files(bad, {"transfers": landing}, {"transfers": {"in": n_in}})
    out.update({"in": n_in, "kept": n_kept, "quarantined": n_bad, "files": files["transfers"], "file_problems": problems})
    log.info("transfers: in=%d kept=%d quarantined=%d", n_in, n_kept, n_bad)
    typed.unpersist()
    bad.unpersist()
    landing.unpersist()
    return out


if __name__ == "__main__":
    job_main(run, "ingest_transfers")

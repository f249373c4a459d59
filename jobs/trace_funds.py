"""Trace funds: where each recent loan's money went, and money that came back, as of the run date.

Reads bronze/transfers as this run's ingest committed them (transfers landed by the run
date, dated no later than its end) and writes, partitioned by run_date (docs/money.md):

* money/loans  - per loan disbursed in the last ``money.monitor_days`` (or in the run's window,
  when a backfill or an initial load covers more): the share of the
  disbursement traced to each flagged sector, hops to it, paths followed, ``diverted``,
  cycles through the borrower's account, intermediaries shared with other diverted loans.
  Post-loan monitoring, not an application-time credit feature (it uses what happened after
  the loan was paid out).
* money/paths  - evidence: each loan's top paths into a flagged sector, hop by hop.
* money/cycles - evidence: time-ordered cycles starting in the last
  ``money.cycles.lookback_days`` (or in the run's window), each once, hop by hop.

Every reported hop is audited against the transfers table (``features.money_quality``); a
violation fails the step. On a simulated world the planted diversion chains, cycles and
decoys score the output. No transfers ingested yet: the step logs it and writes nothing.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features import fund_flow as FF
from riskgraph.features import money_quality as MQ
from riskgraph.inputs import bronze_as_of, with_run_date
from riskgraph.io import path_exists
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.trace_funds")


class TraceError(RuntimeError):
    pass


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg, m = ctx.cfg, ctx.cfg.money
    store = choose_store(spark, cfg.store.backend)
    if store.version(T.BRONZE_TRANSFERS.uri(cfg)) is None:
        log.warning("no bronze/transfers at %s: run `riskgraph ingest-transfers` first (nothing to trace)", T.BRONZE_TRANSFERS.uri(cfg))
        return {}
    seconds: dict[str, float] = {}
    keep: list = []
    run_end = dt.datetime.combine(ctx.run_date + dt.timedelta(days=1), dt.time()) - dt.timedelta(microseconds=1)
    transfers = (bronze_as_of(spark, store, ctx, T.BRONZE_TRANSFERS).filter(F.col("transfer_ts") <= F.lit(run_end))
                 .persist(StorageLevel.MEMORY_AND_DISK))
    keep.append(transfers)
    edges = FF.graph_edges(transfers).persist(StorageLevel.MEMORY_AND_DISK)
    keep.append(edges)
    # a nightly run looks back monitor_days; an initial load or a backfill covers its whole window too
    window_start = dt.datetime.combine(ctx.from_date, dt.time())
    since = min(run_end - dt.timedelta(days=m.monitor_days), window_start - dt.timedelta(microseconds=1))
    disb = (transfers.filter((F.col("channel") == "disbursement") & (F.col("transfer_ts") > F.lit(since)))
            .groupBy("application_id")  # a loan paid out twice (a correction): follow the first payment
            .agg(F.min_by(F.struct(F.col("to_account_key").alias("borrower_account_key"), F.col("transfer_ts").alias("disbursed_ts"),
                                   F.col("amount").alias("disbursed_amount")), F.col("transfer_ts")).alias("d"))
            .select("application_id", "d.*").persist(StorageLevel.MEMORY_AND_DISK))
    keep.append(disb)
    n_loans, n_edges = disb.count(), edges.count()
    log.info("[trace_funds] %d loan(s) disbursed since %s, %d transfer(s) to follow", n_loans, since.date(), n_edges)

    t = time.perf_counter()
    rules = FF.TraceRules(max_hops=m.max_hops, window_days=m.window_days, band=m.amount_band, k=m.truncation_k,
                          order=m.truncation_order, terminal_sectors=m.flagged_sectors)
    paths = FF.trace_loans(disb, edges, rules, keep=keep)
    shares = FF.loan_shares(paths, disb, m.flagged_sectors).persist(StorageLevel.MEMORY_AND_DISK)
    keep.append(shares)
    n_paths = paths.count()
    seconds["trace"] = round(time.perf_counter() - t, 1)
    log.info("[trace_funds] %d path(s) followed in %.1f s (%d hops max, window %g days, band %s, k=%d by %s)",
             n_paths, seconds["trace"], m.max_hops, m.window_days, list(m.amount_band), m.truncation_k, m.truncation_order)

    t = time.perf_counter()
    c = m.cycles
    c_from = min(run_end - dt.timedelta(days=c.lookback_days), window_start)
    cycles = FF.temporal_cycles(edges, starts_from=c_from, starts_to=run_end, max_len=c.max_len, window_days=c.window_days,
                                band=c.amount_band, k=c.truncation_k, order=m.truncation_order, keep=keep)
    cycles = cycles.persist(StorageLevel.MEMORY_AND_DISK)
    keep.append(cycles)
    n_cycles = cycles.count()
    seconds["cycles"] = round(time.perf_counter() - t, 1)
    log.info("[trace_funds] %d cycle(s) of <= %d transfers back within %g days, starting since %s (%.1f s)",
             n_cycles, c.max_len, c.window_days, c_from.date(), seconds["cycles"])

    # per loan: cycles through the borrower's account; intermediaries shared with other diverted loans
    through = (cycles.select("cycle_id", F.explode(F.col("hops.from_account_key")).alias("borrower_account_key"))
               .groupBy("borrower_account_key").agg(F.countDistinct("cycle_id").alias("borrower_cycles")))
    flagged = paths.filter("terminal").select("application_id", F.slice("hops", 1, F.size("hops") - 1).alias("mid"))
    mids = flagged.select("application_id", F.explode(F.col("mid.to_account_key")).alias("acct")).distinct()
    shared_accts = mids.groupBy("acct").agg(F.count(F.lit(1)).alias("_loans")).filter(F.col("_loans") > 1)
    shared = (mids.join(shared_accts, "acct").groupBy("application_id")
              .agg(F.count(F.lit(1)).alias("counterparties_in_other_diversions")))
    loans = (shares.join(through, "borrower_account_key", "left").join(shared, "application_id", "left")
             .withColumn("borrower_cycles", F.coalesce("borrower_cycles", F.lit(0)))
             .withColumn("counterparties_in_other_diversions", F.coalesce("counterparties_in_other_diversions", F.lit(0)))
             .withColumn("diverted", F.col("share_flagged") >= F.lit(m.diversion_share)))
    for s in ("real_estate", "securities"):
        if f"share_{s}" not in loans.columns:  # the table's columns are fixed; tracing stops only at flagged
            loans = loans.withColumn(f"share_{s}", F.lit(None).cast("double"))  # sectors: not traced, not 0
    loans = with_run_date(loans, ctx, S.LOAN_MONEY).persist(StorageLevel.MEMORY_AND_DISK)
    keep.append(loans)
    top = with_run_date(FF.top_paths(paths, m.top_paths), ctx, S.MONEY_PATHS).persist(StorageLevel.MEMORY_AND_DISK)
    keep.append(top)

    t = time.perf_counter()
    audit = MQ.audit_hops(top.select(F.concat_ws("#", "application_id", "path_rank").alias("key"), "hops"), transfers, m.amount_band)
    c_audit = MQ.audit_hops(cycles.select(F.col("cycle_id").alias("key"), "hops"), transfers, c.amount_band)
    bad = {k: v for k, v in {**audit, **{f"cycles_{k}": v for k, v in c_audit.items()}}.items()
           if k not in ("hops_checked", "cycles_hops_checked") and v}
    if bad:
        raise TraceError(f"reported hops do not check out against bronze/transfers: {bad}")
    seconds["audit"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    for table, df in ((T.LOAN_MONEY, loans), (T.MONEY_PATHS, top),
                      (T.MONEY_CYCLES, with_run_date(cycles, ctx, S.MONEY_CYCLES))):
        store.write(df, table.uri(cfg), partition_col=S.RUN_DATE, partitions=[ctx.run_date_str], run_id=ctx.run_id,
                    description=table.description)
    seconds["write"] = round(time.perf_counter() - t, 1)
    r = loans.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("diverted").cast("long")).alias("diverted")).first()
    out = {"loans_traced": int(r["n"]), "loans_diverted": int(r["diverted"] or 0), "paths_followed": n_paths,
           "cycles": n_cycles, "transfers_followed": n_edges,
           "audit": {"path_hops_checked": audit["hops_checked"], "cycle_hops_checked": c_audit["hops_checked"], "violations": 0},
           "tables": {"loans": T.LOAN_MONEY.uri(cfg), "paths": T.MONEY_PATHS.uri(cfg), "cycles": T.MONEY_CYCLES.uri(cfg)},
           "seconds": seconds}

    truth = T.truth_dir(cfg)
    if path_exists(spark, f"{truth}/diversions.parquet"):  # a simulated world: score against the planted truth
        t = time.perf_counter()
        out["diversion_quality"] = MQ.diversion_quality(spark.read.parquet(f"{truth}/diversions.parquet"), loans, paths, m.max_hops)
        out["cycle_quality"] = MQ.cycle_quality(spark.read.parquet(f"{truth}/transfer_patterns.parquet"), transfers, cycles,
                                                max_len=c.max_len, window_days=c.window_days, starts_from=c_from, starts_to=run_end)
        seconds["quality"] = round(time.perf_counter() - t, 1)
        log.info("money vs planted truth: diversion %s; cycles %s", out["diversion_quality"], out["cycle_quality"])
    for df in keep:
        df.unpersist()
    return out


if __name__ == "__main__":
    job_main(run, "trace_funds")

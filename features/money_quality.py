"""Checks of trace_funds' output: a self-audit that runs on every lender's data, and scores
against the simulator's planted truth.

* ``audit_hops``: every reported hop (paths and cycles) is a real transfer with the same
  accounts, time and amount; consecutive hops chain (one's payee is the next one's payer),
  times strictly increase and amounts stay in the band. Any violation is a bug: the job fails.
* ``diversion_quality`` / ``cycle_quality``: recall of planted diversion chains within the hop
  limit (flagged, and the exact chain among the traced paths), precision of flagged loans
  (decoys included), recall of planted time-ordered cycles within the limits, and how many
  time-disordered decoy cycles were reported (must be 0). The truth is small (planted
  shapes); every comparison is a Spark join, counts come back.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def audit_hops(hops: DataFrame, transfers: DataFrame, band: tuple[float, float]) -> dict:
    """``hops``: key (a path or cycle id), hops (array of hop structs). Returns counts of hops
    checked and of each kind of violation."""
    h = hops.select("key", F.posexplode("hops").alias("pos", "h"))
    t = transfers.select(F.col("transfer_id").alias("tid"), F.col("from_account_key").alias("t_src"),
                         F.col("to_account_key").alias("t_dst"), F.col("transfer_ts").alias("t_ts"), F.col("amount").alias("t_amount"))
    j = h.join(t, F.col("h.transfer_id") == F.col("tid"), "left")
    mismatch = (F.col("tid").isNull() | (F.col("t_src") != F.col("h.from_account_key")) | (F.col("t_dst") != F.col("h.to_account_key"))
                | (F.col("t_ts") != F.col("h.transfer_ts")) | (F.abs(F.col("t_amount") - F.col("h.amount")) > 1e-9))
    pairs = hops.select("key", F.posexplode(F.arrays_zip(F.slice("hops", 1, F.size("hops") - 1).alias("a"),
                                                         F.slice("hops", 2, F.size("hops")).alias("b"))).alias("pos", "p"))
    lo, hi = band
    broken = pairs.select(
        (F.col("p.a.to_account_key") != F.col("p.b.from_account_key")).alias("chain"),
        (F.col("p.b.transfer_ts") <= F.col("p.a.transfer_ts")).alias("time"),
        ((F.col("p.b.amount") < F.col("p.a.amount") * lo - 1e-9) | (F.col("p.b.amount") > F.col("p.a.amount") * hi + 1e-9)).alias("band"))
    r = j.agg(F.count(F.lit(1)).alias("hops"), F.sum(mismatch.cast("long")).alias("not_in_transfers")).first()
    b = broken.agg(*[F.sum(F.col(c).cast("long")).alias(c) for c in ("chain", "time", "band")]).first()
    return {"hops_checked": int(r["hops"] or 0), "not_in_transfers": int(r["not_in_transfers"] or 0),
            "broken_chain": int(b["chain"] or 0), "time_not_increasing": int(b["time"] or 0), "amount_out_of_band": int(b["band"] or 0)}


def diversion_quality(truth: DataFrame, loans: DataFrame, paths: DataFrame, max_hops: int) -> dict:
    """``truth``: truth/diversions.parquet (application_id, n_hops, hop, transfer_id, ...);
    ``loans``: the loan table of the run (application_id, diverted); ``paths``: every traced
    path (application_id, hops). Only loans the run traced count."""
    traced = loans.select("application_id", "diverted")
    chains = (truth.groupBy("application_id", "n_hops")
              .agg(F.concat_ws(">", F.transform(F.array_sort(F.collect_list(F.struct("hop", "transfer_id"))),
                                                lambda x: x["transfer_id"])).alias("chain"))
              .join(traced, "application_id"))
    within = chains.filter(F.col("n_hops") <= max_hops)
    found = paths.select("application_id", F.concat_ws(">", F.col("hops.transfer_id")).alias("chain")).distinct()
    w = within.join(found.withColumn("_exact", F.lit(True)), ["application_id", "chain"], "left").agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.col("diverted").cast("long")).alias("flagged"),
        F.sum(F.col("_exact").isNotNull().cast("long")).alias("exact")).first()
    planted = chains.select("application_id").distinct().withColumn("_planted", F.lit(True))
    f = (traced.filter("diverted").join(planted, "application_id", "left")
         .agg(F.count(F.lit(1)).alias("flagged"), F.sum(F.col("_planted").isNotNull().cast("long")).alias("true"))).first()
    beyond = chains.filter(F.col("n_hops") > max_hops).agg(F.count(F.lit(1)).alias("n"),
                                                          F.sum(F.col("diverted").cast("long")).alias("flagged")).first()
    n, flagged = int(w["n"] or 0), int(f["flagged"] or 0)
    return {
        "planted_chains_within_limit": n,
        "recall": (int(w["flagged"] or 0) / n) if n else None,
        "exact_chain_recall": (int(w["exact"] or 0) / n) if n else None,
        "flagged_loans": flagged,
        "precision": (int(f["true"] or 0) / flagged) if flagged else None,
        "planted_chains_beyond_limit": int(beyond["n"] or 0),
        "beyond_limit_flagged": int(beyond["flagged"] or 0),
    }


def cycle_quality(patterns: DataFrame, transfers: DataFrame, cycles: DataFrame, *, max_len: int, window_days: float,
                  starts_from, starts_to) -> dict:
    """``patterns``: truth/transfer_patterns.parquet; planted cycles within the limits (length
    <= max_len, back within window_days, first transfer in [starts_from, starts_to], all its
    transfers kept by ingest) must be found with exactly their transfers; decoy cycles never."""
    cyc = patterns.filter(F.col("kind").isin("cycle", "decoy_cycle"))
    t = transfers.select(F.col("transfer_id"), "transfer_ts")
    per = (cyc.join(t, "transfer_id", "left")
           .groupBy("pattern_id", "kind", "cycle_length")
           .agg(F.count("transfer_ts").alias("kept"), F.count(F.lit(1)).alias("n"), F.min("transfer_ts").alias("t0"),
                F.max("transfer_ts").alias("t1"), F.array_sort(F.collect_list("transfer_id")).alias("tids")))
    reported = cycles.select(F.array_sort(F.col("hops.transfer_id")).alias("tids")).withColumn("_found", F.lit(True))
    per = per.join(reported, "tids", "left")
    inside = ((F.col("kind") == "cycle") & (F.col("kept") == F.col("n")) & (F.col("cycle_length") <= max_len)
              & (F.unix_timestamp("t1") - F.unix_timestamp("t0") <= window_days * 86400)
              & (F.col("t0") >= F.lit(starts_from)) & (F.col("t0") <= F.lit(starts_to)))
    r = per.agg(
        F.sum(inside.cast("long")).alias("planted"), F.sum((inside & F.col("_found").isNotNull()).cast("long")).alias("found"),
        F.sum((F.col("kind") == "decoy_cycle").cast("long")).alias("decoys"),
        F.sum(((F.col("kind") == "decoy_cycle") & F.col("_found").isNotNull()).cast("long")).alias("decoys_reported"),
        F.sum(((F.col("kind") == "cycle") & ~inside & F.col("_found").isNotNull()).cast("long")).alias("outside_reported")).first()
    # a reported cycle made only of a decoy's transfers, in any order or subset
    decoy_tids = cyc.filter(F.col("kind") == "decoy_cycle").select("transfer_id").distinct()
    c = cycles.select("cycle_id", F.explode(F.col("hops.transfer_id")).alias("transfer_id"))
    any_decoy = c.join(decoy_tids, "transfer_id").select("cycle_id").distinct().count()
    planted = int(r["planted"] or 0)
    return {"planted_cycles_within_limits": planted, "recall": (int(r["found"] or 0) / planted) if planted else None,
            "decoy_cycles": int(r["decoys"] or 0), "decoy_cycles_reported": int(r["decoys_reported"] or 0),
            "cycles_touching_decoy_transfers": any_decoy, "planted_outside_limits_reported": int(r["outside_reported"] or 0)}

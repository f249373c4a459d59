"""Found gangs against planted (or investigator-confirmed) gangs.

Pairwise precision / recall: of the application pairs we put in one gang, the share that
are in one true gang, and vice versa. ARI (Hubert & Arabie 1985) over all applications,
each application outside any gang being its own cluster. Everything is computed in Spark
from the contingency table; only a handful of sums reach the driver.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from riskgraph.features.validation import require_columns


def _pairs(c):
    return c * (c - 1) / 2


def _labelled(apps: DataFrame, found: DataFrame, truth: DataFrame, what: str) -> DataFrame:
    """application_id, f (found gang or null), t (true gang or null) for the population."""
    require_columns(found, ["application_id", "gang_id"], f"{what}(found)")
    require_columns(truth, ["application_id", "gang_id"], f"{what}(truth)")
    return (
        apps.select("application_id").distinct()
        .join(found.select("application_id", F.col("gang_id").alias("f")), "application_id", "left")
        .join(truth.select("application_id", F.col("gang_id").alias("t")), "application_id", "left")
    )


def gang_pair_quality(apps: DataFrame, found: DataFrame, truth: DataFrame) -> dict:
    """Needs apps(application_id) — the population —, found(application_id, gang_id) and
    truth(application_id, gang_id, null for no gang). Returns pairwise precision, recall,
    F1 and ARI, plus pair counts."""
    df = _labelled(apps, found, truth, "gang_pair_quality").select(  # an application in no gang is a cluster of its own
        F.coalesce("f", F.concat(F.lit("solo:"), "application_id")).alias("f"),
        F.coalesce("t", F.concat(F.lit("solo:"), "application_id")).alias("t"))
    cell = df.groupBy("f", "t").agg(F.count(F.lit(1)).cast("double").alias("n"))
    both = cell.agg(F.sum(_pairs(F.col("n"))).alias("s")).first()["s"] or 0.0
    rows = df.groupBy("f").agg(F.count(F.lit(1)).cast("double").alias("n")).agg(F.sum(_pairs(F.col("n"))).alias("s")).first()["s"] or 0.0
    cols = df.groupBy("t").agg(F.count(F.lit(1)).cast("double").alias("n")).agg(F.sum(_pairs(F.col("n"))).alias("s")).first()["s"] or 0.0
    n = float(df.count())
    total = _pairs(n)
    precision = both / rows if rows else 0.0
    recall = both / cols if cols else 0.0
    expected = rows * cols / total if total else 0.0
    max_index = (rows + cols) / 2
    ari = (both - expected) / (max_index - expected) if max_index != expected else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"gang_pairwise_precision": precision, "gang_pairwise_recall": recall, "gang_pairwise_f1": f1, "gang_ari": ari,
            "pairs_found": int(rows), "pairs_true": int(cols), "pairs_both": int(both)}


SIZE_BUCKETS = ((2, 5), (6, 10), (11, 20), (21, 40), (41, None))


def _bucket(size) -> F.Column:
    expr = None
    for lo, hi in SIZE_BUCKETS:
        label = f"{lo}-{hi}" if hi is not None else f"{lo}+"
        cond = (size >= lo) if hi is None else size.between(lo, hi)
        expr = F.when(cond, label) if expr is None else expr.when(cond, label)
    return expr.otherwise("1")


def gang_quality_by_size(apps: DataFrame, found: DataFrame, truth: DataFrame) -> list[dict]:
    """Pairwise recall per planted-gang size bucket and pairwise precision per found-gang
    size bucket (``SIZE_BUCKETS``): where the misses and the false links are. Same inputs as
    :func:`gang_pair_quality`. Returns one dict per bucket (a handful of rows)."""
    df = _labelled(apps, found, truth, "gang_quality_by_size")
    cell = df.filter(F.col("f").isNotNull() & F.col("t").isNotNull()).groupBy("f", "t").agg(F.count(F.lit(1)).cast("double").alias("n"))
    f_size = df.filter(F.col("f").isNotNull()).groupBy("f").agg(F.count(F.lit(1)).cast("double").alias("nf"))
    t_size = df.filter(F.col("t").isNotNull()).groupBy("t").agg(F.count(F.lit(1)).cast("double").alias("nt"))
    recall = (
        t_size.join(cell.groupBy("t").agg(F.sum(_pairs(F.col("n"))).alias("both")), "t", "left")
        .groupBy(_bucket(F.col("nt")).alias("bucket"))
        .agg(F.count(F.lit(1)).alias("true_gangs"), F.sum(_pairs(F.col("nt"))).alias("true_pairs"),
             F.sum(F.coalesce("both", F.lit(0.0))).alias("true_pairs_found"))
    )
    precision = (
        f_size.join(cell.groupBy("f").agg(F.sum(_pairs(F.col("n"))).alias("both")), "f", "left")
        .groupBy(_bucket(F.col("nf")).alias("bucket"))
        .agg(F.count(F.lit(1)).alias("found_gangs"), F.sum(_pairs(F.col("nf"))).alias("found_pairs"),
             F.sum(F.coalesce("both", F.lit(0.0))).alias("found_pairs_true"))
    )
    rows = recall.join(precision, "bucket", "full_outer").collect()  # bounded: one row per size bucket
    order = {(f"{lo}-{hi}" if hi is not None else f"{lo}+"): i for i, (lo, hi) in enumerate(SIZE_BUCKETS)}
    out = []
    for r in sorted(rows, key=lambda r: order.get(r["bucket"], -1)):
        tp, fp = r["true_pairs"] or 0.0, r["found_pairs"] or 0.0
        out.append({
            "size": r["bucket"], "true_gangs": int(r["true_gangs"] or 0), "true_pairs": int(tp),
            "recall": (r["true_pairs_found"] or 0.0) / tp if tp else None,
            "found_gangs": int(r["found_gangs"] or 0), "found_pairs": int(fp),
            "precision": (r["found_pairs_true"] or 0.0) / fp if fp else None,
        })
    return out

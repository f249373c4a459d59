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


def gang_pair_quality(apps: DataFrame, found: DataFrame, truth: DataFrame) -> dict:
    """Needs apps(application_id) — the population —, found(application_id, gang_id) and
    truth(application_id, gang_id, null for no gang). Returns pairwise precision, recall,
    F1 and ARI, plus pair counts."""
    require_columns(found, ["application_id", "gang_id"], "gang_pair_quality(found)")
    require_columns(truth, ["application_id", "gang_id"], "gang_pair_quality(truth)")
    df = (
        apps.select("application_id").distinct()
        .join(found.select("application_id", F.col("gang_id").alias("f")), "application_id", "left")
        .join(truth.select("application_id", F.col("gang_id").alias("t")), "application_id", "left")
        # an application in no gang is a cluster of its own
        .select(F.coalesce("f", F.concat(F.lit("solo:"), "application_id")).alias("f"),
                F.coalesce("t", F.concat(F.lit("solo:"), "application_id")).alias("t"))
    )
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

"""Found gangs against planted (or investigator-confirmed) gangs.

Pairwise precision / recall: of the application pairs we put in one gang, the share that
are in one true gang, and vice versa. ARI (Hubert & Arabie 1985) over all applications,
each application outside any gang being its own cluster. Everything is computed in Spark
from the contingency table (:func:`gang_contingency`, one pass over the applications); only
a handful of sums reach the driver.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from riskgraph.features.validation import require_columns


def _pairs(c):
    return c * (c - 1) / 2


def gang_contingency(apps: DataFrame, found: DataFrame, truth: DataFrame) -> DataFrame:
    """f (found gang), t (true gang), n (applications in both) for the population
    apps(application_id); null f / t = in no gang. Needs found(application_id, gang_id) and
    truth(application_id, gang_id, may be null). Applications in neither kind of gang fall
    into one (null, null) cell, so the table is about as long as the gangs' membership, not
    the population; the metrics below only read this table."""
    require_columns(found, ["application_id", "gang_id"], "gang_contingency(found)")
    require_columns(truth, ["application_id", "gang_id"], "gang_contingency(truth)")
    require_columns(apps, ["application_id"], "gang_contingency(apps)")
    return (
        apps.select("application_id").distinct()
        .join(found.select("application_id", F.col("gang_id").alias("f")), "application_id", "left")
        .join(truth.select("application_id", F.col("gang_id").alias("t")), "application_id", "left")
        .groupBy("f", "t").agg(F.count(F.lit(1)).cast("double").alias("n"))
    )


def _margin(cont: DataFrame, col: str, out: str) -> DataFrame:
    """Gang sizes along one side of the contingency table (gangs only)."""
    return cont.filter(F.col(col).isNotNull()).groupBy(col).agg(F.sum("n").alias(out))


def gang_pair_quality(cont: DataFrame) -> dict:
    """Pairwise precision, recall, F1 and ARI, plus pair counts, from
    :func:`gang_contingency`'s table."""
    require_columns(cont, ["f", "t", "n"], "gang_pair_quality")
    gangs = F.col("f").isNotNull() & F.col("t").isNotNull()  # an application in no gang is a cluster of its own
    s = cont.agg(F.sum(F.when(gangs, _pairs(F.col("n")))).alias("both"), F.sum("n").alias("n")).first()
    both, n = s["both"] or 0.0, s["n"] or 0.0
    rows = _margin(cont, "f", "m").agg(F.sum(_pairs(F.col("m")))).first()[0] or 0.0
    cols = _margin(cont, "t", "m").agg(F.sum(_pairs(F.col("m")))).first()[0] or 0.0
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


def gang_quality_by_size(cont: DataFrame) -> list[dict]:
    """Pairwise recall per planted-gang size bucket and pairwise precision per found-gang
    size bucket (``SIZE_BUCKETS``): where the misses and the false links are. Reads
    :func:`gang_contingency`'s table. Returns one dict per bucket (a handful of rows)."""
    require_columns(cont, ["f", "t", "n"], "gang_quality_by_size")
    cell = cont.filter(F.col("f").isNotNull() & F.col("t").isNotNull())

    def side(key: str, size: str, what: str, total: str, hit: str) -> DataFrame:
        return (
            _margin(cont, key, size).join(cell.groupBy(key).agg(F.sum(_pairs(F.col("n"))).alias("_both")), key, "left")
            .groupBy(_bucket(F.col(size)).alias("bucket"))
            .agg(F.count(F.lit(1)).alias(what), F.sum(_pairs(F.col(size))).alias(total),
                 F.sum(F.coalesce("_both", F.lit(0.0))).alias(hit))
        )

    recall = side("t", "nt", "true_gangs", "true_pairs", "true_pairs_found")
    precision = side("f", "nf", "found_gangs", "found_pairs", "found_pairs_true")
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


def gang_subset_quality(cont: DataFrame, true_gangs: DataFrame) -> dict:
    """Pairwise recall and precision for a subset of the planted gangs (e.g. the media-only
    ones): recall over the subset's true pairs; precision over the found gangs holding at
    least one of the subset's members (the gangs an investigator would open for them).
    Pairs weigh a gang by its size squared, so one big gang can decide a small subset's
    score; per gang, therefore, also ``gang_recall_macro`` (the mean over its gangs of each
    one's pairwise recall) and ``gangs_half_found`` (gangs with at least half of their
    members, and two or more, in one found gang). Needs :func:`gang_contingency`'s table
    and true_gangs(gang_id)."""
    require_columns(cont, ["f", "t", "n"], "gang_subset_quality")
    require_columns(true_gangs, ["gang_id"], "gang_subset_quality(true_gangs)")
    subset = true_gangs.select(F.col("gang_id").alias("t")).distinct()
    mine = cont.join(subset, "t")  # every cell of the subset's true gangs
    in_gang = F.col("f").isNotNull()
    # one small aggregation per side (two actions): per true gang of the subset, then per found
    # gang touching it
    per_gang = subset.join(mine.groupBy("t").agg(
        F.sum("n").alias("m"), F.sum(F.when(in_gang, _pairs(F.col("n"))).otherwise(0.0)).alias("hit"),
        F.max(F.when(in_gang, F.col("n"))).alias("best")), "t", "left")
    two = F.col("m") >= 2
    g = per_gang.agg(F.count(F.lit(1)).alias("gangs"), F.sum(_pairs(F.col("m"))).alias("true_pairs"), F.sum("hit").alias("found_true"),
                     F.avg(F.when(two, F.col("hit") / _pairs(F.col("m")))).alias("macro"),
                     F.sum(F.when(two & (F.col("best") >= 2) & (2 * F.col("best") >= F.col("m")), 1).otherwise(0)).alias("half")).first()
    touched = mine.filter(in_gang).select("f").distinct()
    theirs = cont.join(touched, "f")  # every cell of the found gangs touching the subset
    h = theirs.groupBy("f").agg(F.sum("n").alias("m"), F.sum(F.when(F.col("t").isNotNull(), _pairs(F.col("n"))).otherwise(0.0)).alias("right")).agg(
        F.count(F.lit(1)).alias("gangs"), F.sum(_pairs(F.col("m"))).alias("found_pairs"), F.sum("right").alias("found_right")).first()
    true_pairs, found_true = g["true_pairs"] or 0.0, g["found_true"] or 0.0
    found_pairs, found_right = h["found_pairs"] or 0.0, h["found_right"] or 0.0
    return {"recall": found_true / true_pairs if true_pairs else None,
            "precision": found_right / found_pairs if found_pairs else None,
            "gang_recall_macro": g["macro"], "gangs_half_found": int(g["half"] or 0),
            "true_gangs": int(g["gangs"]), "found_gangs": int(h["gangs"]), "pairs_true": int(true_pairs), "pairs_found": int(found_pairs)}

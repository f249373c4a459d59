"""Shared neighbours: for each application, the earlier applications of other applicants that
share attribute values with it, point in time (the second source article: two applications
sharing many neighbours are suspicious; one shared employer is just colleagues).

In the application-attribute graph an application's neighbours are its values (device,
phone, IP, GPS cell, e-mail, employer, referrer); two applications share a neighbour when
they link to the same value. For application ``a`` at its time ``t_a``:

* a value counts only if it is **not a hub at t_a**: fewer than ``graph.max_degree[type]``
  earlier applications link to it (the same cap as the point-in-time sharing features; a
  NAT IP or a huge employer links nobody);
* a **partner** is an earlier application (``t_b < t_a``) of another applicant linking to at
  least one such value;
* per pair: ``shared_values`` (distinct values shared), their types, and the
  **Adamic-Adar** score (Adamic & Adar 2003; Liben-Nowell & Kleinberg 2007): the sum over
  shared values of ``1 / ln(deg)``, ``deg`` = applications linked to the value up to and
  including ``a`` (a rare value shared weighs more than a common one);
* ``partner_bad_known``: the partner's bad outcome was known before ``t_a``.

Only facts known strictly before ``t_a`` are used, so the per-application aggregates are
application-time features (group ``shared_neighbours`` of the ablation). The work is bounded
by the caps: a non-hub value has fewer than its cap earlier links, so each of ``a``'s links
yields at most cap - 1 partners.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from riskgraph.features.validation import require_columns

FEATURE_COLUMNS = ("sn_partners", "sn_partners_2plus", "sn_max_shared", "sn_max_adamic_adar", "sn_bad_partners",
                   "sn_bad_partners_2plus")


def neighbour_pairs(links: DataFrame, apps: DataFrame, bad_events: DataFrame, *, max_degree: dict[str, int],
                    dates: list[str] | None = None) -> DataFrame:
    """Every (application, earlier partner) pair, for the applications dated in ``dates`` (all
    when None). ``links``: application_id, ts, type, value (every application's links, the
    whole history); ``apps``: application_id, applicant_id; ``bad_events``: application_id,
    known_ts. Types without a cap in ``max_degree`` are refused.

    Columns: application_id, application_ts, partner_application_id, partner_ts,
    shared_values, shared_types (sorted), adamic_adar, partner_bad_known."""
    require_columns(links, ["application_id", "ts", "type", "value"], "neighbour_pairs(links)")
    types = [r["type"] for r in links.select("type").distinct().collect()]  # bounded: one row per link type
    missing = sorted(set(types) - set(max_degree))
    if missing:
        raise ValueError(f"no graph.max_degree cap for link type(s) {missing}: a shared-neighbour value needs a hub cap")
    cap = F.coalesce(*[F.when(F.col("type") == t, F.lit(int(c))) for t, c in sorted(max_degree.items())])
    by_value = Window.partitionBy("value").orderBy(F.unix_micros("ts")).rangeBetween(Window.unboundedPreceding, -1)
    l = links.select("application_id", "ts", "type", "value").withColumn("prior", F.count(F.lit(1)).over(by_value))
    a = l.filter((F.col("prior") >= 1) & (F.col("prior") < cap))  # has an earlier link, not a hub at its time
    if dates is not None:
        a = a.filter(F.date_format("ts", "yyyy-MM-dd").isin(list(dates)))
    who = apps.select("application_id", "applicant_id")
    a = a.join(who, "application_id")
    b = l.select("value", F.col("application_id").alias("partner_application_id"), F.col("ts").alias("partner_ts")).join(
        who.select(F.col("application_id").alias("partner_application_id"), F.col("applicant_id").alias("partner_applicant_id")),
        "partner_application_id")
    j = a.join(b, "value").filter((F.col("partner_ts") < F.col("ts")) & (F.col("partner_applicant_id") != F.col("applicant_id")))
    pairs = j.groupBy("application_id", "partner_application_id").agg(
        F.first("ts").alias("application_ts"), F.first("partner_ts").alias("partner_ts"),
        F.countDistinct("value").alias("shared_values"), F.array_sort(F.collect_set("type")).alias("shared_types"),
        F.sum(1.0 / F.log(F.col("prior") + 1)).alias("adamic_adar"))
    bad = bad_events.select(F.col("application_id").alias("partner_application_id"), F.col("known_ts").alias("_known"))
    return (pairs.join(bad, "partner_application_id", "left")
            .withColumn("partner_bad_known", F.coalesce(F.col("_known") < F.col("application_ts"), F.lit(False)))
            .select("application_id", "application_ts", "partner_application_id", "partner_ts", "shared_values",
                    "shared_types", "adamic_adar", "partner_bad_known"))


def neighbour_features(pairs: DataFrame) -> DataFrame:
    """Per application with at least one partner: the FEATURE_COLUMNS (an application without
    partners has no row; the feature assembly fills 0)."""
    two = F.col("shared_values") >= 2
    return pairs.groupBy("application_id").agg(
        F.count(F.lit(1)).alias("sn_partners"),
        F.sum(two.cast("long")).alias("sn_partners_2plus"),
        F.max("shared_values").cast("long").alias("sn_max_shared"),
        F.max("adamic_adar").alias("sn_max_adamic_adar"),
        F.sum(F.col("partner_bad_known").cast("long")).alias("sn_bad_partners"),
        F.sum((F.col("partner_bad_known") & two).cast("long")).alias("sn_bad_partners_2plus"))

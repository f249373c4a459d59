"""Gangs as of the run date: the weighted application graph over non-hub links inside a
time window, its components cut into communities, and the evidence that links each gang's
members."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from riskgraph.features.graph import APP_PREFIX, application_of, vertex_type
from riskgraph.features.validation import require_columns

EVIDENCE_TOP = 20
EVIDENCE_APPS = 5  # member applications named per evidence entry
# how an evidence sentence names a media link source's shared thing
MEDIA_NOUN = {"background": "room", "voice": "voice", "text": "wording", "blacklist": "blacklist entry"}


def gang_links(edges: DataFrame, super_nodes: DataFrame, *, link_types: tuple[str, ...]) -> DataFrame:
    """Edges of a linking type whose attribute is not a super-node.
    Needs edges(src, dst, ts), super_nodes(id)."""
    require_columns(edges, ["src", "dst", "ts"], "gang_links")
    return edges.filter(vertex_type(F.col("dst")).isin(*link_types)).join(super_nodes.select(F.col("id").alias("dst")), "dst", "left_anti")


def application_pairs(links: DataFrame, *, window_days: float | None = None) -> DataFrame:
    """The weighted application graph gangs are cut from: src, dst (application vertex ids,
    src < dst), weight (how many attribute values the two share), types (sorted distinct
    attribute types they share).

    Two applications are linked by a value when both used it at most ``window_days`` apart
    (no window: ever). Gangs apply in bursts, while a household or a repeat borrower re-uses
    a value months apart and is not glued to it. Super-nodes must already be removed from
    ``links``: a value's pairs grow with the square of its degree, and the caps bound it.
    Needs links(src, dst, ts).
    """
    require_columns(links, ["src", "dst", "ts"], "application_pairs")
    a = links.select(F.col("src").alias("a"), F.col("dst").alias("value"), F.unix_micros("ts").alias("ta"))
    b = links.select(F.col("src").alias("b"), F.col("dst").alias("value"), F.unix_micros("ts").alias("tb"))
    pairs = a.join(b, "value").filter(F.col("a") < F.col("b"))
    if window_days is not None:
        pairs = pairs.filter(F.abs(F.col("ta") - F.col("tb")) <= int(window_days * 86_400 * 1_000_000))
    return pairs.groupBy(F.col("a").alias("src"), F.col("b").alias("dst")).agg(
        F.countDistinct("value").cast("double").alias("weight"),
        F.array_sort(F.collect_set(vertex_type(F.col("value")))).alias("types"),
    )


def add_pair_links(pairs: DataFrame, extra: DataFrame, *, weight: float, link_type: str) -> DataFrame:
    """Adds application–application links that are not attribute values (e.g. GPS bursts) to
    ``pairs``: each extra pair adds ``weight`` and ``link_type``. Needs pairs(src, dst,
    weight, types) and extra(src, dst) in either order."""
    require_columns(extra, ["src", "dst"], "add_pair_links")
    x = extra.select(F.least("src", "dst").alias("src"), F.greatest("src", "dst").alias("dst")).filter(F.col("src") != F.col("dst")).distinct()
    x = x.select("src", "dst", F.lit(float(weight)).alias("weight"), F.array(F.lit(link_type)).alias("types"))
    return pairs.unionByName(x).groupBy("src", "dst").agg(
        F.sum("weight").alias("weight"), F.array_sort(F.array_distinct(F.flatten(F.collect_list("types")))).alias("types"))


def gang_members(partition: DataFrame, applications: DataFrame, *, min_size: int) -> DataFrame:
    """From communities of application vertices (id, component, community, method — see
    ``features.communities.split_components``) to application_id, gang_id, component_id,
    method for communities holding at least ``min_size`` distinct applicants (one person's
    repeat loans are not a gang). Ids are 'g:' / 'c:' + the smallest application id of the
    community / component. Needs applications(application_id, applicant_id)."""
    require_columns(partition, ["id", "component", "community", "method"], "gang_members")
    require_columns(applications, ["application_id", "applicant_id"], "gang_members(applications)")
    apps = partition.filter(F.col("id").startswith(APP_PREFIX)).select(
        application_of(F.col("id")).alias("application_id"), "component", "community", "method"
    ).join(applications.select("application_id", "applicant_id"), "application_id")
    sizes = apps.groupBy("community").agg(F.countDistinct("applicant_id").alias("_people"))
    return (
        apps.join(sizes, "community")
        .filter(F.col("_people") >= min_size)
        .select("application_id", F.concat(F.lit("g:"), application_of(F.col("community"))).alias("gang_id"),
                F.concat(F.lit("c:"), application_of(F.col("component"))).alias("component_id"), "method")
    )


def summarize_gangs(members: DataFrame, links: DataFrame, pairs: DataFrame, apps: DataFrame, bad_known: DataFrame, *,
                    as_of_ts, window_days: float | None = None, link_scores: DataFrame | None = None) -> DataFrame:
    """One row per gang, what an investigator reads first (see ``schemas.GANGS``): size and
    distinct applicants; known-bad count and rate as of ``as_of_ts``; first/last application,
    age, span, applications per hour and the most applications in any 24 hours
    (burstiness); density of the linked pairs; attribute diversity (shared values and the
    link types); and the evidence JSON — the links that formed the gang, most members
    first: each attribute value that links >= 2 members *inside the link window* (the same
    rule :func:`application_pairs` used; a value two members used months apart is not
    evidence) with how many members it links, and ``gps_burst`` with the members in GPS
    bursts together.

    Needs members(application_id, gang_id, component_id, method), links(src, dst, ts)
    without super-nodes, pairs(src, dst, types) (the application graph gangs were cut
    from), apps(application_id, applicant_id, application_ts), bad_known(application_id,
    known_ts); ``window_days`` as given to :func:`application_pairs`. Each evidence entry
    names up to EVIDENCE_APPS of the members it links (``applications``); with
    ``link_scores(src, dst, similarity)`` (media similarity links) an entry of a scored value
    also carries the weakest similarity among those members' links and a sentence,
    e.g. "same room as applications A1, A2 (similarity >= 0.93)".
    """
    require_columns(members, ["application_id", "gang_id", "component_id", "method"], "summarize_gangs(members)")
    require_columns(links, ["src", "dst", "ts"], "summarize_gangs(links)")
    require_columns(pairs, ["src", "dst", "types"], "summarize_gangs(pairs)")
    require_columns(apps, ["application_id", "applicant_id", "application_ts"], "summarize_gangs(apps)")
    require_columns(bad_known, ["application_id", "known_ts"], "summarize_gangs(bad_known)")
    as_of = F.lit(as_of_ts).cast("timestamp")
    bad = bad_known.filter(F.col("known_ts") <= as_of).select("application_id").distinct().withColumn("_bad", F.lit(1))
    m = members.join(apps.select("application_id", "applicant_id", "application_ts"), "application_id").join(bad, "application_id", "left")
    burst_us = 24 * 3_600 * 1_000_000
    in_burst = Window.partitionBy("gang_id").orderBy(F.unix_micros("application_ts")).rangeBetween(-burst_us + 1, 0)
    m = m.withColumn("_recent", F.count(F.lit(1)).over(in_burst))
    base = m.groupBy("gang_id").agg(
        F.first("component_id").alias("component_id"),
        F.first("method").alias("method"),
        F.count(F.lit(1)).alias("size"),
        F.countDistinct("applicant_id").alias("n_applicants"),
        F.sum(F.coalesce("_bad", F.lit(0))).cast("long").alias("n_bad_known"),
        F.min("application_ts").alias("first_ts"),
        F.max("application_ts").alias("last_ts"),
        F.max("_recent").alias("max_apps_24h"),
    )
    span_h = (F.unix_micros("last_ts") - F.unix_micros("first_ts")) / 3.6e9
    base = base.select(
        "*",
        (F.col("n_bad_known") / F.col("size")).alias("bad_rate_known"),
        ((F.unix_micros(as_of) - F.unix_micros("first_ts")) / 86.4e9).alias("age_days"),
        span_h.alias("span_hours"),
        (F.col("size") / F.greatest(span_h, F.lit(1.0))).alias("apps_per_hour"),
    )
    # linked pairs inside each gang (both ends members of it) → density, the link types that
    # formed it, and the members in GPS bursts together
    g_of = members.select(F.concat(F.lit(APP_PREFIX), "application_id").alias("_v"), "gang_id")
    inside = (
        pairs.join(g_of.withColumnRenamed("_v", "src"), "src")
        .join(g_of.withColumnRenamed("_v", "dst").withColumnRenamed("gang_id", "_g2"), "dst")
        .filter(F.col("gang_id") == F.col("_g2"))
    )
    pair_stats = inside.groupBy("gang_id").agg(
        F.count(F.lit(1)).alias("n_pairs"), F.array_sort(F.array_distinct(F.flatten(F.collect_list("types")))).alias("_types"))
    bursts = (
        inside.filter(F.array_contains("types", "gps_burst")).select("gang_id", F.explode(F.array("src", "dst")).alias("_v"))
        .groupBy("gang_id").agg(F.countDistinct("_v").alias("members"))
        .select("gang_id", F.lit("gps_burst").alias("value"), "members")
    )
    ml = links.withColumn("application_id", application_of(F.col("src"))).join(members.select("application_id", "gang_id"), "application_id")
    n_links = ml.groupBy("gang_id").agg(F.count(F.lit(1)).alias("n_links"))
    # a member is linked by a value when another member used it at most window_days apart:
    # its nearest neighbour in time among the value's uses inside the gang is close enough
    t = F.unix_micros("ts")
    by_time = Window.partitionBy("gang_id", "dst").orderBy(t, "src")
    ml = ml.select("gang_id", "dst", "src", t.alias("_t"), F.lag(t).over(by_time).alias("_prev"), F.lead(t).over(by_time).alias("_next"))
    if window_days is None:
        near = F.col("_prev").isNotNull() | F.col("_next").isNotNull()
    else:
        w_us = int(window_days * 86_400 * 1_000_000)
        near = ((F.col("_t") - F.col("_prev")) <= w_us) | ((F.col("_next") - F.col("_t")) <= w_us)
    close = ml.filter(near)
    if link_scores is not None:
        close = close.join(link_scores.select("src", "dst", "similarity"), ["src", "dst"], "left")
    else:
        close = close.withColumn("similarity", F.lit(None).cast("double"))
    per_value = (close.groupBy("gang_id", "dst").agg(
        F.countDistinct("src").alias("members"),
        F.slice(F.array_sort(F.collect_set(application_of(F.col("src")))), 1, EVIDENCE_APPS).alias("applications"),
        F.min("similarity").alias("similarity"))
        .filter(F.col("members") >= 2).select("gang_id", F.col("dst").alias("value"), "members", "applications", "similarity"))
    n_values = per_value.groupBy("gang_id").agg(F.count(F.lit(1)).alias("n_shared_values"))
    noun = F.element_at(F.create_map(*[x for k, v in MEDIA_NOUN.items() for x in (F.lit(k), F.lit(v))]), vertex_type(F.col("value")))
    said = F.when(F.col("similarity").isNotNull() & noun.isNotNull(), F.format_string(
        "same %s as applications %s (similarity >= %.2f)", noun, F.concat_ws(", ", "applications"), F.col("similarity")))
    per_value = per_value.withColumn("says", said)
    burst_rows = bursts.select("gang_id", "value", "members", F.lit(None).cast("array<string>").alias("applications"),
                               F.lit(None).cast("double").alias("similarity"), F.lit(None).cast("string").alias("says"))
    evidence = per_value.unionByName(burst_rows).groupBy("gang_id").agg(
        F.slice(F.sort_array(F.collect_list(F.struct((-F.col("members")).alias("_k"), "value", "members", "applications",
                                                     "similarity", "says"))), 1, EVIDENCE_TOP).alias("_ev"),
    ).select("gang_id", F.to_json(F.transform("_ev", lambda s: F.struct(
        s["value"].alias("value"), s["members"].alias("members"), s["applications"].alias("applications"),
        F.round(s["similarity"], 3).alias("similarity"), s["says"].alias("says")))).alias("evidence"))
    n = F.col("size")
    return (
        base.join(n_links, "gang_id", "left").join(pair_stats, "gang_id", "left").join(n_values, "gang_id", "left")
        .join(evidence, "gang_id", "left")
        .select(
            "gang_id", "component_id", "method", "size", "n_applicants", "n_bad_known", "bad_rate_known", "first_ts", "last_ts",
            "age_days", "span_hours", "apps_per_hour", "max_apps_24h",
            F.coalesce("n_pairs", F.lit(0)).cast("long").alias("n_pairs"),
            (F.coalesce("n_pairs", F.lit(0)) / (n * (n - 1) / 2)).alias("density"),
            F.coalesce("n_links", F.lit(0)).cast("long").alias("n_links"),
            F.coalesce("n_shared_values", F.lit(0)).cast("long").alias("n_shared_values"),
            F.coalesce(F.size("_types"), F.lit(0)).cast("long").alias("n_link_types"),
            F.coalesce(F.concat_ws(",", "_types"), F.lit("")).alias("link_types"),
            F.coalesce("evidence", F.lit("[]")).alias("evidence"),
        )
    )

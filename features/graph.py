"""The application–attribute graph in GraphFrames' layout, and its super-node guard.

Vertices: ``id`` ('app:<application_id>' or '<type>:<value>'), ``type``, ``degree``,
``applicants``, ``first_seen_ts``, ``last_seen_ts``. Edges: ``src`` (application), ``dst`` (attribute value),
``relationship``, ``ts`` (the application time: when the link appeared).
"""
from __future__ import annotations

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from riskgraph.features.validation import require_columns
from riskgraph import link_sources as LS
from riskgraph.schemas import RELATIONSHIP

APP_PREFIX = "app:"


def app_vertex(application_id: Column) -> Column:
    return F.concat(F.lit(APP_PREFIX), application_id)


def vertex_type(vertex_id: Column) -> Column:
    return F.substring_index(vertex_id, ":", 1)


def application_of(vertex_id: Column) -> Column:
    """'app:A1' → 'A1'."""
    return F.substring(vertex_id, len(APP_PREFIX) + 1, 1 << 30)


def column_links(apps: DataFrame, *, types: tuple[str, ...]) -> DataFrame:
    """Links of the column sources among ``types`` (riskgraph/link_sources.py): one row per
    application and non-null value, in the registry's long layout application_id, ts, type,
    value. Needs application_id, application_ts and each source's column."""
    sources = [LS.get(t) for t in types if LS.get(t).column is not None]
    require_columns(apps, ["application_id", "application_ts", *[s.column for s in sources]], "column_links")
    if not sources:
        return apps.sparkSession.createDataFrame([], LINKS_SCHEMA)
    structs = F.array(*[F.struct(F.lit(s.type).alias("type"), F.col(s.column).cast("string").alias("value")) for s in sources])
    return (
        apps.select("application_id", F.col("application_ts").alias("ts"), F.explode(structs).alias("l"))
        .filter(F.col("l.value").isNotNull())
        .select("application_id", "ts", F.col("l.type").alias("type"), F.col("l.value").alias("value"))
    )


LINKS_SCHEMA = "application_id string, ts timestamp, type string, value string"


def build_edges(links: DataFrame) -> DataFrame:
    """The graph's edges from links of any sources (application_id, ts, type, value): src
    ('app:<id>'), dst ('<type>:<value>'), relationship (the source's edge label), ts.
    Duplicate (application, vertex) links keep their earliest time."""
    require_columns(links, ["application_id", "ts", "type", "value"], "build_edges")
    rel = F.create_map(*[x for t, r in RELATIONSHIP.items() for x in (F.lit(t), F.lit(r))])
    return (
        links.filter(F.col("value").isNotNull())
        .select(app_vertex(F.col("application_id")).alias("src"), F.concat_ws(":", "type", "value").alias("dst"),
                F.element_at(rel, F.col("type")).alias("relationship"), "ts")
        .groupBy("src", "dst", "relationship").agg(F.min("ts").alias("ts"))
    )


def build_vertices(apps: DataFrame, edges: DataFrame) -> DataFrame:
    """Application vertices (degree = its attribute links) and attribute vertices (degree =
    applications linked, ``applicants`` = distinct applicants among them: attribute reuse an
    analyst queries, e.g. phones used by five or more people). Needs apps(application_id,
    applicant_id, application_ts) and edges."""
    require_columns(edges, ["src", "dst", "ts"], "build_vertices(edges)")
    require_columns(apps, ["application_id", "applicant_id", "application_ts"], "build_vertices(apps)")
    link_counts = edges.groupBy("src").agg(F.count(F.lit(1)).alias("degree"))
    app_v = (
        apps.select(app_vertex(F.col("application_id")).alias("id"), F.col("application_ts").alias("first_seen_ts"))
        .join(link_counts.withColumnRenamed("src", "id"), "id", "left")
        .select("id", F.lit("application").alias("type"), F.coalesce("degree", F.lit(0)).cast("long").alias("degree"),
                F.lit(1).cast("long").alias("applicants"), "first_seen_ts", F.col("first_seen_ts").alias("last_seen_ts"))
    )
    # an application without a known applicant counts as its own applicant
    who = apps.select(app_vertex(F.col("application_id")).alias("src"), "applicant_id")
    per_user = (edges.join(who, "src", "left").withColumn("applicant_id", F.coalesce("applicant_id", "src"))
                .groupBy("dst", "applicant_id")  # two plain aggregations instead of countDistinct's row expansion
                .agg(F.count(F.lit(1)).alias("n"), F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts")))
    attr_v = (per_user.groupBy("dst")
              .agg(F.sum("n").alias("degree"), F.count(F.lit(1)).alias("applicants"),
                   F.min("first_ts").alias("first_seen_ts"), F.max("last_ts").alias("last_seen_ts"))
              .select(F.col("dst").alias("id"), vertex_type(F.col("dst")).alias("type"), F.col("degree").cast("long"),
                      F.col("applicants").cast("long"), "first_seen_ts", "last_seen_ts"))
    return app_v.unionByName(attr_v)


def cap_column(max_degree: dict[str, int], type_col: Column) -> Column:
    return F.element_at(F.create_map(*[x for t, c in max_degree.items() for x in (F.lit(t), F.lit(int(c)))]), type_col).cast("long")


MAD_TO_SD = 1.4826  # MAD of a normal distribution x this = its standard deviation


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    """Median of ``values`` repeated ``counts`` times (numpy's definition: the mean of the two
    middle values when the total is even), without materialising the repeats."""
    order = np.argsort(values, kind="stable")
    v, c = values[order], counts[order]
    cum = np.cumsum(c)
    n = int(cum[-1])
    lo, hi = (n - 1) // 2, n // 2  # 0-based ranks of the middle value(s)
    return float((v[np.searchsorted(cum, lo, side="right")] + v[np.searchsorted(cum, hi, side="right")]) / 2)


def hub_thresholds(vertices: DataFrame, *, max_degree: dict[str, int], robust_k: float, min_log_scale: float,
                   min_degree: int) -> DataFrame:
    """Per attribute type, the degree above which a value is a hub (super-node).

    Robust statistics on the log degree of the type's *shared* values (degree >= 2; a value
    used once links nobody): the fence is ``exp(median + robust_k * scale)`` with
    ``scale = max(1.4826 * MAD, min_log_scale)`` (median and MAD are not moved by the hubs
    themselves, unlike mean and sd). Most shared phones or e-mails have degree 2 or 3, so
    their MAD is 0; ``min_log_scale`` keeps the fence from flagging a degree of 3. The
    threshold is the fence, never below ``min_degree`` (a gang's device pool is not a hub)
    and never above the type's configured cap ``max_degree`` (the hard limit).

    Needs vertices(type, degree). Returns type, n_shared, median_degree, mad_log, fence, cap,
    threshold, bound ('robust' | 'cap' | 'floor': which limit set the threshold); one row per
    attribute type with a cap.
    """
    require_columns(vertices, ["type", "degree"], "hub_thresholds")
    # Degrees are integers: the statistics need only how many values have each degree, a
    # table as long as the number of distinct degrees (bounded by the largest degree), so it
    # is collected and the exact median / MAD computed on the driver — an exact percentile
    # over every vertex in Spark took ~20 s on 100k applications.
    hist = (
        vertices.filter((F.col("type") != "application") & (F.col("degree") >= 2))
        .groupBy("type", "degree").agg(F.count(F.lit(1)).alias("n")).collect()
    )
    rows = []
    for t, cap in sorted(max_degree.items()):
        d = np.array([r["degree"] for r in hist if r["type"] == t], dtype=float)
        c = np.array([r["n"] for r in hist if r["type"] == t], dtype=np.int64)
        if len(d) == 0:
            rows.append((t, 0, None, None, float(cap), int(cap)))
            continue
        med = _weighted_median(np.log(d), c)
        mad = _weighted_median(np.abs(np.log(d) - med), c)
        fence = float(np.exp(med + robust_k * max(MAD_TO_SD * mad, min_log_scale)))
        rows.append((t, int(c.sum()), float(np.exp(med)), mad, fence, int(cap)))
    out = vertices.sparkSession.createDataFrame(
        rows, "type string, n_shared long, median_degree double, mad_log double, fence double, cap long")
    # a degree d is a hub when d > threshold, so the threshold is the largest degree allowed
    t = F.least(F.col("cap"), F.greatest(F.lit(int(min_degree)), F.floor("fence").cast("long")))
    bound = F.when(t == F.col("cap"), "cap").when(t == F.lit(int(min_degree)), "floor").otherwise("robust")
    return out.withColumn("threshold", t).withColumn("bound", bound)


def detect_super_nodes(vertices: DataFrame, thresholds: DataFrame) -> DataFrame:
    """Attribute vertices whose degree exceeds their type's threshold (see
    :func:`hub_thresholds`): id, type, degree, threshold, robust_z (how many robust scales
    above the type's median log degree), bound. Needs vertices(id, type, degree)."""
    require_columns(vertices, ["id", "type", "degree"], "detect_super_nodes")
    require_columns(thresholds, ["type", "median_degree", "mad_log", "threshold", "bound"], "detect_super_nodes(thresholds)")
    th = thresholds.select("type", "median_degree", "mad_log", "threshold", "bound")
    v = vertices.filter(F.col("type") != "application").join(F.broadcast(th), "type")
    z = (F.log("degree") - F.log("median_degree")) / F.greatest(F.col("mad_log") * MAD_TO_SD, F.lit(1e-9))
    return v.filter(F.col("degree") > F.col("threshold")).select(
        "id", "type", "degree", "threshold", F.when(F.col("mad_log") > 0, z).alias("robust_z"), "bound")


def star_edges(links: DataFrame, *, node_col: str, value_col: str, order_col: str) -> DataFrame:
    """Application–application edges that connect exactly what the bipartite graph
    connects: each application sharing a value is linked to the value's first application
    (by ``order_col``, then id). ``len(links)`` edges instead of the clique's n² per value."""
    require_columns(links, [node_col, value_col, order_col], "star_edges")
    first = links.groupBy(value_col).agg(F.min(F.struct(order_col, node_col)).alias("_first"))
    return (
        links.join(first, value_col)
        .select(F.col(node_col).alias("src"), F.col(f"_first.{node_col}").alias("dst"))
        .filter(F.col("src") != F.col("dst"))
        .distinct()
    )

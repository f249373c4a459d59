"""Gangs as of the run date: connected components of applications over non-hub links,
with the evidence that links each gang's members."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from riskgraph.features.graph import APP_PREFIX, application_of, star_edges, vertex_type
from riskgraph.features.validation import require_columns

EVIDENCE_TOP = 20


def gang_links(edges: DataFrame, super_nodes: DataFrame, *, link_types: tuple[str, ...]) -> DataFrame:
    """Edges of a linking type whose attribute is not a super-node.
    Needs edges(src, dst, ts), super_nodes(id)."""
    require_columns(edges, ["src", "dst", "ts"], "gang_links")
    return edges.filter(vertex_type(F.col("dst")).isin(*link_types)).join(super_nodes.select(F.col("id").alias("dst")), "dst", "left_anti")


def application_edges(links: DataFrame, *, window_days: float | None = None) -> DataFrame:
    """Application–application edges (src, dst as application vertex ids).

    Without a window: a star per attribute value (each user linked to its first user), so
    components equal the bipartite graph's. With ``window_days``: each application is
    linked to the previous application that used the same value, if that one came at most
    ``window_days`` earlier; gangs apply in bursts, while a household or a repeat borrower
    re-uses a value months apart and is not glued to it.
    """
    if window_days is None:
        return star_edges(links, node_col="src", value_col="dst", order_col="ts")
    require_columns(links, ["src", "dst", "ts"], "application_edges")
    w = Window.partitionBy("dst").orderBy("ts", "src")
    prev = links.select("src", "dst", "ts", F.lag("src").over(w).alias("_prev"), F.lag("ts").over(w).alias("_prev_ts"))
    return (
        prev.filter(F.col("_prev").isNotNull())
        .filter(F.unix_micros("ts") - F.unix_micros("_prev_ts") <= int(window_days * 86_400 * 1_000_000))
        .select("src", F.col("_prev").alias("dst"))
        .filter(F.col("src") != F.col("dst"))
        .distinct()
    )


def gang_members(components: DataFrame, applications: DataFrame, *, min_size: int) -> DataFrame:
    """From CC output over application vertices (id, component) to application_id, gang_id
    for components holding at least ``min_size`` distinct applicants (one person's repeat
    loans are not a gang). Needs applications(application_id, applicant_id)."""
    require_columns(components, ["id", "component"], "gang_members")
    require_columns(applications, ["application_id", "applicant_id"], "gang_members(applications)")
    apps = components.filter(F.col("id").startswith(APP_PREFIX)).select(
        application_of(F.col("id")).alias("application_id"), "component"
    ).join(applications.select("application_id", "applicant_id"), "application_id")
    sizes = apps.groupBy("component").agg(F.countDistinct("applicant_id").alias("_people"))
    return (
        apps.join(sizes, "component")
        .filter(F.col("_people") >= min_size)
        .select("application_id", F.concat(F.lit("g:"), application_of(F.col("component"))).alias("gang_id"))
    )


def summarize_gangs(members: DataFrame, links: DataFrame, apps: DataFrame, bad_known: DataFrame) -> DataFrame:
    """One row per gang: size, n_bad_known, first/last application time, n_links and the
    evidence JSON (attribute values linking ≥ 2 members, with how many members each links).

    Needs members(application_id, gang_id), links(src, dst) without super-nodes,
    apps(application_id, application_ts), bad_known(application_id) known by the run date.
    """
    m = members.join(apps.select("application_id", "application_ts"), "application_id")
    m = m.join(bad_known.select("application_id").distinct().withColumn("_bad", F.lit(1)), "application_id", "left")
    base = m.groupBy("gang_id").agg(
        F.count(F.lit(1)).alias("size"),
        F.sum(F.coalesce("_bad", F.lit(0))).cast("long").alias("n_bad_known"),
        F.min("application_ts").alias("first_ts"),
        F.max("application_ts").alias("last_ts"),
    )
    ml = links.withColumn("application_id", application_of(F.col("src"))).join(members, "application_id")
    n_links = ml.groupBy("gang_id").agg(F.count(F.lit(1)).alias("n_links"))
    per_value = ml.groupBy("gang_id", "dst").agg(F.count(F.lit(1)).alias("members")).filter(F.col("members") >= 2)
    evidence = per_value.groupBy("gang_id").agg(
        F.slice(F.sort_array(F.collect_list(F.struct((-F.col("members")).alias("_k"), F.col("dst").alias("value"), "members"))), 1, EVIDENCE_TOP).alias("_ev")
    ).select("gang_id", F.to_json(F.transform("_ev", lambda s: F.struct(s["value"].alias("value"), s["members"].alias("members")))).alias("evidence"))
    return (
        base.join(n_links, "gang_id", "left")
        .join(evidence, "gang_id", "left")
        .select("gang_id", "size", "n_bad_known", "first_ts", "last_ts",
                F.coalesce("n_links", F.lit(0)).cast("long").alias("n_links"), F.coalesce("evidence", F.lit("[]")).alias("evidence"))
    )

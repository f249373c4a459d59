"""Communities inside connected components, so that a component holding several gangs
(bridged by a card dealer's SIM, a shared IP, one coached applicant) splits into its gangs.

Input is a weighted, undirected application graph ``src, dst, weight`` (``src < dst``) and
the connected components of its vertices ``id, component``. Output is ``id, component,
community, method``: ``community`` is the smallest vertex id of the community, so ids are
deterministic and readable, and ``method`` says how the vertex's component was treated:

* ``component``: the component is smaller than ``min_component_size`` and stays whole;
* ``leiden``: Leiden (Traag, Waltman & van Eck, "From Louvain to Leiden: guaranteeing
  well-connected communities", Sci. Rep. 2019) through igraph, one component per task in
  ``applyInPandas`` — components that fit a worker (``leiden_max_edges``), which on a
  lending graph is every component once hubs are capped;
* ``lpa``: distributed label propagation (Raghavan, Albert & Kumara 2007) on DataFrames for
  any component too big for one worker: undirected, weighted votes, a pseudo-random half of
  the vertices updated per round (synchronous updates oscillate), ties drawn per vertex;
  deterministic for a seed (see ``label_propagation``).

The Leiden objective is the Constant Potts Model (CPM, Traag, Van Dooren & Nesterov 2011)
by default: a community is a set of applications whose (weighted) link density is above
``resolution``. Unlike modularity, CPM has no resolution limit and does not depend on the
size of the rest of the graph, so a gang is cut the same way whatever else happened that
night, and the rule can be said to an investigator: "on average each member is linked to at
least ``resolution`` of the others". Modularity (Newman 2006) is available too; per
component it is scaled to the whole graph's total weight, which makes the per-component
runs optimise exactly the modularity of the whole graph.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from riskgraph.config import MIN_MODULARITY_RESOLUTION
from riskgraph.features.components import cut_lineage
from riskgraph.features.validation import require_columns

log = logging.getLogger(__name__)

OBJECTIVES = ("CPM", "modularity")
_OUT = StructType([
    StructField("id", StringType(), False),
    StructField("community", StringType(), False),
])


@dataclass
class CommunityStats:
    """What the split did, for the run record (small numbers only)."""

    components_to_leiden: int = 0
    components_to_lpa: int = 0
    lpa_rounds: int = 0
    lpa_converged: bool = True  # False: label propagation stopped at lpa_max_iter with labels still changing


def leiden_partition(vertex_ids: list[str], src: list[str], dst: list[str], weight: list[float], *, objective: str,
                     resolution: float, iterations: int, seed: int) -> dict[str, str]:
    """Leiden on one small graph (igraph); returns vertex id → smallest vertex id of its
    community. Vertices are numbered in sorted id order and Python's RNG (igraph's default)
    is seeded, so the same graph always gives the same partition."""
    import igraph as ig

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    ids = sorted(vertex_ids)
    index = {v: i for i, v in enumerate(ids)}
    g = ig.Graph(n=len(ids), edges=[(index[a], index[b]) for a, b in zip(src, dst)], directed=False)
    g.es["weight"] = [float(w) for w in weight]
    state = random.getstate()
    try:
        random.seed(seed)
        part = g.community_leiden(objective_function=objective, weights="weight", resolution=resolution,
                                  n_iterations=iterations)
    finally:
        random.setstate(state)
    smallest: dict[int, str] = {}
    for i, c in enumerate(part.membership):  # ids are sorted: the first seen is the smallest
        smallest.setdefault(c, ids[i])
    return {ids[i]: smallest[c] for i, c in enumerate(part.membership)}


def _leiden_per_component(edges: DataFrame, *, objective: str, resolution: float, total_weight: float, iterations: int,
                          seed: int) -> DataFrame:
    """Leiden on each component, one task per component. Needs edges(component, src, dst, weight)."""

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        # rows arrive in shuffle order, which depends on partitioning; igraph's result depends
        # on the edge order, so fix it
        pdf = pdf.sort_values(["src", "dst"], kind="stable", ignore_index=True)
        ids = sorted(set(pdf["src"]) | set(pdf["dst"]))
        res = resolution
        if objective == "modularity":
            # A component's modularity terms in the whole graph are A_ij - γ k_i k_j / 2m with m the
            # whole graph's weight; igraph normalises by the component's own weight m_c, so
            # γ_c = γ · m_c / m gives the same optimum as one run over the whole graph.
            res = resolution * float(pdf["weight"].sum()) / total_weight
        part = leiden_partition(ids, pdf["src"].tolist(), pdf["dst"].tolist(), pdf["weight"].tolist(), objective=objective,
                                resolution=res, iterations=iterations, seed=seed)
        return pd.DataFrame({"id": list(part), "community": list(part.values())})

    return edges.groupBy("component").applyInPandas(run, _OUT)


def label_propagation(edges: DataFrame, *, max_iter: int, checkpoint_every: int = 2, stats: CommunityStats | None = None,
                      seed: int = 42) -> DataFrame:
    """Distributed, deterministic label propagation. Needs edges(src, dst, weight)
    (undirected; each pair once). Returns id, community (a vertex id of the community).

    The rule is Raghavan, Albert & Kumara's (2007), as igraph implements it: a vertex takes
    a label carried by the largest summed edge weight among its neighbours, drawn at random
    among the tied ones (its own included when it is one; the draw is a hash of (vertex,
    label, round, seed), per vertex - a global label order would make the same labels win
    everywhere at once and flood communities together). Their paper updates vertices
    asynchronously in random order because the synchronous update oscillates (two halves of
    a bipartite part swap labels forever: 400-600 flips after 100 rounds on LFR graphs);
    here each round updates a pseudo-random half of the vertices (a hash of (vertex, round,
    seed)), which breaks those cycles and is deterministic for a seed. Keeping a dominant
    own label instead of drawing was tried: it freezes small label islands early and loses
    0.08 NMI to igraph on LFR graphs at mixing 0.3 (bench_communities.py). It stops when
    every vertex's label is among its neighbourhood's dominant ones (the
    paper's stopping rule: nothing would change), or after ``max_iter`` rounds. Lineage is
    cut every ``checkpoint_every`` rounds with a local checkpoint, as in connected components.
    """
    require_columns(edges, ["src", "dst", "weight"], "label_propagation")
    both = edges.select("src", "dst", "weight").unionByName(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "weight"))
    both = cut_lineage(both)
    labels = cut_lineage(both.select(F.col("src").alias("id")).distinct().withColumn("label", F.col("id")))
    rounds, unstable = 0, -1
    for r in range(1, max_iter + 2):
        votes = (both.join(labels.select(F.col("id").alias("dst"), "label"), "dst")
                 .groupBy(F.col("src").alias("id"), "label").agg(F.sum("weight").alias("votes")))
        tie = F.xxhash64(F.col("id"), F.col("label"), F.lit(r), F.lit(seed))
        by_id = Window.partitionBy("id")
        ranked = (votes.withColumn("_max", F.max("votes").over(by_id))
                  .withColumn("_rank", F.row_number().over(by_id.orderBy(F.desc("votes"), tie, F.asc("label")))))
        best = ranked.filter(F.col("_rank") == 1).select("id", F.col("label").alias("_best"), "_max")
        current = ranked.select("id", "label", F.col("votes").alias("_cur"))
        state = (labels.join(best, "id", "left").join(current, ["id", "label"], "left")
                 .withColumn("_stable", F.coalesce(F.col("_cur"), F.lit(0.0)) >= F.coalesce(F.col("_max"), F.lit(0.0)))
                 .persist(StorageLevel.MEMORY_AND_DISK))
        unstable = state.filter(~F.col("_stable")).count()
        log.info("label propagation: round %d, %d vertices would change label", r, unstable)
        if unstable == 0 or r > max_iter:
            state.unpersist()
            break
        rounds = r
        # Half of all vertices, chosen by a hash of (vertex, round, seed), take a label drawn
        # among their neighbourhood's dominant ones (their own included when it is one), as a
        # vertex does when its turn comes in the asynchronous algorithm; the others wait.
        move = F.pmod(F.xxhash64(F.col("id"), F.lit(r), F.lit(seed)), F.lit(2)) == 0
        new = state.select("id", F.when(move & F.col("_best").isNotNull(), F.col("_best")).otherwise(F.col("label")).alias("label"))
        new = cut_lineage(new) if r % checkpoint_every == 0 else new.persist(StorageLevel.MEMORY_AND_DISK)
        new.count()
        state.unpersist()
        labels.unpersist()
        labels = new
    if unstable:
        log.warning("label propagation stopped at communities.lpa_max_iter=%d with %d vertices still wanting another "
                    "label: the communities of the largest components are not settled; raise lpa_max_iter or "
                    "leiden_max_edges", max_iter, unstable)
    if stats is not None:
        stats.lpa_rounds = rounds
        stats.lpa_converged = unstable == 0
    # Name each community by its smallest member, like every other id in riskgraph.
    named = labels.withColumn("community", F.min("id").over(Window.partitionBy("label")))
    return named.select("id", "community")


def split_components(components: DataFrame, edges: DataFrame, *, min_component_size: int, objective: str = "CPM",
                     resolution: float = 0.1, leiden_max_edges: int = 2_000_000, leiden_iterations: int = 10,
                     lpa_max_iter: int = 20, checkpoint_every: int = 2, seed: int = 42,
                     stats: CommunityStats | None = None) -> DataFrame:
    """Communities inside components.

    Needs components(id, component) for every vertex and edges(src, dst, weight) between
    them (undirected, each pair once). Returns id, component, community, method.
    Components of fewer than ``min_component_size`` vertices stay whole; larger ones go to
    Leiden when they have at most ``leiden_max_edges`` edges, else to label propagation.
    """
    require_columns(components, ["id", "component"], "split_components(components)")
    require_columns(edges, ["src", "dst", "weight"], "split_components(edges)")
    if objective not in OBJECTIVES:
        raise ValueError(f"communities.objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "modularity" and resolution < MIN_MODULARITY_RESOLUTION:
        raise ValueError(f"resolution {resolution} is a CPM density; modularity's resolution is a multiplier around 1 "
                         f"(>= {MIN_MODULARITY_RESOLUTION}): below that every component becomes one community")
    stats = stats if stats is not None else CommunityStats()
    comp_of = components.select(F.col("id").alias("src"), "component")
    e = cut_lineage(edges.select("src", "dst", F.col("weight").cast("double")).join(comp_of, "src"))
    sizes = components.groupBy("component").agg(F.count(F.lit(1)).alias("_n"))
    n_edges = e.groupBy("component").agg(F.count(F.lit(1)).alias("_m"))
    plan = (
        sizes.join(n_edges, "component", "left")
        .select("component", F.when(F.col("_n") < min_component_size, "component")
                .when(F.coalesce("_m", F.lit(0)) <= leiden_max_edges, "leiden").otherwise("lpa").alias("method"))
    )
    plan = cut_lineage(plan)
    # bounded: one row per method
    counts = {r["method"]: r["n"] for r in plan.groupBy("method").agg(F.count(F.lit(1)).alias("n")).collect()}
    stats.components_to_leiden = int(counts.get("leiden", 0))
    stats.components_to_lpa = int(counts.get("lpa", 0))
    total_weight = float(e.agg(F.sum("weight")).first()[0] or 0.0) if objective == "modularity" else 1.0

    parts = [components.join(plan.filter(F.col("method") == "component"), "component").select("id", F.col("component").alias("community"))]
    if counts.get("leiden"):
        to_leiden = e.join(plan.filter(F.col("method") == "leiden").select("component"), "component")
        parts.append(_leiden_per_component(to_leiden, objective=objective, resolution=resolution, total_weight=total_weight,
                                           iterations=leiden_iterations, seed=seed))
    if counts.get("lpa"):
        log.info("communities: %d component(s) exceed communities.leiden_max_edges=%d: label propagation", counts["lpa"], leiden_max_edges)
        to_lpa = e.join(plan.filter(F.col("method") == "lpa").select("component"), "component")
        parts.append(label_propagation(to_lpa, max_iter=lpa_max_iter, checkpoint_every=checkpoint_every, stats=stats,
                                       seed=seed))
    community = parts[0]
    for p in parts[1:]:
        community = community.unionByName(p)
    return components.join(community, "id").join(plan, "component").select("id", "component", "community", "method")


def partition_quality(edges: DataFrame, partition: DataFrame, *, resolution: float) -> dict:
    """Modularity (Newman 2006; γ = 1) and CPM quality (density above ``resolution``, per
    unit of edge weight) of a partition of a weighted undirected graph, computed in Spark;
    only two sums reach the driver. Needs edges(src, dst, weight) (each pair once) and
    partition(id, community) covering every endpoint."""
    require_columns(edges, ["src", "dst", "weight"], "partition_quality(edges)")
    require_columns(partition, ["id", "community"], "partition_quality(partition)")
    p = partition.select("id", "community")
    e = (
        edges.join(p.withColumnRenamed("id", "src").withColumnRenamed("community", "_cs"), "src")
        .join(p.withColumnRenamed("id", "dst").withColumnRenamed("community", "_cd"), "dst")
    )
    m = e.agg(F.sum("weight")).first()[0] or 0.0
    if m == 0:
        return {"modularity": 0.0, "cpm_quality": 0.0}
    inside = e.filter(F.col("_cs") == F.col("_cd")).groupBy(F.col("_cs").alias("community")).agg(F.sum("weight").alias("L"))
    strength = (
        e.select(F.col("_cs").alias("community"), "weight").unionByName(e.select(F.col("_cd").alias("community"), "weight"))
        .groupBy("community").agg(F.sum("weight").alias("D"))
    )
    n = p.groupBy("community").agg(F.count(F.lit(1)).alias("n"))
    per = strength.join(inside, "community", "left").join(n, "community").fillna({"L": 0.0})
    r = per.agg(
        F.sum(F.col("L") / m - (F.col("D") / (2 * m)) ** 2).alias("q"),
        F.sum(F.col("L") - resolution * F.col("n") * (F.col("n") - 1) / 2).alias("cpm"),
    ).first()
    return {"modularity": float(r["q"]), "cpm_quality": float(r["cpm"]) / m}

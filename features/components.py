"""Connected components on Spark DataFrames, with GraphFrames as the cluster backend.

Both backends return ``id, component`` where ``component`` is the smallest ``id`` of the
component (so ids are deterministic and readable), every vertex is present (isolated
vertices are their own component) and ids may be strings or integers.

The DataFrame algorithm is alternating large-star / small-star (Kiveris, Lattanzi,
Mirrokni, Rastogi, Vassilvitskii: "Connected Components in MapReduce and Beyond",
SoCC 2014): O(log n) rounds, each a few joins and aggregations. We write it by hand
because GraphFrames' JVM core cannot be loaded without Maven (air-gapped default).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from riskgraph.features.validation import require_columns

log = logging.getLogger(__name__)


class ComponentsDidNotConverge(RuntimeError):
    pass


@dataclass
class CCStats:
    backend: str
    rounds: int | None = 0  # None: the backend does not report them (GraphFrames)


def graphframes_available(spark: SparkSession) -> bool:
    try:
        spark._jvm.java.lang.Class.forName("org.graphframes.GraphFramePythonAPI")  # noqa: SLF001
        return True
    except Exception:  # noqa: BLE001 - py4j wraps ClassNotFoundException generically
        return False


def choose_graph_backend(spark: SparkSession, requested: str = "auto") -> str:
    """'graphframes' when its JVM core is on the classpath (or demanded), else 'dataframe'."""
    if requested == "graphframes" and not graphframes_available(spark):
        raise RuntimeError("graph_backend=graphframes but org.graphframes is not on the classpath "
                           "(spark-submit --packages io.graphframes:graphframes-spark4_2.13:<version>)")
    backend = "graphframes" if requested == "graphframes" or (requested == "auto" and graphframes_available(spark)) else "dataframe"
    log.info("graph backend: %s", backend)
    return backend


def cut_lineage(df: DataFrame, *, reliable: bool = False) -> DataFrame:
    """Materialise ``df`` and replace its plan by a scan of the result.

    ``persist()`` keeps the whole logical plan: every later join re-analyses (and, on a
    write, prints) the full tree above it, and a DataFrame used twice appears twice. In an
    iterative or many-join job the plan grows until planning dominates (or the driver runs
    out of heap printing it). A local checkpoint (executor storage) is ~10x cheaper than a
    reliable one (checkpoint dir); clusters that lose executors (dynamic allocation, spot)
    should ask for ``reliable`` (graph.cc_reliable_checkpoint)."""
    return df.checkpoint(eager=True) if reliable else df.localCheckpoint(eager=True)


def _index_vertices(vertices: DataFrame) -> DataFrame:
    """Dense long ids 0..n-1 in ``id`` order: joins on longs are cheaper than on strings,
    and the smallest index is the smallest id, so component ids stay deterministic."""
    spark = vertices.sparkSession
    ordered = vertices.select("id").distinct().orderBy("id")
    schema = StructType([ordered.schema["id"], StructField("vid", LongType(), False)])
    return spark.createDataFrame(ordered.rdd.zipWithIndex().map(lambda r: (r[0][0], r[1])), schema)


def _canonical(edges: DataFrame) -> DataFrame:
    """Undirected edges as (u > v) pairs, self-loops and duplicates removed."""
    return (
        edges.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v"))
        .filter(F.col("u") != F.col("v"))
        .distinct()
    )


def _large_star(e: DataFrame) -> DataFrame:
    # For every node u with neighbourhood N(u): connect each neighbour v > u to
    # m(u) = min(N(u) ∪ {u}).
    both = e.unionByName(e.select(F.col("v").alias("u"), F.col("u").alias("v")))
    m = both.groupBy("u").agg(F.min("v").alias("m")).select("u", F.least("u", "m").alias("m"))
    return _canonical(both.filter(F.col("v") > F.col("u")).join(m, "u").select(F.col("v").alias("u"), F.col("m").alias("v")))


def _small_star(e: DataFrame) -> DataFrame:
    # For every node u with smaller neighbours N-(u): connect each of N-(u) ∪ {u} to
    # m = min(N-(u) ∪ {u}).  Edges are stored as (u > v), so v ranges over N-(u).
    m = e.groupBy("u").agg(F.min("v").alias("m"))
    return _canonical(e.join(m, "u").select(F.col("v").alias("u"), F.col("m").alias("v")).unionByName(m.select("u", F.col("m").alias("v"))))


def _fingerprint(e: DataFrame) -> tuple[int, int]:
    # (count, sum of 64-bit hashes): equal fingerprints of consecutive rounds mean the edge
    # set is unchanged (the fixed point: a star around each component's minimum).
    r = e.agg(F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64("u", "v").cast("decimal(38,0)")).alias("h")).first()
    return int(r["n"]), int(r["h"] or 0)


def _cc_dataframe(vertices: DataFrame, edges: DataFrame, *, max_iter: int, checkpoint_every: int, stats: CCStats,
                  reliable_checkpoint: bool = False) -> DataFrame:
    idx = cut_lineage(_index_vertices(vertices), reliable=reliable_checkpoint)
    e = (
        edges.join(idx.withColumnRenamed("id", "src").withColumnRenamed("vid", "u"), "src")
        .join(idx.withColumnRenamed("id", "dst").withColumnRenamed("vid", "v"), "dst")
        .select("u", "v")
    )
    e = cut_lineage(_canonical(e), reliable=reliable_checkpoint)
    prev = _fingerprint(e)
    converged = prev[0] == 0
    for i in range(1, max_iter + 1):
        if converged:
            break
        nxt = _small_star(_large_star(e))
        if i % checkpoint_every == 0:
            nxt = cut_lineage(nxt, reliable=reliable_checkpoint)  # the lineage grows by a few joins per round
        else:
            nxt = nxt.persist(StorageLevel.MEMORY_AND_DISK)
        fp = _fingerprint(nxt)
        e.unpersist()
        e = nxt
        stats.rounds = i
        log.info("connected components: round %d, %d edges", i, fp[0])
        converged = fp == prev
        prev = fp
    if not converged:
        raise ComponentsDidNotConverge(f"connected components did not converge in {max_iter} rounds; raise graph.cc_max_iter")
    # At the fixed point every non-minimal vertex u has exactly one edge (u, min).
    comp = idx.join(e, idx.vid == e.u, "left").select(idx.id, F.coalesce(e.v, idx.vid).alias("cvid"))
    root = idx.select(F.col("vid").alias("cvid"), F.col("id").alias("component"))
    out = comp.join(root, "cvid").select("id", "component")
    return out


def _cc_graphframes(vertices: DataFrame, edges: DataFrame, *, max_iter: int, checkpoint_every: int, stats: CCStats,
                    reliable_checkpoint: bool = True) -> DataFrame:
    from graphframes import GraphFrame

    g = GraphFrame(vertices.select("id"), edges.select("src", "dst"))
    # graphframes >= 0.10: "two_phase" is large-star/small-star too (Kiveris et al.), run to
    # convergence (max_iter only bounds the "graphx" algorithm); broadcastThreshold=-1 leaves
    # skewed joins to AQE, as its docs recommend; local checkpoints unless told otherwise.
    cc = g.connectedComponents(algorithm="two_phase", checkpointInterval=checkpoint_every, broadcastThreshold=-1,
                               use_local_checkpoints=not reliable_checkpoint)
    stats.rounds = None  # GraphFrames does not report its rounds
    # Same contract as ours: the component is named by its smallest id.
    return cc.join(cc.groupBy("component").agg(F.min("id").alias("_min")), "component").select("id", F.col("_min").alias("component"))


def connected_components(vertices: DataFrame, edges: DataFrame, *, backend: str = "dataframe", max_iter: int = 100,
                         checkpoint_every: int = 2, reliable_checkpoint: bool = False, stats: CCStats | None = None) -> DataFrame:
    """Needs vertices(id) and edges(src, dst) (undirected; self-loops and duplicates fine;
    edge endpoints missing from ``vertices`` are added). Returns id, component."""
    require_columns(vertices, ["id"], "connected_components(vertices)")
    require_columns(edges, ["src", "dst"], "connected_components(edges)")
    if vertices.schema["id"].dataType != edges.schema["src"].dataType or edges.schema["src"].dataType != edges.schema["dst"].dataType:
        raise TypeError(f"vertex id and edge src/dst must share a type; got {vertices.schema['id'].dataType}, "
                        f"{edges.schema['src'].dataType}, {edges.schema['dst'].dataType}")
    stats = stats or CCStats(backend)
    stats.backend = backend
    all_v = vertices.select("id").unionByName(edges.select(F.col("src").alias("id"))).unionByName(edges.select(F.col("dst").alias("id"))).distinct()
    impl = _cc_graphframes if backend == "graphframes" else _cc_dataframe
    return impl(all_v, edges.select("src", "dst"), max_iter=max_iter, checkpoint_every=checkpoint_every, stats=stats,
                reliable_checkpoint=reliable_checkpoint)

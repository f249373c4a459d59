"""Connected components against networkx on many random graphs."""
from __future__ import annotations

import random

import networkx as nx
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph.features.components import CCStats, choose_graph_backend, connected_components, graphframes_available

N_GRAPHS = 24


def _random_graph(seed: int):
    """Mixed shapes: sparse forests, dense blobs, long paths (many CC rounds), stars,
    self-loops, duplicate edges and isolated vertices."""
    rnd = random.Random(seed)
    n = rnd.randint(1, 80)
    nodes = [f"n{rnd.randint(0, 10**6):07d}" for _ in range(n)]
    nodes = sorted(set(nodes))
    kind = seed % 4
    edges = []
    if kind == 0:  # sparse random
        edges = [(rnd.choice(nodes), rnd.choice(nodes)) for _ in range(rnd.randint(0, n))]
    elif kind == 1:  # denser
        edges = [(rnd.choice(nodes), rnd.choice(nodes)) for _ in range(rnd.randint(n, 3 * n))]
    elif kind == 2:  # a shuffled path: worst case for label propagation
        order = nodes[:]
        rnd.shuffle(order)
        edges = list(zip(order, order[1:]))
    else:  # stars + self-loops + duplicates
        for c in nodes[: max(1, n // 10)]:
            edges += [(c, rnd.choice(nodes)) for _ in range(rnd.randint(1, 8))]
        edges += [(v, v) for v in nodes[:3]] + edges[:5]
    return nodes, edges


def _expected(nodes, edges):
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return {v: min(c) for c in nx.connected_components(g) for v in c}


@pytest.fixture(scope="module")
def random_graphs():
    return {k: _random_graph(k) for k in range(N_GRAPHS)}


def test_matches_networkx_on_random_graphs(spark, random_graphs):
    # One disjoint union of all graphs (ids prefixed per graph) keeps the suite fast;
    # components cannot cross graphs, so each graph is checked on its own below.
    vertices = [(f"g{k:02d}/{v}",) for k, (nodes, _) in random_graphs.items() for v in nodes]
    edges = [(f"g{k:02d}/{a}", f"g{k:02d}/{b}") for k, (_, es) in random_graphs.items() for a, b in es]
    stats = CCStats("dataframe")
    got = connected_components(
        spark.createDataFrame(vertices, "id string"), spark.createDataFrame(edges, "src string, dst string"),
        max_iter=100, checkpoint_every=2, stats=stats,
    )
    expected = {}
    for k, (nodes, es) in random_graphs.items():
        expected.update({f"g{k:02d}/{v}": f"g{k:02d}/{c}" for v, c in _expected(nodes, es).items()})
    assertDataFrameEqual(got, spark.createDataFrame(sorted(expected.items()), "id string, component string"))
    assert stats.rounds >= 2


def test_integer_ids_and_edge_only_vertices(spark):
    # vertex 9 only appears in an edge; 5 is isolated; 3-3 is a self-loop
    v = spark.createDataFrame([(1,), (2,), (3,), (5,)], "id long")
    e = spark.createDataFrame([(2, 1), (3, 3), (9, 2)], "src long, dst long")
    got = connected_components(v, e)
    assertDataFrameEqual(got, spark.createDataFrame([(1, 1), (2, 1), (3, 3), (5, 5), (9, 1)], "id long, component long"))


def test_no_edges_every_vertex_alone(spark):
    v = spark.createDataFrame([("b",), ("a",)], "id string")
    e = spark.createDataFrame([], "src string, dst string")
    assertDataFrameEqual(connected_components(v, e), spark.createDataFrame([("a", "a"), ("b", "b")], "id string, component string"))


def test_deterministic_across_partitionings(spark, random_graphs):
    nodes, edges = random_graphs[2]
    v = spark.createDataFrame([(x,) for x in nodes], "id string")
    e = spark.createDataFrame(edges, "src string, dst string")
    a = connected_components(v.repartition(1), e.repartition(1))
    b = connected_components(v.repartition(7), e.repartition(5).orderBy(F.rand(3)))
    assertDataFrameEqual(a, b)


def test_mismatched_id_types_fail_clearly(spark):
    with pytest.raises(TypeError, match="share a type"):
        connected_components(spark.createDataFrame([(1,)], "id long"), spark.createDataFrame([("a", "b")], "src string, dst string"))


def test_backend_choice_follows_the_classpath(spark):
    if graphframes_available(spark):  # pragma: no cover - a cluster with GraphFrames' JVM core
        assert choose_graph_backend(spark, "auto") == "graphframes"
    else:
        assert choose_graph_backend(spark, "auto") == "dataframe"
        with pytest.raises(RuntimeError, match="not on the classpath"):
            choose_graph_backend(spark, "graphframes")
    assert choose_graph_backend(spark, "dataframe") == "dataframe"


class _FakeGraphFrameCore:
    """Stands in for graphframes' classic (py4j) implementation where its JVM core is
    missing: same constructor and the same ``connectedComponents`` signature the installed
    graphframes package calls, answered by networkx with arbitrary long labels (as the real
    one returns). Proves our call is one the installed package accepts and that its answer
    is mapped onto our contract; the JVM side is the conformance test below."""

    calls: list[dict] = []

    def __init__(self, v, e):
        self._vertices, self._edges = v, e

    def connectedComponents(self, algorithm, checkpointInterval, broadcastThreshold, useLabelsAsComponents,  # noqa: N802,N803
                            use_local_checkpoints, max_iter, storage_level):
        type(self).calls.append(dict(algorithm=algorithm, checkpointInterval=checkpointInterval,
                                     broadcastThreshold=broadcastThreshold, use_local_checkpoints=use_local_checkpoints))
        ids = [r["id"] for r in self._vertices.collect()]
        g = nx.Graph()
        g.add_nodes_from(ids)
        g.add_edges_from((r["src"], r["dst"]) for r in self._edges.collect())
        label = {v: 1000 + 7 * k for k, c in enumerate(nx.connected_components(g)) for v in c}
        return self._vertices.sparkSession.createDataFrame([(v, label[v]) for v in ids], f"id {self._vertices.schema['id'].dataType.simpleString()}, component long")


def test_graphframes_backend_call_and_contract_without_jvm(spark, random_graphs, monkeypatch):
    import graphframes.classic.graphframe as classic

    monkeypatch.setattr(classic, "GraphFrame", _FakeGraphFrameCore)
    _FakeGraphFrameCore.calls.clear()
    for k in (0, 1, 3):
        nodes, edges = random_graphs[k]
        v = spark.createDataFrame([(x,) for x in nodes], "id string")
        e = spark.createDataFrame(edges, "src string, dst string")
        stats = CCStats("graphframes")
        assertDataFrameEqual(connected_components(v, e, backend="graphframes", stats=stats), connected_components(v, e))
        assert stats.rounds is None
    assert _FakeGraphFrameCore.calls[0] == dict(algorithm="two_phase", checkpointInterval=2, broadcastThreshold=-1,
                                                use_local_checkpoints=True)


def test_graphframes_backend_matches_ours(spark, random_graphs):  # pragma: no cover - needs the JVM package
    if not graphframes_available(spark):
        pytest.skip("GraphFrames' JVM core (io.graphframes:graphframes-spark4_2.13) is not on this session's classpath "
                    "(it cannot be downloaded here: no Maven Central); this conformance test runs where the cluster provides it")
    for nodes, edges in random_graphs.values():
        v = spark.createDataFrame([(x,) for x in nodes], "id string")
        e = spark.createDataFrame(edges, "src string, dst string")
        assertDataFrameEqual(connected_components(v, e, backend="graphframes"), connected_components(v, e))

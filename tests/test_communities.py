"""Communities inside components: Leiden per component and distributed label propagation
against planted partitions, LFR benchmark graphs (NMI) and networkx's modularity."""
from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest
from pyspark.sql import functions as F
from sklearn.metrics import normalized_mutual_info_score

from riskgraph.features.communities import CommunityStats, label_propagation, leiden_partition, partition_quality, split_components
from riskgraph.features.components import connected_components

EDGES = "src string, dst string, weight double"


def _ring_of_cliques(n_cliques: int, k: int, *, rings: int = 1):
    """``rings`` separate rings, each of ``n_cliques`` cliques of ``k`` vertices, consecutive
    cliques joined by one edge. Returns (edges, planted community per vertex)."""
    edges, truth = [], {}
    for r in range(rings):
        for c in range(n_cliques):
            vs = [f"r{r}c{c:02d}v{i}" for i in range(k)]
            truth.update({v: f"r{r}c{c:02d}" for v in vs})
            edges += [(a, b, 1.0) for a, b in itertools.combinations(vs, 2)]
            nxt = f"r{r}c{(c + 1) % n_cliques:02d}v0"
            edges.append((min(vs[-1], nxt), max(vs[-1], nxt), 1.0))
    return edges, truth


def _lfr(seed: int, mu: float):
    g = nx.LFR_benchmark_graph(250, 3, 1.5, mu, average_degree=8, max_degree=25, min_community=20, max_community=60, seed=seed)
    truth = {}
    for v in g:
        truth[f"v{v:04d}"] = min(g.nodes[v]["community"])
    edges = [(min(f"v{a:04d}", f"v{b:04d}"), max(f"v{a:04d}", f"v{b:04d}"), 1.0) for a, b in g.edges() if a != b]
    return edges, truth


def _communities(spark, edges, **kw):
    e = spark.createDataFrame(edges, EDGES)
    linked = e.select(F.col("src").alias("id")).unionByName(e.select(F.col("dst").alias("id"))).distinct()
    out = split_components(connected_components(linked, e), e, **kw)
    return {r["id"]: (r["community"], r["method"]) for r in out.collect()}, e


def _same_partition(got: dict, truth: dict) -> bool:
    by_truth: dict = {}
    for v, t in truth.items():
        by_truth.setdefault(t, set()).add(got[v])
    return all(len(s) == 1 for s in by_truth.values()) and len({next(iter(s)) for s in by_truth.values()}) == len(by_truth)


@pytest.mark.parametrize("objective,resolution", [("CPM", 0.1), ("CPM", 0.5), ("modularity", 1.0)], ids=["cpm-0.1", "cpm-0.5", "modularity"])
def test_leiden_recovers_a_ring_of_cliques(spark, objective, resolution):
    edges, truth = _ring_of_cliques(8, 6, rings=2)
    got, _ = _communities(spark, edges, min_component_size=4, objective=objective, resolution=resolution)
    assert {m for _, m in got.values()} == {"leiden"}
    assert _same_partition({v: c for v, (c, _) in got.items()}, truth)
    # every community is named by its smallest member
    for v, (c, _) in got.items():
        assert c == min(u for u, t in truth.items() if t == truth[v])


def test_label_propagation_recovers_a_ring_of_cliques_deterministically(spark):
    edges, truth = _ring_of_cliques(10, 5)
    e = spark.createDataFrame(edges, EDGES)
    stats = CommunityStats()
    first = {r["id"]: r["community"] for r in label_propagation(e, max_iter=20, stats=stats).collect()}
    again = {r["id"]: r["community"] for r in label_propagation(e, max_iter=20).collect()}
    assert first == again
    assert _same_partition(first, truth)
    assert 1 <= stats.lpa_rounds < 20  # converged before the safety stop


def test_components_too_big_for_a_worker_go_to_label_propagation(spark):
    edges, truth = _ring_of_cliques(6, 5)
    small, small_truth = _ring_of_cliques(2, 3)  # a separate, small component: stays whole
    small = [(f"z{a}", f"z{b}", w) for a, b, w in small]
    stats = CommunityStats()
    got, _ = _communities(spark, edges + small, min_component_size=7, leiden_max_edges=20, stats=stats)
    assert {got[v][1] for v in truth} == {"lpa"} and {got[f"z{v}"][1] for v in small_truth} == {"component"}
    assert _same_partition({v: got[v][0] for v in truth}, truth)
    assert len({got[f"z{v}"][0] for v in small_truth}) == 1
    assert (stats.components_to_lpa, stats.components_to_leiden) == (1, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_leiden_on_lfr_benchmark_graphs(spark, seed):
    """LFR graphs (Lancichinetti, Fortunato & Radicchi 2008) with mixing 0.1: planted
    communities are found with NMI >= 0.9 (Leiden, modularity), and partitions repeat."""
    edges, truth = _lfr(seed, 0.1)
    got, _ = _communities(spark, edges, min_component_size=4, objective="modularity", resolution=1.0)
    ids = sorted(truth)
    nmi = normalized_mutual_info_score([truth[v] for v in ids], [got[v][0] for v in ids])
    assert nmi >= 0.9, nmi
    # the same graph with its rows in another order (another shuffle order per component)
    again, _ = _communities(spark, edges[::-1], min_component_size=4, objective="modularity", resolution=1.0)
    assert again == got


def test_label_propagation_that_does_not_settle_says_so(spark, caplog):
    from riskgraph.features.communities import CommunityStats, label_propagation

    path = spark.createDataFrame([(f"v{i:02d}", f"v{i + 1:02d}", 1.0) for i in range(12)], EDGES)
    stats = CommunityStats()
    label_propagation(path, max_iter=1, stats=stats).count()
    assert (stats.lpa_rounds, stats.lpa_converged) == (1, False) and "still wanting another label" in caplog.text
    stats = CommunityStats()
    label_propagation(path, max_iter=50, stats=stats).count()
    assert stats.lpa_converged and stats.lpa_rounds < 50


def test_leiden_partition_is_deterministic_and_seeded():
    edges, _ = _lfr(4, 0.3)
    ids = sorted({v for a, b, _ in edges for v in (a, b)})
    run = lambda seed: leiden_partition(ids, [a for a, _, _ in edges], [b for _, b, _ in edges], [w for *_, w in edges],  # noqa: E731
                                        objective="modularity", resolution=1.0, iterations=5, seed=seed)
    state = random.getstate()
    assert run(7) == run(7)
    assert random.getstate() == state  # the caller's RNG is left alone


@pytest.mark.parametrize("seed", range(6))
def test_modularity_matches_networkx(spark, seed):
    rnd = random.Random(seed)
    g = nx.gnm_random_graph(40, 90, seed=seed)
    edges = [(f"n{min(a, b):02d}", f"n{max(a, b):02d}", float(rnd.randint(1, 3))) for a, b in g.edges()]
    nodes = sorted({v for a, b, _ in edges for v in (a, b)})
    part = {v: f"k{rnd.randint(0, 4)}" for v in nodes}
    q = partition_quality(spark.createDataFrame(edges, EDGES), spark.createDataFrame(list(part.items()), "id string, community string"),
                          resolution=0.1)
    h = nx.Graph()
    h.add_weighted_edges_from(edges)
    groups = [{v for v in nodes if part[v] == k} for k in sorted(set(part.values()))]
    assert q["modularity"] == pytest.approx(nx.community.modularity(h, [s for s in groups if s], weight="weight"))


def test_modularity_with_a_cpm_sized_resolution_is_refused(spark):
    """Modularity with resolution 0.05 returns one community per component: refused, in the
    config and in the function, with what to do instead."""
    import pydantic

    from riskgraph.config import load_config

    with pytest.raises(pydantic.ValidationError, match="is a CPM density; with objective: modularity use a resolution around 1"):
        load_config("test", overrides={"graph.communities.objective": "modularity", "graph.communities.resolution": 0.05})
    assert load_config("test", overrides={"graph.communities.objective": "modularity",
                                          "graph.communities.resolution": 1.0}).graph.communities.resolution == 1.0
    edges, _ = _ring_of_cliques(4, 5)
    with pytest.raises(ValueError, match="is a CPM density"):
        _communities(spark, edges, min_component_size=4, objective="modularity", resolution=0.05)

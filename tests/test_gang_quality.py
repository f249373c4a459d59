"""Gang quality metrics against sklearn and brute-force pair counting."""
from __future__ import annotations

import itertools
import random

import pytest
from sklearn.metrics import adjusted_rand_score

from riskgraph.features.gang_quality import SIZE_BUCKETS, gang_contingency, gang_pair_quality, gang_quality_by_size


def _labels(rnd, n, k, p_none):
    return {f"a{i}": (None if rnd.random() < p_none else f"g{rnd.randrange(k)}") for i in range(n)}


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed{s}")
def test_matches_sklearn_and_pair_counting(spark, seed):
    rnd = random.Random(seed)
    n = rnd.randint(5, 60)
    found, truth = _labels(rnd, n, rnd.randint(1, 6), 0.4), _labels(rnd, n, rnd.randint(1, 6), 0.3)
    apps = spark.createDataFrame([(a,) for a in found], "application_id string")
    f_df = spark.createDataFrame([(a, g) for a, g in found.items() if g], "application_id string, gang_id string")
    t_df = spark.createDataFrame([(a, g) for a, g in truth.items()], "application_id string, gang_id string")
    got = gang_pair_quality(gang_contingency(apps, f_df, t_df))

    solo = lambda d, a: d[a] or f"solo:{a}"  # noqa: E731
    ids = sorted(found)
    assert got["gang_ari"] == pytest.approx(adjusted_rand_score([solo(truth, a) for a in ids], [solo(found, a) for a in ids]))
    pairs = list(itertools.combinations(ids, 2))
    same_f = {p for p in pairs if found[p[0]] and found[p[0]] == found[p[1]]}
    same_t = {p for p in pairs if truth[p[0]] and truth[p[0]] == truth[p[1]]}
    assert got["pairs_found"] == len(same_f) and got["pairs_true"] == len(same_t) and got["pairs_both"] == len(same_f & same_t)
    if same_f:
        assert got["gang_pairwise_precision"] == pytest.approx(len(same_f & same_t) / len(same_f))
    if same_t:
        assert got["gang_pairwise_recall"] == pytest.approx(len(same_f & same_t) / len(same_t))


def _bucket(size: int) -> str:
    for lo, hi in SIZE_BUCKETS:
        if size >= lo and (hi is None or size <= hi):
            return f"{lo}-{hi}" if hi is not None else f"{lo}+"
    return "1"


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed{s}")
def test_quality_by_size_bucket_matches_pair_counting(spark, seed):
    rnd = random.Random(100 + seed)
    n = rnd.randint(40, 120)
    found, truth = _labels(rnd, n, rnd.randint(2, 8), 0.3), _labels(rnd, n, rnd.randint(2, 8), 0.3)
    apps = spark.createDataFrame([(a,) for a in found], "application_id string")
    f_df = spark.createDataFrame([(a, g) for a, g in found.items() if g], "application_id string, gang_id string")
    t_df = spark.createDataFrame([(a, g) for a, g in truth.items() if g], "application_id string, gang_id string")
    got = {r["size"]: r for r in gang_quality_by_size(gang_contingency(apps, f_df, t_df))}

    ids = sorted(found)
    pairs = list(itertools.combinations(ids, 2))
    size = lambda d, g: sum(1 for v in d.values() if v == g)  # noqa: E731
    for label in {_bucket(size(truth, g)) for g in set(truth.values()) if g}:
        t_pairs = [p for p in pairs if truth[p[0]] and truth[p[0]] == truth[p[1]] and _bucket(size(truth, truth[p[0]])) == label]
        hit = [p for p in t_pairs if found[p[0]] and found[p[0]] == found[p[1]]]
        assert got[label]["true_pairs"] == len(t_pairs)
        assert got[label]["recall"] == (pytest.approx(len(hit) / len(t_pairs)) if t_pairs else None)
    for label in {_bucket(size(found, g)) for g in set(found.values()) if g}:
        f_pairs = [p for p in pairs if found[p[0]] and found[p[0]] == found[p[1]] and _bucket(size(found, found[p[0]])) == label]
        hit = [p for p in f_pairs if truth[p[0]] and truth[p[0]] == truth[p[1]]]
        assert got[label]["found_pairs"] == len(f_pairs)
        assert got[label]["precision"] == (pytest.approx(len(hit) / len(f_pairs)) if f_pairs else None)


def test_subset_quality_counts_the_subsets_pairs_and_the_gangs_touching_it(spark):
    from riskgraph.features.gang_quality import gang_contingency, gang_subset_quality

    # true S (media-only): s1..s4; true T: t1..t3. Found F1 = s1 s2 s3 + t1 (one stranger), F2 = t2 t3, s4 missed.
    truth = {"s1": "S", "s2": "S", "s3": "S", "s4": "S", "t1": "T", "t2": "T", "t3": "T", "x": None}
    found = {"s1": "F1", "s2": "F1", "s3": "F1", "t1": "F1", "t2": "F2", "t3": "F2"}
    apps = spark.createDataFrame([(a,) for a in truth], "application_id string")
    cont = gang_contingency(apps, spark.createDataFrame(list(found.items()), "application_id string, gang_id string"),
                            spark.createDataFrame([(a, g) for a, g in truth.items() if g], "application_id string, gang_id string"))
    q = gang_subset_quality(cont, spark.createDataFrame([("S",)], "gang_id string"))
    assert q["recall"] == 3 / 6          # s1-s2, s1-s3, s2-s3 of the 6 true pairs
    assert q["precision"] == 3 / 6       # F1 has 6 pairs, 3 of them true; F2 does not touch S
    assert (q["true_gangs"], q["found_gangs"]) == (1, 1)
    assert q["gang_recall_macro"] == 3 / 6 and q["gangs_half_found"] == 1   # 3 of S's 4 members in F1


def test_subset_quality_per_gang_does_not_let_one_big_gang_decide(spark):
    from riskgraph.features.gang_quality import gang_contingency, gang_subset_quality

    # B: 10 members, all found together (45 of 45 pairs); S1, S2: 4 members each, split 2+2 and 1+1+1+1
    truth = {**{f"b{i}": "B" for i in range(10)}, **{f"p{i}": "S1" for i in range(4)}, **{f"q{i}": "S2" for i in range(4)}}
    found = {**{f"b{i}": "FB" for i in range(10)}, "p0": "F1", "p1": "F1", "p2": "F2", "p3": "F2",
             "q0": "G0", "q1": "G1", "q2": "G2"}
    apps = spark.createDataFrame([(a,) for a in truth], "application_id string")
    cont = gang_contingency(apps, spark.createDataFrame(list(found.items()), "application_id string, gang_id string"),
                            spark.createDataFrame(list(truth.items()), "application_id string, gang_id string"))
    q = gang_subset_quality(cont, spark.createDataFrame([("B",), ("S1",), ("S2",)], "gang_id string"))
    assert q["recall"] == pytest.approx((45 + 2) / (45 + 6 + 6))          # pairs: B dominates
    assert q["gang_recall_macro"] == pytest.approx((1 + 2 / 6 + 0) / 3)   # per gang: B 1, S1 2/6, S2 0
    assert q["gangs_half_found"] == 2                                      # B (10 of 10), S1 (2 of 4); S2's best is 1

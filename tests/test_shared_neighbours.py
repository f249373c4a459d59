"""Shared neighbours (features/shared_neighbours.py) equal a brute-force rebuild at each
application's time: for every application, scan every earlier link by hand."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from pyspark.sql import functions as F

from riskgraph.features.shared_neighbours import FEATURE_COLUMNS, neighbour_features, neighbour_pairs

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
CAPS = {"device": 4, "phone": 3, "ip": 6, "employer": 5}


def random_links(seed: int, n_apps: int = 160):
    """Applications (some applicants apply twice) with values drawn from small pools, so
    values are shared, some become hubs, and times tie (whole hours)."""
    rng = np.random.default_rng(seed)
    apps, links = [], []
    pools = {"device": 40, "phone": 45, "ip": 15, "employer": 10}
    for i in range(n_apps):
        applicant = f"C{int(rng.integers(0, int(n_apps * 0.8))):04d}"
        ts = T0 + dt.timedelta(hours=int(rng.integers(0, 24 * 20)))
        apps.append((f"A{i:04d}", applicant, ts))
        for t, pool in pools.items():
            if rng.random() < 0.85:
                links.append((f"A{i:04d}", ts, t, f"{t}:{int(rng.integers(0, pool))}"))
    bad = [(a, ts + dt.timedelta(days=int(rng.integers(1, 15)))) for a, _, ts in apps if rng.random() < 0.25]
    return apps, links, bad


def brute_pairs(apps, links, bad, caps, dates=None) -> dict:
    applicant = {a: c for a, c, _ in apps}
    known = dict(bad)
    by_value: dict[str, list] = {}
    for a, ts, t, v in links:
        by_value.setdefault(v, []).append((a, ts, t))
    out = {}
    for a, ts, t, v in links:
        if dates is not None and ts.date().isoformat() not in dates:
            continue
        earlier = [(b, tb) for b, tb, _ in by_value[v] if tb < ts]
        if not 1 <= len(earlier) < caps[t]:  # no partner through v, or v is a hub at a's time
            continue
        for b, tb in earlier:
            if applicant[b] == applicant[a]:
                continue
            p = out.setdefault((a, b), {"values": set(), "types": set(), "aa": 0.0, "ts": ts, "tb": tb})
            p["values"].add(v)
            p["types"].add(t)
            p["aa"] += 1.0 / math.log(len(earlier) + 1)
    for (a, b), p in out.items():
        p["bad"] = b in known and known[b] < p["ts"]
    return out


def frames(spark, apps, links, bad):
    return (spark.createDataFrame(links, "application_id string, ts timestamp, type string, value string"),
            spark.createDataFrame([(a, c) for a, c, _ in apps], "application_id string, applicant_id string"),
            spark.createDataFrame(bad, "application_id string, known_ts timestamp"))


@pytest.mark.parametrize("seed", [1, 2])
def test_pairs_equal_brute_force_at_each_application_time(spark, seed):
    apps, links, bad = random_links(seed)
    got = {(r["application_id"], r["partner_application_id"]): r
           for r in neighbour_pairs(*frames(spark, apps, links, bad), max_degree=CAPS).collect()}
    want = brute_pairs(apps, links, bad, CAPS)
    assert len(want) > 50 and any(len(p["values"]) >= 2 for p in want.values()) and any(p["bad"] for p in want.values())
    assert set(got) == set(want)
    for k, p in want.items():
        r = got[k]
        assert r["shared_values"] == len(p["values"]) and r["shared_types"] == sorted(p["types"])
        assert r["adamic_adar"] == pytest.approx(p["aa"], rel=1e-12)
        assert r["partner_bad_known"] == p["bad"] and r["partner_ts"] < r["application_ts"]


def test_hubs_link_nobody_and_dates_select_the_applications(spark):
    apps, links, bad = random_links(3)
    tight = {t: 2 for t in CAPS}  # a value stops linking once it has 2 earlier applications
    dates = sorted({ts.date().isoformat() for _, _, ts in apps})[5:9]
    got = {(r["application_id"], r["partner_application_id"]) for r in
           neighbour_pairs(*frames(spark, apps, links, bad), max_degree=tight, dates=dates).collect()}
    want = brute_pairs(apps, links, bad, tight, dates=set(dates))
    assert want and got == set(want)
    assert set(want) < set(brute_pairs(apps, links, bad, CAPS, dates=set(dates)))  # the caps did cut pairs
    with pytest.raises(ValueError, match="no graph.max_degree cap"):
        neighbour_pairs(*frames(spark, apps, links, bad), max_degree={"device": 3})


def test_features_aggregate_the_pairs(spark):
    apps, links, bad = random_links(4)
    pairs = neighbour_pairs(*frames(spark, apps, links, bad), max_degree=CAPS)
    got = {r["application_id"]: r for r in neighbour_features(pairs).collect()}
    want: dict[str, dict] = {}
    for (a, _), p in brute_pairs(apps, links, bad, CAPS).items():
        f = want.setdefault(a, dict.fromkeys(FEATURE_COLUMNS, 0))
        n = len(p["values"])
        f["sn_partners"] += 1
        f["sn_partners_2plus"] += n >= 2
        f["sn_max_shared"] = max(f["sn_max_shared"], n)
        f["sn_max_adamic_adar"] = max(f["sn_max_adamic_adar"], p["aa"])
        f["sn_bad_partners"] += p["bad"]
        f["sn_bad_partners_2plus"] += p["bad"] and n >= 2
    assert set(got) == set(want)
    for a, f in want.items():
        for c in FEATURE_COLUMNS:
            assert got[a][c] == pytest.approx(f[c]), (a, c)

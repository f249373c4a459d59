"""GPS burst counts against a brute-force all-pairs reference."""
from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from pyspark.testing import assertDataFrameEqual

from riskgraph.features.gps_bursts import EARTH_RADIUS_M, add_gps_burst_counts, gps_burst_edges


def _haversine(a, b):
    (la1, lo1), (la2, lo2) = a, b
    p1, p2 = math.radians(la1), math.radians(la2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lo2 - lo1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def test_matches_all_pairs_reference(spark):
    rnd = random.Random(11)
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(400):
        # three dense spots (offices) and a scatter, at two latitudes, over 3 days
        base = rnd.choice([(31.2304, 121.4737), (31.2310, 121.4745), (59.9139, 10.7522), None])
        if base is None:
            rows.append((f"a{i:03d}", t0 + dt.timedelta(minutes=rnd.randint(0, 4320)), None, None))
            continue
        lat = base[0] + rnd.gauss(0, 0.0006)
        lon = base[1] + rnd.gauss(0, 0.0009)
        rows.append((f"a{i:03d}", t0 + dt.timedelta(minutes=rnd.randint(0, 4320)), lat, lon))
    apps = spark.createDataFrame(rows, "application_id string, application_ts timestamp, gps_lat double, gps_lon double")
    got = add_gps_burst_counts(apps, radius_m=100, window_h=6, out_col="n").select("application_id", "n")
    expected = []
    for a, ta, la, lo in rows:
        n = 0
        if la is not None:
            for b, tb, lb, ob in rows:
                if lb is not None and tb < ta and (ta - tb) <= dt.timedelta(hours=6) and _haversine((la, lo), (lb, ob)) <= 100:
                    n += 1
        expected.append((a, n))
    assert sum(n for _, n in expected) > 100  # the test has real bursts in it
    assertDataFrameEqual(got, spark.createDataFrame(expected, "application_id string, n long"))


def test_burst_edges_link_only_bursts_of_k(spark):
    t0 = dt.datetime(2026, 3, 1, 9, tzinfo=dt.timezone.utc)
    office = (31.2304, 121.4737)
    rows = [  # four people at one office within 3 hours: a burst of 4
        (f"g{i}", t0 + dt.timedelta(hours=i), office[0] + 0.0001 * i, office[1]) for i in range(4)
    ] + [  # two neighbours the same evening: a pair, no burst of 3
        ("h0", t0, 59.9139, 10.7522), ("h1", t0 + dt.timedelta(hours=2), 59.9140, 10.7522),
        # the same office two days later: outside the 24 h window
        ("late", t0 + dt.timedelta(days=2), office[0], office[1]),
        ("nogps", t0, None, None),
    ]
    apps = spark.createDataFrame(rows, "application_id string, application_ts timestamp, gps_lat double, gps_lon double")
    got = gps_burst_edges(apps, radius_m=100, window_h=24, min_apps=3)
    # g2 has 2 earlier neighbours, g3 has 3: both link to all of them; g1 (1 earlier) only through them
    expected = [("app:g2", "app:g0"), ("app:g2", "app:g1"), ("app:g3", "app:g0"), ("app:g3", "app:g1"), ("app:g3", "app:g2")]
    assertDataFrameEqual(got, spark.createDataFrame(expected, "src string, dst string"))
    with pytest.raises(ValueError, match="min_apps"):
        gps_burst_edges(apps, radius_m=100, window_h=24, min_apps=1)


@pytest.mark.parametrize("lat0", [0.0, 45.0, -62.0, 78.0], ids=lambda v: f"lat{v:g}")
def test_near_pairs_at_cell_borders_and_high_latitudes(spark, lat0):
    """Dense points straddling many grid borders (cells are ~2 radii wide), at the equator, mid
    and high latitudes, with times straddling bucket borders: exactly the all-pairs pairs."""
    from riskgraph.features.gps_bursts import gps_near_pairs

    rnd = random.Random(int(lat0 * 10) + 7)
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    rows = [(f"p{i:03d}", t0 + dt.timedelta(minutes=rnd.randint(0, 600)), lat0 + rnd.uniform(-0.002, 0.002),
             10.0 + rnd.uniform(-0.004, 0.004)) for i in range(300)]
    apps = spark.createDataFrame(rows, "application_id string, application_ts timestamp, gps_lat double, gps_lon double")
    got = gps_near_pairs(apps, radius_m=60, window_h=1)
    expected = [(a, b) for a, ta, la, lo in rows for b, tb, lb, ob in rows
                if tb < ta and ta - tb <= dt.timedelta(hours=1) and _haversine((la, lo), (lb, ob)) <= 60]
    assert len(expected) > 50
    assertDataFrameEqual(got, spark.createDataFrame(expected, "application_id string, earlier_id string"))

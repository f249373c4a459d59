"""Point-in-time network features: a brute-force reference and a planted-leak test."""
from __future__ import annotations

import datetime as dt
import random

import networkx as nx
import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph.features.network import (
    add_prior_sharing_counts,
    application_links,
    assemble_features,
    bad_known_events,
    compute_pit_components,
    pivot_sharing_counts,
    sweep_components,
)
from riskgraph.features.gps_bursts import add_gps_burst_counts
from riskgraph.schemas import feature_specs, gps_burst_column

H = 3_600_000_000  # one hour in µs


def _brute_force(links: pd.DataFrame, bad: dict[str, int], burst_hours: int, window_h: float | None = None) -> pd.DataFrame:
    """For each application: build the graph of strictly earlier links, add the
    application, and read its component directly. With a window, a value's uses split into
    epochs wherever two consecutive uses are more than ``window_h`` apart, and each epoch is
    its own vertex."""
    rows = []
    apps = links.groupby("application_id")["t"].first()
    for a, t in apps.items():
        earlier = links[links["t"] < t]
        mine = links[links["application_id"] == a]
        uses = pd.concat([earlier, mine]).sort_values("t", kind="mergesort")
        if window_h is None:
            uses = uses.assign(node=uses["value"])
        else:
            epoch = uses.groupby("value")["t"].transform(lambda s: (s.diff() > window_h * H).cumsum())
            uses = uses.assign(node=uses["value"] + "#" + epoch.astype(str))
        before, own = uses[uses["t"] < t], uses[uses["application_id"] == a]
        g = nx.Graph()
        g.add_node(("app", a))
        g.add_edges_from((("app", r.application_id), ("val", r.node)) for r in uses.itertuples())
        members = [n[1] for n in nx.node_connected_component(g, ("app", a)) if n[0] == "app" and n[1] != a]
        times = [apps[m] for m in members]
        rows.append((a, int(own["node"].isin(before["node"]).sum()), 1 + len(members),
                     sum(1 for m in members if m in bad and bad[m] < t),
                     (t - min(times + [t])) / 86_400e6,
                     sum(1 for x in times if t - burst_hours * H <= x < t)))
    return pd.DataFrame(rows, columns=["application_id", "pit_linked_attribute_types", "pit_component_size",
                                       "pit_component_bad_known", "pit_component_age_days", "_burst"])


@pytest.mark.parametrize("window_h", [None, 5.0], ids=["no-window", "window-5h"])
@pytest.mark.parametrize("seed", range(25), ids=lambda s: f"seed{s}")
def test_sweep_matches_brute_force(seed, window_h):
    rnd = random.Random(seed)
    n_apps, n_vals = rnd.randint(2, 40), rnd.randint(1, 25)
    rows = []
    for i in range(n_apps):
        t = rnd.randint(0, 60) * H // 2  # coarse times: many ties
        for v in rnd.sample(range(n_vals), rnd.randint(1, min(3, n_vals))):
            rows.append((f"a{i:02d}", t, f"v{v}", 0))
    links = pd.DataFrame(rows, columns=["application_id", "t", "value", "kind"])
    app_t = links.groupby("application_id")["t"].first()
    bad = {a: t + rnd.randint(0, 20) * H for a, t in app_t.items() if rnd.random() < 0.4}
    events = pd.concat([links, pd.DataFrame([(a, k, None, 1) for a, k in bad.items()], columns=links.columns)])
    window_days = None if window_h is None else window_h / 24
    got = sweep_components(events.sample(frac=1, random_state=seed), burst_hours=6, window_days=window_days)
    got = got.sort_values("application_id").reset_index(drop=True)
    exp = _brute_force(links, bad, 6, window_h).sort_values("application_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, exp, check_dtype=False)


def _ts(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=dt.timezone.utc)


def test_no_future_label_or_link_reaches_a_row(spark, cfg_factory):
    """a1 (day 1) and a2 (day 3) share a device; a2's fraud becomes known on day 10.
    a1 must not see a2 (a future link); a3 (day 5, same device) sees a2 but not its label
    (known later); a4 (day 12, same device) sees both the link and the label."""
    cfg = cfg_factory(**{"features.shared_neighbour_types": []})  # sn_* come from their own step (tests/test_shared_neighbours.py)
    apps = spark.createDataFrame(
        [("a1", "p1", _ts(1)), ("a2", "p2", _ts(3)), ("a3", "p3", _ts(5)), ("a4", "p4", _ts(12)), ("a5", "p5", _ts(12))],
        "application_id string, applicant_id string, application_ts timestamp",
    )
    edges = spark.createDataFrame(
        [("app:a1", "device:D", _ts(1)), ("app:a2", "device:D", _ts(3)), ("app:a3", "device:D", _ts(5)),
         ("app:a4", "device:D", _ts(12)), ("app:a5", "phone:P", _ts(12))],
        "src string, dst string, ts timestamp",
    )
    outcomes = spark.createDataFrame([("a2", "fraud_confirmed", _ts(10)), ("a1", "good", _ts(2))],
                                     "application_id string, outcome string, known_ts timestamp")
    bad = bad_known_events(outcomes)
    counts = add_prior_sharing_counts(application_links(edges, apps), bad, windows_days=(7, 30))
    types = tuple(cfg.graph.sources)
    sharing = pivot_sharing_counts(counts, attribute_types=types, windows_days=(7, 30))
    pit = compute_pit_components(counts, bad, attribute_types=types, max_degree=dict(cfg.graph.max_degree), burst_hours=24, buckets=2)
    cols = ["application_id", "prior_apps_same_device", "prior_apps_same_device_7d", "prior_bad_same_device",
            "pit_component_size", "pit_component_bad_known", "pit_linked_attribute_types"]
    all_cols = [s.name for s in feature_specs(cfg)]
    burst_col = gps_burst_column(cfg.features.gps_burst_radius_m, cfg.features.gps_burst_hours)
    no_gps = apps.withColumn("gps_lat", F.lit(None).cast("double")).withColumn("gps_lon", F.lit(None).cast("double"))
    bursts = add_gps_burst_counts(no_gps, radius_m=100, window_h=24, out_col=burst_col).select("application_id", burst_col)
    got = assemble_features(apps, sharing, pit, bursts, columns=all_cols, burst_hours=24).select(*cols)
    expected = spark.createDataFrame(
        [("a1", 0, 0, 0, 1, 0, 0), ("a2", 1, 1, 0, 2, 0, 1), ("a3", 2, 2, 0, 3, 0, 1),
         ("a4", 3, 1, 1, 4, 1, 1), ("a5", 0, 0, 0, 1, 0, 0)],
        "application_id string, prior_apps_same_device long, prior_apps_same_device_7d long, prior_bad_same_device long, "
        "pit_component_size long, pit_component_bad_known long, pit_linked_attribute_types long",
    )
    assertDataFrameEqual(got, expected)
    # a row lost by the sharing join is not papered over with zeros: the null-rate gate sees it
    lost = assemble_features(apps, sharing.filter(F.col("application_id") != "a3"), pit, bursts, columns=all_cols, burst_hours=24)
    assert [r["application_id"] for r in lost.filter(F.col("prior_apps_same_applicant").isNull()).collect()] == ["a3"]
    # more buckets when the events outgrow events_per_bucket: the same rows
    many = compute_pit_components(counts, bad, attribute_types=types, max_degree=dict(cfg.graph.max_degree), burst_hours=24,
                                  buckets=1, events_per_bucket=1)
    assertDataFrameEqual(many, pit)


def test_point_in_time_super_node_stops_linking(spark, cfg_factory):
    """With a device cap of 2, the third and later users of a device are not linked through
    it, whatever the device's final degree."""
    cfg = cfg_factory(**{"graph.max_degree.device": 2})
    apps = spark.createDataFrame([(f"a{i}", f"p{i}", _ts(1 + i)) for i in range(5)],
                                 "application_id string, applicant_id string, application_ts timestamp")
    edges = spark.createDataFrame([(f"app:a{i}", "device:HUB", _ts(1 + i)) for i in range(5)], "src string, dst string, ts timestamp")
    bad = spark.createDataFrame([], "application_id string, known_ts timestamp")
    counts = add_prior_sharing_counts(application_links(edges, apps), bad, windows_days=(7,))
    pit = compute_pit_components(counts, bad, attribute_types=("device",), max_degree={"device": 2}, burst_hours=24, buckets=2)
    got = pit.select("application_id", "pit_component_size")
    # a0 alone; a1 joins a0 (prior degree 1 < 2); a2..a4 see prior degree >= 2: not linked
    assertDataFrameEqual(got, spark.createDataFrame([("a0", 1), ("a1", 2)], "application_id string, pit_component_size long"))
    assert cfg.graph.max_degree["device"] == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reuse_counts_equal_a_brute_force_count_at_each_application_time(spark, seed):
    """reuse_applicants_same_<t>: distinct *other* applicants who used the application's value
    strictly before its time (the most over its values when it has several), whatever their
    repeat applications, ties in time and bad outcomes becoming known at the same moments;
    the reuse_values column counts the application's values at or over the threshold.
    Checked against a plain loop over every application on a random world."""
    rnd = random.Random(seed)
    n_apps, types = rnd.randint(20, 60), ("device", "phone")
    apps, edges, outcomes = [], [], []
    for i in range(n_apps):
        ts = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=rnd.randint(0, 40) * 6)
        apps.append((f"a{i:02d}", f"p{rnd.randint(0, n_apps // 3)}", ts))
        for t in types:
            for v in rnd.sample(range(6), rnd.choice([0, 1, 1, 1, 2])):  # none, one or two values of a type
                edges.append((f"app:a{i:02d}", f"{t}:{t[0]}{v}", ts))
        if rnd.random() < 0.4:  # bad outcomes known at times that tie with applications
            outcomes.append((f"a{i:02d}", "fraud_confirmed", ts + dt.timedelta(hours=rnd.randint(0, 20) * 6)))
    apps_df = spark.createDataFrame(apps, "application_id string, applicant_id string, application_ts timestamp")
    edges_df = spark.createDataFrame(edges, "src string, dst string, ts timestamp")
    bad = bad_known_events(spark.createDataFrame(outcomes, "application_id string, outcome string, known_ts timestamp"))
    counts = add_prior_sharing_counts(application_links(edges_df, apps_df), bad, windows_days=(7,), applicants=apps_df)
    got = (pivot_sharing_counts(counts, attribute_types=types, windows_days=(7,), reuse_types=types, reuse_min_applicants=2)
           .select("application_id", "reuse_applicants_same_device", "reuse_applicants_same_phone", "reuse_values_2plus_applicants")
           .toPandas().set_index("application_id").sort_index())

    who = {a: (p, ts) for a, p, ts in apps}
    uses = pd.DataFrame([(s[4:], d.split(":")[0], d, who[s[4:]][0], ts) for s, d, ts in edges],
                        columns=["application_id", "type", "value", "applicant_id", "ts"])
    exp = {}
    for a, (p, ts) in who.items():
        per_type, busy = {}, 0
        for t in types:
            mine = uses[(uses.application_id == a) & (uses.type == t)]
            n = [uses[(uses.value == v) & (uses.ts < ts) & (uses.applicant_id != p)].applicant_id.nunique() for v in mine.value]
            per_type[t] = max(n) if n else None
            busy += sum(1 for x in n if x >= 2)
        exp[a] = (per_type["device"], per_type["phone"], busy)
    expected = pd.DataFrame.from_dict(exp, orient="index", columns=got.columns).sort_index()
    expected.index.name = "application_id"
    pd.testing.assert_frame_equal(got.astype(float), expected.astype(float))
    assert (got.reuse_values_2plus_applicants > 1).any() and (got.reuse_applicants_same_device > 1).any()  # the world reuses


def test_vertices_count_distinct_applicants_and_the_last_use(spark):
    """graph/vertices is the reuse table an analyst queries: one applicant applying three
    times from a device is one applicant, not three."""
    from riskgraph.features.graph import build_edges, build_vertices, column_links

    apps = spark.createDataFrame(
        [("a1", "p1", _ts(1), "D"), ("a2", "p1", _ts(2), "D"), ("a3", "p1", _ts(3), "D"), ("a4", "p2", _ts(4), "D"),
         ("a5", "p3", _ts(5), "E")],
        "application_id string, applicant_id string, application_ts timestamp, device_id string")
    v = build_vertices(apps, build_edges(column_links(apps, types=("device",)))).toPandas().set_index("id")
    assert v.loc["device:D", ["degree", "applicants"]].tolist() == [4, 2]
    utc = lambda x: pd.Timestamp(x).tz_convert(None)  # noqa: E731  toPandas gives naive times in the session's zone (UTC)
    assert v.loc["device:D", "first_seen_ts"] == utc(_ts(1)) and v.loc["device:D", "last_seen_ts"] == utc(_ts(4))
    assert v.loc["device:E", ["degree", "applicants"]].tolist() == [1, 1]
    assert (v[v.type == "application"].applicants == 1).all()

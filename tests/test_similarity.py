"""Media similarity links: calibrated thresholds, point in time, hubs, blacklist hits, features."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from riskgraph.features.similarity import (blacklist_features, blacklist_media_hits, blacklist_value_hits,
                                           calibrate_threshold, linked_pairs, media_links, similarity_features)

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
ITEMS = "media_key string, application_id string, applicant_id string, kind string, item_ts timestamp"
NB = "query_key string, neighbour_key string, score float"


def _t(days: float) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


def test_threshold_is_the_false_match_quantile_of_cross_owner_pairs():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(400, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    owners = np.arange(400) // 2  # pairs of one owner are skipped
    v[1] = v[0]  # same owner, identical: not a cross-owner pair
    v[3] = v[2] * 1.0  # same owner
    v[10] = v[20]  # two strangers with one identical item (a stock phrase): left out, counted
    cal = calibrate_threshold(v, owners, false_match_rate=1e-3)
    s = v @ v.T
    iu = np.triu_indices(400, 1)
    keep = (owners[iu[0]] != owners[iu[1]]) & (s[iu] < 1 - 1e-6)
    assert cal["n_pairs"] == int(keep.sum())
    assert cal["n_identical"] == 1
    assert cal["threshold"] == pytest.approx(float(np.quantile(s[iu][keep], 1 - 1e-3, method="higher")), abs=1e-6)
    assert 0.0 < (s[iu][keep] >= cal["threshold"]).mean() <= 1.5e-3
    with pytest.raises(ValueError, match="at least 50 items"):
        calibrate_threshold(v[:10], owners[:10], false_match_rate=1e-3)
    with pytest.raises(ValueError, match="cannot estimate"):
        calibrate_threshold(v[:60], owners[:60], false_match_rate=1e-5)


def _items(spark):
    return spark.createDataFrame([
        ("m1", "A1", "P1", "selfie", _t(0)),
        ("m2", "A2", "P2", "selfie", _t(1)),
        ("m3", "A3", "P3", "selfie", _t(2)),
        ("m3b", "A3", "P3", "id_photo", _t(2)),   # same application as m3: never linked to it
        ("m4", "A4", "P4", "selfie", _t(2)),      # same time as m3: neither is earlier
    ], ITEMS)


def test_links_point_to_strictly_earlier_items_of_other_applications(spark):
    items = _items(spark)
    nb = spark.createDataFrame([
        ("m2", "m1", 0.95),   # later -> earlier
        ("m1", "m3", 0.91),   # found from the earlier side only: still m3 -> m1
        ("m3", "m1", 0.90),   # the same pair from the other side: max kept
        ("m3", "m3b", 0.99),  # same application
        ("m3", "m4", 0.99),   # same time
        ("m2", "m3", 0.80),   # below the threshold
    ], NB)
    got = {(r["media_key"], r["anchor_key"]): round(r["similarity"], 2) for r in linked_pairs(nb, items, threshold=0.85).collect()}
    assert got == {("m2", "m1"): 0.95, ("m3", "m1"): 0.91}


def test_an_item_like_many_earlier_strangers_is_a_hub_and_links_nobody(spark):
    # a chain store: 5 strangers' photos a day apart, all alike; hub from 3 earlier applicants
    rows = [(f"s{i}", f"S{i}", f"Q{i}", "selfie", _t(i)) for i in range(5)]
    rows += [("g1", "G1", "R1", "selfie", _t(10)), ("g2", "G2", "R2", "selfie", _t(11))]  # a gang room: two photos
    items = spark.createDataFrame(rows, ITEMS)
    pairs = [(f"s{j}", f"s{i}", 0.9) for j in range(5) for i in range(j)] + [("g2", "g1", 0.93)]
    pairs = spark.createDataFrame(pairs, "media_key string, anchor_key string, similarity double")
    out = media_links(items, pairs, modality="background", hub_min_applicants=3, hub_window_days=30)
    hub = {r["media_key"]: (r["is_hub"], r["earlier_applicants"]) for r in out.filter(F.col("media_key") == F.col("value")).collect()}
    assert hub == {"s0": (False, 0), "s1": (False, 1), "s2": (False, 2), "s3": (True, 3), "s4": (True, 4),
                   "g1": (False, 0), "g2": (False, 1)}
    live = {(r["media_key"], r["value"]) for r in out.filter("links").collect()}
    # own anchors of non-hub items, links among the first three, the gang's link; nothing of s3/s4
    assert live == {("s0", "s0"), ("s1", "s1"), ("s2", "s2"), ("s1", "s0"), ("s2", "s0"), ("s2", "s1"),
                    ("g1", "g1"), ("g2", "g2"), ("g2", "g1")}
    # the window: the same crowd spread over 100 days is no hub at a 30-day window
    far = spark.createDataFrame([(f"s{i}", f"S{i}", f"Q{i}", "selfie", _t(40 * i)) for i in range(5)], ITEMS)
    out = media_links(far, pairs, modality="background", hub_min_applicants=3, hub_window_days=30)
    assert out.filter("is_hub").count() == 0


def test_a_crowd_in_one_town_is_no_hub_but_one_across_the_country_is(spark):
    """hub_spread_km: five strangers' photos of one decor a day apart; taken within a few km
    (an intermediary's back office) they keep linking, taken in five cities (a chain's decor)
    they are a hub from the third earlier applicant on; without GPS the count alone decides."""
    gps_items = ITEMS + ", gps_lat double, gps_lon double"
    pairs = spark.createDataFrame([(f"s{j}", f"s{i}", 0.9) for j in range(5) for i in range(j)],
                                  "media_key string, anchor_key string, similarity double")
    town = [(f"s{i}", f"S{i}", f"Q{i}", "selfie", _t(i), 31.23 + 0.01 * i, 121.47) for i in range(5)]   # ~1 km apart
    country = [(f"s{i}", f"S{i}", f"Q{i}", "selfie", _t(i), 23.0 + 3.0 * i, 113.0 + 1.5 * i) for i in range(5)]
    no_gps = [(f"s{i}", f"S{i}", f"Q{i}", "selfie", _t(i), None, None) for i in range(5)]

    def hubs(rows):
        out = media_links(spark.createDataFrame(rows, gps_items), pairs, modality="background", hub_min_applicants=3,
                          hub_window_days=30, hub_spread_km=50)
        own = out.filter(F.col("media_key") == F.col("value"))
        return ({r["media_key"] for r in own.filter("is_hub").collect()},
                {r["media_key"]: r["earlier_median_km"] for r in own.collect()})

    hub, km = hubs(town)
    assert hub == set() and km["s0"] is None and 1.0 < km["s3"] < 3.0   # s3's earlier: 3.3, 2.2, 1.1 km -> 2.2
    hub, km = hubs(country)
    assert hub == {"s3", "s4"} and km["s3"] > 300
    hub, _ = hubs(no_gps)
    assert hub == {"s3", "s4"}  # no distance known, no age rule: the count decides
    with pytest.raises(Exception, match="gps_lat"):
        media_links(spark.createDataFrame(town, gps_items).drop("gps_lat"), pairs, modality="background",
                    hub_min_applicants=3, hub_window_days=30, hub_spread_km=50)


def test_a_crowd_spread_over_months_is_a_hub_but_one_burst_is_not(spark):
    """hub_age_days: five strangers' photos of one decor in one town; a week apart each (a bank
    lobby visited all year) they are a hub once the earlier ones are a median of more than 10
    days old; within hours of each other (a gang's burst) they keep linking, with or without
    GPS."""
    gps_items = ITEMS + ", gps_lat double, gps_lon double"
    pairs = spark.createDataFrame([(f"s{j}", f"s{i}", 0.9) for j in range(5) for i in range(j)],
                                  "media_key string, anchor_key string, similarity double")

    def hubs(step_days, lat):
        rows = [(f"s{i}", f"S{i}", f"Q{i}", "selfie", _t(step_days * i), lat, 121.47 if lat is not None else None) for i in range(5)]
        out = media_links(spark.createDataFrame(rows, gps_items), pairs, modality="background", hub_min_applicants=3,
                          hub_window_days=365, hub_spread_km=50, hub_age_days=10)
        own = out.filter(F.col("media_key") == F.col("value"))
        return {r["media_key"] for r in own.filter("is_hub").collect()}, {r["media_key"]: r["earlier_median_days"] for r in own.collect()}

    hub, days = hubs(7, 31.23)
    assert hub == {"s3", "s4"} and days["s3"] == 14.0 and days["s0"] is None  # s3's earlier: 21, 14, 7 days
    assert hubs(7, None)[0] == {"s3", "s4"}     # without GPS the age still decides
    assert hubs(0.05, 31.23)[0] == set()        # a burst in one town: no hub
    assert hubs(0.05, None)[0] == set()         # a burst without GPS: the age says no, the distance cannot say yes


def test_a_travelling_intermediary_is_a_hub_over_a_year_but_not_inside_the_link_window(spark):
    """The voice setting (hub_window_days = graph.link_window_days): one intermediary's voice on
    four calls of a gang in another town five months ago and on three calls of this week's gang.
    Counted over a year, the earlier crowd is old and far, and this week's calls are hub items
    that link nobody; counted inside the link window, only this week's gang is the crowd, so its
    calls link to each other. The old gang is never glued to the new one either way: the graph
    links two uses of a value only inside the link window."""
    gps_items = ITEMS + ", gps_lat double, gps_lon double"
    rows = [(f"o{i}", f"O{i}", f"OP{i}", "call", _t(0.1 * i), 39.90, 116.40) for i in range(4)]
    rows += [(f"n{i}", f"N{i}", f"NP{i}", "call", _t(150 + 0.1 * i), 31.23, 121.47) for i in range(3)]
    keys = [r[0] for r in rows]
    pairs = spark.createDataFrame([(keys[j], keys[i], 0.97) for j in range(len(keys)) for i in range(j)],
                                  "media_key string, anchor_key string, similarity double")
    items = spark.createDataFrame(rows, gps_items)

    def live(window_days):
        out = media_links(items, pairs, modality="voice", hub_min_applicants=4, hub_window_days=window_days,
                          hub_spread_km=50, hub_age_days=30, max_link_km=50)
        hub = {r["media_key"] for r in out.filter("is_hub").select("media_key").distinct().collect()}
        links = {(r["media_key"], r["value"]) for r in out.filter("links").filter(F.col("media_key") != F.col("value")).collect()}
        return hub, links

    hub, links = live(365)
    assert hub == {"n0", "n1", "n2"} and links == {("o1", "o0"), ("o2", "o0"), ("o2", "o1"), ("o3", "o0"), ("o3", "o1"), ("o3", "o2")}
    hub, links = live(14)
    assert hub == set()
    assert {("n1", "n0"), ("n2", "n0"), ("n2", "n1")} <= links
    assert not any(a.startswith("n") and b.startswith("o") for a, b in links)  # 1,000 km apart: evidence, not a link


def test_far_links_stay_evidence_and_unknown_distance_needs_the_stricter_point(spark):
    """max_link_km / unknown_distance_threshold: a pair 1,000 km apart is a row but no link; a pair
    with no GPS on one side links only at the stricter threshold; a near pair links."""
    gps_items = ITEMS + ", gps_lat double, gps_lon double"
    items = spark.createDataFrame([("a", "A1", "P1", "call", _t(0), 31.23, 121.47), ("b", "A2", "P2", "call", _t(1), 31.24, 121.47),
                                   ("c", "A3", "P3", "call", _t(2), 39.90, 116.40), ("d", "A4", "P4", "call", _t(3), None, None),
                                   ("e", "A5", "P5", "call", _t(4), None, None)], gps_items)
    pairs = spark.createDataFrame([("b", "a", 0.95), ("c", "a", 0.99), ("d", "a", 0.95), ("e", "a", 0.985)],
                                  "media_key string, anchor_key string, similarity double")
    out = media_links(items, pairs, modality="voice", hub_min_applicants=10, hub_window_days=30, max_link_km=50,
                      unknown_distance_threshold=0.98)
    got = {r["media_key"]: r["links"] for r in out.filter(F.col("value") == "a").filter(F.col("media_key") != "a").collect()}
    assert got == {"b": True, "c": False, "d": False, "e": True}
    assert out.filter(F.col("media_key") == F.col("value")).filter(~F.col("links")).count() == 0  # own rows always link


def test_a_room_links_only_within_max_link_days(spark):
    """max_link_days: the same room photographed 5 hours after the anchor links; 40 days after it
    (a colleague at the office, a family member at home) the row stays as evidence only."""
    gps_items = ITEMS + ", gps_lat double, gps_lon double"
    items = spark.createDataFrame([("a", "A1", "P1", "selfie", _t(0), 31.23, 121.47), ("b", "A2", "P2", "selfie", _t(5 / 24), 31.23, 121.47),
                                   ("c", "A3", "P3", "selfie", _t(40), 31.23, 121.47)], gps_items)
    pairs = spark.createDataFrame([("b", "a", 0.95), ("c", "a", 0.95)], "media_key string, anchor_key string, similarity double")

    def got(days):
        out = media_links(items, pairs, modality="background", hub_min_applicants=10, hub_window_days=3, max_link_km=50,
                          max_link_days=days)
        return {r["media_key"]: r["links"] for r in out.filter(F.col("value") == "a").collect()}

    assert got(1.0) == {"a": True, "b": True, "c": False}
    assert got(None) == {"a": True, "b": True, "c": True}


def test_blacklist_hits_count_only_after_the_entry_was_added(spark):
    app_items = spark.createDataFrame([("c1", "A1", "P1", "call", _t(5)), ("c2", "A2", "P2", "call", _t(20))], ITEMS)
    samples = spark.createDataFrame([("b1", "BL1", _t(10))], "media_key string, entry_id string, added_ts timestamp")
    nb = spark.createDataFrame([("c1", "b1", 0.97), ("c2", "b1", 0.96)], NB)
    hits = blacklist_media_hits(nb, app_items, samples, modality="voice", threshold=0.9).collect()
    assert [(r["application_id"], r["value"], r["blacklist_kind"]) for r in hits] == [("A2", "BL1", "voice")]
    apps = spark.createDataFrame([("A1", _t(5), "d1", "p1"), ("A2", _t(20), "d1", "p9")],
                                 "application_id string, application_ts timestamp, device_id string, phone_key string")
    entries = spark.createDataFrame([("BL2", "device", "d1", _t(10)), ("BL3", "phone", "p9", _t(30))],
                                    "entry_id string, kind string, value_key string, added_ts timestamp")
    exact = blacklist_value_hits(apps, entries).collect()
    assert [(r["application_id"], r["value"], r["blacklist_kind"]) for r in exact] == [("A2", "BL2", "device")]
    both = blacklist_media_hits(nb, app_items, samples, modality="voice", threshold=0.9).unionByName(blacklist_value_hits(apps, entries))
    feats = {r["application_id"]: r.asDict() for r in blacklist_features(both, ("voice", "background", "device", "phone")).collect()}
    assert feats["A2"]["blacklist_hits"] == 2 and feats["A2"]["blacklist_voice_hit"] == 1 and feats["A2"]["blacklist_phone_hit"] == 0


def test_similarity_features_use_only_outcomes_known_before_the_application(spark):
    links = spark.createDataFrame([
        ("A3", _t(30), "voice", "A1", 0.95, False, True),
        ("A3", _t(30), "voice", "A2", 0.97, False, True),
        ("A3", _t(30), "voice", "A3", 1.0, False, True),   # own item: not a neighbour
        ("A4", _t(31), "voice", "A1", 0.99, True, False),  # a hub item: no link
    ], "application_id string, ts timestamp, type string, anchor_application_id string, similarity double, is_hub boolean, links boolean")
    bad = spark.createDataFrame([("A1", _t(20)), ("A2", _t(40))], "application_id string, known_ts timestamp")
    f = {r["application_id"]: r.asDict() for r in similarity_features(links, bad, modality="voice").collect()}
    assert (f["A3"]["sim_voice_prior_apps"], f["A3"]["sim_voice_prior_bad"]) == (2, 1)
    assert f["A3"]["sim_voice_max_bad_similarity"] == pytest.approx(0.95)  # A2's bad outcome came later
    assert f["A3"]["sim_voice_is_hub"] == 0 and f["A4"]["sim_voice_is_hub"] == 1
    assert f["A4"]["sim_voice_prior_apps"] is None  # filled with 0 by assemble_features


def test_operating_points_equal_a_brute_force_count():
    """A model card's operating points on labelled vectors: each threshold is the rate's
    quantile of the different-label pairs, its true-match rate the share of same-label pairs
    above it; rates the sample cannot estimate are left out."""
    from riskgraph.embedders.base import l2_normalise
    from riskgraph.features.similarity import operating_points

    rng = np.random.default_rng(1)
    place = np.repeat(np.arange(60), 3)
    emb = l2_normalise(rng.normal(size=(60, 16))[place] + 0.7 * rng.normal(size=(180, 16)))
    ops = {o["false_match_rate"]: o for o in operating_points(emb, place, false_match_rates=(1e-2, 1e-3, 1e-5))}
    assert set(ops) == {1e-2, 1e-3}  # 15,930 impostor pairs cannot estimate 1e-5
    s = emb @ emb.T
    iu = np.triu_indices(180, 1)
    same = place[iu[0]] == place[iu[1]]
    imp, gen = s[iu][~same], s[iu][same]
    for f, o in ops.items():
        assert o["impostor_pairs"] == len(imp) and o["genuine_pairs"] == len(gen)
        assert o["threshold"] == pytest.approx(float(np.quantile(imp, 1 - f, method="higher")), abs=1e-6)
        assert abs(np.mean(imp >= o["threshold"]) - f) < 2.0 / len(imp)
        assert o["true_match_rate"] == pytest.approx(np.mean(gen >= o["threshold"]), abs=1e-4)


def test_model_calibration_takes_the_models_operating_point():
    """similarity.<m>.calibration: model picks the folder's threshold at exactly the configured
    false-match rate, and without one says what to do."""
    from types import SimpleNamespace

    from riskgraph.jobs.link_media import model_threshold

    emb = SimpleNamespace(model_id="voice-cnn", model_version="v1", operating_points=[
        {"false_match_rate": 1e-3, "threshold": 0.88, "true_match_rate": 0.8},
        {"false_match_rate": 1e-4, "threshold": 0.93, "true_match_rate": 0.46}])
    got = model_threshold(emb, "voice", 1e-4)
    assert (got["source"], got["threshold"], got["true_match_rate_dev"], got["model_version"]) == ("model", 0.93, 0.46, "v1")
    with pytest.raises(ValueError, match=r"no operating point at false_match_rate 1e-05.*calibration: data"):
        model_threshold(emb, "voice", 1e-5)
    with pytest.raises(ValueError, match="it has none"):
        model_threshold(SimpleNamespace(model_id="m", model_version="v", operating_points=None), "background", 1e-4)

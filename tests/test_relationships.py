"""Relationship inference (features/relationships.py): hand-made pairs get the relation and
evidence the rules in docs/relationships.md say; the point-in-time applicant counts equal a
brute-force count; a gang link is dropped only when the relation explains every shared type;
the scores equal a hand count."""
from __future__ import annotations

import datetime as dt

import numpy as np

from riskgraph.features.relationships import (
    applicants_so_far,
    classify,
    explained_pairs,
    pair_cues,
    relationship_quality,
    truth_relation,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
APP_COLS = ["application_id", "applicant_id", "application_ts", "ip", "device_id", "phone_key", "email_key", "employer",
            "referrer_code", "gps_lat", "gps_lon"]
APP_SCHEMA = ("application_id string, applicant_id string, application_ts timestamp, ip string, device_id string, phone_key string, "
              "email_key string, employer string, referrer_code string, gps_lat double, gps_lon double")
RULES = dict(home_radius_m=30.0, household_max=4, friends_max=5)


def _app(i, who, hours, ip=None, dev=None, phone=None, email=None, emp=None, ref=None, lat=None, lon=None):
    return (f"A{i}", who, T0 + dt.timedelta(hours=hours), ip, dev, phone, email, emp, ref, lat, lon)


def test_rules_on_hand_made_pairs(spark):
    d = 0.0001  # ~11 m of latitude
    apps = [
        _app(1, "C1", 0, ip="1.1.1.1", lat=30.0, lon=114.0),  # family: home IP, one building, one name
        _app(2, "C2", 5, ip="1.1.1.1", lat=30.0 + d, lon=114.0),
        _app(3, "C3", 0, ip="2.2.2.2", lat=31.0, lon=114.0),  # flatmates: home IP, other names
        _app(4, "C4", 9, ip="2.2.2.2", lat=31.0, lon=114.0 + d),
        _app(5, "C5", 0, ip="3.3.3.3", lat=32.0, lon=114.0),  # same IP 5 km apart: no home
        _app(6, "C6", 3, ip="3.3.3.3", lat=32.045, lon=114.0),
        _app(7, "C7", 0, emp="ACME", ref="R1"),  # colleagues
        _app(8, "C8", 2, emp="ACME"),
        _app(9, "C9", 0, ref="R2"),  # friends: a small referral code and nothing else
        _app(10, "C10", 1, ref="R2"),
        _app(11, "C11", 0, ref="R3", phone="p1"),  # a code and one phone: a gang's, not friends'
        _app(12, "C12", 1, ref="R3", phone="p1"),
        _app(13, "C13", 0, ip="1.1.1.1", ref="R9"),  # home IP but one referral code: not a household
        _app(14, "C14", 8, ip="1.1.1.1", ref="R9"),
    ]
    apps += [_app(100 + k, f"C{100 + k}", 20 + k, ip="9.9.9.9") for k in range(5)]  # a busy IP: 5 applicants
    apps += [_app(200, "C200", 40, ip="9.9.9.9")]
    people = [(f"C{i}", "WANG" if i in (1, 2) else f"S{i}", 1980 + i) for i in list(range(1, 15)) + list(range(100, 105)) + [200]]
    a = spark.createDataFrame(apps, APP_SCHEMA)
    p = spark.createDataFrame(people, ["applicant_id", "surname_key", "birth_year"])
    pairs = spark.createDataFrame([("A2", "A1"), ("A4", "A3"), ("A6", "A5"), ("A8", "A7"), ("A10", "A9"), ("A12", "A11"),
                                   ("A14", "A13"), ("A200", "A100"), ("A1", "A1")], ["application_id", "partner_application_id"])
    got = {r["application_id"]: (r["relation"], r["evidence"], r["gps_distance_m"])
           for r in classify(pair_cues(pairs, a, p), **RULES).collect()}
    assert "A1" not in got  # one applicant's own applications are not a relationship
    assert got["A2"][0] == "family" and "same family name" in got["A2"][1] and 5 < got["A2"][2] < 20
    assert got["A4"][0] == "flatmate"
    assert got["A6"][0] == "none" and got["A6"][2] > 4000
    assert got["A8"][0] == "colleague" and got["A8"][1] == ["same employer"]
    assert got["A10"][0] == "friend" and got["A10"][1] == ["same referral code"]
    assert got["A12"][0] == "none"
    assert got["A14"][0] == "none"
    assert got["A200"][0] == "none"  # 6 applicants on that IP by A200: not a home
    hours = {r["application_id"]: r["hours_apart"] for r in pair_cues(pairs, a, p).collect()}
    assert hours["A2"] == 5.0 and hours["A4"] == 9.0 and hours["A200"] == 20.0


def test_applicants_so_far_equals_brute_force(spark):
    rng = np.random.default_rng(3)
    rows = [(f"A{i}", f"C{int(rng.integers(0, 40))}", T0 + dt.timedelta(hours=int(rng.integers(0, 100))),
             f"v{int(rng.integers(0, 6))}" if rng.random() < 0.9 else None) for i in range(200)]
    df = spark.createDataFrame(rows, "application_id string, applicant_id string, application_ts timestamp, ip string")
    got = {r["application_id"]: r["n"] for r in applicants_so_far(df, "ip").collect()}
    for app, who, ts, v in rows:
        if v is None:
            assert app not in got
            continue
        assert got[app] == len({w for _, w, t, x in rows if x == v and t <= ts}), app


def test_explained_pairs_only_when_every_shared_type_is_explained(spark):
    pairs = spark.createDataFrame([("app:A1", "app:A2", ["ip"]), ("app:A3", "app:A4", ["ip", "phone"]),
                                   ("app:A5", "app:A6", ["referrer"]), ("app:A7", "app:A8", ["ip", "gps_burst"]),
                                   ("app:A9", "app:B1", ["ip"])], ["src", "dst", "types"])
    rel = spark.createDataFrame([("app:A2", "app:A1", "family"), ("app:A3", "app:A4", "flatmate"),
                                 ("app:A5", "app:A6", "friend"), ("app:A7", "app:A8", "family"),
                                 ("app:A9", "app:B1", "colleague")], ["src", "dst", "relation"])
    out = {(r["src"], r["dst"]): r["relation"] for r in
           explained_pairs(pairs, rel, {"family": ["ip", "device"], "flatmate": ["ip", "device"], "friend": ["referrer"]}).collect()}
    assert out == {("app:A1", "app:A2"): "family", ("app:A5", "app:A6"): "friend"}


def test_explained_pairs_keep_a_related_pair_that_applied_together(spark):
    """With together_hours, a related pair that applied within that many hours keeps its link
    (a gang's wave), one further apart is explained as before, and an unknown gap is not
    "together"; without it, time is not used."""
    pairs = spark.createDataFrame([("app:A1", "app:A2", ["referrer"]), ("app:A3", "app:A4", ["referrer"]),
                                   ("app:A5", "app:A6", ["ip"]), ("app:A7", "app:A8", ["ip"])], ["src", "dst", "types"])
    rel = spark.createDataFrame([("app:A1", "app:A2", "friend", 5.0), ("app:A3", "app:A4", "friend", 300.0),
                                 ("app:A6", "app:A5", "family", 72.0), ("app:A7", "app:A8", "family", None)],
                                "src string, dst string, relation string, hours_apart double")
    explains = {"family": ["ip", "device"], "friend": ["referrer"]}
    got = {(r["src"], r["dst"]) for r in explained_pairs(pairs, rel, explains, together_hours=72.0).collect()}
    assert got == {("app:A3", "app:A4"), ("app:A7", "app:A8")}
    everything = {(r["src"], r["dst"]) for r in explained_pairs(pairs, rel, explains).collect()}
    assert everything == {("app:A1", "app:A2"), ("app:A3", "app:A4"), ("app:A5", "app:A6"), ("app:A7", "app:A8")}


def test_truth_and_quality_equal_a_hand_count(spark):
    truth = spark.createDataFrame([
        ("A1", "H1", True, 5, -1), ("A2", "H1", True, 6, -1),  # family
        ("A3", "H2", True, 7, -1), ("A4", "H2", False, 7, -1),  # flatmates (one is not kin)
        ("A5", "A5", False, 9, -1), ("A6", "A6", False, 9, 3),  # colleagues
        ("A7", "A7", False, -1, 4), ("A8", "A8", False, -1, 4),  # friends
        ("A9", "A9", False, -1, -1), ("A10", "A10", False, -1, -1),  # nothing
    ], ["application_id", "household_id", "kin", "employer_id", "referral_group"])
    scored = spark.createDataFrame([("A2", "A1", "family"), ("A4", "A3", "family"), ("A6", "A5", "colleague"),
                                    ("A8", "A7", "friend"), ("A10", "A9", "colleague")],
                                   ["application_id", "partner_application_id", "relation"])
    t = {r["application_id"]: r["true_relation"] for r in truth_relation(scored, truth).collect()}
    assert t == {"A2": "family", "A4": "flatmate", "A6": "colleague", "A8": "friend", "A10": "none"}
    q = relationship_quality(truth_relation(scored, truth))
    fam, col, nei = (q["by_relation"][k] for k in ("family", "colleague", "neither"))
    assert (fam["precision"], fam["recall"]) == (0.5, 1.0)
    assert (col["precision"], col["recall"]) == (0.5, 1.0)
    assert (nei["precision"], nei["recall"], nei["pairs"]) == (1.0, round(1 / 3, 4), 3)
    assert q["macro_f1"] == round((2 / 3 + 2 / 3 + 0.5) / 3, 4)
    assert q["pairs"] == 5

"""Gang detection: hubs never glue strangers; time windows and distinct applicants."""
from __future__ import annotations

import datetime as dt

import pytest

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph.features.communities import split_components
from riskgraph.features.components import connected_components
from riskgraph.features.gangs import application_pairs, gang_links, gang_members, summarize_gangs
from riskgraph.features.graph import build_edges, build_vertices, column_links, detect_super_nodes, hub_thresholds

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
APPS = "application_id string, applicant_id string, application_ts timestamp, device_id string, phone_key string, ip string, " \
       "gps_cell string, email_key string, employer string, referrer_code string"


def _gangs(spark, rows, *, caps, window_days=30.0, min_size=3, resolution=0.1, robust_k=6.0):
    apps = spark.createDataFrame(rows, APPS)
    types = ("device", "phone", "ip", "gps", "email", "employer", "referrer")
    edges = build_edges(column_links(apps, types=types))
    vertices = build_vertices(apps, edges)
    hubs = detect_super_nodes(vertices, hub_thresholds(vertices, max_degree=caps, robust_k=robust_k, min_log_scale=0.5, min_degree=10))
    links = gang_links(edges, hubs, link_types=("device", "phone", "ip", "email", "referrer"))
    pairs = application_pairs(links, window_days=window_days)
    linked = pairs.select(F.col("src").alias("id")).unionByName(pairs.select(F.col("dst").alias("id"))).distinct()
    partition = split_components(connected_components(linked, pairs), pairs, min_component_size=4, resolution=resolution)
    return gang_members(partition, apps, min_size=min_size), hubs, links, apps, pairs


def test_planted_hubs_never_glue_strangers(spark):
    caps = {"device": 25, "phone": 15, "ip": 40, "gps": 60, "email": 10, "employer": 80, "referrer": 80}
    rows = []
    # 120 strangers behind one carrier NAT IP, 60 of them on the default device id, all in one day
    for i in range(120):
        rows.append((f"s{i:03d}", f"P-s{i}", T0 + dt.timedelta(minutes=i), "DEFAULT" if i % 2 else f"dev-s{i}",
                     f"ph-s{i}", "10.0.0.1", None, f"em-s{i}", "BIGCORP", None))
    # a real gang of 4 people: shared device pool and referrer, also behind the NAT IP
    for i in range(4):
        rows.append((f"g{i}", f"P-g{i}", T0 + dt.timedelta(hours=i), "dev-gang", f"ph-g{i % 2}", "10.0.0.1", None,
                     f"em-g{i}", "BIGCORP", "REF-1"))
    members, hubs, _, _, _ = _gangs(spark, rows, caps=caps)
    assertDataFrameEqual(hubs.select("id"), spark.createDataFrame([("ip:10.0.0.1",), ("device:DEFAULT",), ("employer:BIGCORP",)], "id string"))
    assertDataFrameEqual(members.select("application_id", "gang_id"),
                         spark.createDataFrame([(f"g{i}", "g:g0") for i in range(4)], "application_id string, gang_id string"))


def test_time_window_and_distinct_applicants(spark):
    caps = {t: 50 for t in ("device", "phone", "ip", "gps", "email", "employer", "referrer")}
    day = dt.timedelta(days=1)
    rows = [
        # a household sharing a home IP, applying months apart: not a gang
        ("h1", "H1", T0, "d-h1", "p-h1", "1.1.1.1", None, None, None, None),
        ("h2", "H2", T0 + 90 * day, "d-h2", "p-h2", "1.1.1.1", None, None, None, None),
        ("h3", "H3", T0 + 200 * day, "d-h3", "p-h3", "1.1.1.1", None, None, None, None),
        # one person's three loans on one device, within a week: one applicant, not a gang
        ("r1", "R", T0, "d-r", "p-r", None, None, None, None, None),
        ("r2", "R", T0 + 2 * day, "d-r", "p-r", None, None, None, None, None),
        ("r3", "R", T0 + 5 * day, "d-r", "p-r", None, None, None, None, None),
        # three people chained through a SIM and a device within days: a gang
        ("x1", "X1", T0, "d-x", "p-x1", None, None, None, None, None),
        ("x2", "X2", T0 + day, "d-x", "p-x", None, None, None, None, None),
        ("x3", "X3", T0 + 3 * day, "d-x3", "p-x", None, None, None, None, None),
    ]
    members, _, links, apps, pairs = _gangs(spark, rows, caps=caps)
    assertDataFrameEqual(members, spark.createDataFrame([("x1", "g:x1", "c:x1", "component"), ("x2", "g:x1", "c:x1", "component"),
                                                         ("x3", "g:x1", "c:x1", "component")],
                                                        "application_id string, gang_id string, component_id string, method string"))
    outcomes = spark.createDataFrame([("x2", T0 + 10 * day), ("x3", T0 + 400 * day)], "application_id string, known_ts timestamp")
    summary = summarize_gangs(members, links, pairs, apps, outcomes, as_of_ts=T0 + 30 * day, window_days=30.0)
    row = summary.first().asDict()
    # x3's bad outcome becomes known after the as-of time: not counted
    assert (row["gang_id"], row["size"], row["n_applicants"], row["n_bad_known"], row["n_links"]) == ("g:x1", 3, 3, 1, 6)
    assert row["bad_rate_known"] == pytest.approx(1 / 3)
    # linked pairs: x1-x2 (device d-x), x2-x3 (phone p-x); x1-x3 share nothing
    assert (row["n_pairs"], row["density"]) == (2, pytest.approx(2 / 3))
    assert (row["n_shared_values"], row["n_link_types"], row["link_types"]) == (2, 2, "device,phone")
    assert row["span_hours"] == pytest.approx(72.0) and row["apps_per_hour"] == pytest.approx(3 / 72)
    assert row["max_apps_24h"] == 1  # x2 comes exactly 24 h after x1: a window (t - 24 h, t] never holds both
    assert row["age_days"] == pytest.approx(30.0)
    assert '"value":"device:d-x","members":2' in row["evidence"] and '"value":"phone:p-x","members":2' in row["evidence"]


def _gang_rows(prefix: str, n: int, t0: dt.datetime, *, ref: str, device: str):
    """n people coached by one intermediary (referrer code) on one shared device, within hours."""
    return [(f"{prefix}{i}", f"P-{prefix}{i}", t0 + dt.timedelta(hours=i), device, f"ph-{prefix}{i}", None, None, None, None, ref)
            for i in range(n)]


def test_communities_split_gangs_bridged_by_a_dealer_sim(spark):
    """Two gangs active the same week; a card dealer's SIM reaches one member of each. The
    component holds both gangs; the communities are the two gangs again."""
    caps = {t: 50 for t in ("device", "phone", "ip", "gps", "email", "employer", "referrer")}
    a = _gang_rows("a", 8, T0, ref="REF-A", device="dev-a")
    b = _gang_rows("b", 8, T0 + dt.timedelta(days=2), ref="REF-B", device="dev-b")
    a[3] = a[3][:4] + ("SIM-X",) + a[3][5:]
    b[5] = b[5][:4] + ("SIM-X",) + b[5][5:]
    members, _, _, _, _ = _gangs(spark, a + b, caps=caps)
    got = {r["application_id"]: (r["gang_id"], r["component_id"], r["method"]) for r in members.collect()}
    assert got == {**{f"a{i}": ("g:a0", "c:a0", "leiden") for i in range(8)}, **{f"b{i}": ("g:b0", "c:a0", "leiden") for i in range(8)}}


def test_a_dense_gang_is_not_cut(spark):
    caps = {t: 50 for t in ("device", "phone", "ip", "gps", "email", "employer", "referrer")}
    rows = _gang_rows("a", 30, T0, ref="REF-A", device="dev-a")
    rows = [r[:3] + (f"dev-{i % 6}",) + r[4:] for i, r in enumerate(rows)]  # six devices, one referrer
    members, _, _, _, _ = _gangs(spark, rows, caps=caps)
    assert {r["gang_id"] for r in members.collect()} == {"g:a0"} and members.count() == 30


def test_hub_thresholds_are_robust_fences_bounded_by_cap_and_floor(spark):
    import numpy as np

    rng = np.random.default_rng(3)
    rows = []
    # ip: shared values of degree 2..6 and two hubs; phone: all degree 2 (MAD 0 -> the scale floor)
    for i, d in enumerate(rng.integers(2, 7, 300)):
        rows.append((f"ip:{i}", "ip", int(d)))
    rows += [("ip:nat1", "ip", 900), ("ip:nat2", "ip", 35)]
    rows += [(f"phone:{i}", "phone", 2) for i in range(200)] + [("phone:dealer", "phone", 12)]
    rows += [(f"phone:x{i}", "phone", 1) for i in range(50)]  # used once: not part of the statistics
    vertices = spark.createDataFrame(rows, "id string, type string, degree long")
    caps = {"ip": 500, "phone": 11, "device": 25}
    th = {r["type"]: r.asDict() for r in hub_thresholds(vertices, max_degree=caps, robust_k=3.0, min_log_scale=0.5, min_degree=10).collect()}
    ld = np.log([d for _, t, d in rows if t == "ip" and d >= 2])
    med = np.median(ld)
    mad = np.median(np.abs(ld - med))
    fence = float(np.exp(med + 3.0 * max(1.4826 * mad, 0.5)))
    assert th["ip"]["fence"] == pytest.approx(fence) and th["ip"]["median_degree"] == pytest.approx(np.exp(med))
    assert (th["ip"]["threshold"], th["ip"]["bound"]) == (max(10, int(np.floor(fence))), "robust" if np.floor(fence) > 10 else "floor")
    # phone: fence exp(log 2 + 1.5) = 8.96 < floor 10 -> 10, but the cap 11 is above: floor binds
    assert (th["phone"]["threshold"], th["phone"]["bound"]) == (10, "floor")
    # a type without shared values falls back to its cap
    assert (th["device"]["threshold"], th["device"]["bound"], th["device"]["n_shared"]) == (25, "cap", 0)
    assert th["ip"]["bound"] == "robust" and 10 < th["ip"]["threshold"] < 35  # nat2 (35) is far below the cap (500)
    hubs = detect_super_nodes(vertices, hub_thresholds(vertices, max_degree=caps, robust_k=3.0, min_log_scale=0.5, min_degree=10))
    assert {r["id"] for r in hubs.collect()} == {"ip:nat1", "ip:nat2", "phone:dealer"}


def test_a_hub_under_its_cap_is_caught_by_the_robust_fence_and_links_no_strangers(spark):
    """The hard cap is generous (500 per IP); 100 strangers behind one carrier NAT IP stay
    under it. Home IPs are shared by 2-3 people, so the robust fence (about 40 here) flags the
    NAT IP, and no connected component holds two of the strangers; the gang behind the same
    IP is still found through its own device."""
    caps = {"device": 25, "phone": 15, "ip": 500, "gps": 60, "email": 10, "employer": 500, "referrer": 80}
    rows = []
    for h in range(150):  # households: one home IP, 2 or 3 people, the same day
        for k in range(2 + (h % 3 == 0)):
            rows.append((f"h{h}-{k}", f"P-h{h}-{k}", T0 + dt.timedelta(minutes=h), f"dev-h{h}-{k}", f"ph-h{h}-{k}", f"192.168.{h}.1",
                         None, None, None, None))
    strangers = [f"s{i:03d}" for i in range(100)]
    rows += [(a, f"P-{a}", T0 + dt.timedelta(minutes=i), f"dev-{a}", f"ph-{a}", "10.0.0.1", None, None, None, None)
             for i, a in enumerate(strangers)]
    rows += [(f"g{i}", f"P-g{i}", T0 + dt.timedelta(hours=i), "dev-gang", f"ph-g{i}", "10.0.0.1", None, None, None, None)
             for i in range(4)]
    members, hubs, _, _, pairs = _gangs(spark, rows, caps=caps)
    hub = {r["id"]: r for r in hubs.collect()}
    assert set(hub) == {"ip:10.0.0.1"} and hub["ip:10.0.0.1"]["bound"] == "robust" and hub["ip:10.0.0.1"]["threshold"] < 100
    linked = pairs.select(F.col("src").alias("id")).unionByName(pairs.select(F.col("dst").alias("id"))).distinct()
    comps = connected_components(linked, pairs).filter(F.col("id").isin(*[f"app:{a}" for a in strangers]))
    assert comps.groupBy("component").count().filter(F.col("count") > 1).count() == 0
    got = {r["application_id"]: r["gang_id"] for r in members.collect()}
    assert {a: got.get(a) for a in ("g0", "g1", "g2", "g3")} == {a: "g:g0" for a in ("g0", "g1", "g2", "g3")}
    assert not set(got) & set(strangers)  # (three people on one home IP the same day do come out: the household caveat)


def test_evidence_is_what_formed_the_gang(spark):
    """Evidence, link types and shared values follow the links that made the gang: a value
    two members used outside the link window is no evidence, and a gang held together by a
    GPS burst says so."""
    from riskgraph.features.gangs import add_pair_links

    caps = {t: 50 for t in ("device", "phone", "ip", "gps", "email", "employer", "referrer")}
    day = dt.timedelta(days=1)
    rows = [  # three people on one device within days; x1 and x3 also used one e-mail, 50 days apart
        ("x1", "X1", T0, "d-x", "p-x1", None, None, "e-old", None, None),
        ("x2", "X2", T0 + day, "d-x", "p-x2", None, None, None, None, None),
        ("x3", "X3", T0 + 2 * day, "d-x", "p-x3", None, None, None, None, None),
        ("x4", "X4", T0 + 50 * day, "d-x4", "p-x4", None, None, "e-old", None, None),
        # four strangers in one GPS burst, sharing nothing else
        *[(f"b{i}", f"B{i}", T0 + i * dt.timedelta(minutes=30), f"d-b{i}", f"p-b{i}", None, None, None, None, None) for i in range(4)],
    ]
    _, _, links, apps, pairs = _gangs(spark, rows, caps=caps)
    burst = spark.createDataFrame([(f"app:b{i}", f"app:b{j}") for i in range(4) for j in range(i)], "src string, dst string")
    pairs = add_pair_links(pairs, burst, weight=1.0, link_type="gps_burst")
    linked = pairs.select(F.col("src").alias("id")).unionByName(pairs.select(F.col("dst").alias("id"))).distinct()
    members = gang_members(split_components(connected_components(linked, pairs), pairs, min_component_size=4), apps, min_size=3)
    outcomes = spark.createDataFrame([], "application_id string, known_ts timestamp")
    got = {r["gang_id"]: r.asDict() for r in summarize_gangs(members, links, pairs, apps, outcomes, as_of_ts=T0 + 60 * day,
                                                               window_days=30.0).collect()}
    assert set(got) == {"g:x1", "g:b0"}
    x = got["g:x1"]
    assert (x["n_shared_values"], x["link_types"], x["n_link_types"]) == (1, "device", 1)
    # the e-mail 50 days apart is not evidence; the members it links are named
    assert x["evidence"] == '[{"value":"device:d-x","members":3,"applications":["x1","x2","x3"]}]'
    # a media anchor's evidence says what is the same, and how similar the weakest link is
    scores = spark.createDataFrame([("app:x1", "device:d-x", 1.0), ("app:x2", "device:d-x", 0.93), ("app:x3", "device:d-x", 0.95)],
                                   "src string, dst string, similarity double")
    media = links.withColumn("dst", F.regexp_replace("dst", "^device:", "background:"))
    s2 = {r["gang_id"]: r["evidence"] for r in summarize_gangs(members, media, pairs, apps, outcomes, as_of_ts=T0 + 60 * day, window_days=30.0,
                                                                 link_scores=scores.withColumn("dst", F.regexp_replace("dst", "^device:", "background:"))).collect()}
    assert '"similarity":0.93,"says":"same room as applications x1, x2, x3 (similarity >= 0.93)"' in s2["g:x1"]
    b = got["g:b0"]
    assert (b["n_shared_values"], b["link_types"], b["n_link_types"], b["n_pairs"]) == (0, "gps_burst", 1, 6)
    assert b["evidence"] == '[{"value":"gps_burst","members":4}]'


@pytest.mark.parametrize("seed", range(5))
def test_weighted_median_equals_numpy_median_of_the_repeats(seed):
    import numpy as np

    from riskgraph.features.graph import _weighted_median

    rng = np.random.default_rng(seed)
    values = rng.choice(np.log(np.arange(2, 40)), size=rng.integers(1, 12), replace=False)
    counts = rng.integers(1, 30, len(values))
    assert _weighted_median(values, counts) == pytest.approx(np.median(np.repeat(values, counts)))

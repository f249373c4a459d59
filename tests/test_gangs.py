"""Gang detection: hubs never glue strangers; time windows and distinct applicants."""
from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph.features.components import connected_components
from riskgraph.features.gangs import application_edges, gang_links, gang_members, summarize_gangs
from riskgraph.features.graph import build_edges, build_vertices, detect_super_nodes

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
APPS = "application_id string, applicant_id string, application_ts timestamp, device_id string, phone_key string, ip string, " \
       "gps_cell string, email_key string, employer string, referrer_code string"


def _gangs(spark, rows, *, caps, window_days=30.0, min_size=3):
    apps = spark.createDataFrame(rows, APPS)
    types = ("device", "phone", "ip", "gps", "email", "employer", "referrer")
    edges = build_edges(apps, attribute_types=types)
    hubs = detect_super_nodes(build_vertices(apps, edges), max_degree=caps)
    links = gang_links(edges, hubs, link_types=("device", "phone", "ip", "email", "referrer"))
    comps = connected_components(apps.select(F.concat(F.lit("app:"), "application_id").alias("id")),
                                 application_edges(links, window_days=window_days))
    return gang_members(comps, apps, min_size=min_size), hubs, links, apps


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
    members, hubs, _, _ = _gangs(spark, rows, caps=caps)
    assertDataFrameEqual(hubs.select("id"), spark.createDataFrame([("ip:10.0.0.1",), ("device:DEFAULT",), ("employer:BIGCORP",)], "id string"))
    assertDataFrameEqual(members, spark.createDataFrame([(f"g{i}", "g:g0") for i in range(4)], "application_id string, gang_id string"))


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
    members, _, links, apps = _gangs(spark, rows, caps=caps)
    assertDataFrameEqual(members, spark.createDataFrame([("x1", "g:x1"), ("x2", "g:x1"), ("x3", "g:x1")], "application_id string, gang_id string"))
    summary = summarize_gangs(members, links, apps, spark.createDataFrame([("x2",)], "application_id string"))
    row = summary.first()
    assert (row["gang_id"], row["size"], row["n_bad_known"], row["n_links"]) == ("g:x1", 3, 1, 6)
    assert '"value":"device:d-x","members":2' in row["evidence"] and '"value":"phone:p-x","members":2' in row["evidence"]

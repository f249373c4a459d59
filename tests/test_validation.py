"""Each kind of bad raw row is quarantined with its reason; good rows are typed and kept."""
from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph import schemas as S
from riskgraph.features import validation as V
from riskgraph.pseudonym import hmac_python, pseudonym_key

GOOD = dict(application_id="A1", applicant_id="P1", application_ts="2026-01-05T10:00:00Z", product="cash", amount="5000",
            term_months="12", channel="APP", declared_income="8000", employer=" acme ", email="Ann@Example.com ",
            phone="+86 138-0000-0000", device_id="d1", ip="1.2.3.4", gps_lat="31.2", gps_lon="121.5", referrer_code="")


def _raw_apps(spark, rows):
    cols = [c.name for c in S.RAW_APPLICATIONS]
    data = [tuple(r.get(c) for c in cols) + ("2026-01-05",) for r in rows]
    return spark.createDataFrame(data, ", ".join(f"{c} string" for c in cols + [S.DT]))


def test_each_bad_application_is_quarantined_with_its_reason(spark):
    bad = {
        "A-null": dict(GOOD, application_id=""),
        "A-gps": dict(GOOD, application_id="A-gps", gps_lat="123.4"),
        "A-gps-half": dict(GOOD, application_id="A-gps-half", gps_lon=""),
        "A-future": dict(GOOD, application_id="A-future", application_ts="2026-01-09T10:00:00Z"),
        "A-type": dict(GOOD, application_id="A-type", amount="12a00"),
        "A-term": dict(GOOD, application_id="A-term", term_months="twelve"),
        "A-neg": dict(GOOD, application_id="A-neg", amount="-5"),
        "A-ts": dict(GOOD, application_id="A-ts", application_ts="2026-13-45 25:00"),
        "A-dup": dict(GOOD, application_id="A1", application_ts="2026-01-05T11:00:00Z"),  # later copy of A1
    }
    rows = [GOOD, dict(GOOD, application_id="A2", referrer_code="R9", gps_lat="", gps_lon="")] + list(bad.values())
    validated = V.validate_applications(_raw_apps(spark, rows), key=pseudonym_key(), future_tolerance_minutes=10, gps_grid_m=150)
    validated = V.flag_duplicates(validated, keys=["application_id"], order_by=["application_ts", S.DT])
    good, quarantined = V.split_valid(validated, source="applications", bronze_columns=[c.name for c in S.BRONZE_APPLICATIONS])

    got = quarantined.select(F.get_json_object("record", "$.application_id").alias("id"), "reason", "source")
    expected = spark.createDataFrame([
        ("", "null_key:application_id"),
        ("A-gps", "bad_gps:gps_lat,gps_lon"),
        ("A-gps-half", "bad_gps:gps_lat,gps_lon"),
        ("A-future", "future_ts:application_ts"),
        ("A-type", "bad_type:amount"),
        ("A-term", "bad_type:term_months"),
        ("A-neg", "bad_value:amount"),
        ("A-ts", "bad_timestamp:application_ts"),
        ("A1", "duplicate_id:application_id"),
    ], "id string, reason string").withColumn("source", F.lit("applications"))
    assertDataFrameEqual(got, expected)
    # counts reconcile: in = kept + quarantined
    assert good.count() + quarantined.count() == len(rows)

    key = pseudonym_key()
    cols = ["application_id", "application_ts", "amount", "term_months", "channel", "employer", "email_key", "phone_key",
            "gps_lat", "gps_lon", "referrer_code"]
    ts = dt.datetime(2026, 1, 5, 10, tzinfo=dt.timezone.utc)
    email, phone = hmac_python("ann@example.com", key), hmac_python("8613800000000", key)
    exp_good = spark.createDataFrame(
        [("A1", ts, 5000.0, 12, "app", "ACME", email, phone, 31.2, 121.5, None),
         ("A2", ts, 5000.0, 12, "app", "ACME", email, phone, None, None, "R9")],
        "application_id string, application_ts timestamp, amount double, term_months int, channel string, employer string, "
        "email_key string, phone_key string, gps_lat double, gps_lon double, referrer_code string",
    )
    assertDataFrameEqual(good.select(*cols), exp_good)
    assert good.filter(F.col("gps_cell").isNull()).count() == 1  # A2 has no GPS, so no cell


def test_quarantine_record_carries_pseudonyms_not_pii(spark):
    row = dict(GOOD, application_id="A-neg", amount="-1")
    validated = V.validate_applications(_raw_apps(spark, [row]), key=pseudonym_key(), future_tolerance_minutes=10, gps_grid_m=150)
    _, q = V.split_valid(validated, source="applications", bronze_columns=[c.name for c in S.BRONZE_APPLICATIONS])
    record = json.loads(q.first()["record"])
    assert "email" not in record and "phone" not in record
    assert record["email_key"] == hmac_python("ann@example.com", pseudonym_key())
    assert "138" not in q.first()["record"] and "Example" not in q.first()["record"]


def test_outcomes_orphans_and_bad_labels(spark):
    raw = spark.createDataFrame([
        ("A1", "default", "2026-02-01T00:00:00Z", "2026-02-01"),
        ("A1", "default", "2026-02-01T05:00:00Z", "2026-02-01"),  # duplicate (application, outcome)
        ("A404", "default", "2026-02-01T00:00:00Z", "2026-02-01"),  # unknown application
        ("A1", "paid?", "2026-02-01T00:00:00Z", "2026-02-01"),
        ("A2", "fraud_confirmed", "2026-01-01T00:00:00Z", "2026-02-01"),  # known before the application
    ], "application_id string, outcome string, known_ts string, dt string")
    apps = spark.createDataFrame([("A1", dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)),
                                  ("A2", dt.datetime(2026, 1, 6, tzinfo=dt.timezone.utc))],
                                 "application_id string, application_ts timestamp")
    v = V.flag_orphans(V.validate_outcomes(raw, future_tolerance_minutes=10), apps)
    v = V.flag_duplicates(v, keys=["application_id", "outcome"], order_by=["known_ts", S.DT])
    good, q = V.split_valid(v, source="outcomes", bronze_columns=[c.name for c in S.BRONZE_OUTCOMES])
    got = q.select(F.get_json_object("record", "$.application_id").alias("id"), "reason")
    assertDataFrameEqual(got, spark.createDataFrame([
        ("A1", "duplicate_id:application_id,outcome"), ("A404", "orphan:application_id"), ("A1", "bad_value:outcome"),
        ("A2", "bad_value:known_ts_before_application"),
    ], "id string, reason string"))
    assertDataFrameEqual(good.select("application_id", "outcome"), spark.createDataFrame([("A1", "default")], "application_id string, outcome string"))


def test_duplicates_of_already_ingested_keys(spark):
    validated = V.validate_applications(_raw_apps(spark, [GOOD]), key=pseudonym_key(), future_tolerance_minutes=10, gps_grid_m=150)
    seen = spark.createDataFrame([("A1",)], "application_id string")
    v = V.flag_duplicates(validated, keys=["application_id"], order_by=["application_ts"], existing_keys=seen)
    _, q = V.split_valid(v, source="applications", bronze_columns=[c.name for c in S.BRONZE_APPLICATIONS])
    assertDataFrameEqual(q.select("reason"), spark.createDataFrame([("duplicate_id:already_ingested",)], "reason string"))


def test_missing_column_is_named(spark):
    import pytest

    df = spark.createDataFrame([("x",)], "application_id string")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['applicant_id'"):
        V.validate_applications(df, key=pseudonym_key(), future_tolerance_minutes=10, gps_grid_m=150)


def test_hmac_in_spark_equals_python_hmac(spark):
    key = pseudonym_key()
    from riskgraph.pseudonym import hmac_column

    df = spark.createDataFrame([("alice",), ("",), (None,), ("李雷",)], "v string")
    got = [r[0] for r in df.select(hmac_column(F.col("v"), key)).collect()]
    assert got == [hmac_python("alice", key), hmac_python("", key), None, hmac_python("李雷", key)]


def test_the_key_never_enters_a_query_plan(spark):
    """The plan is printed by explain(), error messages, the Spark UI and a cluster's event
    log: neither the key nor the HMAC pads (key XOR 0x36 / 0x5c, which give it back) may be
    in it."""
    import hashlib

    from riskgraph.pseudonym import hmac_column

    key = pseudonym_key()
    k = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    secrets = [key.decode(), key.hex(), bytes(b ^ 0x36 for b in k).hex(), bytes(b ^ 0x5C for b in k).hex()]
    df = spark.createDataFrame([("alice",)], "v string").select(hmac_column(F.col("v"), key).alias("p"))
    plan = df._jdf.queryExecution().toString()  # parsed, analysed, optimised and physical plans
    assert "pseudonym" in plan  # it is the UDF's plan indeed
    for s in secrets:
        assert s.lower() not in plan.lower() and s.upper() not in plan

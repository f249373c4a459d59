"""Feature-store quality gates: each gate fails on planted bad data with a readable message
and passes on good data; PSI (computed inside Spark) equals toad's; the write job keeps the
report and commits nothing when a gate breaks."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import toad
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType
from toad.merge import merge as toad_merge

from riskgraph.features import evaluation as E
from riskgraph.features import quality_gates as Q
from riskgraph.schemas import FeatureSpec

SPECS = [
    FeatureSpec("id", StringType(), "key", as_of="key"),
    FeatureSpec("n_prior", LongType(), "a count", min_value=0),
    FeatureSpec("size", LongType(), "a component size", min_value=1, max_value=50),
    FeatureSpec("age_days", DoubleType(), "an age", min_value=0),
    FeatureSpec("run_date", StringType(), "partition", as_of="key"),
]
SCHEMA = StructType([StructField(s.name, s.dtype, True) for s in SPECS])
FEATURES = ["n_prior", "size", "age_days"]


def _days(first: str, n: int) -> list[str]:
    d0 = dt.date.fromisoformat(first)
    return [(d0 + dt.timedelta(days=i)).isoformat() for i in range(n)]


def _frame(spark, days: list[str], per_day: int, *, seed: int, shift: float = 0.0, prefix: str = "a"):
    """Good rows: Poisson counts, sizes >= 1, ages >= 0; ``shift`` moves every feature up."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in days:
        for i in range(per_day):
            rows.append((f"{prefix}{d}-{i}", int(rng.poisson(1.0 + shift)), int(1 + rng.poisson(2.0 + 3 * shift)),
                         float(rng.exponential(5.0 + 20 * shift)), d))
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture()
def settings(cfg_factory):
    return cfg_factory().quality


def _gates(staged, previous, days, settings):
    return Q.run_quality_gates(staged, previous, owned_dates=days, specs=SPECS, settings=settings, date_col="run_date")


def _row(report: Q.QualityReport, check: str, column: str) -> Q.CheckResult:
    [r] = [r for r in report.results if (r.check, r.column) == (check, column)]
    return r


# --------------------------------------------------------------------------- null rate
@pytest.mark.parametrize("column, value, message", [
    pytest.param("n_prior", None, "1 of 60 rows null", id="null-count"),
    pytest.param("age_days", float("nan"), "1 of 60 rows null", id="nan-double"),
    pytest.param("id", None, "1 of 60 rows null", id="null-key"),
])
def test_null_rate_gate_fails_on_a_planted_null(spark, settings, column, value, message):
    days = ["2026-01-01"]
    rows = _frame(spark, days, 60, seed=1).collect()
    bad = spark.createDataFrame([r.asDict() | ({column: value} if i == 7 else {}) for i, r in enumerate(rows)], SCHEMA)
    report = _gates(bad, None, days, settings)
    assert report.status == Q.FAIL
    r = _row(report, "null_rate", column)
    assert (r.status, r.value, r.detail) == (Q.FAIL, pytest.approx(1 / 60), message)
    assert f"| null_rate | {column} | 0.01667 | <= 0" in report.to_markdown()


def test_null_rate_override_loosens_one_column_but_never_a_key(spark, settings):
    days = ["2026-01-01"]
    rows = [r.asDict() | {"age_days": None} if i < 3 else r.asDict() for i, r in enumerate(_frame(spark, days, 60, seed=2).collect())]
    df = spark.createDataFrame(rows, SCHEMA)
    loose = settings.model_copy(update={"null_rate_overrides": {"age_days": 0.05}})
    r = _row(_gates(df, None, days, loose), "null_rate", "age_days")
    assert (r.status, r.threshold) == (Q.PASS, "<= 0.05 (override)")
    assert _row(_gates(df, None, days, settings), "null_rate", "age_days").status == Q.FAIL  # 5% > the default 0
    with pytest.raises(ValueError, match=r"cannot loosen key column\(s\) \['id'\]"):
        _gates(df, None, days, settings.model_copy(update={"null_rate_overrides": {"id": 0.5}}))
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['nope'\]"):
        _gates(df, None, days, settings.model_copy(update={"null_rate_overrides": {"nope": 0.5}}))


# --------------------------------------------------------------------------- ranges
@pytest.mark.parametrize("column, value, detail", [
    pytest.param("n_prior", -1, "observed -1..", id="negative-count"),
    pytest.param("size", 0, "observed 0..", id="size-below-1"),
    pytest.param("size", 51, "..51; 0 below, 1 above", id="size-above-max"),
    pytest.param("age_days", -0.5, "observed -0.5..", id="negative-age"),
])
def test_range_gate_fails_on_a_planted_out_of_range_value(spark, settings, column, value, detail):
    days = ["2026-01-01"]
    rows = [r.asDict() | ({column: value} if i == 0 else {}) for i, r in enumerate(_frame(spark, days, 40, seed=3).collect())]
    report = _gates(spark.createDataFrame(rows, SCHEMA), None, days, settings)
    r = _row(report, "range", column)
    assert r.status == Q.FAIL and r.value == 1.0 and detail in r.detail, r
    assert [x.column for x in report.failures] == [column]
    others = [x for x in report.results if x.check == "range" and x.column != column]
    assert {x.status for x in others} == {Q.PASS}
    assert _row(report, "range", "size").threshold == "[1, 50]"


# --------------------------------------------------------------------------- row count (pure)
def test_choose_baseline_first_run_nightly_rerun_and_partial():
    prev = {d: 30 for d in _days("2026-01-01", 40)}
    assert Q.choose_baseline(None, ["2026-02-10"], baseline_days=28) == Q.Baseline("none", (), Q.NO_PREVIOUS_RUN)
    nightly = Q.choose_baseline(prev, ["2026-02-10"], baseline_days=28)
    assert nightly.kind == "trailing" and nightly.dates == tuple(_days("2026-01-13", 28))
    rerun = Q.choose_baseline(prev, ["2026-02-01", "2026-02-02"], baseline_days=28)
    assert rerun == Q.Baseline("replaced", ("2026-02-01", "2026-02-02"))
    # a range reaching past the table's end: the days before it are the baseline
    extending = Q.choose_baseline(prev, _days("2026-02-08", 5), baseline_days=28)
    assert extending == Q.Baseline("trailing", tuple(_days("2026-01-11", 28)))
    # nothing before the range: the owned days that exist
    fresh_range = Q.choose_baseline({"2026-03-01": 5}, _days("2026-03-01", 3), baseline_days=28)
    assert fresh_range == Q.Baseline("replaced", ("2026-03-01",))
    far = Q.choose_baseline(prev, ["2026-06-01"], baseline_days=28)
    assert far.kind == "none" and "no rows in the 28 days before 2026-06-01" in far.reason


@pytest.mark.parametrize("now, status, change", [
    pytest.param(30, Q.PASS, 0.0, id="same"),
    pytest.param(14, Q.FAIL, 14 / 30 - 1, id="drop-53pct"),
    pytest.param(16, Q.PASS, 16 / 30 - 1, id="drop-47pct"),
    pytest.param(61, Q.FAIL, 61 / 30 - 1, id="rise-103pct"),
    pytest.param(0, Q.FAIL, -1.0, id="empty-day"),
])
def test_row_count_gate_on_a_nightly_run(now, status, change):
    prev = {d: 30 for d in _days("2026-01-01", 28)}
    prev["2026-01-05"] = 400  # one burst day: the median ignores it
    base = Q.choose_baseline(prev, ["2026-01-29"], baseline_days=28)
    r = Q.check_row_count({"2026-01-29": now} if now else {}, prev, ["2026-01-29"], base, max_drop=0.5, max_rise=1.0)
    assert (r.status, r.value) == (status, pytest.approx(change))
    assert r.threshold == "change in [-50%, +100%]" and "vs median 30 over 28 trailing day(s)" in r.detail


def test_row_count_gate_on_a_rerun_compares_with_the_replaced_rows():
    prev = {"2026-01-01": 100, "2026-01-02": 80}
    base = Q.choose_baseline(prev, ["2026-01-01", "2026-01-02"], baseline_days=28)
    r = Q.check_row_count({"2026-01-01": 60, "2026-01-02": 20}, prev, ["2026-01-01", "2026-01-02"], base,
                          max_drop=0.5, max_rise=1.0)
    assert (r.status, r.value, r.detail) == (Q.FAIL, pytest.approx(80 / 180 - 1), "80 rows vs 180 replaced on 2 day(s)")


# --------------------------------------------------------------------------- PSI vs toad
PSI_CASES = {  # column -> (baseline sampler, current sampler); sizes keep (n - 1) coprime to 10, see below
    "normal_shift": (lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0.3, 1.2, n)),
    "normal_same": (lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0, 1, n)),
    "lognormal": (lambda r, n: r.lognormal(3, 1, n), lambda r, n: r.lognormal(3.4, 0.8, n)),
    # <= 10 values: one bin per value (capped so both samples hold every value: toad drops one-sided bins)
    "counts_few": (lambda r, n: np.minimum(r.poisson(1.5, n), 5), lambda r, n: np.minimum(r.poisson(2.5, n), 5)),
    "counts_many": (lambda r, n: r.poisson(8, n), lambda r, n: r.poisson(9, n)),  # > 10 values, heavy ties
    "zero_heavy": (lambda r, n: r.poisson(0.4, n) * r.integers(1, 30, n), lambda r, n: r.poisson(0.8, n) * r.integers(1, 30, n)),
}


def _toad_psi(base: np.ndarray, cur: np.ndarray) -> float:
    """toad's PSI on the same binning: the baseline's stability bins, computed by numpy."""
    edges = E.bin_edges(base, 10, split_point_masses=True)
    return float(toad.metrics.PSI(np.digitize(cur, edges), np.digitize(base, edges)))


@pytest.mark.parametrize("seed, n_base, n_cur", [(1, 1000, 1500), (2, 2002, 600), (3, 4000, 4000)],
                         ids=["1000-vs-1500", "2002-vs-600", "4000-vs-4000"])
def test_spark_psi_equals_toad_psi_on_random_inputs(spark, seed, n_base, n_cur):
    # (n_base - 1) * q is never within float noise of an integer for q in toad's decile grid
    # when n_base - 1 is coprime to 10, so Spark's and numpy's interpolated quantiles (equal
    # formulas, different rounding) can never put a data point on different sides of a cut.
    rng = np.random.default_rng(seed)
    base = {c: np.asarray(f(rng, n_base), dtype=float) for c, (f, _) in PSI_CASES.items()}
    cur = {c: np.asarray(g(rng, n_cur), dtype=float) for c, (_, g) in PSI_CASES.items()}
    to_df = lambda d: spark.createDataFrame(pd.DataFrame(d))  # noqa: E731
    got = Q.psi_by_column(to_df(cur), to_df(base), list(PSI_CASES), bins=10)
    for c in PSI_CASES:
        assert got[c]["n_current"] == n_cur and got[c]["n_baseline"] == n_base
        expected = _toad_psi(base[c], cur[c])
        assert got[c]["psi"] == pytest.approx(expected, rel=1e-9, abs=1e-12), c
        assert got[c]["psi"] == pytest.approx(E.psi(base[c], cur[c]), rel=1e-9, abs=1e-12), c  # the one numpy implementation
    assert got["normal_same"]["psi"] < 0.05 < got["normal_shift"]["psi"]


def test_spark_bin_edges_equal_numpy_bin_edges(spark):
    rng = np.random.default_rng(9)
    cols = {"a": rng.normal(size=999), "b": rng.poisson(3, 999).astype(float), "c": np.zeros(999),
            "d": rng.poisson(2, 999).clip(0, 4).astype(float)}
    cols["a"][::7] = np.nan
    edges = Q.bin_edges_spark(spark.createDataFrame(pd.DataFrame(cols)), list(cols), bins=10)
    for c, x in cols.items():
        np.testing.assert_allclose(edges[c], E.bin_edges(x, 10, split_point_masses=True), rtol=1e-12, atol=0)
    assert edges["c"] == [np.nextafter(0.0, 1.0)]  # constant 0: a bin for values it never had
    assert edges["d"] == [1.0, 2.0, 3.0, 4.0, np.nextafter(4.0, 5.0)]  # one bin per value, one above


def test_stability_bins_see_a_shift_that_toads_quantile_bins_cannot(spark):
    """A count that is 0 for 95% of applications: every decile is 0, so toad's quantile bins
    collapse into one and any shift has PSI 0. The stability bins give 0 a bin of its own."""
    rng = np.random.default_rng(12)
    base = np.where(rng.uniform(size=2001) < 0.05, rng.integers(1, 40, 2001), 0).astype(float)
    cur = np.where(rng.uniform(size=2001) < 0.30, rng.integers(1, 40, 2001), 0).astype(float)
    _, splits = toad_merge(base, method="quantile", n_bins=10, return_splits=True)
    assert len(splits) == 0 and len(np.unique(base)) > 10
    assert float(toad.metrics.PSI(np.digitize(cur, splits), np.digitize(base, splits))) == 0.0
    assert E.bin_edges(base, 10, split_point_masses=True).tolist() == [np.nextafter(0.0, 1.0)]
    df = lambda x: spark.createDataFrame(pd.DataFrame({"x": x}))  # noqa: E731
    got = Q.psi_by_column(df(cur), df(base), ["x"], bins=10)["x"]
    assert got["bins"] == 2 and got["psi"] > 0.25
    assert got["psi"] == pytest.approx(_toad_psi(base, cur), rel=1e-9)
    assert Q.psi_by_column(df(base[:1000]), df(base[1000:]), ["x"], bins=10)["x"]["psi"] < 0.01


def test_psi_counts_values_that_appear_from_nowhere_unlike_toad(spark):
    rng = np.random.default_rng(4)
    base = rng.normal(size=1001)
    cur = rng.normal(size=1001)
    cur_with_nulls = np.where(rng.uniform(size=1001) < 0.3, np.nan, cur)
    df = lambda x: spark.createDataFrame(pd.DataFrame({"x": x}))  # noqa: E731
    got = Q.psi_by_column(df(cur_with_nulls), df(base), ["x"], bins=10)["x"]
    assert got["bins"] == 10 and got["psi"] > 2.0  # 30% of rows in a bin the baseline never had
    assert got["psi"] == pytest.approx(E.psi(base, cur_with_nulls))
    # toad leaves the new bin out: it would report the same 30% of nulls as almost no drift
    _, splits = toad_merge(base, method="quantile", n_bins=10, return_splits=True)
    cur_bins = np.where(np.isnan(cur_with_nulls), -1, np.digitize(np.nan_to_num(cur_with_nulls), splits))
    assert float(toad.metrics.PSI(cur_bins, np.digitize(base, splits))) < 0.5


def test_psi_gate_thresholds():
    psi = {"a": {"psi": 0.05, "bins": 10, "n_current": 500, "n_baseline": 9000},
           "b": {"psi": 0.1, "bins": 10, "n_current": 500, "n_baseline": 9000},
           "c": {"psi": 0.3, "bins": 4, "n_current": 500, "n_baseline": 9000}}
    got = {r.column: r.status for r in Q.check_psi(psi, ["a", "b", "c"], warn=0.1, fail=0.25)}
    assert got == {"a": Q.PASS, "b": Q.WARN, "c": Q.FAIL}
    skipped = Q.check_psi(None, ["a"], warn=0.1, fail=0.25)
    assert [(r.status, r.detail) for r in skipped] == [(Q.SKIPPED, "skipped: no previous run")]


# --------------------------------------------------------------------------- all gates together
def test_first_run_passes_with_drift_reported_as_skipped(spark, settings):
    days = _days("2026-01-01", 3)
    report = _gates(_frame(spark, days, 100, seed=5), None, days, settings)
    assert report.status == Q.PASS and report.failures == []
    assert {(r.check, r.status) for r in report.results if r.check in ("null_rate", "range")} == {
        ("null_rate", Q.PASS), ("range", Q.PASS)}
    assert len([r for r in report.results if r.check == "null_rate"]) == len(SPECS)
    assert {r.detail for r in report.results if r.check in ("psi", "row_count")} == {"skipped: no previous run"}
    assert {r.column for r in report.results if r.check == "psi"} == set(FEATURES)
    assert report.summary()["skipped"] == ["psi: skipped: no previous run", "row_count: skipped: no previous run"]


def test_nightly_run_drift_fails_the_psi_gate_and_stable_data_passes(spark, settings):
    history = _frame(spark, _days("2026-01-01", 28), 300, seed=6)
    night = ["2026-01-29"]
    stable = _gates(_frame(spark, night, 300, seed=7, prefix="n"), history, night, settings)
    assert stable.status == Q.PASS, stable.to_markdown()
    assert {r.status for r in stable.results if r.check == "psi"} == {Q.PASS}
    assert _row(stable, "row_count", "*").detail == "300.0 rows/day vs median 300 over 28 trailing day(s)"
    drift = _gates(_frame(spark, night, 300, seed=7, shift=1.0, prefix="n"), history, night, settings)
    assert drift.status == Q.FAIL
    assert {r.column for r in drift.failures} >= {"size", "age_days"}
    r = _row(drift, "psi", "age_days")
    assert r.value > 0.25 and r.threshold == "warn >= 0.1, fail >= 0.25" and "300 rows vs 8400 baseline rows" in r.detail
    md = drift.to_markdown()
    assert md.splitlines()[0].startswith("quality gate: **FAIL**")
    assert "- baseline: the trailing days before the run: 28 day(s) 2026-01-01..2026-01-28" in md
    assert md.index("| fail |") < md.index("| pass |")  # failures first


def test_too_few_rows_skip_psi_with_the_reason(spark, settings):
    history = _frame(spark, _days("2026-01-01", 28), 10, seed=8)
    night = ["2026-01-29"]
    report = _gates(_frame(spark, night, 12, seed=9, prefix="n"), history, night, settings)
    assert report.status == Q.PASS
    assert _row(report, "psi", "size").detail == ("skipped: too few rows (12 staged, 280 baseline; "
                                                  "quality.psi_min_rows = 200)")
    assert _row(report, "row_count", "*").status == Q.PASS


# --------------------------------------------------------------------------- the job
def _job_world(spark, cfg, days: list[str], per_day: int, seed: int, *, bad_day: str | None = None):
    """Bronze applications for ``days`` and the matching staged features of the last day."""
    from riskgraph import schemas as S
    from riskgraph import tables as T
    from riskgraph.store import DeltaRsStore

    rng = np.random.default_rng(seed)
    apps, feats = [], []
    specs = [s for s in S.feature_specs(cfg) if s.as_of != "key"]
    for d in days:
        for i in range(per_day):
            t = dt.datetime.fromisoformat(d).replace(tzinfo=dt.timezone.utc) + dt.timedelta(minutes=10 * i)
            aid = f"A{d}-{i:04d}"
            apps.append((aid, f"P{aid}", t, d))
            row = {"application_id": aid, "applicant_id": f"P{aid}", "as_of_ts": t, "run_date": d}
            for s in specs:
                v = rng.poisson(1.0) + (1 if s.min_value == 1 else 0)
                row[s.name] = float(v) if isinstance(s.dtype, DoubleType) else int(v)
            if d == bad_day and i < 5:
                row["pit_component_size"] = 0  # a component always holds the application itself
            feats.append(row)
    app_schema = "application_id string, applicant_id string, application_ts timestamp, dt string"
    DeltaRsStore().write(spark.createDataFrame(apps, app_schema), T.BRONZE_APPLICATIONS.uri(cfg), partition_col="dt",
                         partitions=sorted(set(days)), run_id=f"bronze-{seed}")
    schema = S.feature_schema(cfg)
    last = [tuple(r[f.name] for f in schema.fields) for r in feats if r["run_date"] == days[-1]]
    return spark.createDataFrame(last, schema)


def test_write_job_keeps_the_report_and_commits_nothing_on_a_breach(spark, cfg_factory):
    from riskgraph import tables as T
    from riskgraph.jobs import write_feature_store as W
    from riskgraph.runtime import JobContext
    from riskgraph.store import DeltaRsStore

    # the catalog this test's random rows were drawn for (one breach exactly): no sn_* columns
    cfg = cfg_factory(**{"features.shared_neighbour_types": []})
    day1, day2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    staged = _job_world(spark, cfg, [day1.isoformat()], 40, seed=1)
    staged.write.parquet(T.staged_features_dir(cfg, "r1"))
    first = W.run(spark, JobContext(cfg, day1, day1, "r1"))
    assert first["quality_status"] == Q.PASS and first["feature_table_version"] == 0
    kept = json.loads(open(first["quality_report"].replace(".md", ".json")).read())
    assert kept["status"] == Q.PASS and kept["context"]["previous_version"] is None
    assert {r["detail"] for r in kept["results"] if r["check"] == "psi"} == {"skipped: no previous run"}
    assert "| range | pit_component_size | 0 | [1, inf] | pass |" in open(first["quality_report"]).read()

    staged2 = _job_world(spark, cfg, [day1.isoformat(), day2.isoformat()], 40, seed=2, bad_day=day2.isoformat())
    staged2.write.parquet(T.staged_features_dir(cfg, "r2"))
    with pytest.raises(W.QualityGateError) as e:
        W.run(spark, JobContext(cfg, day2, day2, "r2"))
    msg = str(e.value)
    assert "1 check(s) broke their threshold: range pit_component_size = 5 ([1, inf]; observed 0..4; 5 below, 0 above)" in msg
    assert "stays at version 0" in msg and "--set quality.fail_on_breach=false" in msg
    assert DeltaRsStore().version(T.FEATURES.uri(cfg)) == 0
    report = f"{T.quality_dir(cfg)}/r2.md"
    text = open(report).read()
    assert msg.endswith("`make clean` first).") and f"Report: {report}" in msg
    assert "quality gate: **FAIL**" in text and "| range | pit_component_size | 5 | [1, inf] | fail | observed 0..4; 5 below, 0 above |" in text

    # the same staged rows with the gate in report-only mode: committed, the failure still kept
    lenient = cfg_factory(**{"quality.fail_on_breach": False, "features.shared_neighbour_types": []})
    res = W.run(spark, JobContext(lenient, day2, day2, "r2"))
    assert res["quality_status"] == Q.FAIL and res["feature_table_version"] == 1
    assert [r["column"] for r in res["quality"]["not_passed"]] == ["pit_component_size"]

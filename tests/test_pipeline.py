"""The whole nightly pipeline on a small simulated world: an initial load, then a nightly
run, then a re-run of that night."""
from __future__ import annotations

import csv
import datetime as dt
import glob
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph import tables as T
from riskgraph.cli import STEPS, run_pipeline
from riskgraph.config import load_config
from riskgraph.store import DeltaRsStore

from conftest import capture_pipeline_log, copy_loaded_world
from pii_scan import outputs, pii_finder, pii_in_file, raw_pii, sqlite_text

SUMMARY_KEYS = {"run_date", "feature_table", "feature_table_version", "gang_table", "rows_in", "rows_quarantined",
                "feature_rows", "gangs", "ks_baseline", "ks_enriched", "ks_uplift", "mlflow_run_id", "step_seconds"}


@pytest.fixture(scope="module")
def world(spark, loaded_world, tmp_path_factory):
    """A copy of the session's loaded world (conftest), then the nightly run for its last day."""
    folder = tmp_path_factory.mktemp("world")
    cfg, conf = copy_loaded_world(loaded_world, folder)
    os.environ["RISKGRAPH_CONF_FOR_TESTS"] = str(conf)
    end = loaded_world.end
    steps = list(STEPS)
    upto = steps.index("assemble_features") + 1
    with capture_pipeline_log(folder / "nightly.log") as log:
        nightly = run_pipeline(cfg, run_date=end, run_id="nightly", steps=steps[:upto], spark=spark)
        # What Spark computed, kept before write_feature_store commits (and removes) the staging folder.
        staged = pd.read_parquet(T.staged_features_dir(cfg, "nightly"))
        rest = run_pipeline(cfg, run_date=end, run_id="nightly", steps=steps[upto:], spark=spark)
    nightly["details"].update(rest.pop("details"))
    nightly.update({k: v for k, v in rest.items() if v is not None})
    return {"cfg": cfg, "sim": loaded_world.sim, "load": loaded_world.load, "load_cfg": loaded_world.cfg,
            "nightly": nightly, "staged": staged, "end": end, "logs": [loaded_world.log, log]}


def test_run_record_has_the_summary(world):
    rec = world["load"]
    assert SUMMARY_KEYS <= set(rec)
    assert rec["rows_in"] > 0 and rec["feature_rows"] > 0 and rec["gangs"] > 0
    assert 0 <= rec["ks_baseline"] <= 1 and rec["ks_uplift"] == pytest.approx(rec["ks_enriched"] - rec["ks_baseline"])
    saved = json.loads(open(rec["run_record"]).read())
    assert saved["feature_table_version"] == rec["feature_table_version"]


def test_the_nightly_publishes_its_tables_as_one_set(world):
    """After write_feature_store the run's versions are the published set (riskgraph/published.py)."""
    from riskgraph.published import published
    from riskgraph.store import DeltaRsStore

    rec, cfg = world["nightly"], world["cfg"]
    assert rec["published"] is True
    m = published(cfg)
    assert m["run_id"] == "nightly" and m["run_date"] == world["end"].isoformat()
    assert m["tables"][T.FEATURES.key]["version"] == rec["feature_table_version"]
    store = DeltaRsStore()
    for t in (T.BRONZE_APPLICATIONS, T.GANGS, T.GANG_MEMBERS, T.EDGES, T.FEATURES):
        assert m["tables"][t.key] == {"uri": t.uri(cfg), "version": store.committed_version(t.uri(cfg), "nightly"),
                                      "written_by_this_run": True}


def test_counts_reconcile_and_planted_defects_are_quarantined(spark, world):
    cfg = world["cfg"]
    for rec in (world["load"], world["nightly"]):
        for name, c in rec["details"]["ingest"]["by_table"].items():
            assert c["in"] == c["kept"] + c["quarantined"], name
    q = DeltaRsStore().read(spark, T.QUARANTINE.uri(cfg)).select(
        "source", "reason", F.coalesce(F.get_json_object("record", "$.application_id"), F.get_json_object("record", "$.applicant_id")).alias("key"),
    ).toPandas()
    planted = pd.read_parquet(os.path.join(T.truth_dir(cfg), "dirty_rows.parquet"))
    for row in planted.itertuples():
        hits = q[(q.source == row.source) & q.reason.str.contains(row.defect.split(":")[0])]
        if row.key is not None and not pd.isna(row.key):
            hits = hits[hits.key == row.key]
        assert len(hits) >= 1, f"planted {row.source}/{row.defect} {row.key} not quarantined"
    # Anything quarantined beyond the planted defects is explained by them: outcomes whose
    # application was itself rejected.
    planted_apps = set(planted[planted.source == "applications"].key.dropna())
    extra = q[~q.set_index(["source", "key"]).index.isin(planted.set_index(["source", "key"]).index)]
    extra = extra[~extra.reason.str.startswith("null_key")]  # no key to match on
    assert set(extra.source) <= {"outcomes"} and extra.reason.str.startswith("orphan").all(), extra.head()
    assert set(extra.key) <= planted_apps


def test_feature_table_read_independently_equals_what_spark_computed(world):
    cfg, staged = world["cfg"], world["staged"]
    dt_ = DeltaTable(T.FEATURES.uri(cfg))
    table = pads.dataset(dt_.file_uris(), partitioning="hive").to_table(use_threads=False).to_pandas()
    day = table[table.run_date.astype(str) == world["end"].isoformat()]
    cols = list(staged.columns)
    a = staged.sort_values("application_id").reset_index(drop=True)[cols]
    b = day.assign(run_date=day.run_date.astype(str)).sort_values("application_id").reset_index(drop=True)[cols]
    assert len(a) == world["nightly"]["feature_rows"] > 0
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    # every column documented in the table's schema, with the catalog's own words
    from riskgraph.schemas import feature_specs

    stored = {f.name: (f.metadata or {}).get("comment") for f in dt_.schema().fields}
    assert stored == {s.name: s.description for s in feature_specs(cfg)}


def test_rerun_of_a_date_replaces_it_with_identical_rows(spark, world):
    cfg, end = world["cfg"], world["end"]
    store = DeltaRsStore()
    before_v = store.version(T.FEATURES.uri(cfg))
    before = store.read(spark, T.FEATURES.uri(cfg)).cache()
    gangs_before = store.read(spark, T.GANG_MEMBERS.uri(cfg)).filter(F.col("run_date") == end.isoformat()).cache()
    gangs_before.count()
    rec = run_pipeline(cfg, run_date=end, run_id="nightly-rerun", steps=list(STEPS)[:list(STEPS).index("write_feature_store") + 1], spark=spark)
    assert rec["feature_table_version"] == before_v + 1
    assertDataFrameEqual(store.read(spark, T.FEATURES.uri(cfg)), before)  # same input → same features
    assertDataFrameEqual(store.read(spark, T.GANG_MEMBERS.uri(cfg)).filter(F.col("run_date") == end.isoformat()), gangs_before)
    before.unpersist()
    # Airflow retries a write that had committed (its staged hand-off is gone by now): a no-op
    retry = run_pipeline(cfg, run_date=end, run_id="nightly-rerun", steps=["write_feature_store"], spark=spark)
    assert retry["details"]["write_feature_store"]["committed"] is False
    assert retry["feature_table_version"] == before_v + 1 == store.version(T.FEATURES.uri(cfg))


def test_no_raw_pii_in_any_output(world):
    """Raw phones, emails, names and national ids appear nowhere the pipeline writes: its
    tables, run records, quality reports, MLflow's artifacts and database, and its logs."""
    cfg = world["cfg"]
    pii, names = raw_pii(cfg)
    assert len(pii) > 1000
    find = pii_finder(pii)
    assert find("x" + next(iter(pii)) + "x")  # the matcher finds what it must

    root = cfg.paths.root
    files = outputs(root)
    assert any(p.endswith(".parquet") for p in files)
    assert glob.glob(os.path.join(root, "runs", "*.json")) and glob.glob(os.path.join(root, "quality", "*.md"))
    found = [hit for p in files for hit in pii_in_file(p, find, names)]
    assert not found, f"{len(found)} raw PII value(s) in the outputs, e.g. {found[:3]}"

    # MLflow: every artifact file (tables, plots, the logged model) and the tracking database,
    # of the load (the loaded world's store) and of the nightly run (this copy's store)
    for mlflow_cfg in (world["load_cfg"].mlflow, cfg.mlflow):
        artifacts = [p for p in Path(mlflow_cfg.artifact_root).rglob("*") if p.is_file()]
        assert {"feature_stability.csv", "lift_enriched.csv", "MLmodel"} <= {p.name for p in artifacts}
        for p in artifacts:
            found = find(p.read_bytes().decode("latin-1"))  # byte for byte: binary files too
            assert not found, f"MLflow artifact {p} holds raw PII, e.g. {found[:1]}"
        db = sqlite_text(mlflow_cfg.tracking_uri.removeprefix("sqlite:///"))
        assert "riskgraph.run_id" in db and "riskgraph-credit-enriched" in db and "cfg.simulation.seed" in db
        found = find(db)
        assert not found, f"the MLflow database holds raw PII, e.g. {found[:1]}"

    # the logs the pipeline wrote while it ran (simulate and load, then the nightly run)
    for log in world["logs"]:
        text = Path(log).read_text(encoding="utf-8")
        assert "riskgraph.write_feature_store" in text and "quality gate" in text and "riskgraph.evaluate" in text
        found = find(text)
        assert not found, f"the pipeline's log {log} holds raw PII, e.g. {found[:1]}"


def test_quality_gate_reports_are_kept_and_summarised(world):
    load = world["load"]["details"]["write_feature_store"]
    nightly = world["nightly"]["details"]["write_feature_store"]
    assert load["quality_status"] == "pass" and nightly["quality_status"] in ("pass", "warn")
    assert load["quality_report"] == f"{world['load_cfg'].paths.root}/quality/load.md" and os.path.isfile(load["quality_report"])
    # first write: nothing to compare with
    assert load["quality"]["skipped"] == ["psi: skipped: no previous run", "row_count: skipped: no previous run"]
    kept = json.loads(Path(nightly["quality_report"]).with_suffix(".json").read_text())
    assert kept["context"]["previous_version"] == world["load"]["feature_table_version"]
    assert kept["context"]["baseline"].startswith("the trailing days before the run: 28 day(s)")
    checks = {(r["check"], r["column"]): r for r in kept["results"]}
    assert checks[("row_count", "*")]["status"] == "pass"
    assert checks[("range", "pit_component_size")]["status"] == "pass"
    assert {r["status"] for r in kept["results"] if r["check"] == "null_rate"} == {"pass"}
    saved = json.loads(open(world["load"]["run_record"]).read())
    assert saved["details"]["write_feature_store"]["quality"]["counts"]["fail"] == 0


def test_analyst_notebook_runs_top_to_bottom(world, monkeypatch, capsys):
    import runpy
    import sys

    from riskgraph.config import PROJECT_ROOT

    monkeypatch.setenv("RISKGRAPH_CONF", os.environ["RISKGRAPH_CONF_FOR_TESTS"])
    monkeypatch.setattr(sys, "argv", ["investigate_gang.py"])
    runpy.run_path(str(PROJECT_ROOT / "notebooks" / "investigate_gang.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "linked through" in out and "subgraph picture:" in out
    picture = out.split("subgraph picture:")[1].strip().splitlines()[0]
    assert os.path.getsize(picture) > 10_000


def test_late_landing_application_gets_its_feature_row_that_night(spark, world):
    """An application dated two days ago lands tonight (issue 13): tonight's run writes its
    feature row (its own date's partition, rebuilt with it), and a staged hand-off that
    lacks it fails the reconciliation instead of passing silently."""
    from riskgraph.jobs.write_feature_store import FeatureStoreError

    # later than every other test's dates; quality gates only report (this is about late rows)
    cfg = load_config("test", os.environ["RISKGRAPH_CONF_FOR_TESTS"], {"quality.fail_on_breach": False})
    store = DeltaRsStore()
    end = world["end"]
    tonight, dated = end + dt.timedelta(days=1), end - dt.timedelta(days=1)
    src = Path(T.raw_dir(cfg, "applications")) / f"dt={end.isoformat()}" / "part-00000.csv"
    header, first = src.read_text().splitlines()[:2]
    cols = header.split(",")
    fields = dict(zip(cols, next(csv.reader([first]))))
    fields.update(application_id="LATE-0001", application_ts=f"{dated.isoformat()}T12:00:00Z")
    out = Path(T.raw_dir(cfg, "applications")) / f"dt={tonight.isoformat()}"
    out.mkdir(parents=True)
    (out / "part-00000.csv").write_text(header + "\n" + ",".join(f'"{fields[c]}"' if "," in fields[c] else fields[c] for c in cols) + "\n")
    before = store.read(spark, T.FEATURES.uri(cfg)).filter(F.col("run_date") == dated.isoformat()).select("application_id").toPandas()

    steps = ["ingest", "build_graph", "shared_neighbours", "assemble_features"]
    run_pipeline(cfg, run_date=tonight, run_id="late-1", steps=steps, spark=spark)
    staged = Path(T.staged_features_dir(cfg, "late-1"))
    table = pads.dataset(str(staged), format="parquet").to_table(use_threads=False)
    assert "LATE-0001" in set(table.column("application_id").to_pylist())  # assemble_features included the late date
    # a hand-off without the late row must not commit
    for f in staged.glob("*.parquet"):
        f.unlink()
    keep = pa.compute.not_equal(table.column("application_id"), "LATE-0001")
    pq.write_table(table.filter(keep), staged / "part-00000.parquet")
    with pytest.raises(FeatureStoreError, match="1 missing, 0 unexpected, 0 duplicated"):
        run_pipeline(cfg, run_date=tonight, run_id="late-1", steps=["write_feature_store"], spark=spark)

    run_pipeline(cfg, run_date=tonight, run_id="late-2", steps=steps + ["write_feature_store"], spark=spark)
    after = store.read(spark, T.FEATURES.uri(cfg)).filter(F.col("run_date") == dated.isoformat()).select(
        "application_id", "as_of_ts").toPandas()
    assert set(after.application_id) == set(before.application_id) | {"LATE-0001"}
    late = after[after.application_id == "LATE-0001"].iloc[0]
    assert pd.Timestamp(late.as_of_ts).strftime("%Y-%m-%dT%H:%M") == f"{dated.isoformat()}T12:00"

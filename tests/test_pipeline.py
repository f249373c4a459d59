"""The whole nightly pipeline on a small simulated world: an initial load, then a nightly
run, then a re-run of that night."""
from __future__ import annotations

import csv
import datetime as dt
import glob
import json
import logging
import os
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph import tables as T
from riskgraph.cli import STEPS, run_pipeline
from riskgraph.config import load_config
from riskgraph.simulator import simulate_world
from riskgraph.store import DeltaRsStore

SUMMARY_KEYS = {"run_date", "feature_table", "feature_table_version", "gang_table", "rows_in", "rows_quarantined",
                "feature_rows", "gangs", "ks_baseline", "ks_enriched", "ks_uplift", "mlflow_run_id", "step_seconds"}


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # riskgraph.runtime.setup_logging's


@pytest.fixture(scope="module")
def pipeline_log(tmp_path_factory):
    """Everything the pipeline logs while the world is built, as the CLI would print it
    (riskgraph at INFO, libraries at their own levels), kept in a file to scan."""
    path = tmp_path_factory.mktemp("logs") / "pipeline.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    ours = logging.getLogger("riskgraph")
    level = ours.level
    ours.setLevel(logging.INFO)
    # root catches what propagates; mlflow's own logger may not propagate
    targets = [logging.getLogger(), logging.getLogger("mlflow")]
    for lg in targets:
        lg.addHandler(handler)
    yield path
    for lg in targets:
        lg.removeHandler(handler)
    ours.setLevel(level)
    handler.close()


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory, pipeline_log):
    root = tmp_path_factory.mktemp("world")
    conf = root / "conf.yaml"
    conf.write_text(yaml.safe_dump({
        "paths": {"root": str(root / "data"), "checkpoint_dir": str(root / "ckpt")},
        "mlflow": {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_root": str(root / "mlflow-art")},
    }))
    cfg = load_config("test", conf)
    os.environ["RISKGRAPH_CONF_FOR_TESTS"] = str(conf)
    sim = simulate_world(cfg.simulation, cfg.paths.root)
    end = cfg.simulation.end_date
    load = run_pipeline(cfg, run_date=end - dt.timedelta(days=1), from_date=cfg.simulation.start_date, run_id="load", spark=spark)
    steps = list(STEPS)
    upto = steps.index("assemble_features") + 1
    nightly = run_pipeline(cfg, run_date=end, run_id="nightly", steps=steps[:upto], spark=spark)
    # What Spark computed, kept before write_feature_store commits (and removes) the staging folder.
    staged = pd.read_parquet(T.staged_features_dir(cfg, "nightly"))
    rest = run_pipeline(cfg, run_date=end, run_id="nightly", steps=steps[upto:], spark=spark)
    nightly["details"].update(rest.pop("details"))
    nightly.update({k: v for k, v in rest.items() if v is not None})
    return {"cfg": cfg, "sim": sim, "load": load, "nightly": nightly, "staged": staged, "end": end, "log": pipeline_log}


def test_run_record_has_the_summary(world):
    rec = world["load"]
    assert SUMMARY_KEYS <= set(rec)
    assert rec["rows_in"] > 0 and rec["feature_rows"] > 0 and rec["gangs"] > 0
    assert 0 <= rec["ks_baseline"] <= 1 and rec["ks_uplift"] == pytest.approx(rec["ks_enriched"] - rec["ks_baseline"])
    saved = json.loads(open(rec["run_record"]).read())
    assert saved["feature_table_version"] == rec["feature_table_version"]


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


def _pii_finder(pii: set[str]):
    """A fast exact matcher for many strings: index them by their first k characters and
    check only the positions where such a prefix occurs (one pass per text, instead of one
    substring search per PII value)."""
    k = min(len(v) for v in pii)
    by_prefix: dict[str, list[str]] = {}
    for v in pii:
        by_prefix.setdefault(v[:k], []).append(v)

    def find(text: str) -> list[str]:
        hits = []
        for i in range(len(text) - k + 1):
            cands = by_prefix.get(text[i:i + k])
            if cands:
                hits += [v for v in cands if text.startswith(v, i)]
        return hits

    return find


def _sqlite_text(path: str) -> str:
    """Every value of every table of an SQLite database (MLflow: params, tags, metrics,
    registered models and their version tags), as text."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        parts = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in con.execute(f'SELECT * FROM "{table}"'):
                parts.append("\t".join("" if v is None else (v.decode("utf-8", "ignore") if isinstance(v, bytes) else str(v))
                                       for v in row))
        return "\n".join(parts)
    finally:
        con.close()


def test_no_raw_pii_in_any_output(world):
    """Raw phones, emails, names and national ids appear nowhere the pipeline writes: its
    tables, run records, quality reports, MLflow's artifacts and database, and its logs."""
    cfg = world["cfg"]
    raw = []
    for table, cols in (("applications", ["email", "phone"]), ("applicants", ["full_name", "national_id"])):
        for f in glob.glob(os.path.join(T.raw_dir(cfg, table), "dt=*", "*.csv")):
            raw.append(pd.read_csv(f, dtype=str, usecols=cols))
    values = {(col, v) for df in raw for col in df.columns for v in df[col].dropna()}
    # as written, and as the pipeline normalises them before hashing (a normalised raw value is
    # still raw). Searched inside any text. A normalised name ('ZHOU XIN') also spells ordinary
    # words of company names, so names are searched as written, and normalised only as whole cells.
    variants = {"email": lambda v: v.strip().lower(), "phone": lambda v: re.sub(r"[^0-9]", "", v),
                "national_id": lambda v: re.sub(r"[^0-9A-Za-z]", "", v).upper(), "full_name": lambda v: v}
    pii = {x for col, v in values for x in (v, variants[col](v)) if len(x) >= 6}
    names = {" ".join(v.upper().split()) for col, v in values if col == "full_name"}
    assert len(pii) > 1000
    find = _pii_finder(pii)
    assert find("x" + next(iter(pii)) + "x")  # the matcher finds what it must

    root = cfg.paths.root
    outputs = [p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
               if os.path.isfile(p) and not p.startswith((os.path.join(root, "raw"), os.path.join(root, "truth")))]
    assert any(p.endswith(".parquet") for p in outputs)
    assert glob.glob(os.path.join(root, "runs", "*.json")) and glob.glob(os.path.join(root, "quality", "*.md"))
    for p in outputs:
        if p.endswith(".parquet"):
            tbl = pq.read_table(p)
            for name in tbl.column_names:
                if str(tbl.schema.field(name).type) == "string":  # anywhere inside a cell: JSON records, vertex ids
                    cells = [v for v in tbl.column(name).unique().to_pylist() if v]
                    found = find("\n".join(cells)) + sorted(names.intersection(cells))[:1]
                    assert not found, f"{p}:{name} holds raw PII, e.g. {found[:1]}"
        else:  # run records, quality reports, Delta logs, checksums: any other file, as text
            found = find(open(p, "rb").read().decode("utf-8", "ignore"))
            assert not found, f"{p} holds raw PII, e.g. {found[:1]}"

    # MLflow: every artifact file (tables, plots, the logged model) and the tracking database
    artifacts = [p for p in Path(cfg.mlflow.artifact_root).rglob("*") if p.is_file()]
    assert {"feature_stability.csv", "lift_enriched.csv", "MLmodel"} <= {p.name for p in artifacts}
    for p in artifacts:
        found = find(p.read_bytes().decode("latin-1"))  # byte for byte: binary files too
        assert not found, f"MLflow artifact {p} holds raw PII, e.g. {found[:1]}"
    db = _sqlite_text(cfg.mlflow.tracking_uri.removeprefix("sqlite:///"))
    assert "riskgraph.run_id" in db and "riskgraph-credit-enriched" in db and "cfg.simulation.seed" in db
    found = find(db)
    assert not found, f"the MLflow database holds raw PII, e.g. {found[:1]}"

    # the logs the pipeline wrote while it ran
    text = Path(world["log"]).read_text(encoding="utf-8")
    assert "riskgraph.write_feature_store" in text and "quality gate" in text and "riskgraph.evaluate" in text
    found = find(text)
    assert not found, f"the pipeline's log holds raw PII, e.g. {found[:1]}"


def test_quality_gate_reports_are_kept_and_summarised(world):
    cfg = world["cfg"]
    load = world["load"]["details"]["write_feature_store"]
    nightly = world["nightly"]["details"]["write_feature_store"]
    assert load["quality_status"] == "pass" and nightly["quality_status"] in ("pass", "warn")
    assert load["quality_report"] == f"{cfg.paths.root}/quality/load.md" and os.path.isfile(load["quality_report"])
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

"""Operating riskgraph as a newcomer (issue 13, item 8): steps named as the sub-commands are,
a features command that says what it needs, one root that moves everything under it, and
steps run one at a time that find each other's hand-off by the run's dates."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from riskgraph import tables as T
from riskgraph.cli import STEPS, main, parse_steps
from riskgraph.config import load_config
from riskgraph.runtime import JobContext, default_run_id


def test_steps_take_hyphens_or_underscores_in_nightly_order():
    assert parse_steps("assemble-features, write_feature_store") == ["assemble_features", "write_feature_store"]
    assert parse_steps(",".join(STEPS)) == list(STEPS)
    with pytest.raises(SystemExit, match=r"unknown step\(s\) \['build_grph'\]; steps, in nightly order: ingest, ingest-media"):
        parse_steps("build-grph")
    with pytest.raises(SystemExit, match="must follow the nightly order"):
        parse_steps("write-feature-store,assemble-features")
    with pytest.raises(SystemExit, match="more than once"):
        parse_steps("ingest,ingest")
    with pytest.raises(SystemExit, match="empty"):
        parse_steps(" , ")


def test_features_describe_without_a_name_says_what_it_needs(capsys):
    assert main(["features", "describe", "--env", "test"]) == 2
    err = capsys.readouterr().err
    assert "usage: riskgraph features describe NAME" in err and "None" not in err


def test_moving_the_root_moves_checkpoints_and_mlflow(tmp_path):
    cfg = load_config("test", overrides={"paths.root": str(tmp_path / "elsewhere")})
    root = str(tmp_path / "elsewhere")
    assert cfg.paths.checkpoint_dir == f"{root}/_checkpoints"
    assert cfg.mlflow.tracking_uri == f"sqlite:///{root}/mlflow.db"
    assert cfg.mlflow.artifact_root == f"{root}/mlflow-artifacts"
    # relative roots resolve against the project, as before
    rel = load_config("test", overrides={"paths.root": "var/other"})
    assert rel.paths.checkpoint_dir.endswith("/var/other/_checkpoints") and rel.paths.checkpoint_dir.startswith("/")
    assert rel.mlflow.tracking_uri.startswith("sqlite:////") and rel.mlflow.tracking_uri.endswith("/var/other/mlflow.db")
    # an explicit setting still wins
    own = load_config("test", overrides={"paths.root": root, "mlflow.tracking_uri": "http://mlflow:5000"})
    assert own.mlflow.tracking_uri == "http://mlflow:5000"


def _stage(cfg, run_id: str, complete: bool = True) -> Path:
    d = Path(T.staged_features_dir(cfg, run_id))
    d.mkdir(parents=True)
    (d / "part-0.parquet").write_bytes(b"")
    if complete:
        (d / "_SUCCESS").write_bytes(b"")
    return d


def test_write_feature_store_finds_the_staged_features_by_run_dates(cfg_factory):
    cfg = cfg_factory()
    day = dt.date(2026, 3, 1)
    older = default_run_id(day, day)
    newer = default_run_id(day, day)
    assert newer > older  # default ids sort by their UTC stamp
    _stage(cfg, older)
    _stage(cfg, newer)
    _stage(cfg, default_run_id(day, day), complete=False)  # a killed assemble-features: ignored
    _stage(cfg, default_run_id(dt.date(2026, 3, 2), dt.date(2026, 3, 2)))  # another window: ignored
    alone = JobContext(cfg=cfg, run_date=day, from_date=day, run_id=default_run_id(day, day), run_id_given=False)
    assert T.find_staged_features(cfg, alone) == T.staged_features_dir(cfg, newer)
    # with --run-id the run's own folder, and a clear error when it is not there
    pinned = JobContext(cfg=cfg, run_date=day, from_date=day, run_id=older)
    assert T.find_staged_features(cfg, pinned) == T.staged_features_dir(cfg, older)
    missing = JobContext(cfg=cfg, run_date=day, from_date=day, run_id="nightly-7")
    with pytest.raises(T.HandOffError, match="no staged features for run id nightly-7 .*`riskgraph assemble-features "
                                             "--from-date 2026-03-01 --run-date 2026-03-01 --run-id nightly-7` first"):
        T.find_staged_features(cfg, missing)
    other = JobContext(cfg=cfg, run_date=dt.date(2026, 3, 9), from_date=dt.date(2026, 3, 9), run_id="x", run_id_given=False)
    with pytest.raises(T.HandOffError, match="no staged features for 2026-03-09..2026-03-09"):
        T.find_staged_features(cfg, other)


def test_steps_of_a_run_read_what_their_run_committed(spark, cfg_factory):
    """Run A's downstream steps read bronze as A's ingest committed it, even after run B
    committed another version; a step of no known run reads the latest."""
    from riskgraph.inputs import read_for_run, run_version
    from riskgraph.store import DeltaRsStore

    cfg = cfg_factory()
    store = DeltaRsStore()
    uri = T.BRONZE_OUTCOMES.uri(cfg)
    rows = lambda d, n: spark.createDataFrame([(f"{d}-{i}", "good", dt.datetime(2026, 1, 1), d) for i in range(n)],  # noqa: E731
                                              "application_id string, outcome string, known_ts timestamp, dt string")
    store.write(rows("2026-01-01", 3), uri, partition_col="dt", partitions=["2026-01-01"], run_id="A")
    store.write(rows("2026-01-02", 2), uri, partition_col="dt", partitions=["2026-01-02"], run_id="B")
    day = dt.date(2026, 1, 2)
    a = JobContext(cfg=cfg, run_date=day, from_date=day, run_id="A")
    other = JobContext(cfg=cfg, run_date=day, from_date=day, run_id="C")
    assert run_version(store, uri, a) == 0 and run_version(store, uri, other) is None
    assert read_for_run(spark, store, a, T.BRONZE_OUTCOMES).count() == 3
    assert read_for_run(spark, store, other, T.BRONZE_OUTCOMES).count() == 5


def test_long_spark_steps_log_their_progress(spark, caplog):
    """SparkProgress reports tasks done / total while a slow job runs, and nothing after it."""
    import logging
    import time

    from riskgraph.runtime import SparkProgress

    def slow(rows):
        time.sleep(0.6)
        yield sum(1 for _ in rows)

    with caplog.at_level(logging.INFO, logger="riskgraph.test_progress"):
        with SparkProgress(spark, "slow step", every_s=0.2, logger=logging.getLogger("riskgraph.test_progress")) as p:
            assert spark.sparkContext.parallelize(range(40), 4).mapPartitions(slow).sum() == 40
        n_during = sum(r.name == "riskgraph.test_progress" for r in caplog.records)
        time.sleep(0.5)
    lines = [r.getMessage() for r in caplog.records if r.name == "riskgraph.test_progress"]
    assert len(lines) == n_during  # the thread stopped with the block
    assert lines and all(m.startswith("slow step: ") and "/4 tasks done" in m for m in lines), lines
    assert p.snapshot() == (0, 0, 0)  # nothing active once the job is over

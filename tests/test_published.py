"""Run-level publishing (issue 13, item 6): a run killed half-way leaves the published set
at the last complete run, the pointer only moves forward, a rerun converges, and the
training API reads the published feature-table version."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from riskgraph import tables as T
from riskgraph.published import NotPublishedError, publish, published, read_published
from riskgraph.runtime import JobContext
from riskgraph.store import DeltaRsStore
from riskgraph.training import get_training_set

DAY = dt.date(2026, 1, 2)


def _write(spark, cfg, table: T.Table, ids: list[str], run_id: str) -> int:
    df = spark.createDataFrame([(i, DAY.isoformat()) for i in ids], "application_id string, run_date string")
    return DeltaRsStore().write(df, table.uri(cfg), partition_col="run_date", partitions=[DAY.isoformat()], run_id=run_id).version


def _ctx(cfg, run_id: str) -> JobContext:
    return JobContext(cfg=cfg, run_date=DAY, from_date=DAY, run_id=run_id)


def _ids(spark, cfg, table: T.Table) -> list[str]:
    return sorted(r.application_id for r in read_published(spark, cfg, table, DeltaRsStore()).collect())


def test_a_half_done_run_stays_unpublished_and_a_rerun_converges(spark, cfg_factory):
    cfg = cfg_factory()
    store = DeltaRsStore()
    with pytest.raises(NotPublishedError, match="no run has published"):
        published(cfg)

    # night 1 writes gangs and features, then publishes them as one set
    _write(spark, cfg, T.GANGS, ["g1"], "n1")
    _write(spark, cfg, T.FEATURES, ["f1"], "n1")
    m1 = publish(cfg, store, _ctx(cfg, "n1"))
    assert m1["moved"] and published(cfg)["run_id"] == "n1"
    assert {k: v["version"] for k, v in published(cfg)["tables"].items()} == {T.GANGS.key: 0, T.FEATURES.key: 0}

    # night 2 is killed after its gangs commit: readers of the published set still get night 1
    _write(spark, cfg, T.GANGS, ["g2"], "n2")
    assert _ids(spark, cfg, T.GANGS) == ["g1"] and _ids(spark, cfg, T.FEATURES) == ["f1"]
    assert store.version(T.GANGS.uri(cfg)) == 1  # while the table's latest is night 2's

    # its rerun commits the rest (gangs: already committed, a no-op) and publishes
    assert _write(spark, cfg, T.GANGS, ["g2"], "n2") == 1
    _write(spark, cfg, T.FEATURES, ["f2"], "n2")
    m2 = publish(cfg, store, _ctx(cfg, "n2"))
    assert m2["moved"] and _ids(spark, cfg, T.GANGS) == ["g2"] and _ids(spark, cfg, T.FEATURES) == ["f2"]
    assert all(v["written_by_this_run"] for v in m2["tables"].values())

    # a stale publish (night 1 again, or the slower of two concurrent runs) does not move it back
    assert not publish(cfg, store, _ctx(cfg, "n1"))["moved"]
    assert published(cfg)["run_id"] == "n2"
    # publishing the same run again converges on the same set
    again = publish(cfg, store, _ctx(cfg, "n2"))
    assert again["moved"] and again["tables"] == m2["tables"]

    # each run's manifest is kept for audit; the pointer is never half-written (renamed in)
    runs = Path(T.runs_dir(cfg))
    assert sorted(p.name for p in (runs / "published").glob("*.json")) == ["n1.json", "n2.json"]
    assert json.loads((runs / "PUBLISHED").read_text())["run_id"] == "n2"
    assert not list(runs.rglob("*.tmp"))

    # a table the run did not write is listed at its latest version when it published
    _write(spark, cfg, T.SUPER_NODES, ["s3"], "other")
    m3 = publish(cfg, store, _ctx(cfg, "n3"))
    assert m3["moved"] and m3["tables"][T.SUPER_NODES.key] == {"uri": T.SUPER_NODES.uri(cfg), "version": 0,
                                                               "written_by_this_run": False}


def test_training_set_reads_the_published_feature_version(spark, cfg_factory):
    cfg = cfg_factory()
    store = DeltaRsStore()
    spine = spark.createDataFrame([("A1", dt.datetime(2026, 1, 9, tzinfo=dt.timezone.utc))],
                                  "application_id string, as_of_ts timestamp")
    with pytest.raises(NotPublishedError):
        get_training_set(spark, cfg, spine, version="published")
    from test_training import BASE_ROWS, _write_features

    _write_features(spark, cfg, BASE_ROWS, "n1")
    publish(cfg, store, _ctx(cfg, "n1"))
    _write_features(spark, cfg, BASE_ROWS[:1], "n2")  # a run still writing (or killed): version 1, unpublished
    assert get_training_set(spark, cfg, spine, version="published").feature_table_version == 0
    assert get_training_set(spark, cfg, spine).feature_table_version == 1
    with pytest.raises(ValueError, match='"published"'):
        get_training_set(spark, cfg, spine, version="latest")
    with pytest.raises(ValueError, match="pass cfg"):
        get_training_set(spark, None, spine, feature_table=T.FEATURES.uri(cfg), version="published")

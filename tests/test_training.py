"""Training-set API: as-of joins against hand-built expectations, version pinning, pandas,
and the PyTorch loaders (sharded across DataLoader workers, every row exactly once)."""
from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
import torch
from pyspark.testing import assertDataFrameEqual

from riskgraph import tables as T
from riskgraph.schemas import feature_schema
from riskgraph.store import DeltaRsStore
from riskgraph.config import PROJECT_ROOT
from riskgraph.training import (
    ENTITY_COLUMNS,
    DeltaSnapshotDataset,
    ParquetIterableDataset,
    available_features,
    entity_columns,
    get_training_set,
)

UTC = dt.timezone.utc
FEATS = ["prior_apps_same_device", "pit_component_size", "pit_component_age_days"]
FEATS_DDL = "prior_apps_same_device long, pit_component_size long, pit_component_age_days double"


def _ts(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def _write_features(spark, cfg, rows: list[dict], run_id: str):
    """Write feature rows (unlisted features null) with the store; returns the write result."""
    schema = feature_schema(cfg)
    data = [tuple(r.get(f.name) for f in schema.fields) for r in rows]
    df = spark.createDataFrame(data, schema)
    parts = sorted({r["run_date"] for r in rows})
    return DeltaRsStore().write(df, T.FEATURES.uri(cfg), partition_col="run_date", partitions=parts, run_id=run_id)


def _row(app: str, applicant: str, t: dt.datetime, device, size, age) -> dict:
    return {"application_id": app, "applicant_id": applicant, "as_of_ts": t, "run_date": t.date().isoformat(),
            "prior_apps_same_device": device, "pit_component_size": size, "pit_component_age_days": age}


BASE_ROWS = [
    _row("A1", "P1", _ts(1, 10), 1, 2, 0.5),
    _row("A2", "P1", _ts(2, 9), 3, 3, 1.0),
    _row("A3", "P2", _ts(2, 12), 0, 1, None),
]

SPINE_DDL = "application_id string, as_of_ts timestamp, label int, note string"
SPINE = [
    ("A1", _ts(1, 11), 1, "after"),
    ("A2", _ts(2, 9), 0, "equal"),
    ("A3", _ts(2, 11, 59), 1, "before"),
    ("A9", _ts(3), 0, "unknown entity"),
    ("A1", None, 0, "no time"),
    ("A1", _ts(5), 1, "duplicate entity, later"),
]
# What each spine row must get: the application's own row once its time has come.
EXPECTED = [
    ("A1", _ts(1, 11), 1, "after", 1, 2, 0.5),
    ("A2", _ts(2, 9), 0, "equal", 3, 3, 1.0),
    ("A3", _ts(2, 11, 59), 1, "before", None, None, None),
    ("A9", _ts(3), 0, "unknown entity", None, None, None),
    ("A1", None, 0, "no time", None, None, None),
    ("A1", _ts(5), 1, "duplicate entity, later", 1, 2, 0.5),
]


def test_as_of_join_matches_hand_built_expectation(spark, cfg_factory):
    cfg = cfg_factory()
    _write_features(spark, cfg, BASE_ROWS, "load")
    ts = get_training_set(spark, cfg, spark.createDataFrame(SPINE, SPINE_DDL), features=FEATS)
    assertDataFrameEqual(ts.to_spark(), spark.createDataFrame(EXPECTED, f"{SPINE_DDL}, {FEATS_DDL}"))
    assert ts.df.columns == ["application_id", "as_of_ts", "label", "note", *FEATS]
    assert ts.match_counts == {"rows": 6, "matched": 3, "unknown_entity": 1, "before_first_feature_row": 1, "null_time": 1}
    assert (ts.feature_table_version, ts.features) == (0, tuple(FEATS))
    # column documentation travels with the features
    assert ts.df.schema["pit_component_size"].metadata["comment"].startswith("size, including this application")


def test_applicant_entity_takes_latest_row_at_or_before_time(spark, cfg_factory):
    """Joining on applicant_id: several feature rows per entity, the newest usable one wins."""
    cfg = cfg_factory()
    _write_features(spark, cfg, BASE_ROWS, "load")
    spine = spark.createDataFrame([
        ("P1", _ts(1, 9), 0.0),      # before A1
        ("P1", _ts(2, 8, 59), 1.0),  # after A1, before A2 -> A1
        ("P1", _ts(9), 0.0),         # after both -> A2
        ("P2", _ts(2, 12), 1.0),     # equal to A3 -> A3
    ], "applicant_id string, t timestamp, y double")
    ts = get_training_set(spark, cfg, spine, features=FEATS, entity_col="applicant_id", time_col="t")
    expected = spark.createDataFrame([
        ("P1", _ts(1, 9), 0.0, None, None, None),
        ("P1", _ts(2, 8, 59), 1.0, 1, 2, 0.5),
        ("P1", _ts(9), 0.0, 3, 3, 1.0),
        ("P2", _ts(2, 12), 1.0, 0, 1, None),
    ], f"applicant_id string, t timestamp, y double, {FEATS_DDL}")
    assertDataFrameEqual(ts.df, expected)
    assert ts.match_counts["before_first_feature_row"] == 1


def test_version_pinning_and_delta_snapshot_dataset(spark, cfg_factory):
    cfg = cfg_factory()
    uri = T.FEATURES.uri(cfg)
    assert _write_features(spark, cfg, BASE_ROWS, "v0").version == 0
    replaced = [_row("A2", "P1", _ts(2, 9), 30, 33, 10.0), _row("A3", "P2", _ts(2, 12), 40, 44, 20.0)]
    assert _write_features(spark, cfg, replaced, "v1").version == 1  # replaces run_date 2026-01-02
    spine = spark.createDataFrame([("A1", _ts(9), 1), ("A2", _ts(9), 0), ("A3", _ts(9), 1)],
                                  "application_id string, as_of_ts timestamp, label int")
    ddl = f"application_id string, as_of_ts timestamp, label int, {FEATS_DDL}"
    old = get_training_set(spark, cfg, spine, features=FEATS, version=0)
    new = get_training_set(spark, cfg, spine, features=FEATS)
    assert (old.feature_table_version, new.feature_table_version) == (0, 1)
    assertDataFrameEqual(old.df, spark.createDataFrame(
        [("A1", _ts(9), 1, 1, 2, 0.5), ("A2", _ts(9), 0, 3, 3, 1.0), ("A3", _ts(9), 1, 0, 1, None)], ddl))
    assertDataFrameEqual(new.df, spark.createDataFrame(
        [("A1", _ts(9), 1, 1, 2, 0.5), ("A2", _ts(9), 0, 30, 33, 10.0), ("A3", _ts(9), 1, 40, 44, 20.0)], ddl))
    with pytest.raises(ValueError, match="version or timestamp"):
        get_training_set(spark, cfg, spine, version=0, timestamp="2026-01-01T00:00:00Z")

    # Raw feature rows straight from a Delta version's files, no Spark, no spine.
    def rows(ds):
        x = torch.cat(list(ds))
        return sorted(tuple(None if math.isnan(v) else v for v in r) for r in x.tolist())

    cols = ["prior_apps_same_device", "pit_component_size", "pit_component_age_days"]
    v0 = DeltaSnapshotDataset(uri, batch_size=2, feature_cols=cols, version=0)
    v1 = DeltaSnapshotDataset(uri, batch_size=2, feature_cols=cols)
    assert (v0.version, v1.version) == (0, 1)
    assert rows(v0) == [(0.0, 1.0, None), (1.0, 2.0, 0.5), (3.0, 3.0, 1.0)]
    assert rows(v1) == [(1.0, 2.0, 0.5), (30.0, 33.0, 10.0), (40.0, 44.0, 20.0)]
    assert all(b.shape[0] <= 2 and b.dtype == torch.float32 for b in v1)
    # default columns: every numeric column, i.e. exactly the catalog's features
    assert DeltaSnapshotDataset(uri, batch_size=8).feature_cols == available_features(cfg)


def test_pandas_matches_expectation_and_bad_requests_fail_clearly(spark, cfg_factory):
    cfg = cfg_factory()
    _write_features(spark, cfg, BASE_ROWS, "load")
    spine = spark.createDataFrame(SPINE, SPINE_DDL)
    ts = get_training_set(spark, cfg, spine, features=FEATS)
    got = ts.to_pandas()
    # in the spine's order, Spark timestamps tz-aware in UTC (as Feast returns them)
    expected = pd.DataFrame(EXPECTED, columns=ts.df.columns)
    expected = expected.astype({f: "float64" for f in FEATS})
    expected["as_of_ts"] = pd.to_datetime(expected["as_of_ts"], utc=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert str(got["as_of_ts"].dtype) == "datetime64[ns, UTC]"
    assert all(pd.api.types.is_numeric_dtype(got[f]) for f in FEATS)
    pd.testing.assert_frame_equal(ts.to_pandas(limit=2), expected.head(2), check_dtype=False)

    everything = get_training_set(spark, cfg, spine)
    assert everything.features == tuple(available_features(cfg))
    assert everything.df.columns == [*spine.columns, *available_features(cfg)]

    with pytest.raises(ValueError, match=r"unknown features \['nope'\]; available features: .*prior_apps_same_device"):
        get_training_set(spark, cfg, spine, features=["prior_apps_same_device", "nope"])
    with pytest.raises(ValueError, match="entity_col 'device_id' is not a key.*application_id"):
        get_training_set(spark, cfg, spine.withColumnRenamed("application_id", "device_id"), entity_col="device_id")
    with pytest.raises(ValueError, match=r"cannot tell the spine's time column: .* 0 timestamp columns"):
        get_training_set(spark, cfg, spine.drop("as_of_ts"), features=FEATS)
    with pytest.raises(ValueError, match=r"spine lacks \['t'\]"):
        get_training_set(spark, cfg, spine, features=FEATS, time_col="t")
    with pytest.raises(TypeError, match="must be a timestamp"):
        get_training_set(spark, cfg, spine.selectExpr("application_id", "cast(as_of_ts as string) as as_of_ts"))
    with pytest.raises(ValueError, match="named like requested features"):
        get_training_set(spark, cfg, spine.selectExpr("*", "0L as pit_component_size"), features=FEATS)


def test_torch_loader_two_workers_every_row_once(spark, cfg_factory):
    cfg = cfg_factory()
    n = 50
    rows = [_row(f"A{i:03d}", f"P{i}", _ts(1) + dt.timedelta(hours=i), i, 10 * i, None if i % 7 == 0 else i / 2)
            for i in range(n)]
    _write_features(spark, cfg, rows, "load")
    spine = spark.createDataFrame([(r["application_id"], r["as_of_ts"], i % 3) for i, r in enumerate(rows)],
                                  "application_id string, as_of_ts timestamp, label int")
    ts = get_training_set(spark, cfg, spine, features=FEATS)
    loader = ts.torch_loader(batch_size=8, label_col="label", num_workers=2, num_files=4)
    assert len(ts.snapshot_files) == 4 and ts.snapshot_path.startswith(cfg.paths.root)

    batches = list(loader)
    assert all(x.shape[0] == y.shape[0] <= 8 and x.shape[1] == 3 for x, y in batches)
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in batches)
    assert sum(x.shape[0] < 8 for x, _ in batches) <= 2  # rows carry over files: one short batch per worker at most
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    ids = x[:, 0].long()
    assert sorted(ids.tolist()) == list(range(n))  # every row exactly once across both workers
    assert torch.equal(x[:, 1], 10 * x[:, 0])
    null_age = ids % 7 == 0
    assert torch.isnan(x[null_age, 2]).all()
    assert torch.equal(x[~null_age, 2], x[~null_age, 0] / 2)
    assert torch.equal(y, ids % 3)
    # same worker count -> same order
    again = list(loader)
    assert [b[0][:, 0].tolist() for b in again] == [b[0][:, 0].tolist() for b in batches]

    # distributed ranks split files too; a fill value replaces NaN
    per_rank = [ParquetIterableDataset(ts.snapshot_files, FEATS, "label", 16, rank=r, world_size=2, fill_value=-1.0)
                for r in range(2)]
    assert set(per_rank[0].shard_files()).isdisjoint(per_rank[1].shard_files())
    xs = torch.cat([xb for ds in per_rank for xb, _ in ds])
    assert sorted(xs[:, 0].long().tolist()) == list(range(n))
    assert (xs[xs[:, 0].long() % 7 == 0, 2] == -1.0).all()


def _tree(*roots) -> dict:
    """Every file and folder under the roots, with sizes and mtimes (to prove nothing was written)."""
    out = {}
    for root in roots:
        if root.exists():
            for p in root.rglob("*"):
                st = p.stat()
                out[str(p)] = (p.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def test_pandas_spine_as_a_feast_user_writes_it(spark, cfg_factory):
    """Feast's entity dataframe: pandas, ``event_timestamp`` in a local zone, rows in no
    particular order. Comes back in the spine's order with its zone and index, values as the
    Spark path gives them; the caller's frame is not touched."""
    cfg = cfg_factory()
    _write_features(spark, cfg, BASE_ROWS, "load")
    berlin = "Europe/Berlin"
    rows = [r for r in SPINE if r[1] is not None]
    order = [3, 0, 4, 2, 1]  # A9, A1, A1 later, A3, A2: neither time nor id order
    spine = pd.DataFrame({
        "application_id": [rows[i][0] for i in order],
        "event_timestamp": pd.to_datetime([rows[i][1] for i in order], utc=True).tz_convert(berlin),
        "label": [rows[i][2] for i in order],
    }, index=[10, 7, 3, 99, 5])
    before = spine.copy()
    ts = get_training_set(spark, cfg, spine, features=FEATS)
    assert ts.time_col == "event_timestamp"
    got = ts.to_pandas()
    pd.testing.assert_frame_equal(spine, before)  # the caller's frame is unchanged
    exp_rows = [e for e in EXPECTED if e[1] is not None]
    expected = pd.DataFrame({
        "application_id": [exp_rows[i][0] for i in order],
        "event_timestamp": spine["event_timestamp"].to_numpy(),
        "label": [exp_rows[i][2] for i in order],
        **{f: [exp_rows[i][4 + j] for i in order] for j, f in enumerate(FEATS)},
    }).astype({f: "float64" for f in FEATS})
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert str(got["event_timestamp"].dt.tz) == berlin
    assert isinstance(got.index, pd.RangeIndex)
    assert ts.match_counts["matched"] == 3

    # naive pandas times are UTC (as in Feast) and come back naive
    naive = spine.assign(event_timestamp=spine["event_timestamp"].dt.tz_convert("UTC").dt.tz_localize(None))
    got_naive = get_training_set(spark, cfg, naive, features=FEATS).to_pandas()
    assert got_naive["event_timestamp"].dt.tz is None
    pd.testing.assert_frame_equal(got_naive[FEATS], got[FEATS])
    # limit keeps the spine's order too
    pd.testing.assert_frame_equal(ts.to_pandas(limit=2), got.head(2))
    # the spine's own time column name, and errors a pandas user can act on
    other = spine.rename(columns={"event_timestamp": "applied_at"})
    assert get_training_set(spark, cfg, other, features=FEATS).time_col == "applied_at"
    two = other.assign(seen_at=other["applied_at"])
    with pytest.raises(ValueError, match=r"2 timestamp columns \['applied_at', 'seen_at'\]; pass time_col"):
        get_training_set(spark, cfg, two, features=FEATS)
    assert get_training_set(spark, cfg, two, features=FEATS, time_col="seen_at").time_col == "seen_at"
    with pytest.raises(TypeError, match="spine must be a Spark or pandas DataFrame, got list"):
        get_training_set(spark, cfg, [("A1", _ts(1))])
    with pytest.raises(TypeError, match="must be a timestamp"):
        get_training_set(spark, cfg, spine.assign(event_timestamp=spine["event_timestamp"].astype(str)), features=FEATS)


def test_feature_table_by_path_reads_without_writing(spark, cfg_factory, tmp_path):
    """A modeller names the table by path, without the project's config; the read writes
    nothing under the table, the config's root or the project's var/; the column docs come
    from the table itself."""
    cfg = cfg_factory()
    _write_features(spark, cfg, BASE_ROWS, "load")
    uri = T.FEATURES.uri(cfg)
    spine = spark.createDataFrame(SPINE, SPINE_DDL)
    watched = (tmp_path, PROJECT_ROOT / "var")
    before = _tree(*watched)
    ts = get_training_set(spark, spine=spine, feature_table=uri, features=FEATS)
    via_cfg = get_training_set(spark, cfg, spine, features=FEATS)
    assertDataFrameEqual(ts.to_spark(), via_cfg.to_spark())
    pd.testing.assert_frame_equal(ts.to_pandas(), via_cfg.to_pandas())
    assert _tree(*watched) == before
    assert (ts.feature_table, ts.feature_table_version, ts.snapshot_root) == (uri, 0, None)
    assert ts.df.schema["pit_component_size"].metadata["comment"].startswith("size, including this application")
    # every feature column of the table by default; unknown names name the table's features
    everything = get_training_set(spark, spine=spine, feature_table=uri)
    assert everything.features == tuple(available_features(cfg))
    with pytest.raises(ValueError, match=r"unknown features \['nope'\]; the table's features: prior_apps_same_applicant"):
        get_training_set(spark, spine=spine, feature_table=uri, features=["nope"])
    with pytest.raises(ValueError, match="pass cfg .* or feature_table="):
        get_training_set(spark, spine=spine)
    with pytest.raises(Exception, match="no Delta table at"):
        get_training_set(spark, spine=spine, feature_table=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="snapshot_root"):
        ts.write_snapshot()
    assert tuple(entity_columns(cfg)) == ENTITY_COLUMNS

"""Delta semantics of the delta-rs backend, checked with an independent reader."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pyarrow.dataset as pads
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from riskgraph.store import DeltaRsStore, StoreError

SCHEMA = "id string, x double, ts timestamp, run_date string"


def _rows(day: str, n: int, base: float = 0.0):
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    return [(f"{day}-{i}", base + i, t + dt.timedelta(minutes=i), day) for i in range(n)]


def _independent(uri: str, version: int | None = None):
    """Read a Delta table without Spark: delta-rs snapshot + pyarrow (no to_pyarrow_table,
    which can abort the process at exit, see stack notes)."""
    t = DeltaTable(uri, version=version) if version is not None else DeltaTable(uri)
    tbl = pads.dataset(t.file_uris(), partitioning="hive").to_table(use_threads=False)
    return tbl.to_pandas()


def test_spark_write_equals_independent_read(spark, tmp_path):
    uri = str(tmp_path / "t")
    df = spark.createDataFrame(_rows("2026-01-01", 50) + _rows("2026-01-02", 30), SCHEMA)
    res = DeltaRsStore().write(df, uri, partition_col="run_date", partitions=["2026-01-01", "2026-01-02"], run_id="r1")
    assert (res.version, res.rows, res.committed) == (0, 80, True)
    pdf = _independent(uri)
    back = spark.createDataFrame(pdf[["id", "x", "ts", "run_date"]].astype({"run_date": str}), SCHEMA)
    assertDataFrameEqual(back, df)
    assertDataFrameEqual(DeltaRsStore().read(spark, uri), df)


def test_rerun_replaces_exactly_its_dates_once_per_run_id(spark, tmp_path):
    uri, st = str(tmp_path / "t"), DeltaRsStore()
    st.write(spark.createDataFrame(_rows("2026-01-01", 5) + _rows("2026-01-02", 5), SCHEMA), uri,
             partition_col="run_date", partitions=["2026-01-01", "2026-01-02"], run_id="load")
    new = spark.createDataFrame(_rows("2026-01-02", 3, base=100.0), SCHEMA)
    r1 = st.write(new, uri, partition_col="run_date", partitions=["2026-01-02"], run_id="nightly-2")
    r2 = st.write(new, uri, partition_col="run_date", partitions=["2026-01-02"], run_id="nightly-2")  # a retried task
    assert (r1.version, r1.committed, r2.version, r2.committed) == (1, True, 1, False)
    got = st.read(spark, uri)
    expected = spark.createDataFrame(_rows("2026-01-01", 5) + _rows("2026-01-02", 3, base=100.0), SCHEMA)
    assertDataFrameEqual(got, expected)
    # time travel: version 0 still has the old day
    assertDataFrameEqual(st.read(spark, uri, version=0).filter(F.col("run_date") == "2026-01-02"),
                         spark.createDataFrame(_rows("2026-01-02", 5), SCHEMA))


def test_rows_outside_owned_partitions_are_refused(spark, tmp_path):
    df = spark.createDataFrame(_rows("2026-01-03", 2), SCHEMA)
    with pytest.raises(StoreError, match="outside the partitions"):
        DeltaRsStore().write(df, str(tmp_path / "t"), partition_col="run_date", partitions=["2026-01-01"], run_id="r")
    assert not DeltaTable.is_deltatable(str(tmp_path / "t"))


def test_new_column_evolves_schema(spark, tmp_path):
    uri, st = str(tmp_path / "t"), DeltaRsStore()
    st.write(spark.createDataFrame(_rows("2026-01-01", 2), SCHEMA), uri, partition_col="run_date", partitions=["2026-01-01"], run_id="a")
    wider = spark.createDataFrame([r[:3] + (7,) + r[3:] for r in _rows("2026-01-02", 2)], "id string, x double, ts timestamp, y long, run_date string")
    res = st.write(wider, uri, partition_col="run_date", partitions=["2026-01-02"], run_id="b")
    assert res.version == 1 == DeltaTable(uri).version()  # the new column arrives in the data commit: no schema-only version
    assert [f.name for f in DeltaTable(uri, version=0).schema().fields] == ["id", "x", "ts", "run_date"]
    got = st.read(spark, uri).orderBy("id").select("id", "y").collect()
    assert [r["y"] for r in got] == [None, None, 7, 7]
    retyped = spark.createDataFrame([("a", "oops", None, "2026-01-03")], "id string, x string, ts timestamp, run_date string")
    with pytest.raises(StoreError, match="column x is"):
        st.write(retyped, uri, partition_col="run_date", partitions=["2026-01-03"], run_id="c")


def test_a_column_may_become_nullable(spark, tmp_path):
    """A column declared NOT NULL when the table was made (e.g. money/loans' share of a sector,
    now null when the sector is not traced) takes nulls once the new data declares it nullable;
    the old version keeps its schema."""
    uri, st = str(tmp_path / "t"), DeltaRsStore()
    strict = StructType([StructField("id", StringType(), False), StructField("x", DoubleType(), False),
                         StructField("run_date", StringType(), False)])
    st.write(spark.createDataFrame([("a", 1.0, "2026-01-01")], strict), uri, partition_col="run_date",
             partitions=["2026-01-01"], run_id="a")
    assert not DeltaTable(uri).schema().to_arrow().field("x").nullable
    st.write(spark.createDataFrame([("b", None, "2026-01-02")], "id string not null, x double, run_date string not null"), uri,
             partition_col="run_date", partitions=["2026-01-02"], run_id="b")
    assert DeltaTable(uri).schema().to_arrow().field("x").nullable and not DeltaTable(uri, version=0).schema().to_arrow().field("x").nullable
    assert sorted((r["id"], r["x"]) for r in st.read(spark, uri).collect()) == [("a", 1.0), ("b", None)]


def _race(st, uri, jobs):
    """Runs the writes of ``jobs`` ({run_id: (df, partitions)}) at the same moment."""
    errors, results = [], {}
    start = threading.Barrier(len(jobs))

    def write(run_id):
        df, parts = jobs[run_id]
        try:
            start.wait()
            results[run_id] = st.write(df, uri, partition_col="run_date", partitions=parts, run_id=run_id)
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(r,)) for r in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return results


def test_concurrent_writers_on_different_dates_both_land(spark, tmp_path):
    uri, st = str(tmp_path / "t"), DeltaRsStore()
    st.write(spark.createDataFrame(_rows("2026-01-01", 1), SCHEMA), uri, partition_col="run_date", partitions=["2026-01-01"], run_id="init")
    jobs = {f"w-{d}": (spark.createDataFrame(_rows(d, 4), SCHEMA), [d]) for d in ("2026-01-02", "2026-01-03")}
    res = _race(st, uri, jobs)
    assert DeltaTable(uri).version() == 2 and sorted(r.version for r in res.values()) == [1, 2]  # each reports its own
    assert _independent(uri)["run_date"].astype(str).value_counts().to_dict() == {"2026-01-01": 1, "2026-01-02": 4, "2026-01-03": 4}


@pytest.mark.parametrize("existing", [False, True], ids=["new-date", "existing-date"])
def test_concurrent_writers_on_one_date_leave_one_runs_rows(spark, tmp_path, existing):
    """Two runs replace the same date at the same moment (a nightly run and a manual
    re-run). The date must end up holding one run's rows — never both — and the log stays
    linear; each writer reports the version its own commit made. On a new date delta-rs
    alone lets both blind adds through; the store's commit lock makes the second writer
    re-read the table and replace the first one's files."""
    uri, st = str(tmp_path / "t"), DeltaRsStore()
    st.write(spark.createDataFrame(_rows("2026-01-01", 1), SCHEMA), uri, partition_col="run_date", partitions=["2026-01-01"], run_id="init")
    if existing:
        st.write(spark.createDataFrame(_rows("2026-01-02", 2, base=50.0), SCHEMA), uri, partition_col="run_date",
                 partitions=["2026-01-02"], run_id="old")
    jobs = {"a": (spark.createDataFrame(_rows("2026-01-02", 3, base=100.0), SCHEMA), ["2026-01-02"]),
            "b": (spark.createDataFrame(_rows("2026-01-02", 5, base=200.0), SCHEMA), ["2026-01-02"])}
    res = _race(st, uri, jobs)
    got = _independent(uri)
    day = got[got["run_date"].astype(str) == "2026-01-02"]
    last = max(res, key=lambda r: res[r].version)
    assert sorted(day["x"]) == sorted(r[1] for r in _rows("2026-01-02", 3 if last == "a" else 5, base=100 if last == "a" else 200))
    assert len(got[got["run_date"].astype(str) == "2026-01-01"]) == 1
    assert sorted(r.version for r in res.values()) == [1 + existing, 2 + existing] == [st.committed_version(uri, r) for r in sorted(res, key=lambda r: res[r].version)]


def test_second_writer_waits_for_the_commit_lock(spark, tmp_path):
    import riskgraph.store as store

    uri, st = str(tmp_path / "t"), DeltaRsStore()
    st.write(spark.createDataFrame(_rows("2026-01-01", 1), SCHEMA), uri, partition_col="run_date", partitions=["2026-01-01"], run_id="init")
    df = spark.createDataFrame(_rows("2026-01-02", 2), SCHEMA)
    out = {}
    with store._commit_lock(tmp_path / "t"):  # another writer is mid-commit
        t = threading.Thread(target=lambda: out.update(r=st.write(df, uri, partition_col="run_date", partitions=["2026-01-02"], run_id="w")))
        t.start()
        t.join(timeout=5)  # long enough to stage its files and reach the commit
        assert t.is_alive() and DeltaTable(uri).version() == 0  # staged, waiting to commit
    t.join(timeout=60)
    assert out["r"].version == 1 and DeltaTable(uri).version() == 1


def test_files_a_foreign_writer_adds_to_our_date_are_removed(spark, tmp_path, monkeypatch, caplog):
    """A writer outside riskgraph's lock (say a notebook with delta-rs) appends to the date
    between our read of the table and our commit: the date ends with our rows only, and the
    store says what it removed."""
    import pyarrow as pa
    from deltalake import write_deltalake

    import riskgraph.store as store

    uri, st = str(tmp_path / "t"), DeltaRsStore()
    st.write(spark.createDataFrame(_rows("2026-01-01", 1), SCHEMA), uri, partition_col="run_date", partitions=["2026-01-01"], run_id="init")
    real = store._merged_schema

    def foreign_append_first(dt_, schema):  # runs after our writer loaded the table, before its commit
        tbl = pa.table({"id": ["foreign"], "x": [9.0], "ts": pa.array([dt.datetime(2026, 1, 2)], pa.timestamp("us", tz="UTC")),
                        "run_date": ["2026-01-02"]})
        write_deltalake(uri, tbl, mode="append")
        return real(dt_, schema)

    monkeypatch.setattr(store, "_merged_schema", foreign_append_first)
    res = st.write(spark.createDataFrame(_rows("2026-01-02", 2), SCHEMA), uri, partition_col="run_date",
                   partitions=["2026-01-02"], run_id="ours")
    assert res.version == 2 and DeltaTable(uri).version() == 3  # foreign append 1, ours 2, the clean-up 3
    got = _independent(uri)
    assert sorted(got.loc[got["run_date"].astype(str) == "2026-01-02", "id"]) == ["2026-01-02-0", "2026-01-02-1"]
    assert "added by a concurrent writer" in caplog.text


KILL_SCRIPT = textwrap.dedent("""
    import os, sys, signal
    from pyspark.sql import SparkSession
    import riskgraph.store as store
    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false") \\
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS").getOrCreate()
    uri = sys.argv[1]
    real = store.parquet_stats
    calls = []
    def dying_stats(path):            # die after the first file was moved into the table
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path)
    store.parquet_stats = dying_stats
    df = spark.range(1000).selectExpr("cast(id as string) as id", "cast(id as double) as x",
                                      "current_timestamp() as ts", "if(id % 2 = 0, '2026-01-01', '2026-01-02') as run_date")
    store.DeltaRsStore().write(df.repartition(4), uri, partition_col="run_date", partitions=["2026-01-01", "2026-01-02"], run_id="killed")
""")


def test_writer_killed_mid_write_leaves_previous_version(spark, tmp_path):
    uri, st = str(tmp_path / "t"), DeltaRsStore()
    before = spark.createDataFrame(_rows("2026-01-01", 3), SCHEMA)
    st.write(before, uri, partition_col="run_date", partitions=["2026-01-01"], run_id="good")
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, uri], capture_output=True, timeout=300,
                          env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert DeltaTable(uri).version() == 0
    assertDataFrameEqual(st.read(spark, uri), before)
    # and the table still takes the next write
    st.write(spark.createDataFrame(_rows("2026-01-02", 2), SCHEMA), uri, partition_col="run_date", partitions=["2026-01-02"], run_id="next")
    assert DeltaTable(uri).version() == 1


def _commit_times_ms(uri: str) -> dict[int, tuple[int, int]]:
    """Per version: (the commit's own timestamp, its log file's modification time), in ms.
    delta-rs 1.6 resolves a timestamp by the log files' modification times (an object
    store's commit time); the commit info's timestamp is what history() shows. Bounds taken
    from both hold whichever a delta-rs version uses."""
    log_dir = os.path.join(uri, "_delta_log")
    out = {}
    for h in DeltaTable(uri).history():
        v = int(h["version"])
        mtime = os.stat(os.path.join(log_dir, f"{v:020d}.json")).st_mtime_ns // 1_000_000
        out[v] = (int(h["timestamp"]), int(mtime))
    return out


def _iso_ms(ms: float) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat()


def test_time_travel_by_timestamp_reads_the_version_current_at_that_time(spark, tmp_path):
    """A timestamp between two commits reads the earlier version, in the store and in the
    training-set API. No sleeping: each write is a Spark job, so commits are hundreds of
    milliseconds apart, and the test reads the actual commit times back."""
    from riskgraph.training import resolve_version

    uri, st = str(tmp_path / "t"), DeltaRsStore()
    v0 = spark.createDataFrame(_rows("2026-01-01", 5), SCHEMA)
    st.write(v0, uri, partition_col="run_date", partitions=["2026-01-01"], run_id="a")
    st.write(spark.createDataFrame(_rows("2026-01-01", 3, base=100.0), SCHEMA), uri, partition_col="run_date",
             partitions=["2026-01-01"], run_id="b")
    st.write(spark.createDataFrame(_rows("2026-01-02", 2), SCHEMA), uri, partition_col="run_date",
             partitions=["2026-01-02"], run_id="c")
    t = _commit_times_ms(uri)
    assert sorted(t) == [0, 1, 2]
    latest = {v: max(ts) for v, ts in t.items()}    # the commit had happened by then, by either clock
    earliest = {v: min(ts) for v, ts in t.items()}
    assert earliest[1] - latest[0] > 20 and earliest[2] - latest[1] > 20, t  # room for a timestamp strictly between
    between_0_1 = _iso_ms((latest[0] + earliest[1]) / 2)
    between_1_2 = _iso_ms((latest[1] + earliest[2]) / 2)

    assertDataFrameEqual(st.read(spark, uri, timestamp=between_0_1), v0)
    assertDataFrameEqual(st.read(spark, uri, timestamp=between_1_2), st.read(spark, uri, version=1))
    assertDataFrameEqual(st.read(spark, uri, timestamp=_iso_ms(latest[2] + 60_000)), st.read(spark, uri))
    assert st.read(spark, uri, version=1).count() == 3 and st.read(spark, uri).count() == 5
    assert [resolve_version(spark, st, uri, timestamp=ts) for ts in (between_0_1, between_1_2)] == [0, 1]
    # before the first commit there is no table to read: delta-rs would answer version 0
    with pytest.raises(StoreError, match="no version at or before"):
        resolve_version(spark, st, uri, timestamp=_iso_ms(earliest[0] - 60_000))

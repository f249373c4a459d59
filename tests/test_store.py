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
    st.write(wider, uri, partition_col="run_date", partitions=["2026-01-02"], run_id="b")
    got = st.read(spark, uri).orderBy("id").select("id", "y").collect()
    assert [r["y"] for r in got] == [None, None, 7, 7]
    retyped = spark.createDataFrame([("a", "oops", None, "2026-01-03")], "id string, x string, ts timestamp, run_date string")
    with pytest.raises(StoreError, match="column x is"):
        st.write(retyped, uri, partition_col="run_date", partitions=["2026-01-03"], run_id="c")


def test_concurrent_writers_both_land_or_conflict_clearly(spark, tmp_path):
    """Two writers replace different dates at the same moment: delta-rs detects the race;
    the loser retries against the new version, so both dates land and the log is linear."""
    uri, st = str(tmp_path / "t"), DeltaRsStore()
    st.write(spark.createDataFrame(_rows("2026-01-01", 1), SCHEMA), uri, partition_col="run_date", partitions=["2026-01-01"], run_id="init")
    dfs = {d: spark.createDataFrame(_rows(d, 4), SCHEMA) for d in ("2026-01-02", "2026-01-03")}
    errors = []

    def write(day):
        try:
            st.write(dfs[day], uri, partition_col="run_date", partitions=[day], run_id=f"w-{day}")
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(d,)) for d in dfs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert DeltaTable(uri).version() == 2
    assert sorted(_independent(uri)["run_date"].astype(str).unique()) == ["2026-01-01", "2026-01-02", "2026-01-03"]


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

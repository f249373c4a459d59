"""Delta tables, written by Spark executors, with one of two backends chosen once.

* ``delta-spark`` when its jars are on the cluster's classpath: plain
  ``df.write.format("delta")`` with ``replaceWhere`` and ``txnAppId``/``txnVersion``.
* ``delta-rs`` (the air-gapped / local default, no JVM package): executors write Parquet to
  a staging folder under the table root, the driver renames the files into the table and
  commits them with ``deltalake`` using AddActions built from the Parquet footers only.
  No row passes through the driver. (Recipe and numbers: shared/stack-notes.md.)

Both backends give the same table: partitioned by one string column, a write replaces
exactly the listed partition values atomically, a write is committed at most once per
``run_id`` (a retried task after a successful commit is a no-op), and a reader gets the
same DataFrame from either.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

APP_ID_PREFIX = "riskgraph"
# Retries when another writer committed first (delta-rs CommitFailedError). Each retry
# re-reads the table and re-checks whether this run already committed.
MAX_COMMIT_ATTEMPTS = 5
LOCK_TIMEOUT_S = 600.0  # a commit takes well under a second; a held lock this long is a stuck job
HISTORY_SCAN = 1000  # commits searched for a run's own version


class StoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    rows: int
    files: int
    committed: bool  # False when this run_id had already committed (idempotent no-op)
    partitions: tuple[str, ...]


class TableStore(Protocol):
    name: str

    def write(self, df: DataFrame, uri: str, *, partition_col: str, partitions: list[str], run_id: str,
              description: str | None = None) -> WriteResult: ...

    def read(self, spark: SparkSession, uri: str, *, version: int | None = None,
             timestamp: str | None = None) -> DataFrame: ...

    def version(self, uri: str) -> int | None: ...

    def committed_version(self, uri: str, run_id: str) -> int | None:
        """The version this run's write created, or None if it has not committed."""
        ...


def _app_id(run_id: str) -> str:
    return f"{APP_ID_PREFIX}:{run_id}"


def arrow_schema_with_comments(schema: StructType) -> pa.Schema:
    """Spark schema → Arrow schema, keeping each field's ``comment`` as field metadata."""
    arrow = to_arrow_schema(schema)
    fields = []
    for sf, af in zip(schema.fields, arrow):
        comment = (sf.metadata or {}).get("comment")
        fields.append(af.with_metadata({"comment": comment}) if comment else af)
    return pa.schema(fields)


# --------------------------------------------------------------------------- delta-rs
def _iso(v) -> object:
    """Stats values as Delta expects them: timestamps in UTC ISO-8601 with 'Z'."""
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def parquet_stats(path: str) -> tuple[int, str]:
    """numRecords and per-column min/max/nullCount from a Parquet footer (Delta stats JSON).

    Min/max are only emitted when every row group carries them, so a reader's file
    skipping can never drop a file that holds a matching row.
    """
    md = pq.read_metadata(path)
    n = md.num_rows
    mins: dict = {}
    maxs: dict = {}
    nulls: dict = {}
    for ci in range(md.num_columns):
        col = md.schema.column(ci)
        name = col.path
        if "." in name:
            continue  # nested: no stats
        lo = hi = None
        nc = 0
        ok = True
        for rg in range(md.num_row_groups):
            st = md.row_group(rg).column(ci).statistics
            if st is None or not st.has_null_count:
                ok = False
                break
            nc += st.null_count
            if st.has_min_max:
                a, b = st.min, st.max
                if isinstance(a, bytes):
                    ok = False  # binary min/max may be truncated; skip rather than risk wrong skipping
                    break
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
            elif st.null_count != md.row_group(rg).num_rows:
                ok = False
                break
        if not ok:
            continue
        nulls[name] = nc
        if lo is not None:
            mins[name] = _iso(lo)
            maxs[name] = _iso(hi)
    return n, json.dumps({"numRecords": n, "minValues": mins, "maxValues": maxs, "nullCount": nulls}, default=str)


class DeltaRsStore:
    name = "delta-rs"

    def version(self, uri: str) -> int | None:
        from deltalake import DeltaTable

        return DeltaTable(uri).version() if DeltaTable.is_deltatable(uri) else None

    def committed_version(self, uri: str, run_id: str) -> int | None:
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(uri):
            return None
        return _committed_version(DeltaTable(uri), run_id)

    def read(self, spark: SparkSession, uri: str, *, version: int | None = None,
             timestamp: str | None = None) -> DataFrame:
        from deltalake import DeltaTable

        if not DeltaTable.is_deltatable(uri):
            raise StoreError(f"no Delta table at {uri}; run the job that writes it first")
        dt = DeltaTable(uri, version=version) if version is not None else DeltaTable(uri)
        if timestamp is not None:
            dt.load_as_version(timestamp)
        arrow = pa.schema(dt.schema().to_arrow())
        schema = from_arrow_schema(arrow)
        # Column comments (written by arrow_schema_with_comments) travel with the columns, as
        # delta-spark's reader keeps them; from_arrow_schema alone drops field metadata.
        for sf, af in zip(schema.fields, arrow):
            comment = (af.metadata or {}).get(b"comment")
            if comment:
                sf.metadata = {**(sf.metadata or {}), "comment": comment.decode()}
        files = dt.file_uris()
        if not files:
            return spark.createDataFrame([], schema)
        # Reads the snapshot's files only (never a folder listing): files that a killed or
        # concurrent writer left behind uncommitted are invisible, as Delta requires.
        return spark.read.schema(schema).option("basePath", uri).parquet(*files)

    def write(self, df: DataFrame, uri: str, *, partition_col: str, partitions: list[str], run_id: str,
              description: str | None = None) -> WriteResult:
        from deltalake import DeltaTable, Schema
        from deltalake.transaction import AddAction, CommitProperties, Transaction, create_table_with_add_actions

        if "://" in uri and not uri.startswith("file://"):
            raise StoreError(f"the delta-rs backend renames staged files and needs a POSIX path; got {uri}. "
                             "Use delta-spark (store.backend) for object stores.")
        if partition_col not in df.columns:
            raise StoreError(f"partition column {partition_col!r} missing; columns: {df.columns}")
        root = Path(uri)
        app_id = _app_id(run_id)
        v = self.committed_version(uri, run_id)
        if v is not None:
            log.info("%s: run %s already committed (version %d); nothing to do", uri, run_id, v)
            return WriteResult(uri, v, 0, 0, False, tuple(partitions))

        stage = root / "_staging" / uuid.uuid4().hex
        if len(partitions) > 1:
            # One shuffle so each date lands in one task: otherwise every task writes a
            # small file per date (8 tasks x 365 dates = 2,920 files for a year's load).
            df = df.repartition(partition_col)
        df.write.mode("overwrite").partitionBy(partition_col).parquet(str(stage))
        token = uuid.uuid4().hex[:12]
        actions, rows, allowed = [], 0, set(partitions)
        try:
            for i, f in enumerate(sorted(stage.rglob("*.parquet"))):
                part_dir = f.parent.name
                key, _, raw_value = part_dir.partition("=")
                value = urllib.parse.unquote(raw_value)
                if key != partition_col or value not in allowed:
                    raise StoreError(f"{uri}: wrote rows for {key}={value}, outside the partitions this run owns {sorted(allowed)[:5]}…")
                n, stats = parquet_stats(str(f))
                rel = f"{partition_col}={raw_value}/part-{i:05d}-{token}.snappy.parquet"
                dest = root / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, dest)
                st = dest.stat()
                actions.append(AddAction(rel, st.st_size, {partition_col: value}, int(st.st_mtime * 1000), True, stats))
                rows += n
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            try:
                (root / "_staging").rmdir()
            except OSError:
                pass

        schema = arrow_schema_with_comments(df.schema)
        props = CommitProperties(
            custom_metadata={"riskgraph.run_id": run_id, "riskgraph.partitions": json.dumps(sorted(allowed))},
            app_transactions=[Transaction(app_id=app_id, version=1, last_updated=int(time.time() * 1000))],
        )
        ours = {a.path for a in actions}
        with _commit_lock(root):
            for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
                try:
                    if not DeltaTable.is_deltatable(uri):
                        create_table_with_add_actions(
                            uri, Schema.from_arrow(schema), actions, mode="error", partition_by=[partition_col],
                            description=description,
                            configuration={"delta.setTransactionRetentionDuration": "interval 90 days"},
                            commit_properties=props,
                        )
                    else:
                        dt = DeltaTable(uri)
                        done = _committed_version(dt, run_id)  # committed while we staged (under another lock holder)
                        if done is not None:
                            return WriteResult(uri, done, 0, 0, False, tuple(partitions))
                        # the schema change (added columns) goes into the data commit itself
                        dt.create_write_transaction(
                            actions, mode="overwrite", schema=Schema.from_arrow(_merged_schema(dt, schema)),
                            partition_by=[partition_col], partition_filters=[(partition_col, "in", sorted(allowed))],
                            commit_properties=props,
                        )
                    break
                except Exception as e:  # noqa: BLE001 - _is_conflict decides; anything else re-raises
                    if not _is_conflict(e) or attempt == MAX_COMMIT_ATTEMPTS:
                        raise
                    log.warning("%s: commit conflict with another writer (attempt %d/%d): %s; re-reading the table and retrying",
                                uri, attempt, MAX_COMMIT_ATTEMPTS, e)
                    time.sleep(0.2 * attempt)
            v = _version_of_run(DeltaTable(uri), run_id)
            _remove_foreign_adds(uri, v, partition_col, allowed, ours, run_id)
        return WriteResult(uri, v, rows, len(actions), True, tuple(partitions))


@contextlib.contextmanager
def _commit_lock(root: Path, *, timeout_s: float = LOCK_TIMEOUT_S):
    """Serialises riskgraph's commits to one table (an exclusive ``flock`` on
    ``<table>/_riskgraph_commit.lock``; Delta readers ignore files starting with '_').

    Why: delta-rs' ``create_write_transaction`` records no read predicate, so two writers
    that replace the same *new* date (no files to remove yet) both commit blind adds and the
    date would hold both runs' rows; delta-spark's replaceWhere would raise a concurrent-
    append conflict instead. Under the lock the second writer re-reads the table after the
    first committed, so its overwrite removes the first one's files: one run's rows, in a
    linear log. Writing the staged files stays parallel; only the commit waits."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / "_riskgraph_commit.lock", "a+") as fh:
        deadline, waited = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("%s: another writer is committing; waiting for it", root)
                    waited = True
                if time.monotonic() > deadline:
                    raise StoreError(f"{root}: another writer held the commit lock for over {timeout_s:.0f} s; "
                                     "is a job stuck? (the lock is released when its process ends)") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _committed_version(dt, run_id: str) -> int | None:
    """The version of this run's commit in the loaded table, or None if it has none."""
    return None if dt.transaction_version(_app_id(run_id)) is None else _version_of_run(dt, run_id)


def _version_of_run(dt, run_id: str) -> int:
    """The table version this run's commit created (not the latest: another writer may have
    committed since)."""
    for h in dt.history(limit=HISTORY_SCAN):  # newest first
        if h.get("riskgraph.run_id") == run_id:
            return int(h["version"])
    raise StoreError(f"{dt.table_uri}: run {run_id} is recorded as committed but its commit is not in the last "
                     f"{HISTORY_SCAN} versions")


def _remove_foreign_adds(uri: str, version: int, partition_col: str, partitions: set[str], ours: set[str], run_id: str) -> None:
    """A writer outside riskgraph's lock (another engine, or a riskgraph without it) may have
    added files to our dates between our read and our commit: delta-rs lets blind adds
    through. Our overwrite removed every file it saw, so any other file of our dates in our
    own version is such a foreign add; remove it (the later replace wins, as it would after
    a conflict and retry) and say so."""
    from deltalake import DeltaTable
    from deltalake.transaction import CommitProperties, RemoveAction

    snap = DeltaTable(uri, version=version)
    stray = [a for a in pa.table(snap.get_add_actions(flatten=True)).to_pylist()
             if str(a.get(f"partition.{partition_col}")) in partitions and a["path"] not in ours]
    if not stray:
        return
    latest = DeltaTable(uri)
    live = {a["path"] for a in pa.table(latest.get_add_actions(flatten=True)).to_pylist()}
    now = int(time.time() * 1000)
    removes = [RemoveAction(a["path"], True, now, a["size_bytes"], {partition_col: str(a[f"partition.{partition_col}"])})
               for a in stray if a["path"] in live]
    log.warning("%s: %d file(s) of %s were added by a concurrent writer before run %s committed; removing them so the "
                "dates hold this run's rows only", uri, len(stray), sorted(partitions)[:5], run_id)
    if removes:
        latest.create_write_transaction(
            removes, mode="append", schema=latest.schema(), partition_by=[partition_col],
            commit_properties=CommitProperties(custom_metadata={"riskgraph.fixup_of_run_id": run_id,
                                                                "riskgraph.operation": "remove concurrent adds"}))


def _is_conflict(e: Exception) -> bool:
    from deltalake.exceptions import CommitFailedError

    text = str(e).lower()
    return isinstance(e, CommitFailedError) or "already exists" in text or "conflict" in text


def _merged_schema(dt, new: pa.Schema) -> pa.Schema:
    """The table's schema plus the columns the new data adds, and NOT NULL relaxed where the new
    data declares a column nullable (schema evolution in the data commit: a writer killed
    before it leaves the old schema too); a changed type is refused."""
    current = pa.schema(dt.schema().to_arrow())
    have = {f.name: f for f in current}
    added, relaxed = [], set()
    for f in new:
        if f.name not in have:
            added.append(f)
        elif not have[f.name].type.equals(f.type):
            raise StoreError(f"{dt.table_uri}: column {f.name} is {have[f.name].type} in the table but {f.type} in the new data; "
                             "changing a column's type needs a new table version plan, not a silent overwrite")
        elif f.nullable and not have[f.name].nullable:
            relaxed.add(f.name)
    if added:
        log.info("%s: adding columns %s", dt.table_uri, [f.name for f in added])
    if relaxed:
        log.info("%s: columns %s may now hold nulls", dt.table_uri, sorted(relaxed))
    return pa.schema([f.with_nullable(True) if f.name in relaxed else f for f in current] + added)


# --------------------------------------------------------------------------- delta-spark
class DeltaSparkStore:
    """delta-spark backend (cluster). Needs ``io.delta:delta-spark`` jars and the Delta
    session extension; not exercised by this repo's tests because those jars cannot be
    downloaded here (no Maven Central)."""

    name = "delta-spark"

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def version(self, uri: str) -> int | None:
        from delta.tables import DeltaTable

        if not DeltaTable.isDeltaTable(self.spark, uri):
            return None
        return int(DeltaTable.forPath(self.spark, uri).history(1).collect()[0]["version"])

    def read(self, spark: SparkSession, uri: str, *, version: int | None = None,
             timestamp: str | None = None) -> DataFrame:
        r = spark.read.format("delta")
        if version is not None:
            r = r.option("versionAsOf", version)
        if timestamp is not None:
            r = r.option("timestampAsOf", timestamp)
        return r.load(uri)

    def write(self, df: DataFrame, uri: str, *, partition_col: str, partitions: list[str], run_id: str,
              description: str | None = None) -> WriteResult:
        from delta.tables import DeltaTable

        app_id = _app_id(run_id)  # delta-spark skips a write whose (txnAppId, txnVersion) it has seen
        done = self.committed_version(uri, run_id)
        if done is not None:
            log.info("%s: run %s already committed (version %d); nothing to do", uri, run_id, done)
            return WriteResult(uri, done, 0, 0, False, tuple(partitions))
        values = ", ".join("'" + p.replace("'", "''") + "'" for p in sorted(partitions))
        rows = df.count()
        (df.write.format("delta").mode("overwrite")
           .option("replaceWhere", f"{partition_col} IN ({values})")
           .option("mergeSchema", "true")
           .option("txnAppId", app_id).option("txnVersion", 1)
           .option("userMetadata", json.dumps({"riskgraph.run_id": run_id}))
           .partitionBy(partition_col).save(uri))
        v = self.committed_version(uri, run_id)
        return WriteResult(uri, self.version(uri) if v is None else v, rows, -1, True, tuple(partitions))

    def committed_version(self, uri: str, run_id: str) -> int | None:
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        if not DeltaTable.isDeltaTable(self.spark, uri):
            return None
        mine = F.col("userMetadata") == json.dumps({"riskgraph.run_id": run_id})
        r = DeltaTable.forPath(self.spark, uri).history(HISTORY_SCAN).filter(mine).agg(F.max("version")).first()[0]
        return None if r is None else int(r)


# --------------------------------------------------------------------------- choice
def delta_spark_available(spark: SparkSession) -> bool:
    try:
        spark._jvm.java.lang.Class.forName("org.apache.spark.sql.delta.DeltaLog")  # noqa: SLF001
    except Exception:  # noqa: BLE001 - py4j raises a generic error when the class is absent
        return False
    return "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions", "")


def choose_store(spark: SparkSession, backend: str = "auto") -> TableStore:
    """Pick the Delta backend once: delta-spark when its jars and extension are present."""
    if backend == "delta-spark" or (backend == "auto" and delta_spark_available(spark)):
        if not delta_spark_available(spark):
            raise StoreError("store.backend=delta-spark but the delta-spark jars / DeltaSparkSessionExtension are not "
                             "on the classpath (spark-submit --packages io.delta:delta-spark_2.13:4.1.0 ...)")
        store: TableStore = DeltaSparkStore(spark)
    else:
        store = DeltaRsStore()
    log.info("table store backend: %s", store.name)
    return store

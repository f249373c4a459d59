"""Training sets for modellers: point-in-time features for a labelled spine, as pandas, as a
Spark DataFrame, or as a PyTorch ``DataLoader`` that streams batches from Parquet files.

Yardsticks: Feast's ``get_historical_features`` (an entity frame with event timestamps in,
the latest feature values at or before each timestamp out) and Databricks'
``FeatureLookup`` / ``create_training_set`` (a labelled frame in, a training set that
records which feature-table version it used).

    ts = get_training_set(spark, cfg, spine, features=["prior_apps_same_device", ...])
    ts = get_training_set(spark, spine=pandas_df, feature_table="s3://.../features/application_network")
    ts.feature_table_version     # the pinned Delta version: log it with the model
    ts.match_counts              # spine rows with / without a feature row as of their time
    ts.to_pandas()               # small spines; spine order, time zones kept
    ts.to_spark()                # anything else in Spark
    loader = ts.torch_loader(batch_size=1024, label_col="label", num_workers=2)
    for x, y in loader: ...      # x float32 [B, F] (nulls -> NaN), y [B]

Point in time. The feature table (``tables.FEATURES``) has one row per application,
keyed by ``application_id`` with ``as_of_ts`` = the application time, and every feature in
a row uses only facts known strictly before ``as_of_ts``. So a row is usable at any time
``t >= as_of_ts``: for each spine row ``(entity, t)`` the join takes the latest feature row
of that entity with ``as_of_ts <= t``. A spine row with no such row keeps its place with
null features and is counted in ``match_counts`` (and logged): it is never dropped.

PyTorch path, and why not Petastorm. Petastorm 0.13.1 (the last release) does not import
with pyarrow >= 16 (``pyarrow.filesystem`` was removed) and uses APIs removed in pyarrow
15. We checked it (shared/stack-notes.md, "Petastorm"): it runs only in a separate
environment pinned to ``pyarrow==14.0.2`` and ``numpy<2``, and there Spark 4.1's Arrow
features refuse to run (``PyArrow >= 15.0.0 must be installed``), so it cannot live beside
the Spark path of this project; its maintainer says it is not actively maintained. The
maintained path here is Spark writing a Parquet snapshot with its executors, and a small
``torch.utils.data.IterableDataset`` over ``pyarrow.parquet.ParquetFile.iter_batches``
that shards files across DataLoader workers (and distributed ranks) and keeps memory
bounded. ``DeltaSnapshotDataset`` reads a Delta version's own files the same way.

Delta snapshots are read through ``DeltaTable.file_uris()`` and ``ParquetFile``, never
``to_pyarrow_table()`` / ``to_pyarrow_dataset().to_table()`` on defaults: those abort
processes at exit (delta-rs #2184, stack notes "Crash at exit").
"""
from __future__ import annotations

import json
import logging
import math
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampNTZType, TimestampType

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.io import fs_path
from riskgraph.store import DeltaRsStore, StoreError, TableStore, choose_store

try:  # torch is only needed for the loaders; the pandas/Spark paths work without it
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info
except ImportError:  # pragma: no cover - torch is in requirements.txt
    torch = None
    DataLoader = None
    IterableDataset = object  # type: ignore[misc,assignment]
    get_worker_info = None

log = logging.getLogger(__name__)

FEATURE_TIME_COL = "as_of_ts"  # the feature table's time column (schemas.feature_specs)
MANIFEST = "_riskgraph_training_set.json"  # beside a snapshot's Parquet files

# Reasons a spine row has no feature row, as counted in TrainingSet.match_counts.
MATCHED = "matched"
UNKNOWN_ENTITY = "unknown_entity"  # no feature row for the entity at this table version
BEFORE_FIRST_ROW = "before_first_feature_row"  # the entity's rows are all later than the spine time
NULL_TIME = "null_time"  # the spine row has no time
STATUSES = (MATCHED, UNKNOWN_ENTITY, BEFORE_FIRST_ROW, NULL_TIME)

# Internal column names: prefixed so they cannot clash with a spine's columns.
_ROW, _KEY, _TS, _RD, _VALID, _RN, _STATUS = (f"__rg_{n}" for n in ("row", "key", "ts", "rd", "valid", "rn", "status"))


# --------------------------------------------------------------------------- catalog
def available_features(cfg) -> list[str]:
    """Feature columns a training set can ask for: the catalog minus key columns."""
    return [s.name for s in S.feature_specs(cfg) if s.as_of != "key"]


# The feature table's entity keys (schemas.feature_specs; tests/test_training.py checks they agree).
ENTITY_COLUMNS = ("application_id", "applicant_id")


def entity_columns(cfg) -> list[str]:
    """Key columns a spine can join on (the feature table's ids; not its time or partition)."""
    return [s.name for s in S.feature_specs(cfg) if s.as_of == "key" and s.name not in (FEATURE_TIME_COL, S.RUN_DATE)]


def _check_features(cfg, features: Sequence[str] | None) -> list[str]:
    return _check_names(features, available_features(cfg), "available features")


def _check_names(features: Sequence[str] | None, avail: list[str], what: str) -> list[str]:
    """The requested feature names, checked against ``avail`` (all of them when None)."""
    if features is None:
        return list(avail)
    if isinstance(features, str):
        raise TypeError(f"features must be a list of names, got the string {features!r}")
    feats = list(features)
    if not feats:
        raise ValueError("features is empty; pass None for every feature or a list from: " + ", ".join(avail))
    dup = sorted({f for f in feats if feats.count(f) > 1})
    if dup:
        raise ValueError(f"features lists {dup} more than once")
    unknown = [f for f in feats if f not in avail]
    if unknown:
        raise ValueError(f"unknown features {unknown}; {what}: {', '.join(avail)}")
    return feats


# --------------------------------------------------------------------------- version
def resolve_version(spark: SparkSession, store: TableStore, uri: str, *, version: int | None = None,
                    timestamp: str | None = None) -> int:
    """The Delta version a read should use: ``version``, the version current at ``timestamp``,
    or the current one. Resolved once, so the recorded version and the data read agree even
    when a nightly commit lands in between."""
    if version is not None and timestamp is not None:
        raise ValueError("pass version or timestamp, not both")
    if version is not None:
        if version < 0:
            raise ValueError(f"version must be >= 0, got {version}")
        return int(version)
    current = store.version(uri)
    if current is None:
        raise StoreError(f"no Delta table at {uri}; run the feature-store job (write_feature_store) first")
    if timestamp is None:
        return current
    if isinstance(store, DeltaRsStore):
        from deltalake import DeltaTable

        dt = DeltaTable(uri)
        # delta-rs silently answers version 0 for a time before the table existed (delta-spark
        # raises): refuse it, so a training set is never pinned to data that did not exist yet.
        first_ms = min(h["timestamp"] for h in dt.history())  # one entry per commit
        import datetime as _dt

        asked = _dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
        asked = asked.replace(tzinfo=_dt.timezone.utc) if asked.tzinfo is None else asked
        if asked.timestamp() * 1000 < first_ms:
            raise StoreError(f"{uri} has no version at or before {timestamp}: its first commit is at "
                             f"{_dt.datetime.fromtimestamp(first_ms / 1000, tz=_dt.timezone.utc).isoformat()}")
        dt.load_as_version(timestamp)
        return dt.version()
    # delta-spark: the newest commit at or before the timestamp (history is one row per
    # commit; the aggregate collects one row).
    from delta.tables import DeltaTable as SparkDeltaTable

    row = (SparkDeltaTable.forPath(spark, uri).history()
           .filter(F.col("timestamp") <= F.to_timestamp(F.lit(timestamp)))
           .agg(F.max("version").alias("v")).collect()[0])
    if row["v"] is None:
        raise StoreError(f"{uri} has no version at or before {timestamp}")
    return int(row["v"])


# --------------------------------------------------------------------------- as-of join
def join_features_as_of(spine: DataFrame, features_df: DataFrame, features: Sequence[str], *,
                        entity_col: str = "application_id", time_col: str = "as_of_ts",
                        row_col: str | None = None) -> DataFrame:
    """Point-in-time (as-of) join, in Spark, without collecting anything.

    Needs ``entity_col`` and the timestamp ``time_col`` in ``spine``, and ``entity_col``,
    ``as_of_ts``, ``run_date`` and ``features`` in ``features_df``. Returns every spine row
    (spine columns unchanged, in order) plus the ``features`` of the latest feature row of
    the same entity with ``as_of_ts <= time_col``, null when there is none, plus the internal
    column ``__rg_status`` saying why (one of ``STATUSES``).

    How: left join on the entity alone, then a window over each spine row (a generated row
    id) ranks its candidates usable-first (``as_of_ts <= t``), then newest ``as_of_ts``, then
    newest ``run_date`` (a deterministic winner if an id were ever written twice). Exactly
    one row per spine row survives, so the output never has more rows than the spine.

    ``row_col`` names a spine column that already numbers the rows in the spine's order (the
    pandas path adds one); without it the order is Spark's (``monotonically_increasing_id``:
    partition, then position). The output keeps it as ``__rg_row`` so callers can restore
    the spine's order.
    """
    missing = [c for c in (entity_col, time_col) if c not in spine.columns]
    if missing:
        raise ValueError(f"spine lacks {missing}; spine columns: {spine.columns}")
    ttype = spine.schema[time_col].dataType
    if not isinstance(ttype, (TimestampType, TimestampNTZType)):
        raise TypeError(f"spine column {time_col} must be a timestamp, is {ttype.simpleString()}; "
                        f"convert it first, e.g. F.to_timestamp('{time_col}')")
    clash = [f for f in features if f in spine.columns]
    if clash:
        raise ValueError(f"spine already has columns named like requested features {clash}; rename or drop them")
    internal = [c for c in spine.columns if c.startswith("__rg_") and c != row_col]
    if internal:
        raise ValueError(f"spine columns {internal} use the reserved prefix __rg_")
    need = [entity_col, FEATURE_TIME_COL, S.RUN_DATE, *features]
    absent = [c for c in need if c not in features_df.columns]
    if absent:
        raise ValueError(f"feature table lacks {absent}; its columns: {features_df.columns}")

    ft = features_df.select(F.col(entity_col).alias(_KEY), F.col(FEATURE_TIME_COL).alias(_TS),
                            F.col(S.RUN_DATE).alias(_RD), *features)
    # The row id is computed once per evaluation of this single plan (the spine appears
    # only once in it), so it identifies a spine row even if the spine has duplicates.
    # (Spark treats the stage as indeterminate and reruns its consumers on a retry.)
    s = spine.withColumn(_ROW, F.monotonically_increasing_id() if row_col is None else F.col(row_col))
    spine_cols = [c for c in spine.columns if c != row_col]
    j = s.join(ft, F.col(entity_col) == F.col(_KEY), "left")
    valid = F.coalesce(F.col(_TS) <= F.col(time_col), F.lit(False))
    # Partitioned by (entity, row id): the join already hash-partitioned the rows by entity,
    # which satisfies this clustering, so the window adds no second shuffle.
    w = Window.partitionBy(F.col(entity_col), F.col(_ROW)).orderBy(F.col(_VALID).desc(), F.col(_TS).desc_nulls_last(), F.col(_RD).desc_nulls_last())
    best = j.withColumn(_VALID, valid).withColumn(_RN, F.row_number().over(w)).filter(F.col(_RN) == 1)
    status = (F.when(F.col(time_col).isNull(), NULL_TIME)
              .when(F.col(_KEY).isNull(), UNKNOWN_ENTITY)
              .when(~F.col(_VALID), BEFORE_FIRST_ROW)
              .otherwise(MATCHED))
    feat_cols = [F.when(F.col(_VALID), F.col(f)).alias(f, metadata=features_df.schema[f].metadata) for f in features]
    return best.select(*[F.col(c) for c in spine_cols], *feat_cols, status.alias(_STATUS), F.col(_ROW))


# --------------------------------------------------------------------------- training set
@dataclass
class TrainingSet:
    """Features as of each spine row, from one pinned version of the feature table.

    ``df`` has the spine's columns (ids, time, labels, extras, unchanged) followed by
    ``features``; one row per spine row.
    """

    df: DataFrame
    features: tuple[str, ...]
    feature_table: str
    feature_table_version: int
    entity_col: str
    time_col: str
    match_counts: dict[str, int]
    store_backend: str
    snapshot_root: str | None = None  # default parent folder for Parquet snapshots
    snapshot_path: str | None = None  # set by write_snapshot
    snapshot_files: tuple[str, ...] = field(default=())
    # df plus the internal spine row number (__rg_row), so to_pandas can keep the spine's order
    ordered: DataFrame | None = field(default=None, repr=False)
    # a pandas spine's datetime columns: name -> time zone (None = the spine's naive UTC times)
    spine_time_zones: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """What to log with a model (e.g. as MLflow params): table, pinned version, features."""
        return {"feature_table": self.feature_table, "feature_table_version": self.feature_table_version,
                "features": list(self.features), "entity_col": self.entity_col, "time_col": self.time_col,
                "match_counts": dict(self.match_counts), "store_backend": self.store_backend}

    def to_spark(self) -> DataFrame:
        return self.df

    def to_pandas(self, limit: int | None = None):
        """The training set as a pandas frame, **in the spine's order** (a pandas spine's row
        order; a Spark spine's partition order), with a fresh ``RangeIndex``.

        Time zones, as Feast returns them: Spark timestamp columns come back tz-aware in UTC;
        the datetime columns of a pandas spine come back as they went in (tz-aware in their
        own zone, or naive UTC). Converted through epoch microseconds, so neither the Spark
        session's time zone nor the machine's changes a value.

        Collects to the driver. Bounded: the as-of join yields exactly one row per spine
        row, so the frame is as large as the spine the caller chose (``match_counts["rows"]``
        rows); pass ``limit`` to take only the first rows, or use ``to_spark()`` /
        ``torch_loader()`` for spines that do not fit in driver memory.
        """
        import pandas as pd

        src = self.ordered if self.ordered is not None else self.df.withColumn(_ROW, F.monotonically_increasing_id())
        df = src.orderBy(_ROW)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
            df = df.limit(limit)
        ts_cols = [f.name for f in df.schema.fields if isinstance(f.dataType, TimestampType)]
        df = df.select(*[F.unix_micros(F.col(c)).alias(c) if c in ts_cols else F.col(c) for c in df.columns])
        pdf = df.toPandas().drop(columns=[_ROW]).reset_index(drop=True)
        for c in ts_cols:
            t = pd.to_datetime(pdf[c].astype("Int64"), unit="us", utc=True).dt.as_unit("ns")
            if c in self.spine_time_zones:
                tz = self.spine_time_zones[c]
                t = t.dt.tz_localize(None) if tz is None else t.dt.tz_convert(tz)
            pdf[c] = t
        return pdf

    def write_snapshot(self, path: str | None = None, *, num_files: int | None = None, overwrite: bool = False) -> list[str]:
        """Materialise the training set as Parquet files written by Spark's executors, plus a
        small JSON manifest (table, version, features, files). Returns the files' URIs.

        ``num_files`` repartitions first (one file per partition): the torch loader shards
        files across workers, so give at least as many files as workers x ranks.
        ``overwrite`` only replaces a folder that holds an earlier snapshot, never anything
        else (Spark's overwrite deletes the whole folder).
        """
        if path is None:
            if self.snapshot_root is None:
                raise ValueError("no path given and no snapshot_root configured")
            path = f"{self.snapshot_root.rstrip('/')}/v{self.feature_table_version}-{uuid.uuid4().hex[:12]}"
        _check_snapshot_target(path, overwrite)
        if num_files is not None and num_files < 1:
            raise ValueError(f"num_files must be >= 1, got {num_files}")
        df = self.df if num_files is None else self.df.repartition(num_files)
        df.write.mode("overwrite" if overwrite else "errorifexists").parquet(path)
        spark = self.df.sparkSession
        # inputFiles() lists the written folder through Hadoop's FileSystem (any scheme);
        # one entry per file, so it is bounded by the number of partitions written.
        files = sorted(spark.read.parquet(path).inputFiles())
        manifest = {**self.metadata(), "files": files, "columns": df.columns}
        fs, p = _fs_path(path)
        with fs.open_output_stream(f"{p.rstrip('/')}/{MANIFEST}") as out:
            out.write(json.dumps(manifest, indent=1, default=str).encode())
        self.snapshot_path, self.snapshot_files = path, tuple(files)
        log.info("training set snapshot: %d files at %s (feature table version %d)", len(files), path, self.feature_table_version)
        return files

    def torch_loader(self, batch_size: int, label_col: str, *, feature_cols: Sequence[str] | None = None,
                     path: str | None = None, num_files: int | None = None, num_workers: int = 0,
                     fill_value: float = math.nan, label_dtype=None, drop_last: bool = False,
                     shuffle_seed: int | None = None, rank: int | None = None, world_size: int | None = None,
                     prefetch_factor: int | None = None, multiprocessing_context=None, pin_memory: bool = False):
        """A ``torch.utils.data.DataLoader`` over ``ParquetIterableDataset`` on the Parquet
        snapshot of this training set (written on first use, reused afterwards).

        Yields ``(x, y)``: ``x`` float32 ``[B, len(feature_cols)]`` with nulls as
        ``fill_value``; ``y`` ``[B]`` (int64 for integer/boolean labels, float32 otherwise,
        unless ``label_dtype``). ``B <= batch_size``. The DataLoader has ``batch_size=None``
        because batches come pre-formed from Arrow. In memory per worker: one Parquet row
        group's selected columns and about one batch, plus ``prefetch_factor`` finished
        batches waiting in the DataLoader's queue.

        Distributed training: write the snapshot once (``write_snapshot``) and build a
        ``ParquetIterableDataset(files, ..., rank=r, world_size=n)`` per rank instead of
        calling this on every rank.
        """
        _require_torch()
        if label_col not in self.df.columns:
            raise ValueError(f"label column {label_col!r} is not in the training set; columns: {self.df.columns}")
        if label_col in self.features:
            raise ValueError(f"label column {label_col!r} is also a feature")
        cols = list(self.features) if feature_cols is None else list(feature_cols)
        unknown = [c for c in cols if c not in self.df.columns]
        if unknown:
            raise ValueError(f"feature_cols {unknown} are not in the training set; columns: {self.df.columns}")
        if not self.snapshot_files or (path is not None and path != self.snapshot_path):
            self.write_snapshot(path, num_files=num_files)
        ds = ParquetIterableDataset(list(self.snapshot_files), cols, label_col, batch_size, fill_value=fill_value,
                                    label_dtype=label_dtype, drop_last=drop_last, shuffle_seed=shuffle_seed,
                                    rank=rank, world_size=world_size)
        return make_loader(ds, num_workers=num_workers, prefetch_factor=prefetch_factor,
                           multiprocessing_context=multiprocessing_context, pin_memory=pin_memory)


def get_training_set(spark: SparkSession, cfg=None, spine=None, *, features: Sequence[str] | None = None,
                     feature_table: str | None = None, version: int | str | None = None, timestamp: str | None = None,
                     entity_col: str = "application_id", time_col: str | None = None,
                     store: TableStore | None = None) -> TrainingSet:
    """Point-in-time features for a labelled spine, from one pinned feature-table version.

    ``spine`` is a Spark or a pandas DataFrame (Feast's "entity dataframe") with
    ``entity_col`` (a key of the feature table: ``application_id``, or ``applicant_id`` for
    "the applicant's latest application as of t") and a timestamp column; its other columns
    (labels, extras) are kept as they are, and ``to_pandas()`` returns the rows in the
    spine's order. ``time_col`` defaults as in Feast: ``event_timestamp`` if the spine has
    it, else ``as_of_ts``, else the spine's only timestamp column. Naive pandas times are
    taken as UTC.

    The table is the project's feature table (``cfg``), or any riskgraph feature table named
    by ``feature_table`` (a path or URI; ``cfg`` may then be None). Reading writes nothing
    (no folders, no files). ``features`` defaults to every feature column of the table.
    ``version`` or ``timestamp`` time-travels; ``version="published"`` reads the version the
    last complete nightly run published (``riskgraph/published.py``: never a run still
    writing); by default the current version is resolved once and recorded as
    ``feature_table_version``.

    Runs one Spark job now (counting matched / unmatched spine rows); the training set's
    rows are computed when used.
    """
    if spine is None:
        raise TypeError("get_training_set needs a spine: a Spark or pandas DataFrame with the entity id and a timestamp")
    if cfg is None and feature_table is None:
        raise ValueError("pass cfg (the project's feature table) or feature_table=<path or URI of a feature table>")
    spine, row_col, zones = _as_spark_spine(spark, spine)
    time_col = infer_time_col(spine, time_col, exclude=(row_col,) if row_col else ())
    if entity_col not in ENTITY_COLUMNS:
        raise ValueError(f"entity_col {entity_col!r} is not a key of the feature table; keys: {list(ENTITY_COLUMNS)}")
    store = store or choose_store(spark, cfg.store.backend if cfg is not None else "auto")
    uri = feature_table if feature_table is not None else T.FEATURES.uri(cfg)
    if version == "published":
        from riskgraph.published import published_version

        if cfg is None or feature_table is not None:
            raise ValueError('version="published" reads the project\'s feature table: pass cfg, not feature_table')
        version = published_version(cfg, T.FEATURES)
    elif isinstance(version, str):
        raise ValueError(f'version is a Delta version number or "published", got {version!r}')
    v = resolve_version(spark, store, uri, version=version, timestamp=timestamp)
    table = store.read(spark, uri, version=v)
    table_feats = [c for c in table.columns if c not in (*ENTITY_COLUMNS, FEATURE_TIME_COL, S.RUN_DATE)]
    if cfg is not None:
        feats = _check_features(cfg, features)
    else:
        feats = _check_names(features, table_feats, "the table's features")
    lacking = [f for f in feats if f not in table.columns]
    if lacking:
        raise ValueError(f"feature table {uri} at version {v} has no columns {lacking} (written before they were "
                         f"added, or with another config); it has: {table.columns}")
    # Column documentation travels with the features: the table's own comments, else the catalog's.
    docs = {sp.name: sp.description for sp in S.feature_specs(cfg)} if cfg is not None else {}
    docs.update({f.name: f.metadata["comment"] for f in table.schema.fields if (f.metadata or {}).get("comment")})
    table = table.select(*[F.col(c).alias(c, metadata={"comment": docs[c]}) if c in feats and c in docs else F.col(c)
                           for c in table.columns])
    joined = join_features_as_of(spine, table, feats, entity_col=entity_col, time_col=time_col, row_col=row_col)
    # Bounded collect: at most len(STATUSES) rows.
    counts = {st: 0 for st in STATUSES}
    for r in joined.groupBy(_STATUS).count().collect():
        counts[r[_STATUS]] = int(r["count"])
    counts = {"rows": sum(counts.values()), **counts}
    unmatched = counts["rows"] - counts[MATCHED]
    if unmatched:
        log.warning("training set: %d of %d spine rows have no feature row as of their time (kept with null features): %s",
                    unmatched, counts["rows"], {k: n for k, n in counts.items() if k not in ("rows", MATCHED) and n})
    log.info("training set: feature table %s version %d (%s), %d features, %d rows", uri, v, store.name, len(feats), counts["rows"])
    ordered = joined.drop(_STATUS)
    return TrainingSet(df=ordered.drop(_ROW), features=tuple(feats), feature_table=uri, feature_table_version=v,
                       entity_col=entity_col, time_col=time_col, match_counts=counts, store_backend=store.name,
                       snapshot_root=cfg.paths.table("work", "training_sets") if cfg is not None else None,
                       ordered=ordered, spine_time_zones=zones)


def infer_time_col(spine: DataFrame, time_col: str | None = None, *, exclude: Sequence[str] = ()) -> str:
    """The spine's time column: ``time_col`` if given, else (as Feast infers it)
    ``event_timestamp``, else ``as_of_ts``, else the only timestamp-typed column."""
    if time_col is not None:
        return time_col
    for name in ("event_timestamp", FEATURE_TIME_COL):
        if name in spine.columns:
            return name
    stamps = [f.name for f in spine.schema.fields if f.name not in exclude
              and isinstance(f.dataType, (TimestampType, TimestampNTZType))]
    if len(stamps) == 1:
        return stamps[0]
    raise ValueError(f"cannot tell the spine's time column: it has no event_timestamp or as_of_ts column and "
                     f"{len(stamps)} timestamp columns {stamps}; pass time_col=<name>")


def _as_spark_spine(spark: SparkSession, spine):
    """(Spark spine, row-number column or None, {datetime column: time zone}).

    A pandas spine gets a row-number column (its order) and UTC datetimes: naive ones are
    taken as UTC (as Feast does), aware ones converted; their zones are remembered so
    ``to_pandas`` returns them as they came. The caller's frame is not modified."""
    if isinstance(spine, DataFrame):
        return spine, None, {}
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a pyspark[sql] dependency
        pd = None
    if pd is None or not isinstance(spine, pd.DataFrame):
        raise TypeError(f"spine must be a Spark or pandas DataFrame, got {type(spine).__name__}")
    internal = [c for c in spine.columns if str(c).startswith("__rg_")]
    if internal:
        raise ValueError(f"spine columns {internal} use the reserved prefix __rg_")
    pdf = spine.reset_index(drop=True).copy()
    zones = {}
    for c in pdf.columns:
        if pd.api.types.is_datetime64_any_dtype(pdf[c]):
            tz = pdf[c].dt.tz
            zones[c] = tz
            pdf[c] = pdf[c].dt.tz_localize("UTC") if tz is None else pdf[c].dt.tz_convert("UTC")
    pdf[_ROW] = np.arange(len(pdf), dtype="int64")
    return spark.createDataFrame(pdf), _ROW, zones


# --------------------------------------------------------------------------- files
_fs_path = fs_path  # (pyarrow filesystem, path) for a path or URI


def _check_snapshot_target(path: str, overwrite: bool) -> None:
    from pyarrow import fs as pafs

    fs, p = _fs_path(path)
    info = fs.get_file_info(p)
    if info.type == pafs.FileType.NotFound:
        return
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace an earlier snapshot there")
    names = {i.base_name for i in fs.get_file_info(pafs.FileSelector(p))}
    if MANIFEST not in names:
        raise FileExistsError(f"{path} exists and is not a training-set snapshot (no {MANIFEST}); refusing to overwrite it")


def _open_parquet(uri: str) -> pq.ParquetFile:
    """A ParquetFile that owns its handle (closed by ``with``/``close``)."""
    fs, p = _fs_path(uri)
    return pq.ParquetFile(p, filesystem=fs)


def _require_torch() -> None:
    if torch is None:
        raise ImportError("the PyTorch loaders need torch (requirements.txt pins torch==2.13.0)")


def make_loader(dataset, *, num_workers: int = 0, prefetch_factor: int | None = None, multiprocessing_context=None,
                pin_memory: bool = False):
    """A DataLoader for a dataset that yields whole batches (hence ``batch_size=None``)."""
    _require_torch()
    kw = {}
    if num_workers > 0:
        kw["prefetch_factor"] = prefetch_factor or 2
        if multiprocessing_context is not None:
            kw["multiprocessing_context"] = multiprocessing_context
    elif prefetch_factor is not None:
        raise ValueError("prefetch_factor needs num_workers > 0")
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kw)


# --------------------------------------------------------------------------- torch datasets
class ParquetIterableDataset(IterableDataset):
    """Streams ``(x, y)`` batches from Parquet files; ``x`` float32 ``[B, F]``, ``y`` ``[B]``
    (or ``x`` alone when ``label_col`` is None).

    * Memory bounded: each file is read with ``ParquetFile.iter_batches(batch_size,
      columns)``, so a worker holds one row group's selected columns and about one batch.
    * Sharded by file: file ``i`` (in sorted order, or a seeded permutation when
      ``shuffle_seed`` is set; call ``set_epoch`` to change it per epoch) goes to the shard
      ``i % (world_size * num_workers)``, where a DataLoader worker's shard is
      ``rank * num_workers + worker_id`` (``torch.utils.data.get_worker_info``). Every row
      is read exactly once per epoch, in an order fixed by the files, the seed and the
      worker count. Shards get whole files, so give at least as many files as shards
      (ranks with fewer rows yield fewer batches; use DDP's ``join()`` for uneven inputs).
    * Batches never exceed ``batch_size``; rows carry over across file boundaries, so only
      a worker's last batch can be short (dropped with ``drop_last``).
    * Nulls in features become ``fill_value`` (NaN by default); a feature column missing
      from a file (added to the table later) is all ``fill_value``. Integer and boolean
      labels become int64 (a null there is an error), float labels float32.
    """

    def __init__(self, files: Sequence[str], feature_cols: Sequence[str], label_col: str | None, batch_size: int, *,
                 fill_value: float = math.nan, label_dtype=None, drop_last: bool = False,
                 shuffle_seed: int | None = None, rank: int | None = None, world_size: int | None = None):
        _require_torch()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not feature_cols:
            raise ValueError("feature_cols is empty")
        if label_col is not None and label_col in feature_cols:
            raise ValueError(f"label column {label_col!r} is also in feature_cols")
        self.files = sorted(files)
        self.feature_cols = list(feature_cols)
        self.label_col = label_col
        self.batch_size = int(batch_size)
        self.fill_value = float(fill_value)
        self.drop_last = drop_last
        self.shuffle_seed = shuffle_seed
        self.epoch = 0
        if rank is None and world_size is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.rank, self.world_size = int(rank or 0), int(world_size or 1)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if self.files and len(self.files) < self.world_size:
            warnings.warn(f"{len(self.files)} files for {self.world_size} ranks: some ranks get no data", stacklevel=2)
        self.label_dtype = label_dtype if label_dtype is not None else self._infer_label_dtype()

    def _infer_label_dtype(self):
        if self.label_col is None or not self.files:
            return torch.float32
        with _open_parquet(self.files[0]) as pf:
            names = pf.schema_arrow.names
            if self.label_col not in names:
                raise ValueError(f"label column {self.label_col!r} not in {self.files[0]}; columns: {names}")
            t = pf.schema_arrow.field(self.label_col).type
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            return torch.int64
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            return torch.float32
        raise TypeError(f"label column {self.label_col!r} has type {t}; a label must be numeric or boolean")

    def set_epoch(self, epoch: int) -> None:
        """With ``shuffle_seed``, a different (but reproducible) file order per epoch."""
        self.epoch = int(epoch)

    def shard_files(self, worker_id: int = 0, num_workers: int = 1) -> list[str]:
        """The files one DataLoader worker of this rank reads."""
        files = list(self.files)
        if self.shuffle_seed is not None:  # same permutation on every rank and worker
            order = np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(len(files))
            files = [files[i] for i in order]
        shards = self.world_size * num_workers
        return files[self.rank * num_workers + worker_id::shards]

    def _chunks(self, files: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        np_label = None if self.label_col is None else _NUMPY_OF.get(self.label_dtype, np.float64)
        for f in files:
            with _open_parquet(f) as pf:
                present = set(pf.schema_arrow.names)
                for c in self.feature_cols:
                    if c in present:
                        t = pf.schema_arrow.field(c).type
                        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)):
                            raise TypeError(f"feature column {c!r} in {f} has type {t}; features must be numeric or boolean")
                if self.label_col is not None and self.label_col not in present:
                    raise ValueError(f"label column {self.label_col!r} not in {f}; columns: {sorted(present)}")
                cols = [c for c in self.feature_cols if c in present] + ([self.label_col] if self.label_col else [])
                for b in pf.iter_batches(batch_size=self.batch_size, columns=cols):
                    if b.num_rows == 0:
                        continue
                    x = np.empty((b.num_rows, len(self.feature_cols)), dtype=np.float32)
                    for j, c in enumerate(self.feature_cols):
                        if c not in present:
                            x[:, j] = self.fill_value
                            continue
                        a = pc.cast(b.column(c), pa.float32(), safe=False)
                        if a.null_count:
                            a = pc.fill_null(a, self.fill_value)
                        x[:, j] = a.to_numpy(zero_copy_only=False)
                    y = None
                    if self.label_col is not None:
                        la = b.column(self.label_col)
                        if la.null_count:
                            if np.issubdtype(np_label, np.integer):
                                raise ValueError(f"label column {self.label_col!r} has nulls in {f}; "
                                                 "drop those rows or use a float label_dtype")
                            la = pc.fill_null(pc.cast(la, pa.float64()), math.nan)
                        y = la.to_numpy(zero_copy_only=False).astype(np_label, copy=False)
                    yield x, y

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        pend_x: list[np.ndarray] = []
        pend_y: list[np.ndarray] = []
        n = 0
        bs = self.batch_size
        for x, y in self._chunks(self.shard_files(wid, nw)):
            pend_x.append(x)
            pend_y.append(y)
            n += len(x)
            while n >= bs:
                X = np.concatenate(pend_x) if len(pend_x) > 1 else pend_x[0]
                Y = None if self.label_col is None else (np.concatenate(pend_y) if len(pend_y) > 1 else pend_y[0])
                yield self._emit(X[:bs], None if Y is None else Y[:bs])
                pend_x, pend_y, n = [X[bs:]], [None if Y is None else Y[bs:]], n - bs
        if n and not self.drop_last:
            X = np.concatenate(pend_x)
            Y = None if self.label_col is None else np.concatenate(pend_y)
            yield self._emit(X, Y)

    def _emit(self, x: np.ndarray, y: np.ndarray | None):
        xt = torch.from_numpy(np.ascontiguousarray(x))
        if y is None:
            return xt
        return xt, torch.from_numpy(np.ascontiguousarray(y)).to(self.label_dtype)


_NUMPY_OF = {}
if torch is not None:
    # numpy dtype a label column is converted to before torch casts it to label_dtype
    _NUMPY_OF = {torch.int64: np.int64, torch.int32: np.int32, torch.int16: np.int16, torch.int8: np.int8,
                 torch.uint8: np.uint8, torch.bool: np.bool_, torch.float64: np.float64, torch.float32: np.float32}


class DeltaSnapshotDataset(ParquetIterableDataset):
    """``ParquetIterableDataset`` over the data files of one version of a Delta table: raw
    feature rows without a spine (e.g. for unsupervised pre-training or scoring).

    Reads ``DeltaTable(uri, version=v).file_uris()`` (optionally ``partition_filters``, e.g.
    ``[("run_date", ">=", "2026-01-01")]``) with ParquetFile, so it needs no Spark and
    never calls ``to_pyarrow_table``. ``feature_cols`` defaults to the table's numeric
    columns. Partition columns are not stored in the files and cannot be features.
    Refuses tables whose files do not hold the rows as read (deletion vectors, column
    mapping). ``version`` records the version read.
    """

    def __init__(self, uri: str, batch_size: int, *, feature_cols: Sequence[str] | None = None,
                 label_col: str | None = None, version: int | None = None, timestamp: str | None = None,
                 partition_filters=None, **kwargs):
        from deltalake import DeltaTable

        if version is not None and timestamp is not None:
            raise ValueError("pass version or timestamp, not both")
        if not DeltaTable.is_deltatable(uri):
            raise StoreError(f"no Delta table at {uri}")
        dt = DeltaTable(uri, version=version) if version is not None else DeltaTable(uri)
        if timestamp is not None:
            dt.load_as_version(timestamp)
        reader_features = set(dt.protocol().reader_features or [])
        mapping = (dt.metadata().configuration or {}).get("delta.columnMapping.mode", "none")
        if "deletionVectors" in reader_features or mapping != "none":
            raise StoreError(f"{uri} uses deletion vectors or column mapping; its Parquet files alone do not give its rows. "
                             "Read it with Spark (store.read) and use TrainingSet.write_snapshot instead")
        schema = pa.schema(dt.schema().to_arrow())
        parts = set(dt.metadata().partition_columns)
        numeric = [f.name for f in schema if f.name not in parts and f.name != label_col
                   and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))]
        cols = numeric if feature_cols is None else list(feature_cols)
        bad = [c for c in cols if c in parts]
        if bad:
            raise ValueError(f"{bad} are partition columns of {uri}, not stored in its files; choose from {numeric}")
        unknown = [c for c in cols if c not in schema.names]
        if unknown:
            raise ValueError(f"{uri} has no columns {unknown}; numeric columns: {numeric}")
        self.table_uri = uri
        self.version = dt.version()
        super().__init__(dt.file_uris(partition_filters), cols, label_col, batch_size, **kwargs)

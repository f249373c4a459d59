"""Petastorm route to a training set: ``make_batch_reader`` + ``petastorm.pytorch.DataLoader``
over the Parquet files of a training-set snapshot (or of one Delta version), yielding the
same ``(x, y)`` batches as the maintained loader ``TrainingSet.torch_loader``.

The maintained loader (``riskgraph.training.ParquetIterableDataset``) is the primary path.
This route exists for modellers whose training code is built on Petastorm, and it runs only
in its own environment: petastorm 0.13.1 (the last release; its maintainer says it is not
actively maintained) does not import with pyarrow >= 16 (``No module named
'pyarrow.filesystem'``); with pyarrow 15 it imports but ``make_batch_reader`` fails
(``ParquetDataset.__init__() got an unexpected keyword argument 'validate_schema'``); and
Spark 4.1 refuses pyarrow < 15. So:

    make petastorm-env                       # builds .venv-petastorm/ (requirements-petastorm.txt)
    .venv-petastorm/bin/python train.py      # where train.py does:

    from riskgraph.petastorm_route import make_petastorm_loader
    with make_petastorm_loader(ts_snapshot_path, batch_size=1024, label_col="is_bad") as loader:
        for x, y in loader: ...              # x float32 [B, F] (nulls -> NaN), y [B]

Input: the folder ``TrainingSet.write_snapshot()`` wrote (``ts.snapshot_path``; its manifest
gives the files and the feature order), or a list of Parquet file URIs or local paths:
``write_snapshot()``'s return value, or a Delta version's data files, listed in the main
environment with ``deltalake.DeltaTable(uri, version=v).file_uris()`` (deltalake is not in
the petastorm environment; pass the list over, e.g. as JSON). Partition columns are not in a Delta
table's files and cannot be features; tables with deletion vectors or column mapping need
a snapshot instead (their files alone do not give their rows).

Batches match ``TrainingSet.torch_loader`` / ``ParquetIterableDataset``: ``x`` float32
``[B, len(feature_cols)]`` in ``feature_cols`` order (default: the snapshot's features),
nulls as ``fill_value``; ``y`` int64 for integer/boolean labels (a null is an error),
float32 for float/decimal labels (null -> NaN), unless ``label_dtype``; ``B <= batch_size``.
Row order differs: petastorm reads row groups on a thread pool, so rows come in completion
order. Petastorm's ``DataLoader`` unrolls each row group into rows and collates them again:
on 100k rows x 3 features it took 0.18 s against the maintained loader's 0.04 s (one run,
2 cores), which slices Arrow batches.

This module imports only the standard library, numpy, pandas, pyarrow, torch and petastorm
(``riskgraph/__init__`` imports nothing), so it works under pyarrow 14 / numpy 1.x. Imported where petastorm cannot import (the main
environment), it raises an ImportError that says which environment to use.
"""
from __future__ import annotations

import json
import math
import os
import re
import urllib.parse
import warnings
from typing import Sequence

_HINT = ("riskgraph.petastorm_route needs petastorm 0.13.1, which cannot import beside the main "
         "environment's pyarrow (it needs pyarrow 14 and numpy < 2): run `make petastorm-env` and use "
         ".venv-petastorm/bin/python. The maintained loader, TrainingSet.torch_loader, works here.")

try:
    import numpy as np
    import pandas as pd  # petastorm hands each row group to the transform as pandas
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from petastorm import make_batch_reader
    from petastorm.pytorch import DataLoader as PetastormDataLoader
    from petastorm.transform import TransformSpec
except (ImportError, AttributeError) as e:  # AttributeError: petastorm against a pyarrow without old APIs
    raise ImportError(f"{_HINT} (import failed with {type(e).__name__}: {e})") from e

# petastorm 0.13.1 drives pyarrow 14 through APIs deprecated since pyarrow 5-11: one
# FutureWarning per call, dozens per row group. They say nothing a user can act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\.|$)")

MANIFEST = "_riskgraph_training_set.json"  # same name as riskgraph.training.MANIFEST (not imported: needs Spark)


def snapshot_files(path: str) -> list[str]:
    """The Parquet file URIs of a snapshot folder written by ``TrainingSet.write_snapshot``,
    read from its manifest (the folder also holds Spark's ``_SUCCESS`` and checksum files)."""
    fs, p = _fs_path(path)
    manifest = f"{p.rstrip('/')}/{MANIFEST}"
    try:
        with fs.open_input_stream(manifest) as f:
            meta = json.loads(f.read().decode())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} has no {MANIFEST}: not a training-set snapshot (TrainingSet.write_snapshot)") from None
    return list(meta["files"])


def snapshot_features(path: str) -> list[str]:
    """The feature columns recorded in a snapshot's manifest, in their training-set order."""
    fs, p = _fs_path(path)
    with fs.open_input_stream(f"{p.rstrip('/')}/{MANIFEST}") as f:
        return list(json.loads(f.read().decode())["features"])


def make_petastorm_loader(files: str | Sequence[str], batch_size: int, label_col: str | None, *,
                          feature_cols: Sequence[str] | None = None, fill_value: float = math.nan,
                          label_dtype=None, workers_count: int = 2, shuffle_row_groups: bool = False,
                          seed: int | None = None, rank: int | None = None, world_size: int | None = None,
                          num_epochs: int | None = 1, shuffling_queue_capacity: int = 0) -> PetastormDataLoader:
    """A ``petastorm.pytorch.DataLoader`` over ``make_batch_reader(files)`` yielding ``(x, y)``
    (``x`` alone when ``label_col`` is None, e.g. raw feature rows of a Delta version).

    ``files``: a snapshot folder (``TrainingSet.snapshot_path``), or Parquet file URIs
    (``file://``, ``hdfs://``, ``s3://`` ...) or local paths, all with one scheme.
    ``feature_cols`` defaults to the snapshot's features in training-set order (exactly the
    maintained loader's columns), or, for a list of files, to every numeric/boolean column
    except the label, in file order. ``rank``/``world_size`` map
    to petastorm's ``cur_shard``/``shard_count`` (row groups are sharded, so write at least
    as many row groups as ranks). Use it as a context manager, or call
    ``loader.reader.stop(); loader.reader.join()`` when done: the reader owns threads.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(files, (str, os.PathLike)):
        if feature_cols is None:
            feature_cols = snapshot_features(str(files))
        files = snapshot_files(str(files))
    uris = [_to_uri(f) for f in files]
    if not uris:
        raise ValueError("no files given")
    if (rank is None) != (world_size is None):
        raise ValueError("pass rank and world_size together")
    schema = _common_schema(uris)
    if label_col is not None and label_col not in schema.names:
        raise ValueError(f"label column {label_col!r} not in the files; columns: {schema.names}")
    if feature_cols is None:
        cols = [f.name for f in schema if f.name != label_col and _numeric(f.type)]
    else:
        cols = list(feature_cols)
    if not cols:
        raise ValueError("feature_cols is empty")
    if label_col in cols:
        raise ValueError(f"label column {label_col!r} is also in feature_cols")
    unknown = [c for c in cols if c not in schema.names]
    if unknown:
        raise ValueError(f"feature_cols {unknown} are not in the files; columns: {schema.names}")
    bad = [f"{c} ({schema.field(c).type})" for c in cols if not _numeric(schema.field(c).type)]
    if bad:
        raise TypeError(f"feature columns must be numeric or boolean: {bad}")
    lt = schema.field(label_col).type if label_col is not None else pa.float32()
    if label_dtype is None:
        if pa.types.is_integer(lt) or pa.types.is_boolean(lt):
            label_dtype = torch.int64
        elif pa.types.is_floating(lt) or pa.types.is_decimal(lt):
            label_dtype = torch.float32
        else:
            raise TypeError(f"label column {label_col!r} has type {lt}; a label must be numeric or boolean")
    np_label = torch.empty(0, dtype=label_dtype).numpy().dtype
    integer_label = np.issubdtype(np_label, np.integer) or np_label == np.bool_

    def to_training_dtypes(df):
        # Runs on petastorm's worker threads, once per row group (a pandas frame): features to
        # float32 with nulls filled, the label to its training dtype, like ParquetIterableDataset.
        out = {}
        for c in cols:
            v = df[c].astype("float64").to_numpy()  # nullable ints arrive as float64+NaN, bools with nulls as object
            out[c] = np.where(np.isnan(v), fill_value, v).astype(np.float32)
        if label_col is None:
            return pd.DataFrame(out, index=df.index)
        y = df[label_col]
        if integer_label and y.isna().any():
            raise ValueError(f"label column {label_col!r} has nulls; drop those rows or use a float label_dtype")
        out[label_col] = (y.astype("float64") if not integer_label else y).to_numpy().astype(np_label)
        return pd.DataFrame(out, index=df.index)

    selected = [*cols] + ([label_col] if label_col is not None else [])
    spec = TransformSpec(to_training_dtypes,
                         edit_fields=[(c, np.float32, (), False) for c in cols]
                         + ([(label_col, np_label.type, (), False)] if label_col is not None else []),
                         selected_fields=selected)
    reader = make_batch_reader(uris, schema_fields=[re.escape(c) + "$" for c in selected],
                               reader_pool_type="thread", workers_count=workers_count,
                               shuffle_row_groups=shuffle_row_groups, seed=seed, num_epochs=num_epochs,
                               cur_shard=rank, shard_count=world_size, transform_spec=spec)

    def collate(rows):
        # petastorm's DataLoader unrolls each row group into rows (dicts of numpy scalars);
        # stack them column by column into one float32 matrix in feature order.
        n = len(rows)
        x = np.empty((n, len(cols)), dtype=np.float32)
        for j, c in enumerate(cols):
            x[:, j] = np.fromiter((r[c] for r in rows), dtype=np.float32, count=n)
        if label_col is None:
            return torch.from_numpy(x)
        y = np.fromiter((r[label_col] for r in rows), dtype=np_label, count=n)
        return torch.from_numpy(x), torch.from_numpy(y).to(label_dtype)

    loader = PetastormDataLoader(reader, batch_size=batch_size, collate_fn=collate,
                                 shuffling_queue_capacity=shuffling_queue_capacity)
    loader.feature_cols = cols  # what x's columns are, for the caller
    loader.label_col = label_col
    return loader


def _numeric(t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def _to_uri(f: str) -> str:
    """petastorm wants URLs with one scheme; local paths (Delta's file_uris()) become file://.
    Not percent-encoded: petastorm hands the URL's path to pyarrow as it is (``run_date%3D...``
    would not be found)."""
    return f if urllib.parse.urlparse(f).scheme else "file://" + os.path.abspath(f)


def _fs_path(uri: str):
    from pyarrow import fs as pafs

    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), urllib.parse.unquote(parsed.path) if parsed.scheme else os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def _common_schema(uris: list[str]) -> pa.Schema:
    """The files' shared Arrow schema, from footers only. petastorm takes its schema from the
    files and cannot fill a column that some files lack (e.g. a Delta version written before
    a feature was added): say so here instead of failing inside a worker thread."""
    first = None
    for u in uris:
        fs, p = _fs_path(u)
        with fs.open_input_file(p) as f:
            s = pq.read_schema(f)
        if first is None:
            first = s
        elif set(s.names) != set(first.names):
            raise ValueError(f"{u} has columns {sorted(s.names)}, {uris[0]} has {sorted(first.names)}: petastorm "
                             "needs one schema; write a training-set snapshot (TrainingSet.write_snapshot) instead")
    return first

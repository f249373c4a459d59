"""Media items -> embedding vectors inside Spark (batch inference with ``mapInPandas``).

The rules that make this fast and correct on a cluster:

* **One model per Python worker.** A worker process is reused across tasks
  (``spark.python.worker.reuse``, on by default), so the model lives in a module-level cache
  keyed by (modality, settings JSON, builder) and is built by the first task that needs it;
  later tasks and batches reuse it. Building a model per batch or per task would cost more
  than the inference itself.
* **Files are read on the executors**, from each row's ``uri`` (local paths with ``open``,
  ``file://`` too; object stores and HDFS through ``pyarrow.fs``): no file byte reaches the
  driver. Relative URIs are relative to ``base_uri`` (the lake root), as in bronze/media.
* **Batched** ``embed_batch`` calls of ``batch_size`` decoded items; torch gets
  ``torch_threads`` intra-op threads per task (1 by default: Spark already runs one task per
  core, and oversubscribed BLAS threads slow everything down).
* **Nothing is embedded as zeros.** An item whose file is missing, whose bytes do not decode,
  whose model call fails, or whose vector is non-finite or zero comes back with a null
  ``vector`` and a ``skip_reason``; :func:`embedded_rows` and :func:`skipped_rows` split them.
* **GPUs per stage**: :func:`gpu_resource_profile` builds the ResourceProfile that
  ``mapInPandas(..., profile=...)`` uses to ask for GPU executors for this stage only
  (Spark >= 4.0 stage-level scheduling; the task's GPU address then comes from
  ``TaskContext.resources()["gpu"]``, see ``riskgraph.embedders.registry.choose_device``).

The incremental rule is :func:`select_unembedded`: a media item is embedded once per
(model id, model version).
"""
from __future__ import annotations

import json
import logging
import sys
import urllib.parse
from typing import Any, Callable, Iterator

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from riskgraph import schemas as S
from riskgraph.features.validation import require_columns

log = logging.getLogger("riskgraph.features.embeddings")

# bronze/media columns an embedding row carries over, plus where the file is
INPUT_COLUMNS = ("media_key", "application_id", "blacklist_entry_id", "kind", "item_ts", "uri", S.DT)
EMBEDDING_COLUMNS = [c.name for c in S.EMBEDDINGS]
# keys of a modality's settings that are the job's, not the model's (see registry.JOB_KEYS)
RUN_KEYS = ("enabled", "batch_size", "torch_threads", "prefer_gpu")

SKIP_MISSING = "missing_file"
SKIP_UNDECODABLE = "undecodable"
SKIP_EMBED_ERROR = "embed_error"
SKIP_NON_FINITE = "non_finite_vector"
SKIP_ZERO = "zero_vector"


def embed_output_schema() -> StructType:
    """EMBEDDINGS columns with ``vector`` nullable (null for a skipped item), then ``device``
    (where the vector was computed) and ``skip_reason`` (null for an embedded item)."""
    fields = []
    for c in S.EMBEDDINGS:
        f = c.field()
        fields.append(StructField(f.name, f.dataType, True if c.name == "vector" else f.nullable, f.metadata))
    return StructType(fields + [
        StructField("device", StringType(), False, {"comment": "cpu or cuda:N: where the model ran"}),
        StructField("skip_reason", StringType(), True, {"comment": "why the item has no vector (null: embedded)"}),
    ])


# =========================================================================== incremental rule
def select_unembedded(media: DataFrame, existing: DataFrame | None, *, model_id: str, model_version: str) -> DataFrame:
    """Media items that have no row for (``model_id``, ``model_version``) in ``existing``.

    ``media``: bronze/media rows (needs ``media_key``); ``existing``: the embeddings table
    (needs ``media_key``, ``model_id``, ``model_version``) or None when it does not exist yet.
    Returns ``media``'s rows unchanged (left anti-join on ``media_key``): a new model version
    selects every item again, an old one only the items it has not seen.
    """
    require_columns(media, ["media_key"], "select_unembedded media")
    if existing is None:
        return media
    require_columns(existing, ["media_key", "model_id", "model_version"], "select_unembedded existing embeddings")
    done = (existing.filter((F.col("model_id") == model_id) & (F.col("model_version") == model_version))
            .select("media_key").distinct())
    return media.join(done, "media_key", "left_anti")


# =========================================================================== executor side
_MODELS: dict[tuple[str, str, str], Any] = {}  # one model per Python worker process
_FILESYSTEMS: dict[str, Any] = {}


def _builder_name(builder: Callable) -> str:
    return f"{getattr(builder, '__module__', '?')}.{getattr(builder, '__qualname__', repr(builder))}"


def default_builder(modality: str, settings: dict[str, Any], *, device: str):
    """The registry's :func:`~riskgraph.embedders.registry.build_embedder`."""
    from riskgraph.embedders.registry import build_embedder

    return build_embedder(modality, settings, device=device)


def model_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A modality's settings without the job's own keys: what a model builder is given."""
    return {k: v for k, v in settings.items() if k not in RUN_KEYS}


def cached_embedder(modality: str, settings_json: str, builder: Callable | None = None,
                    expect_version: str | None = None):
    """The worker's model for (modality, settings, builder), built on first use.

    Rebuilt when ``expect_version`` is given and the cached model is another version: the
    settings name a folder, and a worker that outlives a job (one session running several
    jobs) must not serve last run's model after the folder was refitted or retrained. The
    device is chosen here, once (a GPU that Spark assigned to the task that builds it, else
    ``cuda:0`` when ``prefer_gpu`` and one is visible, else cpu)."""
    from riskgraph.embedders.registry import choose_device

    builder = builder or default_builder
    key = (modality, settings_json, _builder_name(builder))
    emb = _MODELS.get(key)
    if emb is not None and expect_version is not None and emb.model_version != expect_version:
        del _MODELS[key]
        emb = None
    if emb is None:
        settings = json.loads(settings_json)
        device = choose_device(bool(settings.get("prefer_gpu", False)))
        emb = builder(modality, model_settings(settings), device=device)
        _MODELS[key] = emb
    return emb


def _set_torch_threads(n: int) -> None:
    # Only when the model already imported torch: a numpy/sklearn model must not pay for it.
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def resolve_uri(uri: str, base_uri: str | None) -> str:
    """A relative reference is relative to ``base_uri`` (the lake root); absolute paths and
    URIs with a scheme are used as they are (the same rule as bronze media ingest)."""
    if "://" in uri or uri.startswith("/") or not base_uri:
        return uri
    return base_uri.rstrip("/") + "/" + uri


def read_media_bytes(uri: str) -> bytes | None:
    """A file's bytes, or None when it does not exist. Local paths and ``file://`` with
    ``open``; other schemes with ``pyarrow.fs.FileSystem.from_uri`` (one filesystem per
    scheme://authority and worker). Other errors (permissions, network) raise: an outage is
    not the item's fault and must fail the task (Spark retries it), not skip the item."""
    local = urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file://") else (
        None if "://" in uri else uri)
    if local is not None:
        try:
            with open(local, "rb") as fh:
                return fh.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
    from pyarrow import fs as pafs

    u = urllib.parse.urlparse(uri)
    key = f"{u.scheme}://{u.netloc}"
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = pafs.FileSystem.from_uri(uri)[0]
    fs = _FILESYSTEMS[key]
    # pyarrow's own rule: HDFS paths exclude the authority (host:port), object stores' keys
    # start with the bucket
    path = u.path if u.scheme in ("hdfs", "viewfs") else u.netloc + u.path
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        return fh.read()


def _vectors(emb, items: list) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Embed decoded items in one call; if the call fails, item by item so one bad item
    cannot sink its batch (its reason names the error). Non-finite and zero rows are refused."""
    n = len(items)
    if n == 0:
        return [], []
    try:
        batch = np.asarray(emb.embed_batch(items), dtype=np.float32)
        if batch.shape != (n, emb.dim):
            raise ValueError(f"{emb.model_id}.embed_batch returned shape {batch.shape} for {n} items of dim {emb.dim}")
        rows: list = list(batch)
        errors: list[str | None] = [None] * n
    except Exception as e:  # noqa: BLE001 - fall back to single items and report each failure
        if n == 1:
            return [None], [f"{SKIP_EMBED_ERROR}:{type(e).__name__}: {e}"[:300]]
        rows, errors = [], []
        for it in items:
            r, err = _vectors(emb, [it])
            rows += r
            errors += err
    out_rows, reasons = [], []
    for r, err in zip(rows, errors):
        if r is None:
            out_rows.append(None)
            reasons.append(err)
        elif not np.all(np.isfinite(r)):
            out_rows.append(None)
            reasons.append(SKIP_NON_FINITE)
        elif not np.any(r):
            out_rows.append(None)
            reasons.append(SKIP_ZERO)
        else:
            out_rows.append(r)
            reasons.append(None)
    return out_rows, reasons


def _embed_frame(emb, pdf, base_uri: str | None, device: str, batch_size: int):
    """One Arrow batch of input rows -> its output rows. Files are read and decoded
    ``batch_size`` at a time (decoded photos are large: only one batch of them is held), the
    output frame is built once per Arrow batch (a pandas frame per small batch costs as much
    as a fast model's inference)."""
    import pandas as pd

    uris = pdf["uri"].tolist()
    kinds = pdf["kind"].tolist()
    vectors: list = [None] * len(uris)
    reasons: list = [None] * len(uris)
    for start in range(0, len(uris), batch_size):
        items, at = [], []
        for i in range(start, min(start + batch_size, len(uris))):
            data = read_media_bytes(resolve_uri(uris[i], base_uri))
            if data is None:
                reasons[i] = SKIP_MISSING
                continue
            try:
                # a model that reads the item's kind (the person zone of a selfie, the card of an
                # ID photo) decodes it with the kind; the others from the bytes alone
                item = emb.decode_item(data, kinds[i]) if hasattr(emb, "decode_item") else emb.decode(data)
            except Exception:  # noqa: BLE001 - a decoder that raises on garbage bytes: same as None
                item = None
            if item is None:
                reasons[i] = SKIP_UNDECODABLE
                continue
            items.append(item)
            at.append(i)
        rows, why = _vectors(emb, items)
        for i, r, w in zip(at, rows, why):
            vectors[i], reasons[i] = r, w
    out = pdf[[c for c in INPUT_COLUMNS if c != "uri"]].copy()
    out["model_id"] = emb.model_id
    out["model_version"] = emb.model_version
    out["dim"] = np.int32(emb.dim)
    out["vector"] = pd.Series(vectors, index=pdf.index, dtype=object)
    out["device"] = device
    out["skip_reason"] = pd.Series(reasons, index=pdf.index, dtype=object)
    return out


def _embed_partitions(modality: str, settings_json: str, batch_size: int, base_uri: str | None,
                      expect_version: str | None, builder: Callable | None):
    torch_threads = int(json.loads(settings_json).get("torch_threads", 1))

    def run(batches: Iterator) -> Iterator:
        emb = cached_embedder(modality, settings_json, builder, expect_version)
        if expect_version is not None and emb.model_version != expect_version:
            # the driver selected the items for another version: its files changed mid-run
            raise RuntimeError(f"{emb.model_id}: worker loaded version {emb.model_version}, the job selected items for "
                               f"{expect_version}; did the model folder change during the run?")
        _set_torch_threads(torch_threads)
        names = [f.name for f in embed_output_schema().fields]
        for pdf in batches:
            if len(pdf):
                yield _embed_frame(emb, pdf, base_uri, emb.device, batch_size)[names]

    return run


# =========================================================================== transforms
def embed_media(media: DataFrame, *, modality: str, settings: dict[str, Any], batch_size: int,
                base_uri: str | None = None, profile=None, partitions: int | None = None,
                expect_version: str | None = None, builder: Callable | None = None) -> DataFrame:
    """Embed ``media`` (bronze/media rows of one modality) with the model ``settings`` name.

    Needs ``INPUT_COLUMNS``; returns :func:`embed_output_schema` rows, one per input row:
    the EMBEDDINGS columns (``vector`` null when skipped), ``device`` and ``skip_reason``.
    ``settings``: the modality's settings (``model``, ``folder``, ``params``) plus
    ``torch_threads`` and ``prefer_gpu``; ``batch_size`` items per ``embed_batch`` call;
    ``profile``: a ResourceProfile for this stage (GPU executors); ``partitions``: tasks
    (default: the cluster's default parallelism, one model per worker); ``expect_version``:
    fail if a worker's model is not this version; ``builder(modality, settings, device=)``
    replaces the registry (a model the registry does not know; tests).
    Lazy: nothing runs until the result is used; persist it when it is used twice.
    """
    require_columns(media, list(INPUT_COLUMNS), "embed_media")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    settings_json = json.dumps(settings, sort_keys=True, default=str)
    n = partitions or media.sparkSession.sparkContext.defaultParallelism
    # An explicit count (AQE never coalesces it): at least one task per core even when the
    # anti-join left few rows; hashing the key makes the split the same on every run.
    src = media.select(*INPUT_COLUMNS).repartition(n, "media_key")
    fn = _embed_partitions(modality, settings_json, batch_size, base_uri, expect_version, builder)
    if profile is not None:
        return src.mapInPandas(fn, embed_output_schema(), profile=profile)
    return src.mapInPandas(fn, embed_output_schema())


def to_embeddings_layout(df: DataFrame) -> DataFrame:
    """``df``'s EMBEDDINGS columns in the declared order, types and comments.

    The vector keeps the declared ``array<float>`` with non-null elements: Spark's file reader
    relaxes every read column to nullable, and a cast cannot tighten an array's element
    nullability, so the elements go through ``coalesce`` (with NaN, which never occurs: the
    table's elements are declared and written not null) to give the store the same type on
    every write of a partition that mixes new and re-read rows."""
    require_columns(df, EMBEDDING_COLUMNS, "to_embeddings_layout")
    cols = []
    for c in S.EMBEDDINGS:
        expr = (F.transform(F.col(c.name), lambda x: F.coalesce(x.cast("float"), F.lit(float("nan")).cast("float")))
                if c.name == "vector" else F.col(c.name).cast(c.dtype))
        cols.append(expr.alias(c.name, metadata={"comment": c.description}))
    return df.select(*cols)


def embedded_rows(embedded: DataFrame) -> DataFrame:
    """The embedded items of :func:`embed_media`'s output, in the EMBEDDINGS layout (declared
    types, column comments)."""
    require_columns(embedded, EMBEDDING_COLUMNS + ["skip_reason"], "embedded_rows")
    return to_embeddings_layout(embedded.filter(F.col("skip_reason").isNull() & F.col("vector").isNotNull()))


def skipped_rows(embedded: DataFrame) -> DataFrame:
    """The items :func:`embed_media` could not embed: media key, kind, landing date, reason."""
    require_columns(embedded, ["media_key", "kind", S.DT, "skip_reason"], "skipped_rows")
    return embedded.filter(F.col("skip_reason").isNotNull()).select("media_key", "kind", S.DT, "skip_reason")


def training_texts(media: DataFrame, *, before_ts=None, limit: int, base_uri: str | None = None) -> DataFrame:
    """Texts to fit a text model on: the first ``limit`` text items (by ``item_ts``, then
    ``media_key``) with ``item_ts`` before ``before_ts`` (None: all), read and decoded (UTF-8)
    on the executors. Returns ``media_key``, ``item_ts``, ``text``; undecodable files drop out."""
    require_columns(media, ["media_key", "modality", "item_ts", "uri"], "training_texts")
    from riskgraph.embedders.text import decode_text

    sel = media.filter(F.col("modality") == "text")
    if before_ts is not None:
        sel = sel.filter(F.col("item_ts") < F.lit(before_ts))
    sel = sel.orderBy("item_ts", "media_key").limit(limit).select("media_key", "item_ts", "uri")

    def read(batches):
        for pdf in batches:
            texts = [decode_text(b) if (b := read_media_bytes(resolve_uri(u, base_uri))) is not None else None
                     for u in pdf["uri"].tolist()]
            out = pdf[["media_key", "item_ts"]].copy()
            out["text"] = texts
            yield out[out["text"].notna()]

    return sel.mapInPandas(read, "media_key string, item_ts timestamp, text string")


# =========================================================================== GPUs per stage
def gpu_resource_profile(settings: dict[str, Any]):
    """The stage's ResourceProfile when ``settings["gpu"]["enabled"]`` (``embed`` section), else None.

    Executors: ``gpu`` x ``executor_gpus`` found by ``discovery_script`` (+ ``executor_cores``,
    ``executor_memory`` when set); tasks: ``gpu`` x ``task_gpus`` (0.25 = four tasks share a
    GPU) (+ ``task_cpus`` when set). Needs a cluster manager with stage-level scheduling
    (YARN / Kubernetes with dynamic allocation, or standalone).
    """
    gpu = dict((settings or {}).get("gpu") or {})
    if not gpu.get("enabled", False):
        return None
    from pyspark.resource import ExecutorResourceRequests, ResourceProfileBuilder, TaskResourceRequests

    script = gpu.get("discovery_script")
    if not script:
        raise ValueError("embed.gpu.discovery_script is required when embed.gpu.enabled (Spark ships "
                         "examples/src/main/scripts/getGpusResources.sh)")
    ex = ExecutorResourceRequests().resource("gpu", int(gpu.get("executor_gpus", 1)), discoveryScript=script)
    if gpu.get("executor_cores"):
        ex = ex.cores(int(gpu["executor_cores"]))
    if gpu.get("executor_memory"):
        ex = ex.memory(str(gpu["executor_memory"]))
    task = TaskResourceRequests().resource("gpu", float(gpu.get("task_gpus", 1.0)))
    if gpu.get("task_cpus"):
        task = task.cpus(int(gpu["task_cpus"]))
    return ResourceProfileBuilder().require(ex).require(task).build

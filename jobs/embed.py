"""Embed the media items that the configured model versions have not embedded yet.

For each modality (background photos, voice calls, loan-purpose texts): bronze/media rows
landed by the run date -> the items with no row for this (model id, model version) in
``embeddings/<modality>`` -> vectors computed inside Spark (``features/embeddings.py``) ->
the landing-date partitions that got new rows are rewritten as their old rows plus the new
ones. Nothing new: nothing is written and the table's version stays. A new model version
re-embeds every item (old versions' rows stay, so consumers pin the version they use).

The text model ``text-char-ngram-svd`` is fitted here when its folder is missing: on the
texts of items from before ``evaluate.train_until`` (the credit model's training period),
saved under ``<paths.root>/models/text/`` and reused (frozen) from then on.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.embedders.registry import build_embedder, choose_device
from riskgraph.embedders.text import CHAR_NGRAM_MODEL_ID, CONFIG_FILE, CharNgramSettings, CharNgramTextEmbedder
from riskgraph.features.embeddings import (embed_media, embedded_rows, gpu_resource_profile, model_settings,
                                           select_unembedded, skipped_rows, to_embeddings_layout, training_texts)
from riskgraph.inputs import bronze_as_of
from riskgraph.runtime import JobContext, SparkProgress, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.embed")

# The `embed:` config section with its defaults (used until config.py declares it; then the
# configured values are merged over these).
DEFAULT_SETTINGS: dict = {
    "prefer_gpu": False,
    "torch_threads": 1,
    "partitions": None,
    "gpu": {"enabled": False, "executor_gpus": 1, "task_gpus": 1.0, "discovery_script": None,
            "executor_cores": None, "executor_memory": None, "task_cpus": None},
    "background": {"enabled": True, "model": "background-fused", "folder": None, "params": {}, "batch_size": 32},
    "voice": {"enabled": True, "model": "voice-cnn", "folder": None, "params": {}, "batch_size": 32},
    "text": {"enabled": True, "model": CHAR_NGRAM_MODEL_ID, "folder": None, "params": {}, "batch_size": 256},
    "text_fit": {"min_texts": 200, "max_texts": 50000, **CharNgramSettings().__dict__},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def embed_settings(cfg) -> dict:
    """``cfg.embed`` (a pydantic model or dict) merged over :data:`DEFAULT_SETTINGS`."""
    raw = getattr(cfg, "embed", None)
    over = raw.model_dump() if hasattr(raw, "model_dump") else dict(raw or {})
    return _merge(DEFAULT_SETTINGS, over)


def modality_settings(cfg, es: dict, modality: str) -> dict:
    """A modality's settings for the model builder and workers: its folder resolved (voice and
    text default to ``<paths.root>/models/<modality>/<model>``), plus torch threads and GPU preference."""
    m = dict(es[modality])
    # the background model may have no folder (then: cues + EfficientNet-Lite0's ImageNet
    # features from its wheel); the others default to one under <paths.root>/models
    if modality != "background":
        m["folder"] = m.get("folder") or T.models_dir(cfg, modality, m["model"])
    return {**m, "torch_threads": es["torch_threads"], "prefer_gpu": es["prefer_gpu"]}


def ensure_text_model(spark: SparkSession, cfg, media, folder: str, fit: dict) -> dict | None:
    """Fit and save the char n-gram text model if ``folder`` holds none; returns what was
    fitted on (None when the folder already had a model).

    The corpus is the texts of items before ``evaluate.train_until`` (the training period: the
    IDF and SVD basis must not be shaped by the period the credit model is judged on). When
    that period has fewer than ``min_texts`` texts (a world whose media start later), it falls
    back to the earliest ``max_texts`` texts landed by the run date and says so: the model is
    label-free, and it is frozen from then on, as it would be in a deployment fitted on its
    first day."""
    if (Path(folder) / CONFIG_FILE).is_file():
        return None
    until = dt.datetime.combine(cfg.evaluate.train_until, dt.time(), tzinfo=dt.timezone.utc)
    limit = int(fit["max_texts"])

    def texts(before):  # bounded: at most max_texts rows, each at most media.max_bytes.text
        return [r["text"] for r in training_texts(media, before_ts=before, limit=limit, base_uri=cfg.paths.root).collect()]

    corpus, period = texts(until), f"item_ts < {until.date()}"
    if len(corpus) < int(fit["min_texts"]):
        log.warning("text model: only %d texts before evaluate.train_until=%s (need %d); fitting on the earliest %d texts "
                    "landed so far instead", len(corpus), until.date(), fit["min_texts"], limit)
        corpus, period = texts(None), "earliest texts landed by the first embed run (training period too small)"
    settings = CharNgramSettings.from_dict({k: v for k, v in fit.items() if k not in ("min_texts", "max_texts")})
    log.info("text model: no model at %s; fitting %s on %d texts (%s)", folder, CHAR_NGRAM_MODEL_ID, len(corpus), period)
    model = CharNgramTextEmbedder.fit(corpus, settings, training={"period": period, "fitted_at": dt.datetime.now(
        dt.timezone.utc).isoformat(timespec="seconds")})
    # save beside the target and rename: a reader never sees half a folder; a concurrent
    # run that got there first wins and its model is the one used
    tmp = f"{folder}.tmp-{uuid.uuid4().hex[:8]}"
    model.save(tmp)
    Path(folder).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("text model: %s appeared while fitting (another run); using it", folder)
    log.info("text model: saved %s version %s to %s", CHAR_NGRAM_MODEL_ID, model.model_version, folder)
    return {"texts": len(corpus), "period": period, "model_version": model.model_version, "folder": folder}


def embed_modality(spark: SparkSession, ctx: JobContext, store, media, modality: str, es: dict) -> dict:
    """Embed one modality's new items and write the partitions they land in; run details."""
    cfg, table = ctx.cfg, T.EMBEDDINGS[modality]
    uri, t0 = table.uri(cfg), time.perf_counter()
    items = media.filter(F.col("modality") == modality)
    if items.isEmpty():
        log.info("embed %s: no media items landed by %s", modality, ctx.run_date_str)
        return {"items_embedded": 0, "skipped": 0, "note": "no media items"}
    settings = modality_settings(cfg, es, modality)
    fitted = None
    if modality == "text" and settings["model"] == CHAR_NGRAM_MODEL_ID:
        fitted = ensure_text_model(spark, cfg, items, settings["folder"], es["text_fit"])
    device = choose_device(es["prefer_gpu"])
    emb = build_embedder(modality, model_settings(settings), device=device)  # on the driver: its id and version
    version_before = store.version(uri)
    existing = store.read(spark, uri) if version_before is not None else None
    todo = select_unembedded(items, existing, model_id=emb.model_id, model_version=emb.model_version)
    n_todo = todo.count()
    details = {"model_id": emb.model_id, "model_version": emb.model_version, "dim": emb.dim, "driver_device": device,
               "items_selected": n_todo, "table": uri, **({"text_model_fitted": fitted} if fitted else {})}
    if n_todo == 0:
        log.info("embed %s: every item already has a %s %s vector; nothing written (table version %s)",
                 modality, emb.model_id, emb.model_version, version_before)
        return {**details, "items_embedded": 0, "skipped": 0, "table_version": version_before, "seconds": 0.0}
    log.info("embed %s: %d new items for %s %s (batch %d, %d threads per task%s)", modality, n_todo, emb.model_id,
             emb.model_version, settings["batch_size"], es["torch_threads"], ", GPU stage" if es["gpu"]["enabled"] else "")
    out = embed_media(todo, modality=modality, settings=settings, batch_size=int(settings["batch_size"]),
                      base_uri=cfg.paths.root, profile=gpu_resource_profile(es), partitions=es["partitions"],
                      expect_version=emb.model_version).persist()
    t1 = time.perf_counter()
    # bounded: landing dates x devices x skip reasons
    with SparkProgress(spark, f"embed {modality}"):
        summary = out.groupBy(S.DT, "device", "skip_reason").count().collect()
    secs = time.perf_counter() - t1
    embedded = sum(r["count"] for r in summary if r["skip_reason"] is None)
    by_reason: dict[str, int] = {}
    for r in summary:
        if r["skip_reason"] is not None:
            key = r["skip_reason"].split(":", 1)[0]
            by_reason[key] = by_reason.get(key, 0) + r["count"]
    dates = sorted({r[S.DT] for r in summary if r["skip_reason"] is None})
    examples = [r.asDict() for r in skipped_rows(out).orderBy("media_key").limit(10).collect()] if by_reason else []
    if by_reason:
        log.warning("embed %s: %d item(s) not embedded %s, e.g. %s", modality, sum(by_reason.values()), by_reason, examples[:3])
    log.info("embed %s: %d vectors in %.1f s (%.1f items/s) on %s; writing %d date partition(s)", modality, embedded, secs,
             embedded / max(secs, 1e-9), sorted({r["device"] for r in summary}), len(dates))
    version, rows = version_before, 0
    if dates:
        new = embedded_rows(out)
        if existing is not None:  # the partitions are replaced: keep what they held
            new = new.unionByName(to_embeddings_layout(existing.filter(F.col(S.DT).isin(dates))))
        res = store.write(new, uri, partition_col=S.DT, partitions=dates, run_id=ctx.run_id, description=table.description)
        version, rows = res.version, res.rows
    out.unpersist()
    total = time.perf_counter() - t0
    log.info("embed %s: table %s version %s (%d rows in the rewritten partitions) in %.1f s", modality, uri, version, rows, total)
    return {**details, "items_embedded": embedded, "skipped": sum(by_reason.values()), "skipped_by_reason": by_reason,
            "skipped_examples": examples, "devices": sorted({r["device"] for r in summary}), "embed_seconds": round(secs, 2),
            "items_per_s": round(embedded / max(secs, 1e-9), 1), "partitions_written": dates, "rows_written": rows,
            "table_version": version, "seconds": round(total, 2)}


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    es = embed_settings(cfg)
    store = choose_store(spark, cfg.store.backend)
    if store.version(T.BRONZE_MEDIA.uri(cfg)) is None:
        log.info("embed: no bronze/media table at %s; nothing to embed", T.BRONZE_MEDIA.uri(cfg))
        return {"embed": {}, "items_embedded": 0, "note": "no bronze/media"}
    media = bronze_as_of(spark, store, ctx, T.BRONZE_MEDIA)
    results = {}
    modalities = [m for m in S.MODALITIES if es[m]["enabled"]]
    for i, modality in enumerate(modalities, 1):
        log.info("[embed %d/%d] %s", i, len(modalities), modality)
        results[modality] = embed_modality(spark, ctx, store, media, modality, es)
    return {"embed": results, "items_embedded": sum(r["items_embedded"] for r in results.values()),
            "items_skipped": sum(r.get("skipped", 0) for r in results.values())}


if __name__ == "__main__":
    job_main(run, "embed")

"""Same-place retrieval quality of the background embedder on held-out simulated places.

Renders validation places and test places (``place_photo_set``: disjoint decor seeds, mixed place
kinds incl. chain stores, mixed photo kinds), embeds every photo with each part alone (colour,
LBP, HOG, GIST, EfficientNet-Lite0 with its ImageNet weights, the fine-tuned EfficientNet-Lite0
when ``--effnet-ft-folder`` is given and DINOv2 when ``--dino-folder`` is given), then:

* chooses fusion weights on the **validation** places (coordinate search maximising recall@1),
  for the cues alone, for cues + each deep model, and the re-ranker's ``min_inliers``;
* reports on the **test** places (never used to train or choose anything) recall@1 (each photo
  queries all others; correct if the top hit is the same place) and the ROC AUC of the cosine
  for same-place vs other-place pairs, for every part alone, the fused models, and the fused
  model followed by geometric re-ranking of its top ``--k`` shortlist;
* measures throughput (images/s of the configured default model at 1 and 2 torch threads, CPU time).

Photos are rendered at ``--size`` (160: the simulated world's ``simulation.media.photo_size``).

    .venv/bin/python bench/bench_media_quality_background.py --effnet-ft-folder models/background-effnet \
        --dino-folder var/models/background-dinov2-tiny [--test-places 300 --val-places 100 --photos 4 --k 10] \
        [--out docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from riskgraph.embedders.background import (  # noqa: E402
    BackgroundEmbedder, GeometricReranker, choose_fusion_weights, fuse_parts, place_photo_set,
    recall_at_1, same_place_auc, topk,
)
from riskgraph.embedders.image_cues import CUE_NAMES  # noqa: E402


def global_r1(parts: dict, weights: dict, place: np.ndarray) -> float:
    idx, _ = topk(fuse_parts(parts, weights), 1)
    return recall_at_1(idx[:, 0], place)


def rerank_top1(feats, idx, scores, reranker: GeometricReranker, cache: dict) -> np.ndarray:
    """Top hit per query after re-ranking its shortlist; inlier counts cached per unordered pair
    (the count is symmetric up to RANSAC's sampling: computed once, from the lower index)."""
    top = np.empty(len(idx), dtype=np.int64)
    for q in range(len(idx)):
        inl = []
        for c in idx[q]:
            key = (min(q, c), max(q, c))
            if key not in cache:
                cache[key] = reranker.inliers(feats[key[0]], feats[key[1]])
            inl.append(cache[key])
        inl = np.array(inl)
        eff = np.where(inl >= reranker.min_inliers, inl, 0)
        top[q] = idx[q][np.argsort(-(eff * 4.0 + scores[q]), kind="stable")[0]]
    return top


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-places", type=int, default=300)
    ap.add_argument("--val-places", type=int, default=100)
    ap.add_argument("--photos", type=int, default=4, help="photos per place")
    ap.add_argument("--k", type=int, default=10, help="shortlist length for re-ranking")
    ap.add_argument("--dino-folder", default=None, help="local DINOv2 folder (jobs/train_background.py --arch dinov2)")
    ap.add_argument("--effnet-ft-folder", default=None, help="fine-tuned EfficientNet-Lite0 folder (jobs/train_background.py)")
    ap.add_argument("--size", type=int, default=160, help="rendered photo side")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the quality runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="append the table to this Markdown file")
    a = ap.parse_args(argv)
    t_start = time.time()

    deep = ["effnet"] + (["effnet_ft"] if a.effnet_ft_folder else []) + (["dino"] if a.dino_folder else [])
    every = {**{c: 1.0 for c in CUE_NAMES}, **{d: 1.0 for d in deep}}
    model = BackgroundEmbedder.from_settings(weights=every, dino_folder=a.dino_folder, effnet_ft_folder=a.effnet_ft_folder,
                                             num_threads=a.threads)

    sets = {}
    for split, n in (("validation", a.val_places), ("test", a.test_places)):
        t = time.time()
        data = place_photo_set(split, n, a.photos, seed=a.seed, size=a.size)
        items = list(zip(data["images"], data["photo_kind"]))
        parts = model.embed_parts(items)
        sets[split] = (data, items, parts)
        print(f"{split}: {n} places x {a.photos} photos rendered and embedded in {time.time() - t:.0f} s", flush=True)

    vdata, vitems, vparts = sets["validation"]
    tdata, titems, tparts = sets["test"]
    vplace, tplace = vdata["place"], tdata["place"]

    # --- fusion weights, chosen on validation places only
    chosen = {"cues fused": choose_fusion_weights(vparts, list(CUE_NAMES), vplace)}
    for d in deep:
        chosen[f"cues + {d}"] = choose_fusion_weights(vparts, list(CUE_NAMES) + [d], vplace)
    if len(deep) > 1:
        chosen["cues + all deep"] = choose_fusion_weights(vparts, list(CUE_NAMES) + deep, vplace)
    best_name = max(chosen, key=lambda n: global_r1(vparts, chosen[n], vplace))

    # --- re-ranker: min_inliers chosen on validation places
    rr = GeometricReranker()
    vfeats = [rr.features(im, k) for im, k in vitems]
    vidx, vsc = topk(fuse_parts(vparts, chosen[best_name]), a.k)
    vcache: dict = {}
    best_min, best_r = rr.min_inliers, -1.0
    for m in (0, 5, 8, 12, 16):
        rr.min_inliers = m
        r = recall_at_1(rerank_top1(vfeats, vidx, vsc, rr, vcache), vplace)
        if r > best_r:
            best_min, best_r = m, r
    rr.min_inliers = best_min

    # --- test places
    rows = []
    for name in list(CUE_NAMES) + deep:
        e = tparts[name]
        idx, _ = topk(e, 1)
        rows.append((f"{name} alone", {name: 1.0}, recall_at_1(idx[:, 0], tplace), same_place_auc(e, tplace)))
    for name, w in chosen.items():
        e = fuse_parts(tparts, w)
        idx, _ = topk(e, 1)
        rows.append((name, w, recall_at_1(idx[:, 0], tplace), same_place_auc(e, tplace)))
    e_best = fuse_parts(tparts, chosen[best_name])
    t = time.process_time()
    tfeats = [rr.features(im, k) for im, k in titems]
    tidx, tsc = topk(e_best, a.k)
    top = rerank_top1(tfeats, tidx, tsc, rr, {})
    rr_cpu = time.process_time() - t
    shortlist = float(np.mean((tplace[tidx] == tplace[:, None]).any(1)))
    rows.append((f"{best_name} + re-rank top {a.k} (min_inliers {best_min})", chosen[best_name],
                 recall_at_1(top, tplace), float("nan")))
    per_kind = {k: float(np.mean((tplace[top] == tplace)[tdata["photo_kind"] == k]))
                for k in ("selfie", "id_photo", "premises")}

    # --- throughput of the model the folder describes (else the folder-less default), CPU time per image
    thr = {}
    sample = titems[:64]
    for n_threads in (1, 2):
        m = (BackgroundEmbedder.from_folder(a.effnet_ft_folder, num_threads=n_threads) if a.effnet_ft_folder
             else BackgroundEmbedder.from_settings(num_threads=n_threads))
        m.embed_batch(sample[:4])
        t0, c0 = time.time(), time.process_time()
        m.embed_batch(sample)
        thr[n_threads] = (len(sample) / (time.time() - t0), len(sample) / (time.process_time() - c0))

    lines = [f"Held-out test: {a.test_places} places x {a.photos} photos ({len(tplace)} photos, place kinds cycled "
             f"over all six incl. chain_store; photo kinds mixed); weights and min_inliers chosen on "
             f"{a.val_places} separate validation places. Deep parts: {', '.join(deep)}"
             + (f" (DINOv2 folder `{a.dino_folder}`)" if a.dino_folder else "")
             + (f" (fine-tuned EfficientNet-Lite0 folder `{a.effnet_ft_folder}`)" if a.effnet_ft_folder else "")
             + f"; photos rendered at {a.size} px.", "",
             "| descriptor | fusion weights | recall@1 | same-place AUC |", "|---|---|---|---|"]
    for name, w, r1, auc in rows:
        ws = ", ".join(f"{k} {v:g}" for k, v in w.items() if v > 0)
        lines.append(f"| {name} | {ws} | {r1:.3f} | {'-' if np.isnan(auc) else f'{auc:.3f}'} |")
    lines += ["", f"Re-ranking: shortlist recall@{a.k} {shortlist:.3f} (the ceiling); recall@1 by query kind "
              + ", ".join(f"{k} {v:.3f}" for k, v in per_kind.items())
              + f"; SIFT + matching CPU {1000 * rr_cpu / len(tplace):.0f} ms per query.",
              "Throughput, " + ("the folder's model (" if a.effnet_ft_folder else "the folder-less default (")
              + ", ".join(f"{k} {v:g}" for k, v in m.settings.weights.items() if v > 0)
              + f"), batch of 64 {a.size} px photos: "
              + "; ".join(f"{n} thread(s) {w:.1f} img/s wall, {c:.1f} img/CPU-s" for n, (w, c) in thr.items())
              + f". Bench wall time {time.time() - t_start:.0f} s.", ""]
    table = "\n".join(lines)
    print(table)
    if a.out:
        from _report import append_markdown

        append_markdown(a.out, Path(__file__).name, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

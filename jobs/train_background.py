"""Train a small DINOv2-architecture background model on simulated places (train split only).

Why: no real DINOv2 weights are available here, and a randomly initialised one is useless (stack
notes). Issue 10 asks to measure a small model of the DINOv2 architecture trained here against
EfficientNet-Lite0's ImageNet features and keep the better one. This job renders ``--places``
train-split places (``place_photo_set('train', ...)``: never a validation or test place), then
trains ``Dinov2Model`` with the supervised contrastive loss (Khosla et al., NeurIPS 2020) on place
ids, time-boxed to ``--minutes`` of wall time, on the same pooled descriptor the embedder uses
(CLS + patch mean with the subject zone weighted down). The result is a transformers folder
(``save_pretrained`` + a BitImageProcessor) that ``BackgroundEmbedder.with_dinov2(folder)`` loads.

    .venv/bin/python jobs/train_background.py --out models/background-dinov2-tiny --minutes 4
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from riskgraph.embedders.background import PHOTO_ZONES, place_photo_set  # noqa: E402
from riskgraph.embedders.image_cues import zone_weights  # noqa: E402
from riskgraph.embedders.image_deep import save_tiny_dinov2  # noqa: E402

log = logging.getLogger("train_background")


def supcon_loss(z, labels, temperature: float = 0.1):
    """Supervised contrastive loss: for each anchor, -mean log-softmax over its positives (the
    other photos of its place) against every other photo in the batch. ``z`` L2-normalised."""
    import torch

    sim = z @ z.T / temperature
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(logp * pos).sum(1).div(pos.sum(1).clamp(min=1)).mean()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write the transformers model into")
    ap.add_argument("--places", type=int, default=600)
    ap.add_argument("--photos-per-place", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--minutes", type=float, default=4.0, help="wall-time box for the training loop")
    ap.add_argument("--batch-places", type=int, default=24, help="places per batch (2 photos each)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import cv2
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    data = place_photo_set("train", a.places, a.photos_per_place, seed=a.seed)
    s = a.image_size
    imgs = np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in data["images"]])
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    x_all = torch.from_numpy(((imgs.astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2).copy())
    patch = 16
    g = s // patch
    wmaps = np.stack([cv2.resize(zone_weights(s, s, list(PHOTO_ZONES[k]), 0.0), (g, g), interpolation=cv2.INTER_AREA)
                      for k in data["photo_kind"]]).reshape(len(imgs), -1)
    w_all = torch.from_numpy(wmaps)
    place = data["place"]
    by_place = [np.nonzero(place == p)[0] for p in range(a.places)]
    log.info("rendered %d train photos of %d places in %.0f s", len(imgs), a.places, time.time() - t0)

    cfg = Dinov2Config(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768,
                       patch_size=patch, image_size=s)
    model = Dinov2Model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.05)
    rng = np.random.default_rng(a.seed)
    losses: list[float] = []
    step, t_train = 0, time.time()
    model.train()
    while time.time() - t_train < a.minutes * 60:
        ps = rng.choice(a.places, size=a.batch_places, replace=False)
        idx = np.concatenate([rng.choice(by_place[p], size=2, replace=False) for p in ps])
        labels = torch.from_numpy(np.repeat(ps, 2))
        x = x_all[idx]
        if rng.random() < 0.5:  # a mirrored room is still that room's layout family: cheap augmentation
            x = x.flip(3)
            wt = w_all[idx].reshape(-1, g, g).flip(2).reshape(len(idx), -1)
        else:
            wt = w_all[idx]
        tokens = model(pixel_values=x).last_hidden_state
        cls = torch.nn.functional.normalize(tokens[:, 0], dim=1)
        wt = wt[:, :, None]
        pm = torch.nn.functional.normalize((tokens[:, 1:] * wt).sum(1) / wt.sum(1).clamp(min=1e-6), dim=1)
        z = torch.nn.functional.normalize(torch.cat([cls, pm], 1), dim=1)
        loss = supcon_loss(z, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        step += 1
        if step % 20 == 0:
            log.info("step %d loss %.4f (mean of last 20 %.4f) %.0f s", step, losses[-1], np.mean(losses[-20:]),
                     time.time() - t_train)
    model.eval()
    out = save_tiny_dinov2(a.out, image_size=s, patch_size=patch, model=model)
    (out / "training.json").write_text(json.dumps({
        "split": "train", "places": a.places, "photos_per_place": a.photos_per_place, "seed": a.seed,
        "steps": step, "minutes": a.minutes, "batch_places": a.batch_places, "lr": a.lr,
        "loss_first20": float(np.mean(losses[:20])) if losses else None,
        "loss_last20": float(np.mean(losses[-20:])) if losses else None}, indent=1))
    log.info("saved %s after %d steps (loss %.3f -> %.3f)", out, step, np.mean(losses[:20]), np.mean(losses[-20:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

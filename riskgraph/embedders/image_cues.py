"""Classic global descriptors of the room behind a photo: colour, texture and structure.

Each cue turns an RGB ``uint8`` image of shape ``(h, w, 3)`` and an optional per-pixel weight map
``(h, w)`` in [0, 1] into one L2-normalised float32 vector. The weight map is how the person in
front of the room is taken out: pixels in the person zone count with a small weight (0 by
default), so a histogram or an energy is a histogram of the *room*. Masking the person zone was
the cheapest gain measured here (stack notes, "Media, measured": GIST AUC 0.75 -> 0.82).

- **colour**: a joint HSV histogram per cell of a spatial pyramid (Lazebnik et al., CVPR 2006),
  each cell's histogram summing to its share of weight, then Hellinger-mapped (square root, as
  RootSIFT: Arandjelovic & Zisserman, CVPR 2012) so one dominant colour does not swamp the rest.
- **texture**: rotation-invariant uniform local binary patterns, LBP^{riu2}_{8,1} (Ojala,
  Pietikainen & Maenpaa, IEEE TPAMI 2002) at two scales, per pyramid cell, Hellinger-mapped.
- **structure**: histograms of oriented gradients per grid cell (Dalal & Triggs, CVPR 2005:
  [-1, 0, 1] derivatives, unsigned orientation, linear vote between the two nearest bins,
  per-cell L2 normalisation so a lighting change does not rescale the cells), and a GIST-like
  spatial envelope (Oliva & Torralba, IJCV 2001): Gabor energies at several scales and
  orientations averaged over a coarse grid.

All functions are pure and deterministic; only numpy and OpenCV are used. The small helpers
(``hsv_bins``, ``lbp_riu2_codes``, ``gradient_orientation_votes``) are exposed because the tests
check them against values computed by hand on 2x2 to 4x4 images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

__all__ = [
    "CueConfig", "CUE_NAMES", "zone_weights", "cell_bounds", "pyramid_cells", "hsv_bins",
    "colour_hist", "gray", "lbp_riu2_codes", "lbp_hist", "gradient_orientation_votes", "hog_grid",
    "gabor_bank", "gist", "cue_parts", "l2",
]

CUE_NAMES = ("colour", "lbp", "hog", "gist")


def l2(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``v`` scaled to unit length as float32 (a zero vector stays zero)."""
    v = np.asarray(v, dtype=np.float64).ravel()
    n = float(np.linalg.norm(v))
    return (v / n if n > eps else v).astype(np.float32)


@dataclass(frozen=True)
class CueConfig:
    """Settings of the classic cues (part of the background model's version).

    ``work_size``: images are resized to this square side first, so cues of a 224 px and a 1 MP
    photo of one room are comparable and cost the same. ``colour_bins``: HSV bins (hue, saturation,
    value); value gets few bins because exposure changes move it most. ``*_levels``: spatial-
    pyramid levels (level L cuts the image into L x L cells); a coarse pyramid survives crops
    and small angle changes that shift a fine grid's cells. ``person_weight``: what a pixel in
    the person zone counts (0: masked out).
    """

    work_size: int = 128
    colour_bins: tuple[int, int, int] = (12, 4, 3)
    colour_levels: tuple[int, ...] = (1, 2)
    lbp_levels: tuple[int, ...] = (1, 2)
    lbp_scales: tuple[int, ...] = (1, 2)  # 1: full work size, 2: half size (coarser texture)
    hog_grid: int = 4
    hog_orientations: int = 9
    gist_size: int = 64
    gist_grid: int = 4
    gist_wavelengths: tuple[float, ...] = (4.0, 8.0, 16.0)
    gist_orientations: int = 6
    person_weight: float = 0.0
    cues: tuple[str, ...] = field(default=CUE_NAMES)

    def __post_init__(self) -> None:
        unknown = set(self.cues) - set(CUE_NAMES)
        if unknown:
            raise ValueError(f"unknown cues {sorted(unknown)}; known: {list(CUE_NAMES)}")
        if not 0.0 <= self.person_weight <= 1.0:
            raise ValueError(f"person_weight must lie in [0, 1], got {self.person_weight}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# weights and grids


def zone_weights(h: int, w: int, zones: list[tuple[float, float, float, float]] | None,
                 weight: float) -> np.ndarray:
    """A ``(h, w)`` float32 map: 1 everywhere, ``weight`` inside each zone.

    ``zones`` are boxes ``(x0, y0, x1, y1)`` as fractions of the width/height (0..1), so one zone
    describes photos of any size; a pixel is inside when its centre is.
    """
    m = np.ones((h, w), dtype=np.float32)
    for x0, y0, x1, y1 in zones or ():
        xs = (np.arange(w) + 0.5) / w
        ys = (np.arange(h) + 0.5) / h
        inside = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        m[inside] = weight
    return m


def cell_bounds(n: int, cells: int) -> list[tuple[int, int]]:
    """``cells`` contiguous index ranges covering ``range(n)`` as evenly as integers allow."""
    edges = np.round(np.linspace(0, n, cells + 1)).astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(cells)]


def pyramid_cells(h: int, w: int, levels: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """Cells ``(y0, y1, x0, x1)`` of every pyramid level, level by level, row-major."""
    out = []
    for lv in levels:
        for y0, y1 in cell_bounds(h, lv):
            for x0, x1 in cell_bounds(w, lv):
                out.append((y0, y1, x0, x1))
    return out


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _resize_weights(weights: np.ndarray | None, h: int, w: int) -> np.ndarray:
    if weights is None:
        return np.ones((h, w), dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape == (h, w):
        return weights
    return cv2.resize(weights, (w, h), interpolation=cv2.INTER_AREA)


def _cell_histograms(labels: np.ndarray, weights: np.ndarray, n_bins: int,
                     cells: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Per cell, the weighted histogram of integer ``labels`` divided by the cell's pixel count
    (so a masked-out part of a cell lowers its mass instead of inflating the rest), square-root
    mapped (Hellinger), concatenated and L2-normalised."""
    parts = []
    for y0, y1, x0, x1 in cells:
        lab = labels[y0:y1, x0:x1].ravel()
        wt = weights[y0:y1, x0:x1].ravel()
        hist = np.bincount(lab, weights=wt, minlength=n_bins)[:n_bins]
        parts.append(np.sqrt(hist / max(lab.size, 1)))
    return l2(np.concatenate(parts))


# ---------------------------------------------------------------------------------------------
# colour


def hsv_bins(rgb: np.ndarray, bins: tuple[int, int, int]) -> np.ndarray:
    """Joint HSV bin index per pixel: ``(h_bin * n_s + s_bin) * n_v + v_bin``.

    OpenCV's 8-bit HSV (hue 0..179, saturation and value 0..255); bin ``floor(x * n / range)``.
    """
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2HSV).astype(np.int64)
    nh, ns, nv = bins
    hb = np.minimum(hsv[..., 0] * nh // 180, nh - 1)
    sb = np.minimum(hsv[..., 1] * ns // 256, ns - 1)
    vb = np.minimum(hsv[..., 2] * nv // 256, nv - 1)
    return (hb * ns + sb) * nv + vb


def colour_hist(rgb: np.ndarray, weights: np.ndarray | None = None, *,
                bins: tuple[int, int, int] = (12, 4, 3), levels: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """Spatial-pyramid HSV histogram, Hellinger-mapped and L2-normalised (see module doc)."""
    h, w = rgb.shape[:2]
    labels = hsv_bins(rgb, bins)
    return _cell_histograms(labels, _resize_weights(weights, h, w), int(np.prod(bins)),
                            pyramid_cells(h, w, levels))


# ---------------------------------------------------------------------------------------------
# texture


def gray(rgb: np.ndarray) -> np.ndarray:
    """Luma as float32 in [0, 255] (ITU-R BT.601 weights, OpenCV's RGB2GRAY without rounding)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)


# Neighbours of LBP_{8,1} in circular order (dy, dx), starting east, counter-clockwise; radius 1 on
# the pixel grid (the square neighbourhood, as in most implementations at R = 1).
_LBP_OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def lbp_riu2_codes(g: np.ndarray) -> np.ndarray:
    """LBP^{riu2}_{8,1} code of every interior pixel: ``(h - 2, w - 2)`` ints in 0..9.

    Bit k is 1 when neighbour k >= the centre. A pattern with at most two 0/1 transitions around
    the circle is "uniform" and coded by its number of ones (0..8); any other pattern is 9.
    """
    g = np.asarray(g, dtype=np.float32)
    h, w = g.shape
    if h < 3 or w < 3:
        raise ValueError(f"LBP needs at least 3x3 pixels, got {h}x{w}")
    c = g[1:-1, 1:-1]
    bits = np.stack([(g[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= c) for dy, dx in _LBP_OFFSETS]).astype(np.int64)
    ones = bits.sum(axis=0)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    return np.where(transitions <= 2, ones, 9)


def lbp_hist(rgb_or_gray: np.ndarray, weights: np.ndarray | None = None, *,
             levels: tuple[int, ...] = (1, 2), scales: tuple[int, ...] = (1,)) -> np.ndarray:
    """Spatial-pyramid histograms of LBP^{riu2}_{8,1} codes at each scale (scale s: the gray image
    shrunk by s first), each scale's block L2-normalised, concatenated and L2-normalised."""
    g = gray(rgb_or_gray) if rgb_or_gray.ndim == 3 else np.asarray(rgb_or_gray, dtype=np.float32)
    h, w = g.shape
    wts = _resize_weights(weights, h, w)
    blocks = []
    for s in scales:
        gs, ws = g, wts
        if s != 1:
            size = (max(3, w // s), max(3, h // s))
            gs = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
            ws = cv2.resize(wts, size, interpolation=cv2.INTER_AREA)
        codes = lbp_riu2_codes(gs)
        hh, ww = codes.shape
        blocks.append(_cell_histograms(codes, ws[1:-1, 1:-1], 10, pyramid_cells(hh, ww, levels)))
    return l2(np.concatenate(blocks))


# ---------------------------------------------------------------------------------------------
# structure


def gradient_orientation_votes(g: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: the two orientation bins a gradient votes for and the two votes.

    Derivatives ``[-1, 0, 1]`` (zero at the border), magnitude ``m``, unsigned angle
    ``theta in [0, pi)``. Bin centres sit at ``(b + 0.5) * pi / n``; the vote ``m`` is split
    linearly between the two nearest centres (wrapping around pi). Returns ``(bin_lo, bin_hi,
    vote_lo, vote_hi)``, each ``(h, w)``.
    """
    g = np.asarray(g, dtype=np.float32)
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, 1:-1] = g[:, 2:] - g[:, :-2]
    gy[1:-1, :] = g[2:, :] - g[:-2, :]
    mag = np.sqrt(gx.astype(np.float64) ** 2 + gy.astype(np.float64) ** 2)
    theta = np.mod(np.arctan2(gy, gx).astype(np.float64), np.pi)
    pos = theta / (np.pi / n_bins) - 0.5  # position in bin-centre units
    lo = np.floor(pos)
    frac = pos - lo
    bin_lo = np.mod(lo, n_bins).astype(np.int64)
    bin_hi = np.mod(lo + 1, n_bins).astype(np.int64)
    return bin_lo, bin_hi, mag * (1.0 - frac), mag * frac


def hog_grid(rgb_or_gray: np.ndarray, weights: np.ndarray | None = None, *, grid: int = 4,
             n_bins: int = 9, eps: float = 1e-6) -> np.ndarray:
    """HOG over a ``grid x grid`` layout: each cell's weighted orientation histogram L2-normalised
    (lighting invariance), concatenated and L2-normalised."""
    g = gray(rgb_or_gray) if rgb_or_gray.ndim == 3 else np.asarray(rgb_or_gray, dtype=np.float32)
    h, w = g.shape
    wts = _resize_weights(weights, h, w).astype(np.float64)
    b0, b1, v0, v1 = gradient_orientation_votes(g, n_bins)
    parts = []
    for y0, y1, x0, x1 in pyramid_cells(h, w, (grid,)):
        sl = (slice(y0, y1), slice(x0, x1))
        wt = wts[sl].ravel()
        hist = (np.bincount(b0[sl].ravel(), weights=v0[sl].ravel() * wt, minlength=n_bins)
                + np.bincount(b1[sl].ravel(), weights=v1[sl].ravel() * wt, minlength=n_bins))
        parts.append(hist / (np.linalg.norm(hist) + eps))
    return l2(np.concatenate(parts))


def gabor_bank(wavelengths: tuple[float, ...], n_orient: int) -> list[np.ndarray]:
    """Zero-mean Gabor kernels, one per (wavelength, orientation): sigma = 0.56 * wavelength (a
    one-octave bandwidth), aspect 0.5, kernel side ~ 4 sigma, scaled to unit L1 norm so every
    scale responds alike to its own frequency."""
    bank = []
    for lam in wavelengths:
        sigma = 0.56 * lam
        k = int(2 * round(2 * sigma) + 1)
        for o in range(n_orient):
            kern = cv2.getGaborKernel((k, k), sigma, np.pi * o / n_orient, lam, 0.5, 0, ktype=cv2.CV_32F)
            kern = kern - kern.mean()
            bank.append(kern / np.abs(kern).sum())
    return bank


def gist(rgb_or_gray: np.ndarray, weights: np.ndarray | None = None, *, size: int = 64, grid: int = 4,
         wavelengths: tuple[float, ...] = (4.0, 8.0, 16.0), n_orient: int = 6) -> np.ndarray:
    """GIST-like envelope: the gray image at ``size`` px, locally contrast-normalised (divided by a
    blurred local standard deviation, as Oliva & Torralba's prefilter), filtered by the Gabor bank;
    the weighted mean of each response's magnitude per grid cell, each filter's block of cells
    square-rooted; all L2-normalised."""
    g = gray(rgb_or_gray) if rgb_or_gray.ndim == 3 else np.asarray(rgb_or_gray, dtype=np.float32)
    g = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA) if g.shape != (size, size) else g
    wts = _resize_weights(weights, size, size).astype(np.float32)
    g = g - cv2.GaussianBlur(g, (0, 0), 4.0)
    local_std = np.sqrt(cv2.GaussianBlur(g * g, (0, 0), 4.0))
    g = g / (local_std + 8.0)  # +8 keeps flat (noise-only) regions from blowing up
    cells = pyramid_cells(size, size, (grid,))
    parts = []
    for kern in gabor_bank(wavelengths, n_orient):
        resp = np.abs(cv2.filter2D(g, cv2.CV_32F, kern, borderType=cv2.BORDER_REFLECT)) * wts
        parts.append(np.sqrt([resp[y0:y1, x0:x1].mean() for y0, y1, x0, x1 in cells]))
    return l2(np.concatenate(parts))


# ---------------------------------------------------------------------------------------------


def cue_parts(rgb: np.ndarray, weights: np.ndarray | None, cfg: CueConfig = CueConfig()) -> dict[str, np.ndarray]:
    """Every configured cue of one image, each L2-normalised: ``{name: vector}``.

    ``rgb``: ``(h, w, 3)`` uint8; ``weights``: ``(h, w)`` in [0, 1] or None (all 1). The image and
    the weights are resized to ``cfg.work_size`` first.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (h, w, 3), got {rgb.dtype} {rgb.shape}")
    img = _resize(rgb, cfg.work_size)
    wts = _resize_weights(weights, cfg.work_size, cfg.work_size) if weights is not None else None
    g = gray(img)
    out: dict[str, np.ndarray] = {}
    if "colour" in cfg.cues:
        out["colour"] = colour_hist(img, wts, bins=cfg.colour_bins, levels=cfg.colour_levels)
    if "lbp" in cfg.cues:
        out["lbp"] = lbp_hist(g, wts, levels=cfg.lbp_levels, scales=cfg.lbp_scales)
    if "hog" in cfg.cues:
        out["hog"] = hog_grid(g, wts, grid=cfg.hog_grid, n_bins=cfg.hog_orientations)
    if "gist" in cfg.cues:
        out["gist"] = gist(g, wts, size=cfg.gist_size, grid=cfg.gist_grid, wavelengths=cfg.gist_wavelengths,
                           n_orient=cfg.gist_orientations)
    return out

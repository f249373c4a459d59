"""Small vectorised draw helpers shared by the world's layers.

Each takes the generator it draws from as its first argument (never a global one), so which
stream a layer consumes, and in which order, is visible where the layer calls it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from riskgraph.simulator.reference import IP_FIRST_OCTETS


def _p(weights) -> np.ndarray:
    """Weights -> probabilities summing to 1."""
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _unique_ints(rng: np.random.Generator, n: int, draw: Callable[[int], np.ndarray]) -> np.ndarray:
    """``n`` distinct values from ``draw``; duplicates are redrawn (keeps first occurrences)."""
    x = draw(n)
    while True:
        _, first = np.unique(x, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            return x
        x[dup] = draw(int(dup.sum()))


def _starts(sizes: np.ndarray) -> np.ndarray:
    """Offset of each group's first element when groups of ``sizes`` are laid end to end."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.cumsum(sizes) - sizes


def _group_sizes(rng: np.random.Generator, total: int, lo: int, hi: int) -> np.ndarray:
    """Random group sizes in [lo, hi] summing to ``total`` (the last group may be smaller)."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = rng.integers(lo, hi + 1, total // lo + 1)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, total))
    sizes = sizes[: k + 1].copy()
    sizes[-1] -= cs[k] - total
    return sizes


def _offset_m(rng: np.random.Generator, lat: np.ndarray, sd_m, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian displacement of ``sd_m`` metres as (dlat, dlon) degrees at latitude ``lat``."""
    dy = rng.normal(0.0, 1.0, n) * sd_m
    dx = rng.normal(0.0, 1.0, n) * sd_m
    return dy / 111_320.0, dx / (111_320.0 * np.cos(np.radians(lat)))


def _random_ips(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` IPv4 addresses as uint32, in Chinese ISP /8 blocks."""
    first = np.asarray(IP_FIRST_OCTETS, dtype=np.uint32)[rng.integers(0, len(IP_FIRST_OCTETS), n)]
    return (first << np.uint32(24)) | rng.integers(0, 1 << 24, n, dtype=np.uint32)

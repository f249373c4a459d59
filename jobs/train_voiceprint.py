"""Train the voiceprint CNN (``voice-cnn``) on synthetic speakers; judge it on held-out ones.

    python jobs/train_voiceprint.py --out models/voiceprint --n-speakers 600 --minutes 10 \\
        --cache-dir var/cache/voices [--tracking-uri sqlite:///var/riskgraph/mlflow.db \\
        --artifact-root var/riskgraph/mlflow-artifacts]

Speakers come from ``riskgraph.media.voices`` (espeak-ng voices with per-speaker pitch, speed
and formants, rendered as 8 kHz telephone calls with channel nuisance), in three disjoint seed
ranges so no held-out voice is ever trained on: train ``[0, 10 000)``, valid ``[10 000,
10 200)`` (early stopping), test ``[20 000, 20 300)`` (the reported EER). Each speaker says
several different scripts, each call through its own channel.

Training: P speakers x K calls per batch, a random 2 s crop of each call's log-mel features,
batch-hard triplet loss (Hermans et al. 2017), Adam with a cosine learning-rate decay over
``--steps``; every ``--eval-every`` steps the valid speakers' EER (full calls, cosine scoring)
decides the best weights, and training stops after ``--patience`` evaluations without gain or
when ``--minutes`` run out. The best weights are saved as a model folder
(:func:`riskgraph.embedders.voice.save_model`), then logged to MLflow with params, the loss
curve, valid and test EER, and registered as ``riskgraph-voiceprint`` with its EER.

Synthesised audio is cached as ``.npz`` under ``--cache-dir``, keyed by the seeds, the call
settings and a digest of the renderer's source, so re-runs skip the synthesis.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from riskgraph.embedders import audio as A
from riskgraph.embedders import voice as V

log = logging.getLogger("riskgraph.train_voiceprint")

REGISTERED_MODEL = "riskgraph-voiceprint"
DEFAULT_EXPERIMENT = "riskgraph-voiceprint"
# disjoint speaker seed ranges: a held-out voice is never trained on
TRAIN_SEEDS = (0, 10_000)
VALID_SEEDS = (10_000, 10_200)
TEST_SEEDS = (20_000, 20_300)


# --------------------------------------------------------------------------------------------
# data


def synthesize_speakers(speaker_seeds: Sequence[int], calls_per_speaker: int, *, cache_dir: str | Path | None,
                        sample_rate: int = 8000, max_seconds: float = 3.5, workers: int = 2,
                        tag: str = "calls") -> tuple[list[np.ndarray], np.ndarray]:
    """Calls of the given speakers: ``(audio, speaker_seed_per_call)``, int16 arrays at ``sample_rate``.

    Call ``c`` of speaker ``s`` says ``call_script(default_rng([s, c, 7919]))`` through the
    channel drawn from call seed ``1000 * s + c`` (``voices.synthesize_calls``): the same seeds
    give the same audio (with the same espeak-ng / sox builds), and every call of a speaker
    differs in words, delivery and channel. With ``cache_dir``, the result is
    stored as ``<tag>-<digest>.npz`` (digest of the seeds, settings and the renderer's source)
    and loaded from there on the next run.
    """
    from riskgraph.media import voices

    seeds = [int(s) for s in speaker_seeds]
    if not 0 < calls_per_speaker < 1000:
        raise ValueError(f"calls_per_speaker must be in 1..999 (call seeds are 1000 * speaker + call), got {calls_per_speaker}")
    renderer = hashlib.sha256(inspect.getsource(voices).encode()).hexdigest()[:12]
    key = hashlib.sha256(json.dumps([seeds, calls_per_speaker, sample_rate, max_seconds, renderer]).encode()).hexdigest()[:16]
    path = Path(cache_dir, f"{tag}-{key}.npz") if cache_dir else None
    if path is not None and path.exists():
        z = np.load(path)
        audio = np.split(z["audio"], z["offsets"][1:-1])
        log.info("loaded %d cached calls of %d speakers from %s", len(audio), len(seeds), path)
        return audio, z["speakers"]

    jobs, labels = [], []
    for s in seeds:
        speaker = voices.speaker_from_seed(s)
        for c in range(calls_per_speaker):
            # the words from one generator, the channel and noise from the call's own seed
            script = voices.call_script(np.random.default_rng([s, c, 7919]))
            jobs.append((speaker, script, s * 1000 + c))
            labels.append(s)
    t0 = time.perf_counter()
    audio = voices.synthesize_calls(jobs, workers=workers, sample_rate=sample_rate, max_seconds=max_seconds)
    audio = [np.asarray(a, dtype=np.int16) for a in audio]
    log.info("synthesised %d calls of %d speakers in %.0f s", len(audio), len(seeds), time.perf_counter() - t0)
    labels_arr = np.asarray(labels, dtype=np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(a) for a in audio])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, audio=np.concatenate(audio).astype(np.int16), offsets=offsets, speakers=labels_arr)
        tmp.replace(path)  # atomic: an interrupted run leaves no half-written cache
    return audio, labels_arr


def features_of(audio: Sequence[np.ndarray], frontend: A.LogMelConfig) -> list[np.ndarray]:
    """Log-mel model inputs of every call (VAD + mean normalisation)."""
    return [A.logmel_features(a, frontend) for a in audio]


# --------------------------------------------------------------------------------------------
# training


def sample_batch(feats: Sequence[np.ndarray], labels: np.ndarray, rng: np.random.Generator, *,
                 p_speakers: int, k_calls: int, crop_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A P x K batch: ``p_speakers`` random speakers, ``k_calls`` of their calls each (with
    replacement when a speaker has fewer), a random ``crop_frames`` crop of each (a shorter call
    is tiled). Returns ``(x (P*K, crop, n_mels) float32, labels (P*K,))``."""
    speakers = np.unique(labels)
    by_spk = {s: np.flatnonzero(labels == s) for s in speakers}
    chosen = rng.choice(speakers, size=min(p_speakers, len(speakers)), replace=False)
    xs, ys = [], []
    for s in chosen:
        calls = by_spk[s]
        for idx in rng.choice(calls, size=k_calls, replace=len(calls) < k_calls):
            f = feats[idx]
            if len(f) < crop_frames:
                f = np.tile(f, (int(np.ceil(crop_frames / len(f))), 1))
            start = int(rng.integers(0, len(f) - crop_frames + 1))
            xs.append(f[start:start + crop_frames])
            ys.append(s)
    return np.stack(xs).astype(np.float32), np.asarray(ys)


def train_steps(model: torch.nn.Module, feats: Sequence[np.ndarray], labels: np.ndarray, *, steps: int,
                p_speakers: int, k_calls: int, crop_frames: int, lr: float = 1e-3, margin: float = 0.3,
                seed: int = 0, optimizer: torch.optim.Optimizer | None = None,
                rng: np.random.Generator | None = None, lr_at=None, device: str = "cpu") -> list[float]:
    """``steps`` optimiser steps of batch-hard triplet loss; returns the loss of each step.

    Pass ``optimizer`` and ``rng`` to continue an earlier call (the job trains in chunks between
    validations), and ``lr_at(step)`` for a schedule (the step count of that chunk's first step is
    ``optimizer``'s own count). Leaves the model in train mode.
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        if lr_at is not None:
            step = optimizer.state_dict()["state"].get(0, {}).get("step", 0)
            for g in optimizer.param_groups:
                g["lr"] = lr_at(int(step))
        x, y = sample_batch(feats, labels, rng, p_speakers=p_speakers, k_calls=k_calls, crop_frames=crop_frames)
        emb = model(torch.from_numpy(x).to(device))
        loss, _ = V.batch_hard_triplet_loss(emb, torch.from_numpy(y).to(device), margin=margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run (logged as MLflow params)."""

    n_speakers: int = 600
    calls_per_speaker: int = 6
    n_valid_speakers: int = 100
    n_test_speakers: int = 150
    calls_per_eval_speaker: int = 4
    steps: int = 3000
    minutes: float = 10.0
    eval_every: int = 100
    patience: int = 8
    p_speakers: int = 16
    k_calls: int = 4
    crop_seconds: float = 2.0
    lr: float = 2e-3
    margin: float = 0.3
    seed: int = 0
    n_impostor: int = 20_000
    max_seconds: float = 3.5  # the simulator's call length (simulation.media.call_seconds)
    workers: int = 2


def _cosine_lr(base: float, total: int, warmup: int = 100):
    def at(step: int) -> float:
        if step < warmup:
            return base * (step + 1) / warmup
        return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return at


def train_voiceprint(out: str | Path, settings: TrainSettings = TrainSettings(), *, cache_dir: str | Path | None = None,
                     tracking_uri: str | None = None, artifact_root: str | None = None,
                     experiment: str = DEFAULT_EXPERIMENT, cnn: V.CnnConfig = V.CnnConfig(),
                     frontend: A.LogMelConfig = A.LogMelConfig(), allow_cuda: bool = True) -> dict:
    """Train, validate, test, save the model folder at ``out`` and (with ``tracking_uri``) log
    and register it in MLflow. Returns the run's facts: valid / test EER, steps, seconds,
    model version, MLflow ids."""
    s = settings
    torch.manual_seed(s.seed)
    device = V.choose_device(allow_cuda)
    t_start = time.perf_counter()
    train_audio, train_lab = synthesize_speakers(range(TRAIN_SEEDS[0], TRAIN_SEEDS[0] + s.n_speakers), s.calls_per_speaker,
                                                 cache_dir=cache_dir, max_seconds=s.max_seconds, workers=s.workers, tag="train")
    valid_audio, valid_lab = synthesize_speakers(range(VALID_SEEDS[0], VALID_SEEDS[0] + s.n_valid_speakers),
                                                 s.calls_per_eval_speaker, cache_dir=cache_dir, max_seconds=s.max_seconds,
                                                 workers=s.workers, tag="valid")
    test_audio, test_lab = synthesize_speakers(range(TEST_SEEDS[0], TEST_SEEDS[0] + s.n_test_speakers),
                                               s.calls_per_eval_speaker, cache_dir=cache_dir, max_seconds=s.max_seconds,
                                               workers=s.workers, tag="test")
    assert s.n_speakers <= TRAIN_SEEDS[1] - TRAIN_SEEDS[0] and s.n_valid_speakers <= VALID_SEEDS[1] - VALID_SEEDS[0]
    data_s = time.perf_counter() - t_start
    train_f, valid_f, test_f = (features_of(a, frontend) for a in (train_audio, valid_audio, test_audio))
    crop = int(round(s.crop_seconds * 1000 / frontend.hop_ms))

    model = V.build_cnn(cnn).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    rng = np.random.default_rng(s.seed)
    lr_at = _cosine_lr(s.lr, s.steps)
    losses: list[float] = []
    evals: list[dict] = []
    best = {"eer": float("inf"), "step": 0, "state": None}
    t_train = time.perf_counter()
    stop_reason = "steps"
    while len(losses) < s.steps:
        n = min(s.eval_every, s.steps - len(losses))
        losses += train_steps(model, train_f, train_lab, steps=n, p_speakers=s.p_speakers, k_calls=s.k_calls,
                              crop_frames=crop, margin=s.margin, optimizer=optimizer, rng=rng, lr_at=lr_at, device=device)
        res = V.speaker_eer(V.embed_logmel(model, valid_f, device), valid_lab, s.n_impostor, seed=s.seed)
        evals.append({"step": len(losses), "valid_eer": res["eer"], "loss": float(np.mean(losses[-n:])),
                      "seconds": time.perf_counter() - t_train})
        log.info("step %d: loss %.4f, valid EER %.4f (%.0f s)", len(losses), evals[-1]["loss"], res["eer"], evals[-1]["seconds"])
        if res["eer"] < best["eer"]:
            best = {"eer": res["eer"], "step": len(losses),
                    "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        elif len(evals) - next(i for i, e in enumerate(evals) if e["step"] == best["step"]) > s.patience:
            stop_reason = "patience"
            break
        if time.perf_counter() - t_train > 60 * s.minutes:
            stop_reason = "time"
            break
    train_s = time.perf_counter() - t_train
    model.load_state_dict(best["state"])
    test = V.speaker_eer(V.embed_logmel(model, test_f, device), test_lab, s.n_impostor, seed=s.seed)
    log.info("best valid EER %.4f at step %d; test EER %.4f on %d held-out speakers (%d genuine / %d impostor trials)",
             best["eer"], best["step"], test["eer"], s.n_test_speakers, test["n_genuine"], test["n_impostor"])

    facts = {"valid_eer": best["eer"], "test_eer": test["eer"], "best_step": best["step"], "steps_run": len(losses),
             "stop_reason": stop_reason, "train_seconds": round(train_s, 1), "data_seconds": round(data_s, 1),
             "device": device, "test_trials": {"n_genuine": test["n_genuine"], "n_impostor": test["n_impostor"]},
             "speaker_seeds": {"train": [TRAIN_SEEDS[0], TRAIN_SEEDS[0] + s.n_speakers],
                               "valid": [VALID_SEEDS[0], VALID_SEEDS[0] + s.n_valid_speakers],
                               "test": [TEST_SEEDS[0], TEST_SEEDS[0] + s.n_test_speakers]},
             "settings": asdict(s)}
    version = V.save_model(out, model, cnn, frontend, extra=facts)
    write_operating_points(out, model, frontend, cache_dir=cache_dir, max_seconds=s.max_seconds, workers=s.workers,
                           device=device)
    # the curves beside the weights: inspectable without MLflow, logged with the folder
    Path(out, "training_curve.json").write_text(json.dumps(
        {"evals": evals, "loss_every_10_steps": [float(np.mean(losses[i:i + 10])) for i in range(0, len(losses), 10)]}))
    result = {**{k: facts[k] for k in ("valid_eer", "test_eer", "best_step", "steps_run", "stop_reason",
                                       "train_seconds", "data_seconds", "device")},
              "model_version": version, "model_dir": str(out), "n_test_genuine": test["n_genuine"],
              "n_test_impostor": test["n_impostor"]}
    if tracking_uri:
        result.update(_log_to_mlflow(out, model, s, cnn, frontend, result, losses, evals,
                                     tracking_uri=tracking_uri, artifact_root=artifact_root, experiment=experiment))
    return result


# --------------------------------------------------------------------------------------------
# operating points (the threshold link_media starts from)

OPERATING_FMRS = (1e-3, 1e-4, 1e-5)
OPERATING_CALLS = 8  # calls per valid speaker: 200 x 8 calls give 1.3M impostor pairs (1e-5 estimable)


def write_operating_points(folder: str | Path, model, frontend: A.LogMelConfig, *, cache_dir: str | Path | None,
                           max_seconds: float = 3.5, workers: int = 2, device: str = "cpu") -> list[dict]:
    """The model's operating points on the *valid* speakers (never trained on, never the
    reported test speakers): per false-match rate, the cosine threshold and the true-match rate
    (``features.similarity.operating_points``), written into the folder's config.json under
    ``operating_points`` (not part of the model version)."""
    from riskgraph.features.similarity import operating_points

    seeds = range(VALID_SEEDS[0], VALID_SEEDS[1])
    audio, lab = synthesize_speakers(seeds, OPERATING_CALLS, cache_dir=cache_dir, max_seconds=max_seconds,
                                     workers=workers, tag="operating")
    emb = V.embed_logmel(model, features_of(audio, frontend), device)
    ops = operating_points(emb, lab, OPERATING_FMRS)
    conf_path = Path(folder) / V.CONFIG_FILE
    conf = json.loads(conf_path.read_text())
    conf["operating_points"] = {"measured_on": f"valid speakers {VALID_SEEDS[0]}..{VALID_SEEDS[1]} x {OPERATING_CALLS} calls "
                                               "(pairs of different speakers)", "points": ops}
    conf_path.write_text(json.dumps(conf, indent=2, sort_keys=True))
    log.info("operating points on the valid speakers: %s", ops)
    return ops


# --------------------------------------------------------------------------------------------
# MLflow


def _experiment_id(client, experiment: str, artifact_root: str | None) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    root = None
    if artifact_root:  # explicit location: without it MLflow writes under ./mlruns
        root = artifact_root if "://" in artifact_root else Path(artifact_root).resolve().as_uri()
    return client.create_experiment(experiment, artifact_location=root)


def _log_to_mlflow(out, model, s: TrainSettings, cnn: V.CnnConfig, frontend: A.LogMelConfig, result: dict,
                   losses: list[float], evals: list[dict], *, tracking_uri: str, artifact_root: str | None,
                   experiment: str) -> dict:
    """One MLflow run: settings, architecture and front end as params; the loss curve (per
    step) and valid EER (per evaluation) as metric histories; test EER; the model folder as
    artifacts; the model itself (``mlflow.pytorch``), registered as :data:`REGISTERED_MODEL`
    with its EERs and version as tags."""
    import mlflow
    import mlflow.pytorch
    import scipy

    mlflow.set_tracking_uri(tracking_uri)
    exp_id = _experiment_id(mlflow.MlflowClient(), experiment, artifact_root)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"voiceprint {result['model_version']}") as run:
        mlflow.set_tags({"riskgraph.step": "train_voiceprint", "riskgraph.model_id": "voice-cnn"})
        mlflow.log_params({**asdict(s), **{f"cnn.{k}": json.dumps(v) for k, v in cnn.to_dict().items()},
                           **{f"frontend.{k}": v for k, v in frontend.to_dict().items()},
                           "device": result["device"], "train_seeds": f"{TRAIN_SEEDS[0]}..{TRAIN_SEEDS[0] + s.n_speakers}",
                           "valid_seeds": f"{VALID_SEEDS[0]}..{VALID_SEEDS[0] + s.n_valid_speakers}",
                           "test_seeds": f"{TEST_SEEDS[0]}..{TEST_SEEDS[0] + s.n_test_speakers}"})
        for i in range(0, len(losses), 10):  # every 10th step: the curve, not 3000 rows
            mlflow.log_metric("train_loss", float(np.mean(losses[i:i + 10])), step=i)
        for e in evals:
            mlflow.log_metric("valid_eer_curve", e["valid_eer"], step=e["step"])
        mlflow.log_metrics({k: float(result[k]) for k in ("valid_eer", "test_eer", "best_step", "steps_run",
                                                            "train_seconds", "data_seconds")})
        mlflow.log_artifacts(str(out), artifact_path="model_folder")  # what VoiceprintEmbedder loads
        info = mlflow.pytorch.log_model(
            # pickle, not MLflow's default 'pt2' export: pt2 traces one fixed input shape, and
            # calls vary in length (the class loads from riskgraph.embedders.voice)
            model.cpu().eval(), name="voiceprint", serialization_format="pickle",
            # explicit requirements: inferring them costs ~7 s per run
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
                              f"scipy=={scipy.__version__}"],
        )
        version = mlflow.register_model(info.model_uri, REGISTERED_MODEL, tags={
            "riskgraph.model_version": result["model_version"], "valid_eer": f"{result['valid_eer']:.6f}",
            "test_eer": f"{result['test_eer']:.6f}", "mlflow_run_id": run.info.run_id,
            "test_speakers": f"{TEST_SEEDS[0]}..{TEST_SEEDS[0] + s.n_test_speakers}"})
    log.info("mlflow run %s: model %s registered as %s version %s", run.info.run_id, info.model_uri,
             REGISTERED_MODEL, version.version)
    return {"mlflow_run_id": run.info.run_id, "model_uri": info.model_uri,
            "registered_model": REGISTERED_MODEL, "registered_model_version": int(version.version)}


def main(argv: list[str] | None = None) -> dict:
    d = TrainSettings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="model folder to write (config.json + model.pt)")
    p.add_argument("--cache-dir", default=None, help="where synthesised calls are cached as .npz")
    p.add_argument("--n-speakers", type=int, default=d.n_speakers, help="training speakers")
    p.add_argument("--calls", type=int, default=d.calls_per_speaker, help="calls per training speaker")
    p.add_argument("--n-valid-speakers", type=int, default=d.n_valid_speakers)
    p.add_argument("--n-test-speakers", type=int, default=d.n_test_speakers)
    p.add_argument("--steps", type=int, default=d.steps, help="most optimiser steps (the LR schedule's length)")
    p.add_argument("--minutes", type=float, default=d.minutes, help="training time box (synthesis not included)")
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="synthesis processes")
    p.add_argument("--cpu", action="store_true", help="never use a GPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: riskgraph.config's)")
    p.add_argument("--artifact-root", default=None, help="MLflow artifact root (default: riskgraph.config's)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    p.add_argument("--env", default=None, help="riskgraph config environment for the MLflow defaults")
    p.add_argument("--no-mlflow", action="store_true", help="save the folder only")
    p.add_argument("--operating-points-only", action="store_true",
                   help="do not train: measure the operating points of the model already in --out and write them into it")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.operating_points_only:
        emb = V.VoiceprintEmbedder(a.out, allow_cuda=not a.cpu)
        ops = write_operating_points(a.out, emb.model, emb.frontend, cache_dir=a.cache_dir, workers=a.workers,
                                     device=emb.device)
        print(json.dumps(ops, indent=2))
        return {"operating_points": ops}
    tracking_uri, artifact_root = a.tracking_uri, a.artifact_root
    if not a.no_mlflow and (tracking_uri is None or artifact_root is None):
        from riskgraph.config import load_config

        cfg = load_config(a.env)
        tracking_uri = tracking_uri or cfg.mlflow.tracking_uri
        artifact_root = artifact_root or cfg.mlflow.artifact_root
    settings = TrainSettings(n_speakers=a.n_speakers, calls_per_speaker=a.calls, n_valid_speakers=a.n_valid_speakers,
                             n_test_speakers=a.n_test_speakers, steps=a.steps, minutes=a.minutes,
                             eval_every=a.eval_every, patience=a.patience, lr=a.lr, seed=a.seed, workers=a.workers)
    result = train_voiceprint(a.out, settings, cache_dir=a.cache_dir, tracking_uri=None if a.no_mlflow else tracking_uri,
                              artifact_root=artifact_root, experiment=a.experiment, allow_cuda=not a.cpu)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

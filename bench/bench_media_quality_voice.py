"""Voiceprint quality on held-out speakers: EER and throughput of every voice embedder.

    python bench/bench_media_quality_voice.py --model models/voiceprint --cache-dir var/cache/voices \\
        [--n-speakers 150 --calls 4 --n-impostor 20000] [--skip-resemblyzer] [--out docs/benchmarks.md]

Speakers are the test range of ``jobs/train_voiceprint.py`` (seeds from 20 000: never trained
on, never used for early stopping), each with ``--calls`` calls of different scripts through
different channels. Every embedder sees the same calls as WAV bytes (the Embedder protocol:
``decode`` then ``embed_batch``) and is scored on the same trials: every genuine pair and a
fixed random sample of impostor pairs, cosine scores, equal error rate (lower is better).
Throughput is CPU seconds per clip (the box is shared: CPU time, not wall time, is the
honest cost) and clips per wall second.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.train_voiceprint import TEST_SEEDS, synthesize_speakers  # noqa: E402
from riskgraph.embedders import voice as V  # noqa: E402


def _wav(pcm: np.ndarray, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def measure(embedder, wavs: list[bytes], speakers: np.ndarray, n_impostor: int, seed: int, batch: int = 32) -> dict:
    """Decode + embed every WAV through the Embedder protocol; EER on the fixed trials and cost."""
    embedder.embed_batch([embedder.decode(wavs[0])])  # warm-up (lazy init, first-call compilation)
    c0, w0 = time.process_time(), time.perf_counter()
    rows = []
    for i in range(0, len(wavs), batch):
        items = [embedder.decode(b) for b in wavs[i:i + batch]]
        if any(x is None for x in items):
            raise RuntimeError(f"{embedder.model_id} could not decode a benchmark call")
        rows.append(embedder.embed_batch(items))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    emb = np.concatenate(rows)
    res = V.speaker_eer(emb, speakers, n_impostor, seed)
    return {"model": embedder.model_id, "version": embedder.model_version, "dim": embedder.dim, **res,
            "cpu_ms_per_clip": 1000 * cpu / len(wavs), "clips_per_s": len(wavs) / wall}


def table(rows: list[dict], n_speakers: int, n_calls: int, seconds: float) -> str:
    head = (f"{n_speakers} held-out speakers x {n_calls} calls ({seconds:.1f} s of audio per call on average), "
            f"{rows[0]['n_genuine']} genuine / {rows[0]['n_impostor']} impostor trials, cosine scores\n\n")
    lines = ["| model | version | dim | EER | mean cos genuine | mean cos impostor | CPU ms / clip | clips / s (wall) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['version']} | {r['dim']} | {r['eer']:.4f} | {r['mean_genuine']:.3f} | "
                     f"{r['mean_impostor']:.3f} | {r['cpu_ms_per_clip']:.1f} | {r['clips_per_s']:.1f} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="our CNN's model folder (skipped when not given)")
    p.add_argument("--cache-dir", default=None, help="synthesised-call cache shared with the training job")
    p.add_argument("--n-speakers", type=int, default=150)
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--n-impostor", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-resemblyzer", action="store_true")
    p.add_argument("--cpu", action="store_true", help="never use a GPU")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: what a Spark task gets)")
    p.add_argument("--out", default=None, help="append the table to this Markdown file")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    audio, speakers = synthesize_speakers(range(TEST_SEEDS[0], TEST_SEEDS[0] + a.n_speakers), a.calls,
                                          cache_dir=a.cache_dir, tag="test")
    wavs = [_wav(x) for x in audio]
    seconds = float(np.mean([len(x) for x in audio])) / 8000
    embedders = [V.MfccStatsEmbedder()]
    if a.model:
        embedders.append(V.VoiceprintEmbedder(a.model, allow_cuda=not a.cpu))
    if not a.skip_resemblyzer:
        embedders.append(V.ResemblyzerEmbedder(allow_cuda=not a.cpu))
    rows = []
    for e in embedders:
        rows.append(measure(e, wavs, speakers, a.n_impostor, a.seed))
        print(f"{e.model_id}: EER {rows[-1]['eer']:.4f} ({rows[-1]['cpu_ms_per_clip']:.1f} CPU ms / clip)", flush=True)
    out = table(rows, a.n_speakers, a.calls, seconds)
    print(out)
    if a.out:
        from _report import append_markdown  # bench/ is on sys.path when run as a script

        append_markdown(a.out, Path(__file__).name, out)
    return rows


if __name__ == "__main__":
    main()

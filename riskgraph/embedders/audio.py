"""Log-mel spectrograms for telephone-band calls, in numpy/scipy only.

The front end of the voiceprint models (``riskgraph.embedders.voice``): pre-emphasis, a short-
time Fourier transform (25 ms Hamming windows every 10 ms), a triangular mel filterbank (HTK
mel scale, 40 bands over 60-3800 Hz for 8 kHz audio), log compression, an energy voice-activity
detector that drops silent frames, and per-utterance cepstral-style mean normalisation (each
band's mean over the kept frames subtracted, which removes a fixed channel/handset colouring:
a convolution in time is an addition in the log-spectrum). ``mfcc`` adds the DCT for the
classic mean+std baseline.

No librosa on purpose: its first call compiles numba kernels (~20 s per fresh cache), paid by
every Spark worker. The maths follows the usual Kaldi/HTK recipe (Young et al., *The HTK Book*,
ch. 5; Davis & Mermelstein, IEEE TASSP 1980, for MFCCs).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.fft import dct, rfft

__all__ = [
    "LogMelConfig", "pre_emphasis", "frame_signal", "hz_to_mel", "mel_to_hz", "mel_filterbank",
    "power_spectrogram", "log_mel", "energy_vad", "logmel_features", "mfcc", "to_float",
]


@dataclass(frozen=True)
class LogMelConfig:
    """Settings of the log-mel front end (saved with a model, so they are part of its version).

    ``vad_range_db``: frames more than this many dB below the loud (95th-percentile) frames are
    silence; ``vad_min_keep``: if the VAD would keep fewer frames than this share of the
    utterance, all frames are kept (a quiet call is still a call; dropping it all would leave
    nothing to embed).
    """

    sample_rate: int = 8000
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 256
    n_mels: int = 40
    fmin: float = 60.0
    fmax: float = 3800.0
    preemph: float = 0.97
    vad: bool = True
    vad_range_db: float = 35.0
    vad_min_keep: float = 0.2
    cmn: bool = True

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    def to_dict(self) -> dict:
        return asdict(self)


def to_float(audio: np.ndarray) -> np.ndarray:
    """PCM samples as float32 in [-1, 1): int16 scaled by 1/32768, floats passed through."""
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {a.shape}")
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"integer audio must be int16 PCM, got {a.dtype}")
    return a.astype(np.float32)


def pre_emphasis(x: np.ndarray, coef: float = 0.97) -> np.ndarray:
    """``y[0] = x[0]``, ``y[n] = x[n] - coef * x[n-1]``: flattens speech's ~-6 dB/octave tilt so
    the high bands (where formants 2-3 live) are not drowned by the low ones."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or coef == 0:
        return x.copy()
    return np.concatenate([x[:1], x[1:] - coef * x[:-1]])


def frame_signal(x: np.ndarray, win_length: int, hop_length: int) -> np.ndarray:
    """Overlapping frames ``(n_frames, win_length)``, frame ``t`` = ``x[t*hop : t*hop+win]``.

    ``n_frames = 1 + (len(x) - win_length) // hop_length`` (no padding: a partial last frame is
    dropped); zero frames when the signal is shorter than one window.
    """
    x = np.asarray(x)
    if len(x) < win_length:
        return np.zeros((0, win_length), dtype=x.dtype)
    n = 1 + (len(x) - win_length) // hop_length
    return np.lib.stride_tricks.sliding_window_view(x, win_length)[::hop_length][:n]


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters ``(n_mels, n_fft // 2 + 1)`` with peaks evenly spaced on the mel scale.

    Filter ``m`` rises from centre ``m-1`` to 1 at centre ``m`` and falls to 0 at centre ``m+1``
    (centres: ``n_mels + 2`` points evenly spaced in mel between ``fmin`` and ``fmax``), evaluated
    at the FFT bin frequencies ``k * sample_rate / n_fft``. Peak height 1 (HTK), not area-normalised.
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= Nyquist ({sample_rate / 2}); got {fmin}, {fmax}")
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    pts = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


def power_spectrogram(x: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """``|FFT(window * frame)|^2`` per frame: ``(n_frames, n_fft // 2 + 1)`` float64.

    Input: float samples (already pre-emphasised if wanted). Each ``win_length`` frame is
    multiplied by a symmetric Hamming window and zero-padded at its end to ``n_fft``.
    """
    if cfg.n_fft < cfg.win_length:
        raise ValueError(f"n_fft {cfg.n_fft} is shorter than the window ({cfg.win_length} samples)")
    frames = frame_signal(np.asarray(x, dtype=np.float64), cfg.win_length, cfg.hop_length)
    spec = rfft(frames * np.hamming(cfg.win_length), n=cfg.n_fft, axis=1)
    return spec.real ** 2 + spec.imag ** 2


def _filterbank(cfg: LogMelConfig) -> np.ndarray:
    key = (cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.fmin, cfg.fmax)
    fb = _FB_CACHE.get(key)
    if fb is None:
        fb = _FB_CACHE[key] = mel_filterbank(cfg.n_mels, cfg.n_fft, cfg.sample_rate, cfg.fmin, cfg.fmax)
    return fb


_FB_CACHE: dict[tuple, np.ndarray] = {}
_LOG_FLOOR = 1e-10  # power floor before log: digital silence gives -100 dB, not -inf


def log_mel(audio: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Log mel energies ``(n_frames, n_mels)`` (natural log), no VAD and no normalisation.

    Input: mono int16 PCM or float samples at ``cfg.sample_rate``.
    """
    x = pre_emphasis(to_float(audio), cfg.preemph)
    power = power_spectrogram(x, cfg)
    return np.log(np.maximum(power @ _filterbank(cfg).T, _LOG_FLOOR))


def energy_vad(audio: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Boolean mask over the frames of :func:`log_mel`: True where the frame holds sound.

    A frame is speech when its energy (dB, on the same 25 ms / 10 ms frames, before
    pre-emphasis) is within ``vad_range_db`` of the 95th-percentile frame energy (a robust
    "loud" level: the maximum alone is one click). If that keeps fewer than ``vad_min_keep`` of
    the frames, every frame is kept.
    """
    frames = frame_signal(to_float(audio).astype(np.float64), cfg.win_length, cfg.hop_length)
    if len(frames) == 0:
        return np.zeros(0, dtype=bool)
    energy_db = 10.0 * np.log10(np.maximum(np.mean(frames ** 2, axis=1), _LOG_FLOOR))
    keep = energy_db >= np.percentile(energy_db, 95) - cfg.vad_range_db
    if keep.mean() < cfg.vad_min_keep:
        keep[:] = True
    return keep


def logmel_features(audio: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """The model input: log-mel ``(n_frames, n_mels)`` float32 with silent frames dropped (when
    ``cfg.vad``) and each band's mean over the kept frames subtracted (when ``cfg.cmn``).

    Returns ``(0, n_mels)`` for audio shorter than one window.
    """
    feats = log_mel(audio, cfg)
    if cfg.vad and len(feats):
        feats = feats[energy_vad(audio, cfg)]
    if cfg.cmn and len(feats):
        feats = feats - feats.mean(axis=0, keepdims=True)
    return feats.astype(np.float32)


def mfcc(logmel: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """MFCCs ``(n_frames, n_mfcc)``: orthonormal DCT-II of each log-mel frame, first ``n_mfcc``
    coefficients (c0 included)."""
    return dct(np.asarray(logmel, dtype=np.float64), type=2, norm="ortho", axis=1)[:, :n_mfcc].astype(np.float32)

"""Call recordings: determinism, WAV bytes, telephone band, per-call nuisance, and speakers that a
simple voiceprint (MFCC mean+std) can tell apart better than chance but not perfectly.

Needs Debian's espeak-ng and sox (the project installs them); ~60 short calls are synthesised
once per module (a few CPU-seconds)."""
from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import wave

import numpy as np
import pytest
from scipy.fft import dct, rfft

from riskgraph.media.voices import (
    ACCENTS,
    CLIP_PROBABILITY,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    SNR_RANGE_DB,
    CallChannel,
    apply_call_channel,
    call_script,
    decode_wav,
    draw_call_channel,
    encode_wav,
    speak,
    speaker_from_seed,
    synthesize_call,
    synthesize_calls,
)

SR = 8000
N_SPEAKERS, N_CALLS = 20, 3


# ---------------------------------------------------------------------------------------------
# Small, independent measurements (numpy/scipy only)
# ---------------------------------------------------------------------------------------------

def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    n = 1 + (len(x) - win) // hop
    return x[np.arange(win)[None, :] + hop * np.arange(n)[:, None]]


def mfcc_mean_std(x: np.ndarray, sr: int = SR, n_mels: int = 24, n_ceps: int = 13) -> np.ndarray:
    """Classic MFCC mean+std utterance descriptor (Davis & Mermelstein 1980): pre-emphasis,
    25 ms Hamming frames every 10 ms, 24 mel bands over 300-3400 Hz, log, DCT, c1..c12 over the
    frames within ~35 dB of the loud ones."""
    x = x.astype(np.float64) / 32768.0
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])
    power = np.abs(rfft(_frames(x, 200, 80) * np.hamming(200), 256)) ** 2
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    imel = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = imel(np.linspace(mel(300.0), mel(3400.0), n_mels + 2))
    freqs = np.arange(129) * sr / 256
    fb = np.array([np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
                   for lo, c, hi in zip(edges, edges[1:], edges[2:])])
    logmel = np.log(power @ fb.T + 1e-10)
    energy = logmel.mean(axis=1)
    ceps = dct(logmel[energy > np.percentile(energy, 95) - 8.0], type=2, norm="ortho", axis=1)
    c = ceps[:, 1:n_ceps]
    return np.concatenate([c.mean(axis=0), c.std(axis=0)])


def median_f0(x: np.ndarray, sr: int = SR) -> float:
    """Median fundamental frequency (60-400 Hz) of the loud frames, by normalised
    autocorrelation; the harmonics carry the period through the 300 Hz high-pass."""
    fr = _frames(x.astype(np.float64), 320, 160) * np.hanning(320)
    fr -= fr.mean(axis=1, keepdims=True)
    e = (fr ** 2).sum(axis=1)
    fr = fr[e > np.percentile(e, 70)]
    ac = np.fft.irfft(np.abs(np.fft.rfft(fr, 1024)) ** 2)[:, :320]
    ac = ac / ac[:, :1]
    lo, hi = sr // 400, sr // 60
    lag = lo + ac[:, lo:hi].argmax(axis=1)
    voiced = ac[np.arange(len(ac)), lag] > 0.5
    assert voiced.mean() > 0.3, "no voiced frames found"
    return float(np.median(sr / lag[voiced]))


def band_energy(x: np.ndarray, lo: float, hi: float, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney U / n1 n2)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    return float(((pos[:, None] > neg[None, :]).mean()
                  + 0.5 * (pos[:, None] == neg[None, :]).mean()))


# ---------------------------------------------------------------------------------------------
# One batch of calls shared by the statistical tests
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calls():
    """N_SPEAKERS speakers x N_CALLS calls, each call with its own script and seed."""
    jobs, labels = [], []
    for s in range(N_SPEAKERS):
        speaker = speaker_from_seed(s)
        for c in range(N_CALLS):
            seed = 1000 * s + c
            jobs.append((speaker, call_script(np.random.default_rng(seed)), seed))
            labels.append(s)
    return synthesize_calls(jobs, workers=2), np.array(labels), jobs


# ---------------------------------------------------------------------------------------------
# Speakers
# ---------------------------------------------------------------------------------------------

def test_speaker_from_seed_is_reproducible_and_distinct():
    assert speaker_from_seed(17) == speaker_from_seed(17)
    speakers = [speaker_from_seed(s) for s in range(500)]
    assert len(set(speakers)) == 500
    # Both genders and many accents/variants occur.
    variants = {sp.variant for sp in speakers}
    assert variants & set(FEMALE_VARIANTS) and variants & set(MALE_VARIANTS)
    assert len({sp.voice for sp in speakers}) == len(ACCENTS)
    assert len(variants) > 50


def test_speaker_rejects_out_of_range_fields():
    with pytest.raises(ValueError, match="pitch"):
        dataclasses.replace(speaker_from_seed(1), pitch=150)
    with pytest.raises(ValueError, match="non-negative"):
        speaker_from_seed(-3)


def _espeak(voice: str, text: str = "Yes, I applied for the loan.") -> bytes:
    return subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True,
                          check=True).stdout


def test_every_listed_variant_is_installed():
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True,
                             check=True).stdout
    installed = {line.split()[4].removeprefix("!v/") for line in listing.splitlines()[1:]
                 if len(line.split()) >= 5}
    missing = sorted(set(MALE_VARIANTS + FEMALE_VARIANTS) - installed)
    assert not missing, f"variants not installed: {missing}"


@pytest.mark.parametrize("accent", [a for a, _ in ACCENTS])
def test_variants_take_effect_for_every_accent(accent):
    # espeak-ng silently ignores the variant of some voice names ("en-gb+f2" sounds like
    # "en-gb"): a speaker would then lose its variant without any error.
    base, female, male = _espeak(accent), _espeak(f"{accent}+f2"), _espeak(f"{accent}+m3")
    assert len({base, female, male}) == 3


def test_higher_pitch_setting_gives_higher_f0():
    base = speaker_from_seed(1)
    text = "Yes, I applied for the loan. The amount is thirty thousand yuan."
    f0 = [median_f0(np.round(speak(dataclasses.replace(base, pitch=p), text) * 32767))
          for p in (30, 60, 90)]
    assert f0[0] < f0[1] < f0[2], f0


def test_distinct_speakers_differ_in_pitch(calls):
    clips, labels, _ = calls
    # Six speakers, three calls each: the per-speaker median F0 varies far more between
    # speakers than between one speaker's calls (one-way ANOVA F ratio).
    f0 = np.array([median_f0(x) for x, s in zip(clips, labels) if s < 6]).reshape(6, N_CALLS)
    within = f0.var(axis=1, ddof=1).mean()
    between = f0.mean(axis=1).var(ddof=1)
    assert between / within > 5.0, f0


def test_same_speaker_is_closer_on_mfcc_than_different_speakers(calls):
    clips, labels, _ = calls
    feats = np.array([mfcc_mean_std(x) for x in clips])
    feats = (feats - feats.mean(axis=0)) / feats.std(axis=0)
    dist = np.linalg.norm(feats[:, None, :] - feats[None, :, :], axis=2)
    iu = np.triu_indices(len(labels), 1)
    same = labels[iu[0]] == labels[iu[1]]
    score = auc(-dist[iu][same], -dist[iu][~same])
    # Well above chance, below perfect: the channel and wording really vary per call.
    assert 0.7 < score < 0.99, score


# ---------------------------------------------------------------------------------------------
# Calls
# ---------------------------------------------------------------------------------------------

def test_call_is_deterministic_and_depends_on_seed_speaker_and_text():
    sp, text = speaker_from_seed(5), call_script(np.random.default_rng(1))
    a = synthesize_call(sp, text, np.random.default_rng(10))
    assert np.array_equal(a, synthesize_call(sp, text, np.random.default_rng(10)))
    assert not np.array_equal(a, synthesize_call(sp, text, np.random.default_rng(11)))
    assert not np.array_equal(a, synthesize_call(speaker_from_seed(6), text,
                                                 np.random.default_rng(10)))
    other_text = call_script(np.random.default_rng(2))
    assert other_text != text
    assert not np.array_equal(a, synthesize_call(sp, other_text, np.random.default_rng(10)))


def test_batch_result_does_not_depend_on_worker_count(calls):
    _, _, jobs = calls
    few = jobs[:5]
    one = synthesize_calls(few, workers=1)
    three = synthesize_calls(few, workers=3)
    assert all(np.array_equal(a, b) for a, b in zip(one, three))
    assert all(np.array_equal(a, b) for a, b in zip(one, calls[0][:5]))


@pytest.mark.parametrize("sample_rate, max_seconds", [(8000, 4.0), (8000, 3.0), (16000, 2.5)],
                         ids=["8k-4s", "8k-3s", "16k-2.5s"])
def test_call_format_and_length(sample_rate, max_seconds):
    x = synthesize_call(speaker_from_seed(2), call_script(np.random.default_rng(3)),
                        np.random.default_rng(4), sample_rate=sample_rate,
                        max_seconds=max_seconds)
    assert x.dtype == np.int16 and x.ndim == 1
    assert len(x) == round(sample_rate * max_seconds)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(x.astype(float) ** 2)) / 32768)
    assert -45 < rms_dbfs < -10, rms_dbfs


def test_calls_have_speech_throughout_most_of_the_clip(calls):
    clips, _, _ = calls
    for x in clips:
        e = (_frames(x.astype(float), 160, 160) ** 2).mean(axis=1)
        loud = e > np.percentile(e, 95) * 10 ** (-20 / 10)  # within 20 dB of the loud frames
        assert loud.mean() > 0.3


def test_calls_are_telephone_band_limited(calls):
    clips, _, _ = calls
    # Measured maxima over these 60 calls: ~1.5e-5 above 3.6 kHz, ~4e-3 below 250 Hz. Without
    # the final band-pass, noise and the speaker's low end give ~1e-4 and ~2.5e-2 on one call.
    for x in clips:
        band = band_energy(x, 300, 3400)
        assert band_energy(x, 3600, 4001) / band < 1e-4
        assert band_energy(x, 0, 250) / band < 1e-2


def test_channel_draws_cover_their_ranges():
    rng = np.random.default_rng(0)
    ch = [draw_call_channel(rng) for _ in range(4000)]
    snr = np.array([c.snr_db for c in ch])
    assert SNR_RANGE_DB[0] <= snr.min() < SNR_RANGE_DB[0] + 0.5
    assert SNR_RANGE_DB[1] - 0.5 < snr.max() <= SNR_RANGE_DB[1]
    clipped = np.array([c.clip_ratio is not None for c in ch])
    assert abs(clipped.mean() - CLIP_PROBABILITY) < 0.03
    assert all(0.3 <= c.clip_ratio <= 0.8 for c in ch if c.clip_ratio is not None)
    assert {c.pitch_delta for c in ch} == set(range(-4, 5))
    assert all(0.05 <= c.lead_s <= 0.5 and -32 <= c.level_dbfs <= -18 for c in ch)


@pytest.mark.parametrize("snr_db", [8.0, 18.0, 30.0], ids=["8dB", "18dB", "30dB"])
def test_noise_is_added_at_the_drawn_snr(snr_db):
    speech = speak(speaker_from_seed(3), "Yes, I applied for the loan of fifty thousand yuan.")

    def channel(snr):
        return CallChannel(pitch_delta=0, speed_factor=1.0, range_factor=1.0, lead_s=0.5,
                           tilt_db_per_oct=0.0, snr_db=snr, noise_tilt_db_per_oct=-3.0,
                           clip_ratio=None, level_dbfs=-26.0)
    # Where the speech is active, from a practically noise-free rendering of the same call.
    clean = apply_call_channel(speech, channel(150.0), np.random.default_rng(1)).astype(float)
    e_clean = (_frames(clean, 160, 160) ** 2).mean(axis=1)
    active = e_clean >= np.percentile(e_clean, 95) * 1e-3

    y = apply_call_channel(speech, channel(snr_db), np.random.default_rng(1)).astype(float)
    noise_power = np.mean(y[800:3600] ** 2)  # inside the 0.5 s pick-up delay: noise only
    e = (_frames(y, 160, 160) ** 2).mean(axis=1)
    measured = 10 * np.log10((e[active].mean() - noise_power) / noise_power)
    assert abs(measured - snr_db) < 1.0, measured


def test_clipping_flattens_peaks():
    speech = speak(speaker_from_seed(4), "Yes, that is right, thirty thousand yuan.")
    kw = dict(pitch_delta=0, speed_factor=1.0, range_factor=1.0, lead_s=0.1, tilt_db_per_oct=0.0,
              snr_db=30.0, noise_tilt_db_per_oct=0.0, level_dbfs=-20.0)
    clean = apply_call_channel(speech, CallChannel(clip_ratio=None, **kw), np.random.default_rng(0))
    clip = apply_call_channel(speech, CallChannel(clip_ratio=0.3, **kw), np.random.default_rng(0))

    def crest_db(x):
        x = x.astype(float)
        return 20 * np.log10(np.abs(x).max() / np.sqrt(np.mean(x ** 2)))
    assert crest_db(clip) < crest_db(clean) - 2.0


def test_no_temporary_files_are_left(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    synthesize_call(speaker_from_seed(8), call_script(np.random.default_rng(8)),
                    np.random.default_rng(8))
    assert os.listdir(tmp_path) == []


def test_speak_rejects_empty_text():
    with pytest.raises(ValueError, match="empty"):
        speak(speaker_from_seed(1), "   ")


# ---------------------------------------------------------------------------------------------
# What is said
# ---------------------------------------------------------------------------------------------

def test_call_script_varies_and_holds_no_digits():
    assert call_script(np.random.default_rng(3)) == call_script(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    scripts = [call_script(rng) for _ in range(300)]
    assert len(set(scripts)) > 280
    for s in scripts:
        assert s.isascii() and "{" not in s
        assert not any(ch.isdigit() for ch in s), s  # amounts are spoken as words
        assert 3 <= s.count(".") + s.count("?") <= 7, s


# ---------------------------------------------------------------------------------------------
# WAV bytes
# ---------------------------------------------------------------------------------------------

def test_wav_round_trip(calls):
    x = calls[0][0]
    data = encode_wav(x, SR)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    y, rate = decode_wav(data)
    assert rate == SR and y.dtype == np.int16 and np.array_equal(x, y)
    with wave.open(io.BytesIO(data)) as w:  # an independent reader agrees
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            1, 2, SR, len(x))


def test_encode_wav_scales_floats_and_rejects_other_shapes():
    y, _ = decode_wav(encode_wav(np.array([0.0, 0.5, -1.0, 2.0]), 16000))
    assert y.tolist() == [0, 16384, -32768, 32767]
    with pytest.raises(ValueError):
        encode_wav(np.zeros((10, 2), dtype=np.int16), SR)


def _wav_bytes(frames: bytes, channels: int, width: int, rate: int = SR) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def test_decode_wav_other_pcm_layouts():
    stereo = np.array([[1000, 3000], [-2000, -4000]], dtype="<i2")
    y, rate = decode_wav(_wav_bytes(stereo.tobytes(), 2, 2, 11025))
    assert rate == 11025 and y.tolist() == [2000, -3000]
    y, _ = decode_wav(_wav_bytes(bytes([128, 255, 0]), 1, 1))  # 8-bit unsigned
    assert y.tolist() == [0, 127 * 256, -128 * 256]
    y, _ = decode_wav(_wav_bytes(np.array([65536 * 300, -65536 * 7], dtype="<i4").tobytes(), 1, 4))
    assert y.tolist() == [300, -7]


@pytest.mark.parametrize("data", [b"", b"not a wav file at all", b"RIFF\x00\x00"],
                         ids=["empty", "text", "truncated-header"])
def test_decode_wav_returns_none_for_garbage(data):
    assert decode_wav(data) is None

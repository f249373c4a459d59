"""Voiceprints: the log-mel front end against hand-computed values (and torch.stft), the EER
against hand cases and an independent ROC computation, the CNN's training signal, save/load,
determinism and the embedder contract. Fast, no Spark, no speech synthesis."""
from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest

from riskgraph.embedders import audio as A
from riskgraph.embedders import voice as V
from riskgraph.embedders.base import Embedder

SR = 8000


def _tone(freq: float, seconds: float, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def _wav_bytes(x: np.ndarray, sr: int = SR, channels: int = 1) -> bytes:
    pcm = np.clip(np.round(np.asarray(x) * 32767), -32768, 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm[:, None], channels, axis=1).ravel()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


# ------------------------------------------------------------------------------------- log-mel


def test_frame_count_and_frames_by_hand():
    cfg = A.LogMelConfig()
    assert (cfg.win_length, cfg.hop_length) == (200, 80)  # 25 ms / 10 ms at 8 kHz
    x = np.arange(1000, dtype=np.float64)
    frames = A.frame_signal(x, 200, 80)
    assert frames.shape == (1 + (1000 - 200) // 80, 200) == (11, 200)
    np.testing.assert_array_equal(frames[3], x[240:440])
    assert A.frame_signal(x[:199], 200, 80).shape == (0, 200)
    # one second of a tone: 98 frames of 40 bands
    assert A.log_mel(_tone(1000, 1.0)).shape == (98, 40)


def test_pre_emphasis_by_hand():
    np.testing.assert_allclose(A.pre_emphasis(np.array([1.0, 2.0, 4.0]), 0.5), [1.0, 1.5, 3.0])


def test_mel_scale_and_filterbank_by_hand():
    assert A.hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2))
    np.testing.assert_allclose(A.mel_to_hz(A.hz_to_mel([60.0, 1000.0, 3800.0])), [60.0, 1000.0, 3800.0])
    # 2 filters over 0..3000 Hz, n_fft 8 at 8 kHz -> bins at 0, 1000, 2000, 3000, 4000 Hz
    fb = A.mel_filterbank(2, 8, 8000, 0.0, 3000.0)
    edges = A.mel_to_hz(np.linspace(0, A.hz_to_mel(3000.0), 4))  # 0, c1, c2, 3000
    c1, c2 = edges[1], edges[2]
    want = np.zeros((2, 5))
    for k, f in enumerate([0, 1000, 2000, 3000, 4000]):
        want[0, k] = max(0.0, min(f / c1, (c2 - f) / (c2 - c1)))
        want[1, k] = max(0.0, min((f - c1) / (c2 - c1), (3000 - f) / (3000 - c2)))
    np.testing.assert_allclose(fb, want, atol=1e-12)
    with pytest.raises(ValueError, match="Nyquist"):
        A.mel_filterbank(40, 256, 8000, 60.0, 4500.0)


@pytest.mark.parametrize("band", [3, 10, 18, 27, 36], ids=lambda b: f"band{b}")
def test_tone_at_a_band_centre_peaks_in_that_band(band):
    cfg = A.LogMelConfig()
    centres = A.mel_to_hz(np.linspace(A.hz_to_mel(cfg.fmin), A.hz_to_mel(cfg.fmax), cfg.n_mels + 2))[1:-1]
    lm = A.log_mel(_tone(centres[band], 0.5), cfg)
    assert lm.shape == (48, 40)
    assert set(np.argmax(lm, axis=1)) == {band}


def test_power_spectrogram_matches_a_direct_dft():
    cfg = A.LogMelConfig()
    x = np.random.default_rng(1).normal(size=600)
    ps = A.power_spectrogram(x, cfg)
    frame = np.zeros(256)
    frame[:200] = x[80:280] * (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(200) / 199))  # Hamming, by hand
    k = np.arange(129)
    dft = np.exp(-2j * np.pi * np.outer(k, np.arange(256)) / 256) @ frame
    np.testing.assert_allclose(ps[1], np.abs(dft) ** 2, rtol=1e-9, atol=1e-9)


def test_power_spectrogram_matches_torch_stft():
    torch = pytest.importorskip("torch")
    cfg = A.LogMelConfig()
    x = np.random.default_rng(2).normal(size=4000)
    ours = A.power_spectrogram(x, cfg)
    # torch centres a short window inside n_fft; give it our window already zero-padded at the end
    win = torch.zeros(256, dtype=torch.float64)
    win[:200] = torch.from_numpy(np.hamming(200))
    st = torch.stft(torch.from_numpy(x), n_fft=256, hop_length=80, win_length=256, window=win,
                    center=False, return_complex=True)
    theirs = (st.abs() ** 2).T.numpy()  # (frames, bins); torch needs 256 samples per frame: fewer frames
    assert theirs.shape[1] == ours.shape[1] == 129 and 0 < len(theirs) <= len(ours)
    np.testing.assert_allclose(ours[: len(theirs)], theirs, rtol=1e-8, atol=1e-8)


def test_vad_drops_silence_and_cmn_centres_bands():
    cfg = A.LogMelConfig()
    x = np.concatenate([np.zeros(SR // 2, np.float32), _tone(500, 1.0), np.zeros(SR // 2, np.float32)])
    keep = A.energy_vad(x, cfg)
    assert len(keep) == len(A.log_mel(x, cfg))
    # frame t covers samples [80t, 80t + 200): frames 0..47 and 150..197 hold only silence
    assert len(keep) == 198 and keep[:48].sum() == 0 and keep[150:].sum() == 0 and keep[50:148].all()
    feats = A.logmel_features(x, cfg)
    assert feats.dtype == np.float32 and len(feats) == keep.sum()
    np.testing.assert_allclose(feats.mean(axis=0), 0, atol=1e-4)
    # a constant gain (a louder handset) changes nothing after mean normalisation
    np.testing.assert_allclose(A.logmel_features(3 * x, cfg), feats, atol=1e-4)
    # all-quiet audio keeps every frame rather than none
    assert A.energy_vad(np.zeros(SR, np.float32), cfg).all()


def test_int16_and_float_inputs_agree():
    x = _tone(700, 0.5)
    pcm = np.round(x * 32768).astype(np.int16)
    np.testing.assert_allclose(A.log_mel(pcm), A.log_mel(pcm.astype(np.float32) / 32768), rtol=1e-6)
    with pytest.raises(ValueError, match="mono"):
        A.log_mel(np.zeros((2, 100), np.float32))


# ------------------------------------------------------------------------------------- EER


@pytest.mark.parametrize(
    "genuine,impostor,want",
    [
        ([0.9, 0.8], [0.1, 0.2], 0.0),  # separated
        ([0.1, 0.2], [0.9, 0.8], 1.0),  # reversed
        ([0.9, 0.5], [0.6, 0.1], 0.5),  # crossing exactly at an operating point (t = 0.6: FAR = FRR = 1/2)
        # t=0.8: FAR 0, FRR 1/3; t=0.5: FAR 1/2, FRR 1/3 -> FRR flat at 1/3, crossing at 1/3
        ([0.9, 0.8, 0.3], [0.5, 0.2], 1 / 3),
        # t=0.7: (FAR 0, FRR 1/2); t=0.6: (FAR 1/2, FRR 1/2): equal at an operating point
        ([0.7, 0.4], [0.6, 0.5], 0.5),
        # t=0.9: (0, 1/2); t=0.4: (1, 0): d goes -1/2 -> 1, s = 1/3, EER = 1/3
        ([0.9, 0.4], [0.4], 1 / 3),
        ([0.5, 0.5], [0.5, 0.5], 0.5),  # all tied: one operating point besides "accept nothing"
    ],
    ids=["separated", "reversed", "exact", "flat-frr", "step", "tie-interpolated", "all-tied"],
)
def test_eer_hand_cases(genuine, impostor, want):
    assert V.equal_error_rate(np.array(genuine), np.array(impostor)) == pytest.approx(want)


def test_eer_matches_an_independent_roc_interpolation():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    for trial in range(40):
        n_g, n_i = rng.integers(5, 200, size=2)
        g = np.round(rng.normal(1.0, 1.0, n_g), 1)  # rounding makes ties
        i = np.round(rng.normal(0.0, 1.0, n_i), 1)
        fpr, tpr, _ = roc_curve(np.r_[np.ones(n_g), np.zeros(n_i)], np.r_[g, i], drop_intermediate=False)
        fnr = 1 - tpr
        d = fpr - fnr
        k = np.flatnonzero(d >= 0)[0]
        s = 0.0 if d[k] == 0 else -d[k - 1] / (d[k] - d[k - 1])
        want = fpr[k] if d[k] == 0 else fpr[k - 1] + s * (fpr[k] - fpr[k - 1])
        assert V.equal_error_rate(g, i) == pytest.approx(want, abs=1e-12), trial


def test_eer_rejects_empty_or_nan():
    with pytest.raises(ValueError, match="genuine and impostor"):
        V.equal_error_rate(np.array([]), np.array([0.1]))
    with pytest.raises(ValueError, match="finite"):
        V.equal_error_rate(np.array([np.nan]), np.array([0.1]))


def test_verification_trials():
    spk = np.array([0, 0, 1, 1, 1, 2])
    gen, imp = V.verification_trials(spk, n_impostor=1000, seed=0)
    assert sorted(map(tuple, gen)) == [(0, 1), (2, 3), (2, 4), (3, 4)]
    assert len(imp) == 15 - 4 and all(spk[a] != spk[b] and a < b for a, b in imp)
    gen2, imp2 = V.verification_trials(spk, n_impostor=5, seed=7)
    assert len(imp2) == 5 and len({tuple(p) for p in imp2}) == 5
    np.testing.assert_array_equal(imp2, V.verification_trials(spk, n_impostor=5, seed=7)[1])


# ------------------------------------------------------------------------------------- the CNN


def _toy_speakers(n_spk: int, n_calls: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Harmonic "voices": a pitch and a formant-like spectral tilt per speaker, random phrasing
    (pitch contour, loudness, noise) per call. Enough structure to learn from, no espeak."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(1.2 * SR)) / SR
    audio, labels = [], []
    for s in range(n_spk):
        f0, tilt, formant = rng.uniform(90, 260), rng.uniform(0.3, 1.5), rng.uniform(500, 2500)
        for _ in range(n_calls):
            contour = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 6)))
            phase = 2 * np.pi * np.cumsum(contour) / SR
            x = sum((h ** -tilt) * (1 + 2 * np.exp(-((h * f0 - formant) / 300) ** 2)) * np.sin(h * phase)
                    for h in range(1, int(3800 / f0)))
            x = x / np.abs(x).max() * rng.uniform(0.2, 0.8) + rng.normal(0, 0.01, len(t))
            audio.append(x.astype(np.float32))
            labels.append(s)
    return audio, np.array(labels)


def test_triplet_training_reduces_the_loss():
    torch = pytest.importorskip("torch")
    from jobs.train_voiceprint import train_steps

    audio, labels = _toy_speakers(8, 4, seed=0)
    feats = [A.logmel_features(a) for a in audio]
    torch.manual_seed(0)
    model = V.build_cnn(V.CnnConfig())
    losses = train_steps(model, feats, labels, steps=30, p_speakers=8, k_calls=4, crop_frames=80, lr=3e-3, seed=0)
    assert len(losses) == 30 and all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.5 * first, (first, last)


def test_batch_hard_loss_by_hand():
    torch = pytest.importorskip("torch")
    # points on the unit circle: a, a' (label 0) at angles 0 and 0.2; b (label 1) at angle 0.6
    ang = torch.tensor([0.0, 0.2, 0.6])
    emb = torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    lab = torch.tensor([0, 0, 1])
    chord = lambda a: 2 * np.sin(a / 2)  # noqa: E731  distance between unit vectors `a` radians apart
    loss, frac = V.batch_hard_triplet_loss(emb, lab, margin=0.3)
    # anchor 0: pos 0.2 rad, neg 0.6 rad (satisfied); anchor 1: pos 0.2, neg 0.4 (violated);
    # anchor 2: no positive (d_pos 0), neg 0.4 rad = 0.397 > margin (satisfied)
    want = np.mean([max(0, chord(0.2) - chord(0.6) + 0.3), max(0, chord(0.2) - chord(0.4) + 0.3),
                    max(0, 0 - chord(0.4) + 0.3)])
    assert want > 0.03
    assert loss.item() == pytest.approx(want, abs=1e-6)
    assert frac.item() == pytest.approx(1 / 3)


@pytest.fixture
def small_model_dir(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(5)
    cnn = V.CnnConfig(channels=(8, 8, 16, 16), emb_dim=32)
    model = V.build_cnn(cnn)
    with torch.no_grad():  # non-trivial batch-norm statistics, so a load that drops them shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    version = V.save_model(tmp_path / "m", model, cnn, A.LogMelConfig(), extra={"valid_eer": 0.5})
    model.eval()
    return tmp_path / "m", model, version


def test_save_load_round_trip_gives_identical_vectors(small_model_dir):
    import torch

    folder, model, version = small_model_dir
    emb = V.VoiceprintEmbedder(str(folder), allow_cuda=False)
    assert isinstance(emb, Embedder)
    assert (emb.model_id, emb.modality, emb.dim, emb.device, emb.model_version) == ("voice-cnn", "voice", 32, "cpu", version)
    assert json.loads((folder / "config.json").read_text())["training"] == {"valid_eer": 0.5}
    audio, _ = _toy_speakers(2, 2, seed=1)
    feats = [A.logmel_features(a) for a in audio]
    # the loaded model gives bit-identical vectors to the one that was saved
    np.testing.assert_array_equal(emb.embed_batch(audio), V.embed_logmel(model, feats))
    with torch.inference_mode():  # and those are the network's own outputs
        direct = model(torch.from_numpy(np.stack(feats))).numpy()
    np.testing.assert_allclose(emb.embed_batch(audio), direct, atol=1e-6)
    # a reload is the same model: same version, same vectors
    again = V.VoiceprintEmbedder(str(folder), allow_cuda=False)
    assert again.model_version == version
    np.testing.assert_array_equal(again.embed_batch(audio), emb.embed_batch(audio))


def test_embeddings_are_unit_length_deterministic_and_length_independent_of_batching(small_model_dir):
    folder, _, _ = small_model_dir
    emb = V.VoiceprintEmbedder(str(folder), allow_cuda=False)
    rng = np.random.default_rng(4)
    items = [rng.normal(0, 0.1, n).astype(np.float32) for n in (8000, 12000, 8000, 30000, 300)]
    out = emb.embed_batch(items)
    assert out.shape == (5, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(out, emb.embed_batch(items))
    # one at a time gives the same vectors as the batch (items of equal length are batched)
    single = np.concatenate([emb.embed_batch([x]) for x in items])
    np.testing.assert_allclose(single, out, atol=1e-6)


def test_weights_change_the_version(small_model_dir, tmp_path):
    import torch

    folder, model, version = small_model_dir
    with torch.no_grad():
        model.embed.bias.add_(0.01)
    assert V.save_model(tmp_path / "m2", model, V.CnnConfig(channels=(8, 8, 16, 16), emb_dim=32), A.LogMelConfig()) != version


def test_missing_model_folder_names_it(tmp_path):
    pytest.importorskip("torch")
    missing = tmp_path / "no-such-model"
    with pytest.raises(V.ModelFolderError, match="no-such-model.*does not exist"):
        V.VoiceprintEmbedder(str(missing))
    missing.mkdir()
    (missing / "config.json").write_text("{}")
    with pytest.raises(V.ModelFolderError, match="no-such-model.*lacks model.pt"):
        V.VoiceprintEmbedder(str(missing))


# ------------------------------------------------------------------------------------- decoding / baseline


def test_decode_wav_mono_stereo_resampled_and_bad_bytes():
    x = _tone(440, 1.0, amp=0.3)
    mono = V.decode_wav(_wav_bytes(x))
    assert mono.dtype == np.float32 and len(mono) == SR
    np.testing.assert_allclose(mono, x, atol=1 / 32768)
    np.testing.assert_allclose(V.decode_wav(_wav_bytes(x, channels=2)), mono)
    up = V.decode_wav(_wav_bytes(_tone(440, 1.0, amp=0.3, sr=16000), sr=16000))
    assert len(up) == SR and np.abs(up[200:-200] - x[200:-200]).max() < 0.01
    # 24-bit PCM: the same samples, 256 times finer
    pcm24 = np.round(x * 8388607).astype(np.int32)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(SR)
        w.writeframes(np.stack([pcm24 & 255, (pcm24 >> 8) & 255, (pcm24 >> 16) & 255], axis=1).astype(np.uint8).tobytes())
    np.testing.assert_allclose(V.decode_wav(buf.getvalue()), x, atol=1e-6)
    assert V.decode_wav(b"not a wav at all") is None
    assert V.decode_wav(_wav_bytes(x[:1000])) is None  # 0.125 s: too short for a voiceprint


def test_mfcc_baseline_embedder():
    emb = V.MfccStatsEmbedder()
    assert isinstance(emb, Embedder) and emb.dim == 38
    audio, labels = _toy_speakers(6, 3, seed=2)
    out = emb.embed_batch(audio)
    assert out.shape == (18, 38)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    # on these toy voices even the baseline separates speakers better than chance
    assert V.speaker_eer(out, labels)["eer"] < 0.4

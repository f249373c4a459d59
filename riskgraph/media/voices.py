"""Simulated verification-call recordings: one voice per speaker, telephone channel per call.

The fraud pattern: a lender phones every applicant to confirm the application. In a gang, one
intermediary answers many of those calls (the members' phones are his, or he coaches them
on speaker), so the same voice turns up on many applicants' calls; honest applicants speak for
themselves. A voiceprint model must therefore match a *speaker* across calls whose wording,
speaking rate, handset level, background noise and clipping all differ.

How a call is made (all pure functions of the speaker, the text and a seeded generator)::

    espeak-ng (formant synthesis: language voice + variant, pitch, pitch range, rate)
      | sox   (speaker timbre: formant shift by resampling, two vocal-tract resonances,
      |        slight roughness; the speaker's own handset EQ; resample to 8 kHz)
    numpy   (per call: pick-up delay, microphone tilt, background noise at 8-30 dB SNR,
             occasional ADC clipping, telephone band-pass 300-3400 Hz, level, int16)

The band-pass comes last, after noise and clipping, because that is where a telephone codec
filters (ITU-T G.712 channel mask); noise and clipping harmonics added before it are
band-limited like the speech. The formant shift is the classic resampling trick: sox ``speed f``
scales every frequency - formants and pitch - by ``f`` (a shorter or longer vocal tract), and
espeak's rate is divided by ``f`` beforehand so that the speaking rate stays the speaker's.

Speaker vs call: ``Speaker`` holds everything that stays with a person across calls (voice,
timbre, their phone's EQ); ``CallChannel`` holds what changes per call and is drawn by
``draw_call_channel(rng)`` without looking at the speaker, so nuisance cannot leak identity.
Neighbouring speaker parameters sound alike (all but the voice/variant are continuous), so
thousands of ``speaker_from_seed`` speakers are separable by a speaker encoder, not trivially.

Determinism: espeak-ng and sox are deterministic (sox runs with ``-R``, float output, so no
dither); the same espeak-ng/sox build, speaker, text and seed give the same samples. Different
espeak-ng versions may render slightly different audio. Cost on the 2-core dev box (loaded):
~35-45 ms CPU per 4 s clip, ~75% of it in the two subprocesses (see ``synthesize_calls``).

Requires Debian's ``espeak-ng`` and ``sox`` on PATH (``apt-get install espeak-ng sox``).
"""
from __future__ import annotations

import io
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np
from scipy.fft import irfft, rfft, rfftfreq
from scipy.signal import butter, sosfilt

from riskgraph.media.texts import number_to_words

__all__ = [
    "Speaker",
    "CallChannel",
    "speaker_from_seed",
    "draw_call_channel",
    "call_script",
    "speak",
    "apply_call_channel",
    "synthesize_call",
    "synthesize_calls",
    "encode_wav",
    "decode_wav",
    "ACCENTS",
    "MALE_VARIANTS",
    "FEMALE_VARIANTS",
    "SNR_RANGE_DB",
    "CLIP_PROBABILITY",
]

_SPEAKER_SALT = 0x5BEA_0001
_CALL_SALT = 0x5BEA_0002

# espeak-ng language voices that read English text: English accents mostly, plus a few
# languages whose letter-to-sound rules read Latin script acceptably (a foreign accent).
# "en" is British English: espeak-ng 1.51 silently ignores the variant of "en-gb+<variant>".
ACCENTS: tuple[tuple[str, float], ...] = (
    ("en-us", 0.16), ("en", 0.14), ("en-gb-scotland", 0.08), ("en-gb-x-rp", 0.1),
    ("en-gb-x-gbclan", 0.08), ("en-gb-x-gbcwmd", 0.08), ("en-029", 0.08), ("en-us-nyc", 0.1),
    ("nl", 0.04), ("de", 0.03), ("af", 0.04), ("id", 0.04), ("ms", 0.03),
)
# espeak-ng voice variants (``espeak-ng --voices=variant``, File column without ``!v/``) that
# sound like a person: the robots, whisper, "Demonic" and announcer variants are left out.
MALE_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "adam", "Alex", "Andy", "antonio",
    "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene",
    "Gene2", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john",
    "kaukovalta", "Lee", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel",
    "Mike", "Nguyen", "pablo", "paul", "pedro", "quincy", "rob", "robert", "AnxiousAndy",
    "grandpa", "klatt", "klatt2", "klatt3", "klatt4", "klatt6", "norbert", "sandro", "shelby",
    "travis", "victor", "zac", "croak",
)
FEMALE_VARIANTS: tuple[str, ...] = (
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "aunty", "belinda", "linda",
    "steph", "steph2", "steph3", "anika", "grandma",
)

_ESPEAK_RATE = 22050  # espeak-ng's native output rate


def _require_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not on PATH: apt-get install espeak-ng sox")


# --------------------------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Speaker:
    """One person's voice, as it sounds on their own phone.

    ``voice``: espeak-ng language voice (accent), e.g. ``en-us``; ``variant``: espeak-ng variant
    file (``m3``, ``f2``, ``klatt4`` ...); ``pitch``: espeak ``-p`` 0-99; ``pitch_range``:
    intonation range, percent of the voice's default (SSML ``prosody range``); ``speed_wpm``:
    speaking rate in words per minute; ``word_gap``: espeak ``-g`` pause between words, in
    10 ms units; ``formant_shift``: factor on all frequencies (vocal-tract length; > 1 sounds
    smaller); ``resonances``: sox ``equalizer`` bands ``(Hz, Q, dB)`` colouring the voice;
    ``roughness_db``: sox ``overdrive`` gain (a slightly rough, pressed voice);
    ``handset_highpass_hz`` / ``handset_lowpass_hz`` / ``handset_peak`` ``(Hz, Q, dB)``: the
    frequency response of the speaker's own handset microphone.
    """

    voice: str
    variant: str
    pitch: int
    pitch_range: int
    speed_wpm: int
    word_gap: int
    formant_shift: float
    resonances: tuple[tuple[float, float, float], ...]
    roughness_db: float
    handset_highpass_hz: float
    handset_lowpass_hz: float
    handset_peak: tuple[float, float, float]

    def __post_init__(self) -> None:
        checks = {
            "pitch": 0 <= self.pitch <= 99,
            "pitch_range": 0 <= self.pitch_range <= 300,
            "speed_wpm": 80 <= self.speed_wpm <= 400,
            "word_gap": 0 <= self.word_gap <= 20,
            "formant_shift": 0.7 <= self.formant_shift <= 1.4,
            "roughness_db": 0 <= self.roughness_db <= 20,
            "handset_highpass_hz": 20 <= self.handset_highpass_hz < self.handset_lowpass_hz,
            "handset_lowpass_hz": self.handset_lowpass_hz <= 3900,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"Speaker fields out of range: {bad} in {self}")

    @property
    def espeak_voice(self) -> str:
        """The ``-v`` argument of espeak-ng, ``language+variant``."""
        return f"{self.voice}+{self.variant}"


def speaker_from_seed(seed: int) -> Speaker:
    """A reproducible speaker: the same non-negative ``seed`` always gives the same ``Speaker``.

    Gender is drawn 50/50 (then a variant of that gender), the accent by ``ACCENTS`` weights;
    every other field is continuous, so speakers with close parameters sound alike.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    rng = np.random.default_rng([int(seed), _SPEAKER_SALT])
    names = [a for a, _ in ACCENTS]
    weights = np.array([w for _, w in ACCENTS])
    voice = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    female = rng.random() < 0.5
    variants = FEMALE_VARIANTS if female else MALE_VARIANTS
    variant = variants[int(rng.integers(len(variants)))]
    # espeak -p maps to fundamental frequency per variant: male variants at 35-85 give roughly
    # 85-150 Hz, female variants at 15-80 roughly 135-265 Hz (adult ranges; lower male
    # settings fall into creak below 70 Hz).
    pitch_lo, pitch_hi = (15, 80) if female else (35, 85)
    return Speaker(
        voice=voice,
        variant=variant,
        pitch=int(rng.integers(pitch_lo, pitch_hi + 1)),
        pitch_range=int(rng.integers(40, 161)),
        speed_wpm=int(np.clip(round(rng.normal(160.0, 18.0)), 120, 210)),
        word_gap=int(rng.choice([0, 1, 2], p=[0.7, 0.25, 0.05])),
        formant_shift=round(float(rng.uniform(0.9, 1.12)), 4),
        resonances=(
            (round(float(rng.uniform(300, 1000)), 1), round(float(rng.uniform(0.8, 2.0)), 2),
             round(float(rng.uniform(-6, 6)), 2)),
            (round(float(rng.uniform(1200, 3000)), 1), round(float(rng.uniform(1.0, 3.0)), 2),
             round(float(rng.uniform(-6, 6)), 2)),
        ),
        roughness_db=round(float(rng.uniform(0, 5)), 2),
        handset_highpass_hz=round(float(rng.uniform(150, 400)), 1),
        handset_lowpass_hz=round(float(rng.uniform(2800, 3800)), 1),
        handset_peak=(round(float(rng.uniform(800, 3000)), 1), round(float(rng.uniform(1, 4)), 2),
                      round(float(rng.uniform(-3, 8)), 2)),
    )


# --------------------------------------------------------------------------------------------
# Per-call nuisance
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CallChannel:
    """What changes from one call to the next, independent of who speaks.

    Delivery: ``pitch_delta`` (added to the speaker's espeak pitch), ``speed_factor`` and
    ``range_factor`` (mood, hurry). Recording: ``lead_s`` (silence before the first word),
    ``tilt_db_per_oct`` (microphone distance/angle: spectral tilt around 1 kHz), ``snr_db``
    (background noise, in-band, against active speech), ``noise_tilt_db_per_oct`` (0 white,
    -3 pink, -6 brown: street and room noise are low-heavy), ``clip_ratio`` (``None``, or the
    share of the peak at which the handset's converter saturates), ``level_dbfs`` (active
    speech level of the recording; telephone speech sits near -26 dBov, ITU-T P.56).
    """

    pitch_delta: int
    speed_factor: float
    range_factor: float
    lead_s: float
    tilt_db_per_oct: float
    snr_db: float
    noise_tilt_db_per_oct: float
    clip_ratio: float | None
    level_dbfs: float


SNR_RANGE_DB = (8.0, 30.0)
CLIP_PROBABILITY = 0.1


def draw_call_channel(rng: np.random.Generator) -> CallChannel:
    """Draw one call's nuisance from ``rng`` (a fixed number of draws, whatever the values)."""
    u = rng.random(10)
    return CallChannel(
        pitch_delta=int(np.floor(u[0] * 9)) - 4,                     # -4..4
        speed_factor=float(0.93 + 0.14 * u[1]),                      # +-7%
        range_factor=float(0.85 + 0.3 * u[2]),
        lead_s=float(0.05 + 0.45 * u[3]),
        tilt_db_per_oct=float(-2.0 + 4.0 * u[4]),
        snr_db=float(SNR_RANGE_DB[0] + (SNR_RANGE_DB[1] - SNR_RANGE_DB[0]) * u[5]),
        noise_tilt_db_per_oct=float(-6.0 * u[6]),
        clip_ratio=float(0.3 + 0.5 * u[8]) if u[7] < CLIP_PROBABILITY else None,
        level_dbfs=float(-32.0 + 14.0 * u[9]),                       # -32..-18 dBFS
    )


# --------------------------------------------------------------------------------------------
# What is said
# --------------------------------------------------------------------------------------------

_OPENERS = ("Hello, yes, this is me.", "Yes, speaking.", "Hello?", "Yes, hello.",
            "Yes, I can talk now.", "Hello, who is calling?", "Yes, go ahead.")
_CONFIRMS = ("Yes, I applied for the loan.", "Yes, I did apply for a loan on the app.",
             "That's right, I submitted the application {when}.", "Yes, the application is mine.",
             "Yes, I filled in the form {when}.", "Right, I applied {when}.")
_WHEN = ("yesterday", "this morning", "last night", "two days ago", "on Monday", "last week")
_AMOUNTS = ("The amount is {amount} yuan.", "I asked for {amount} yuan.",
            "It is {amount} yuan, over {term} months.", "About {amount} yuan.")
_PURPOSES = ("It is for {purpose}.", "The money is for {purpose}.", "I need it for {purpose}.",
             "Mainly for {purpose}.")
_CALL_PURPOSES = ("home renovation", "a new car", "my wedding", "school fees", "medical bills",
                  "furniture", "my shop", "a new phone", "travel", "home appliances", "the rent",
                  "my child's tuition", "stock for my stall", "car repairs", "a motorbike",
                  "daily expenses", "a computer", "my restaurant", "farm equipment",
                  "a family emergency")
_TERMS = ("I want to repay it over {term} months.", "{term_cap} monthly instalments is fine.",
          "I will pay every month, {term} months in total.")
_JOBS = ("I work as a {job}.", "I have worked there for {years} years.",
         "My monthly income is about {income} yuan.", "I am a {job}, my salary is paid monthly.")
_UNDERSTANDS = ("Yes, I understand the interest rate.", "I know the repayment date.",
                "Nobody asked me to apply, I applied myself.", "No, nobody else uses my phone.",
                "Yes, the bank card is in my own name.", "Yes, I read the contract.")
_CLOSINGS = ("Okay, thank you.", "Thank you, goodbye.", "Okay, no problem.", "Thanks, bye.")
_CALL_JOBS = ("driver", "cook", "factory worker", "shop owner", "nurse", "teacher", "waiter",
              "delivery rider", "sales manager", "mechanic", "farmer", "hairdresser")


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def call_script(rng: np.random.Generator) -> str:
    """What the applicant says on one verification call: 3-6 short English sentences that
    confirm the application, amount (in words), purpose, term, job or income, without names,
    addresses or any other personal data. Different on every call."""
    term = int(_pick(rng, (3, 6, 9, 12, 18, 24, 36)))
    slots = {
        "when": _pick(rng, _WHEN),
        "amount": number_to_words(int(rng.integers(2, 100)) * 1000),
        "purpose": _pick(rng, _CALL_PURPOSES),
        "term": number_to_words(term),
        "term_cap": number_to_words(term).capitalize(),
        "job": _pick(rng, _CALL_JOBS),
        "years": number_to_words(int(rng.integers(1, 15))),
        "income": number_to_words(int(rng.integers(3, 30)) * 1000),
    }
    sentences = []
    if rng.random() < 0.7:
        sentences.append(_pick(rng, _OPENERS))
    sentences.append(_pick(rng, _CONFIRMS))
    groups = (_AMOUNTS, _PURPOSES, _TERMS, _JOBS, _UNDERSTANDS)
    n_topics = int(rng.integers(2, 4))
    for g in rng.choice(len(groups), size=n_topics, replace=False):
        sentences.append(_pick(rng, groups[int(g)]))
    if rng.random() < 0.5:
        sentences.append(_pick(rng, _CLOSINGS))
    return " ".join(s.format(**slots) for s in sentences)


def _truncate_to_fit(text: str, words_per_s: float, max_seconds: float | None) -> str:
    """Drop whole trailing sentences that could not be heard within ``max_seconds``, so espeak
    does not synthesise speech that is cut off anyway. The sentence that crosses the budget
    is kept: espeak's pauses make real speech slower than the nominal words per minute, so
    what is kept still fills the recording."""
    if max_seconds is None:
        return text
    budget_words = max_seconds * words_per_s
    kept, n_words = [], 0
    for sentence in text.replace("? ", "?\n").replace(". ", ".\n").split("\n"):
        kept.append(sentence)
        n_words += len(sentence.split())
        if n_words >= budget_words:
            break
    return " ".join(kept)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _eq_args(bands) -> list[str]:
    out = []
    for hz, q, db in bands:
        out += ["equalizer", f"{hz:.1f}", f"{q:.2f}q", f"{db:.2f}"]
    return out


def speak(speaker: Speaker, text: str, *, sample_rate: int = 8000, pitch_delta: int = 0,
          speed_factor: float = 1.0, range_factor: float = 1.0,
          max_seconds: float | None = None) -> np.ndarray:
    """The speaker saying ``text`` on their own handset, before the telephone channel.

    Runs ``espeak-ng | sox`` (no temporary files). Returns float32 mono samples at
    ``sample_rate`` (nominally within [-1, 1]). ``pitch_delta``/``speed_factor``/
    ``range_factor`` are one call's delivery (see ``CallChannel``); ``max_seconds`` drops
    trailing sentences that would not fit anyway. Raises ``ValueError`` for empty text and
    ``RuntimeError`` if a tool fails.
    """
    if not text or not text.strip():
        raise ValueError("text is empty")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000 (300-3400 Hz channel), got {sample_rate}")
    _require_tools()
    wpm = speaker.speed_wpm * speed_factor
    text = _truncate_to_fit(text, wpm / 60.0, max_seconds)
    # sox `speed f` shortens the audio by f, so espeak speaks at wpm / f to keep the tempo.
    espeak_wpm = int(np.clip(round(wpm / speaker.formant_shift), 80, 450))
    pitch = int(np.clip(speaker.pitch + pitch_delta, 0, 99))
    prange = int(np.clip(round(speaker.pitch_range * range_factor), 0, 300))
    ssml = f'<speak><prosody range="{prange}%">{escape(text)}</prosody></speak>'
    espeak_cmd = ["espeak-ng", "-m", "-z", "-v", speaker.espeak_voice, "-p", str(pitch),
                  "-s", str(espeak_wpm), "-g", str(speaker.word_gap), "--stdout", ssml]
    high = min(speaker.handset_lowpass_hz, 0.475 * sample_rate)
    sox_cmd = (
        ["sox", "-R", "-V1", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32",
         "-L", "-"]
        + ["gain", "-10"]  # headroom for the EQ boosts below; level is set per call later
        + ["speed", f"{speaker.formant_shift:.4f}", "rate", str(sample_rate)]
        + _eq_args(speaker.resonances)
        + ["overdrive", f"{speaker.roughness_db:.2f}", "10"]
        + ["highpass", f"{speaker.handset_highpass_hz:.1f}", "lowpass", f"{high:.1f}"]
        + _eq_args([speaker.handset_peak])
    )
    p1 = subprocess.Popen(espeak_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = subprocess.Popen(sox_cmd, stdin=p1.stdout, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    p1.stdout.close()  # sox owns the read end now; espeak gets SIGPIPE if sox dies
    out, err2 = p2.communicate()
    err1 = p1.stderr.read()
    p1.stderr.close()
    rc1 = p1.wait()
    if rc1 != 0 or p2.returncode != 0:
        raise RuntimeError(
            f"espeak-ng|sox failed (rc {rc1}/{p2.returncode}) for voice {speaker.espeak_voice}: "
            f"{err1.decode(errors='replace')} {err2.decode(errors='replace')}".strip())
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def _tilt(x: np.ndarray, db_per_oct: float, sample_rate: int) -> np.ndarray:
    """Spectral tilt of ``db_per_oct`` around 1 kHz (frequencies below 50 Hz held at 50 Hz)."""
    if db_per_oct == 0.0:
        return x
    f = rfftfreq(len(x), 1.0 / sample_rate)
    gain = 10.0 ** (db_per_oct * np.log2(np.maximum(f, 50.0) / 1000.0) / 20.0)
    return irfft(rfft(x) * gain, n=len(x))


_SOS_CACHE: dict[int, np.ndarray] = {}


def _telephone_band(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """300-3400 Hz band-pass (8th-order Butterworth each side: ~48 dB down at 150 Hz)."""
    sos = _SOS_CACHE.get(sample_rate)
    if sos is None:
        sos = butter(8, [300.0, 3400.0], btype="bandpass", fs=sample_rate, output="sos")
        _SOS_CACHE[sample_rate] = sos
    return sosfilt(sos, x)


def _active_power(x: np.ndarray, sample_rate: int) -> float:
    """Mean power over the frames that hold speech: 20 ms frames within 30 dB of the loud
    (95th-percentile) frames - a simplified ITU-T P.56 active level, so pauses and the
    pick-up silence do not dilute the speech level that SNR and loudness are set against."""
    hop = max(1, int(0.02 * sample_rate))
    n = len(x) // hop
    if n == 0:
        return float(np.mean(x ** 2)) if len(x) else 0.0
    e = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    ref = np.percentile(e, 95)
    if ref <= 0:
        return 0.0
    return float(np.mean(e[e >= ref * 1e-3]))


def apply_call_channel(speech: np.ndarray, channel: CallChannel, rng: np.random.Generator, *,
                       sample_rate: int = 8000, n_samples: int | None = None) -> np.ndarray:
    """Put clean speech (``speak`` output) through one call's channel and return int16 samples.

    ``n_samples``: length of the recording (default: lead + speech). The speech starts after
    ``channel.lead_s`` and is cut at the end; noise fills the whole recording. Steps: microphone
    tilt, background noise scaled to ``channel.snr_db`` in the telephone band, clipping at
    ``channel.clip_ratio`` of the peak (when set), 300-3400 Hz band-pass, active level set to
    ``channel.level_dbfs``, rounding to int16 (with saturation). ``rng`` draws the noise only.
    """
    lead = int(round(channel.lead_s * sample_rate))
    if n_samples is None:
        n_samples = lead + len(speech)
    x = np.zeros(n_samples, dtype=np.float64)
    body = speech[: max(0, n_samples - lead)]
    x[lead: lead + len(body)] = body
    x = _tilt(x, channel.tilt_db_per_oct, sample_rate)

    noise = _tilt(rng.standard_normal(n_samples), channel.noise_tilt_db_per_oct, sample_rate)
    p_speech = _active_power(_telephone_band(x, sample_rate), sample_rate)
    p_noise = float(np.mean(_telephone_band(noise, sample_rate) ** 2))
    k = np.sqrt(p_speech / (p_noise * 10.0 ** (channel.snr_db / 10.0))) if p_noise > 0 else 0.0
    y = x + k * noise

    if channel.clip_ratio is not None:
        limit = channel.clip_ratio * float(np.max(np.abs(y)))
        y = np.clip(y, -limit, limit)
    y = _telephone_band(y, sample_rate)

    p_active = _active_power(y, sample_rate)
    if p_active > 0:
        y = y * (10.0 ** (channel.level_dbfs / 20.0) / np.sqrt(p_active))
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)


def synthesize_call(speaker: Speaker, text: str, rng: np.random.Generator, *,
                    sample_rate: int = 8000, max_seconds: float = 4.0) -> np.ndarray:
    """One verification-call recording: ``speaker`` saying ``text`` over a telephone line.

    Draws the call's nuisance (``draw_call_channel``) and noise from ``rng``; nothing drawn
    depends on the speaker. Returns int16 mono samples at ``sample_rate``, exactly
    ``round(max_seconds * sample_rate)`` long: speech after a short pick-up delay, cut at the
    end or followed by line noise when the words run out.
    """
    channel = draw_call_channel(rng)
    speech = speak(speaker, text, sample_rate=sample_rate, pitch_delta=channel.pitch_delta,
                   speed_factor=channel.speed_factor, range_factor=channel.range_factor,
                   max_seconds=max_seconds)
    return apply_call_channel(speech, channel, rng, sample_rate=sample_rate,
                              n_samples=int(round(max_seconds * sample_rate)))


def _call_job(job: tuple[Speaker, str, int], sample_rate: int, max_seconds: float) -> np.ndarray:
    speaker, text, seed = job
    rng = np.random.default_rng([int(seed), _CALL_SALT])
    return synthesize_call(speaker, text, rng, sample_rate=sample_rate, max_seconds=max_seconds)


def synthesize_calls(jobs: list[tuple[Speaker, str, int]], *, workers: int = 2,
                     sample_rate: int = 8000, max_seconds: float = 4.0) -> list[np.ndarray]:
    """Many calls at once: ``jobs`` are ``(speaker, text, call_seed)`` with a non-negative
    ``call_seed`` per call; returns the recordings in job order.

    Threads suffice: each call spends most of its time waiting on the espeak-ng and sox
    subprocesses (the GIL is released), and each job seeds its own generator, so the result
    does not depend on ``workers`` or on scheduling.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [_call_job(j, sample_rate, max_seconds) for j in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda j: _call_job(j, sample_rate, max_seconds), jobs))


# --------------------------------------------------------------------------------------------
# WAV bytes
# --------------------------------------------------------------------------------------------

def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono PCM16 WAV bytes of ``samples`` (int16, or float in [-1, 1] which is scaled and
    saturated), written with the standard library ``wave`` module."""
    a = np.asarray(samples)
    if a.ndim != 1:
        raise ValueError(f"encode_wav takes mono 1-D samples, got shape {a.shape}")
    if a.dtype != np.int16:
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"encode_wav takes int16 or float samples, got {a.dtype}")
        a = np.clip(np.round(a * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(a.astype("<i2").tobytes())
    return buf.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int] | None:
    """``(int16 mono samples, sample rate)`` from WAV bytes, or ``None`` if they are not a PCM
    WAV file this reads (8-, 16-, 24- or 32-bit integer PCM; several channels are averaged)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ValueError, OSError):
        return None
    if channels < 1 or rate <= 0 or len(frames) % (channels * width):
        return None
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(frames, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(frames, dtype="<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16  # sign-extend, keep top 16
    elif width == 4:
        x = np.frombuffer(frames, dtype="<i4").astype(np.int64) >> 16
    else:
        return None
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return np.asarray(np.round(x), dtype=np.int16), int(rate)

"""Media ingest: each kind of bad media item is quarantined with exactly its reason, good items
are unaffected by bad ones in the same batch, counts reconcile, duplicate content keeps the
earliest item deterministically, blacklist phones get the applications' pseudonym, and no
raw phone reaches any output. Media files are made inline with OpenCV / wave / numpy."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph import schemas as S
from riskgraph.config import MediaIngest
from riskgraph.features import media_validation as MV
from riskgraph.features import validation as V
from riskgraph.pseudonym import hmac_python, pseudonym_key

DAY = "2026-06-02"
LIMITS = MediaIngest(max_bytes={"background": 60_000, "voice": 200_000, "text": 200}, min_image_px=16, max_image_px=512,
                     min_audio_seconds=1.0, max_audio_seconds=10.0, silence_dbfs=-50.0, min_text_chars=3)
PHONE = "+86 138-0000-0000"


# ------------------------------------------------------------------ media made inline
def _image(w: int, h: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def jpeg(w: int = 32, h: int = 24, seed: int = 0) -> bytes:
    ok, buf = cv2.imencode(".jpg", _image(w, h, seed), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def png(w: int = 32, h: int = 24, seed: int = 0) -> bytes:
    ok, buf = cv2.imencode(".png", _image(w, h, seed))
    assert ok
    return buf.tobytes()


def wav(seconds: float, amplitude: float, *, rate: int = 8000, freq: float = 400.0) -> bytes:
    """PCM16 mono sine; amplitude is a fraction of full scale."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return buf.getvalue()


# ------------------------------------------------------------------ probe (pure Python)
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_probe_of_a_2x3_image(fmt):
    img = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 10  # 2 rows, 3 columns
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", img)
    data = buf.tobytes()
    p = MV.probe_media(data, "selfie", LIMITS.model_copy(update={"min_image_px": 1}))
    assert p == MV.MediaProbe(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), format=fmt, width=3, height=2)
    assert MV.media_key(p.sha256) == "m:" + hashlib.sha256(data).hexdigest()[:32]


def test_probe_of_a_known_sine():
    """A sine of amplitude A has RMS A/sqrt(2): 0.5 → 20*log10(0.5/sqrt(2)) = -9.031 dBFS."""
    data = wav(2.0, 0.5)  # 400 Hz x 2 s = 800 whole cycles at 8 kHz
    p = MV.probe_media(data, "call", LIMITS)
    assert (p.format, p.duration_s, p.sample_rate, p.size_bytes, p.reason) == ("wav", 2.0, 8000, 44 + 2 * 16000, None)
    assert p.rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.005)
    assert p.sha256 == hashlib.sha256(data).hexdigest()


def test_probe_of_a_text():
    p = MV.probe_media("  Buy a used car \n".encode(), "purpose", LIMITS)
    assert (p.format, p.n_chars, p.reason) == ("text", 14, None)
    assert MV.probe_media("买车".encode("utf-8-sig") + "用于装修".encode(), "purpose", LIMITS).n_chars == 6


def _cut(data: bytes, n: int) -> bytes:
    return data[:n]


BAD_PROBES = {
    "missing": (None, "selfie", "missing_file"),
    "zero": (b"", "selfie", "zero_bytes"),
    "jpeg-truncated": (_cut(jpeg(), 600), "selfie", "undecodable"),
    "png-truncated": (_cut(png(), 500), "premises", "undecodable"),
    "wav-truncated": (_cut(wav(2.0, 0.5), 20_000), "call", "undecodable"),  # header promises 16,000 frames
    "wav-header-only": (_cut(wav(2.0, 0.5), 30), "call", "undecodable"),
    "binary-text": (b"\xff\xfe\x00\x01garbage", "purpose", "undecodable"),
    "wav-as-selfie": (wav(2.0, 0.5), "selfie", "wrong_kind:wav"),
    "jpeg-as-call": (jpeg(), "call", "wrong_kind:jpeg"),
    "text-as-photo": (b"a photo of my shop", "premises", "wrong_kind:text"),
    "gif-as-photo": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "id_photo", "wrong_kind:gif"),
    "jpeg-as-text": (jpeg()[:150], "purpose", "wrong_kind:jpeg"),  # the kind is known from the magic bytes
    "jpeg-as-long-text": (jpeg(), "purpose", "too_large:bytes=1375"),  # bytes over the limit are checked first
    "tiny-image": (jpeg(8, 40), "selfie", "too_small:px=8x40"),
    "huge-image": (png(600, 20), "premises", "too_large:px=600x20"),
    "too-many-bytes": (b"x" * 201, "purpose", "too_large:bytes=201"),
    "short-call": (wav(0.5, 0.5), "call", "too_short_audio:0.50"),
    "long-call": (wav(12.0, 0.5), "call", "too_large:seconds=12.00"),
    "quiet-call": (wav(2.0, 0.001), "call", "silent_audio:-63.0"),  # 20*log10(0.001/sqrt(2)) = -63.01
    "silent-call": (wav(2.0, 0.0), "call", "silent_audio:-inf"),
    "short-text": (b" ok \n", "purpose", "text_too_short"),
    "unknown-kind": (jpeg(), "video", "unknown_kind:video"),
}


@pytest.mark.parametrize("data,kind,reason", list(BAD_PROBES.values()), ids=list(BAD_PROBES))
def test_each_bad_file_gets_its_reason(data, kind, reason):
    p = MV.probe_media(data, kind, LIMITS)
    assert p.reason == reason
    assert p.size_bytes == (None if data is None else len(data))


def test_blacklist_sample_kinds_follow_their_modality():
    assert MV.probe_media(wav(2.0, 0.5), "blacklist_voice", LIMITS).reason is None
    assert MV.probe_media(jpeg(), "blacklist_background", LIMITS).reason is None
    assert MV.probe_media(jpeg(), "blacklist_voice", LIMITS).reason == "wrong_kind:jpeg"


def test_conf_media_limits_load(cfg_factory):
    m = cfg_factory().media
    assert set(m.max_bytes) == {"background", "voice", "text"} and m.silence_dbfs < 0


@pytest.mark.parametrize("through", ["open", "pyarrow.fs"])
def test_reader_hashes_streams_and_reports_missing_files(tmp_path, monkeypatch, through):
    """Both ways a task opens a file (plain open for local paths, pyarrow.fs for URIs with a
    scheme, exercised here with file:// URIs) give the same answers; a file over the limit
    is hashed as a stream and not returned."""
    data = jpeg(seed=41)
    p = _write(tmp_path, "a.jpg", data)
    reader = MV._Reader()
    if through == "pyarrow.fs":
        monkeypatch.setattr(reader, "_local", lambda uri: None)
    uri = f"file://{p}"
    assert reader.read(uri, 10**6) == (data, len(data), hashlib.sha256(data).hexdigest())
    assert reader.read(uri, 100) == (None, len(data), hashlib.sha256(data).hexdigest())
    assert reader.read(f"file://{tmp_path}/nope.jpg", 10**6) == (None, None, None)
    assert reader.read(f"file://{tmp_path}", 10**6) == (None, None, None)  # a folder is not a file
    assert MV.resolve_uri("raw/media/x.jpg", "/lake/") == "/lake/raw/media/x.jpg"
    assert MV.resolve_uri("s3://b/raw/x.jpg", "/lake") == "s3://b/raw/x.jpg"


# ------------------------------------------------------------------ Spark: refs → bronze/media + quarantine
def _ts(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 6, 2, hour, minute, tzinfo=dt.timezone.utc)


def _apps(spark, ids_times: dict[str, dt.datetime]):
    return spark.createDataFrame(sorted(ids_times.items()), "application_id string, application_ts timestamp")


def _refs(spark, rows: list[tuple]):
    return spark.createDataFrame([r + (DAY,) for r in rows], "application_id string, kind string, uri string, dt string")


def _write(folder: Path, name: str, data: bytes) -> str:
    p = folder / name
    p.write_bytes(data)
    return str(p)


GOOD_FILES = {  # (application, kind) → bytes
    ("A1", "selfie"): jpeg(seed=1),
    ("A1", "call"): wav(2.0, 0.5),
    ("A1", "purpose"): "装修房子 home renovation".encode(),
    ("A2", "id_photo"): png(seed=2),
    ("A2", "premises"): jpeg(64, 48, seed=3),
}


@pytest.fixture()
def media_batch(tmp_path):
    """Good refs and one bad ref of each kind, with their files."""
    d = tmp_path / "media"
    d.mkdir()
    good = [(a, k, _write(d, f"{a}_{k}.bin", b)) for (a, k), b in GOOD_FILES.items()]
    bad = {  # application_id → (kind, uri, expected reason); the duplicate's reason needs A1's selfie key
        "B-missing": ("selfie", str(d / "nope.jpg"), "missing_file"),
        "B-zero": ("selfie", _write(d, "zero.jpg", b""), "zero_bytes"),
        "B-trunc": ("selfie", _write(d, "trunc.jpg", jpeg(seed=4)[:700]), "undecodable"),
        "B-wavtrunc": ("call", _write(d, "trunc.wav", wav(2.0, 0.4)[:9000]), "undecodable"),
        "B-wrong": ("selfie", _write(d, "call.wav", wav(2.0, 0.3)), "wrong_kind:wav"),
        "B-small": ("id_photo", _write(d, "small.png", png(10, 10, seed=5)), "too_small:px=10x10"),
        "B-big": ("premises", _write(d, "big.png", png(520, 17, seed=6)), "too_large:px=520x17"),
        "B-bytes": ("premises", _write(d, "bytes.png", png(200, 200, seed=7)), None),  # reason set below
        "B-short": ("call", _write(d, "short.wav", wav(0.25, 0.5)), "too_short_audio:0.25"),
        "B-silent": ("call", _write(d, "silent.wav", wav(1.5, 0.0)), "silent_audio:-inf"),
        "B-text": ("purpose", _write(d, "short.txt", b"no"), "text_too_short"),
        "B-dup": ("selfie", _write(d, "copy.jpg", GOOD_FILES[("A1", "selfie")]), None),
        "B-kind": ("video", _write(d, "x.mp4", b"\x00\x00\x00\x18ftypmp42"), "unknown_kind:video"),
        "B-uri": ("selfie", "  ", "null_value:uri"),
        "B-orphan": ("selfie", _write(d, "orphan.jpg", jpeg(seed=8)), "orphan:application_id"),
    }
    size = len((d / "bytes.png").read_bytes())
    assert size > LIMITS.max_bytes["background"]
    bad["B-bytes"] = ("premises", bad["B-bytes"][1], f"too_large:bytes={size}")
    dup_key = MV.media_key(hashlib.sha256(GOOD_FILES[("A1", "selfie")]).hexdigest())
    bad["B-dup"] = ("selfie", bad["B-dup"][1], f"duplicate_content:{dup_key}")
    times = {a: _ts(9) for a, _k, _u in good} | {a: _ts(10) for a in bad if a != "B-orphan"}
    return good, bad, times


def test_each_bad_item_is_quarantined_and_good_items_are_unaffected(spark, media_batch):
    good, bad, times = media_batch
    apps = _apps(spark, times)
    bad_rows = [(a, k, u) for a, (k, u, _r) in bad.items()] + [("", "selfie", good[0][2])]  # + a ref without application
    mixed = MV.media_ref_items(_refs(spark, good + bad_rows), applications=apps)
    probed = MV.probe_media_items(mixed, limits=LIMITS, read_partitions=3).persist()  # read the files once
    kept, q = MV.split_media(MV.flag_duplicate_content(probed))

    expected_q = [(a, r) for a, (_k, _u, r) in bad.items()] + [("", "null_key:application_id")]
    got_q = q.select(F.get_json_object("record", "$.application_id").alias("application_id"), "reason")
    assertDataFrameEqual(got_q, spark.createDataFrame(expected_q, "application_id string, reason string"))
    assert {r["source"] for r in q.select("source").distinct().collect()} == {"media"}
    # reconciliation: refs in = kept + quarantined
    assert kept.count() + q.count() == len(good) + len(bad_rows)

    # the good items' rows are byte-identical to those of a batch without any bad item
    alone = MV.media_ref_items(_refs(spark, good), applications=apps)
    kept_alone, q_alone = MV.validate_media(alone, limits=LIMITS)
    kept_alone, q_alone = kept_alone.persist(), q_alone.persist()
    assert q_alone.count() == 0
    assertDataFrameEqual(kept, kept_alone)
    assert kept.schema == kept_alone.schema and [f.name for f in kept.schema] == [c.name for c in S.BRONZE_MEDIA]

    # and they hold what the Python probe says about each file
    rows = []
    for a, k, u in good:
        p = MV.probe_media(Path(u).read_bytes(), k, LIMITS)
        rows.append((MV.media_key(p.sha256, kind=k, application_id=a), a, None, k, S.MEDIA_KINDS[k], u, p.size_bytes, p.sha256, p.format, p.width,
                     p.height, p.duration_s, p.sample_rate, p.n_chars, times[a], DAY))
    assertDataFrameEqual(kept, spark.createDataFrame(rows, S.struct(S.BRONZE_MEDIA)))


def test_quarantine_record_is_the_reference_plus_size_and_hash(spark, media_batch):
    good, bad, times = media_batch
    k, u, _ = bad["B-silent"]
    items = MV.media_ref_items(_refs(spark, [("B-silent", k, u), ("B-missing",) + bad["B-missing"][:2]]), applications=_apps(spark, times))
    _, q = MV.validate_media(items, limits=LIMITS)
    recs = {json.loads(r["record"])["application_id"]: json.loads(r["record"]) for r in q.collect()}
    data = Path(u).read_bytes()
    assert recs["B-silent"] == {"application_id": "B-silent", "kind": "call", "uri": u, "size_bytes": len(data),
                                "content_sha256": hashlib.sha256(data).hexdigest()}
    assert recs["B-missing"] == {"application_id": "B-missing", "kind": "selfie", "uri": bad["B-missing"][1]}


def test_duplicate_content_keeps_the_earliest_deterministically(spark, tmp_path):
    data = jpeg(seed=11)
    key = MV.media_key(hashlib.sha256(data).hexdigest())
    uris = {a: _write(tmp_path, f"{a}.jpg", data) for a in ("A1", "A2", "A3")}
    times = {"A1": _ts(10), "A2": _ts(9), "A3": _ts(9)}  # A2 and A3 tie on time: application_id decides
    rows = [(a, "selfie", uris[a]) for a in ("A1", "A2", "A3")]

    def run(order, parts):
        items = MV.media_ref_items(_refs(spark, order), applications=_apps(spark, times))
        kept, q = MV.validate_media(items, limits=LIMITS, read_partitions=parts)
        return kept, q.select(F.get_json_object("record", "$.application_id").alias("application_id"), "reason",
                              F.get_json_object("record", "$.duplicate_of.application_id").alias("kept_one"))

    kept, q = run(rows, 1)
    assert [r["application_id"] for r in kept.collect()] == ["A2"]
    assertDataFrameEqual(q, spark.createDataFrame([("A1", f"duplicate_content:{key}", "A2"), ("A3", f"duplicate_content:{key}", "A2")],
                                                  "application_id string, reason string, kept_one string"))
    kept2, q2 = run(list(reversed(rows)), 3)
    assertDataFrameEqual(kept2, kept)
    assertDataFrameEqual(q2, q)

    # content already in bronze/media from an earlier date: every copy in this run is a duplicate of it
    existing = spark.createDataFrame([(key, "A0", None, "selfie", "2026-06-01")],
                                     "media_key string, application_id string, blacklist_entry_id string, kind string, dt string")
    items = MV.media_ref_items(_refs(spark, rows), applications=_apps(spark, times))
    kept3, q3 = MV.validate_media(items, limits=LIMITS, existing=existing)
    assert kept3.count() == 0
    assert sorted((json.loads(r["record"])["duplicate_of"]["application_id"], r["reason"]) for r in q3.collect()) == \
        [("A0", f"duplicate_content:{key}")] * 3



def test_identical_texts_of_strangers_are_both_kept_with_their_own_keys(spark, tmp_path):
    """Strangers write the same short purpose ("home renovation"): not a duplicate upload, and
    each text keeps a key of its own (a text's key hashes its owner and kind with the content)."""
    uris = {a: _write(tmp_path, f"{a}.txt", "home renovation".encode()) for a in ("A1", "A2")}
    items = MV.media_ref_items(_refs(spark, [(a, "purpose", uris[a]) for a in ("A1", "A2")]),
                               applications=_apps(spark, {"A1": _ts(9), "A2": _ts(10)}))
    kept, q = MV.validate_media(items, limits=LIMITS)
    rows = sorted((r["application_id"], r["media_key"], r["content_sha256"]) for r in kept.collect())
    assert [r[0] for r in rows] == ["A1", "A2"] and q.count() == 0
    assert rows[0][2] == rows[1][2] and rows[0][1] != rows[1][1]
    assert [k for _, k, _ in rows] == [MV.media_key(sha, kind="purpose", application_id=a) for a, _, sha in rows]
    assert all(k.startswith("m:") and len(k) == 34 for _, k, _ in rows)

# ------------------------------------------------------------------ blacklists
def _raw_bl(spark, rows):
    return spark.createDataFrame([r + (DAY,) for r in rows], "entry_id string, kind string, value string, uri string, added_ts string, dt string")


def test_blacklists_are_typed_pseudonymised_and_their_samples_probed(spark, tmp_path):
    key = pseudonym_key()
    voice = _write(tmp_path, "voice.wav", wav(2.0, 0.3))
    room = _write(tmp_path, "room.jpg", jpeg(seed=21))
    raw = _raw_bl(spark, [
        ("E1", "phone", PHONE, "", "2026-06-02T08:00:00Z"),
        ("E2", "DEVICE", " dev-9 ", "", "2026-06-02T08:00:00Z"),
        ("E3", "voice", "", voice, "2026-06-02T08:00:00Z"),
        ("E4", "background", "", room, "2026-06-02T08:00:00Z"),
        ("E5", "background", "", str(tmp_path / "gone.jpg"), "2026-06-02T08:00:00Z"),
        ("E6", "email", "x@y.z", "", "2026-06-02T08:00:00Z"),
        ("E7", "phone", "+86 139-1111-2222", "", "yesterday"),
        ("E8", "phone", "", "", "2026-06-02T08:00:00Z"),
        ("E9", "phone", "n/a", "", "2026-06-02T08:00:00Z"),
        ("E10", "voice", "", "", "2026-06-02T08:00:00Z"),
        ("E11", "device", "dev-1", "", "2026-06-05T08:00:00Z"),
        ("", "device", "dev-2", "", "2026-06-02T08:00:00Z"),
        ("E1", "phone", "+86 137-3333-4444", "", "2026-06-02T09:00:00Z"),  # later copy of E1's id
    ])
    bl = MV.validate_blacklists(raw, key=key, future_tolerance_minutes=10)
    bl = V.flag_duplicates(bl, keys=["entry_id"], order_by=["added_ts", S.DT])
    flagged = MV.flag_duplicate_content(MV.probe_media_items(MV.blacklist_media_items(bl), limits=LIMITS))
    kept_media, q_media = MV.split_media(flagged)
    good, bad = V.split_valid(MV.attach_blacklist_media(bl, flagged), source="blacklists",
                              bronze_columns=[c.name for c in S.BRONZE_BLACKLISTS])

    voice_key = MV.media_key(hashlib.sha256(Path(voice).read_bytes()).hexdigest())
    room_key = MV.media_key(hashlib.sha256(Path(room).read_bytes()).hexdigest())
    added = _ts(8)
    assertDataFrameEqual(good, spark.createDataFrame([
        ("E1", "phone", hmac_python("8613800000000", key), None, added, DAY),
        ("E2", "device", "dev-9", None, added, DAY),
        ("E3", "voice", None, voice_key, added, DAY),
        ("E4", "background", None, room_key, added, DAY),
    ], "entry_id string, kind string, value_key string, media_key string, added_ts timestamp, dt string"))
    got_bad = bad.select(F.get_json_object("record", "$.entry_id").alias("entry_id"), "reason")
    assertDataFrameEqual(got_bad, spark.createDataFrame([
        ("E5", "bad_sample:missing_file"), ("E6", "unknown_kind:email"), ("E7", "bad_timestamp:added_ts"),
        ("E8", "null_value:value"), ("E9", "bad_value:value"), ("E10", "null_value:uri"), ("E11", "future_ts:added_ts"),
        ("", "null_key:entry_id"), ("E1", "duplicate_id:entry_id"),
    ], "entry_id string, reason string"))
    assert good.count() + bad.count() == raw.count()
    # the samples are media items of their own
    assertDataFrameEqual(kept_media.select("media_key", "blacklist_entry_id", "kind", "modality", "item_ts"), spark.createDataFrame([
        (voice_key, "E3", "blacklist_voice", "voice", added), (room_key, "E4", "blacklist_background", "background", added),
    ], "media_key string, blacklist_entry_id string, kind string, modality string, item_ts timestamp"))
    assertDataFrameEqual(q_media.select("reason", F.get_json_object("record", "$.blacklist_entry_id").alias("e")),
                         spark.createDataFrame([("missing_file", "E5")], "reason string, e string"))

    # no raw phone number in any output row, in any of its spellings
    for df in (good, bad, kept_media, q_media):
        for row in df.toJSON().collect():
            assert not any(_raw_phone_in(row, p) for p in (PHONE, "+86 139-1111-2222", "+86 137-3333-4444")), row


def _raw_phone_in(text: str, phone: str) -> bool:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return phone in text or digits in text or digits[2:] in text or phone.split(" ", 1)[1] in text


def test_blacklist_phone_key_equals_the_applications_phone_key(spark):
    """The same number, written differently, gets the same pseudonym in both tables."""
    key = pseudonym_key()
    app = {c.name: "" for c in S.RAW_APPLICATIONS} | dict(application_id="A1", applicant_id="P1",
                                                          application_ts=f"{DAY}T09:00:00Z", phone=PHONE)
    cols = [c.name for c in S.RAW_APPLICATIONS]
    raw_apps = spark.createDataFrame([tuple(app[c] for c in cols) + (DAY,)], ", ".join(f"{c} string" for c in cols + [S.DT]))
    apps = V.validate_applications(raw_apps, key=key, future_tolerance_minutes=10, gps_grid_m=150)
    bl = MV.validate_blacklists(_raw_bl(spark, [("E1", "phone", "8613800000000", "", "2026-06-02T08:00:00Z"),
                                                ("E2", "phone", "(86) 13800000000", "", "2026-06-02T08:00:00Z")]),
                                key=key, future_tolerance_minutes=10)
    phone_key = apps.first()["phone_key"]
    assert phone_key == hmac_python("8613800000000", key)
    assert [r["value_key"] for r in bl.orderBy("entry_id").collect()] == [phone_key, phone_key]


def test_the_key_never_enters_the_blacklist_plan(spark):
    import hashlib as h

    key = pseudonym_key()
    k = (h.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    secrets = [key.decode(), key.hex(), bytes(b ^ 0x36 for b in k).hex(), bytes(b ^ 0x5C for b in k).hex()]
    bl = MV.validate_blacklists(_raw_bl(spark, [("E1", "phone", PHONE, "", "2026-06-02T08:00:00Z")]), key=key,
                                future_tolerance_minutes=10)
    plan = bl._jdf.queryExecution().toString()
    assert "pseudonym" in plan
    assert not any(x.lower() in plan.lower() for x in secrets)


def test_a_blacklist_sample_that_repeats_an_application_item_keeps_its_key(spark, tmp_path):
    """A lender blacklists the voice of an earlier fraud call: the call is kept (earlier), the
    sample is quarantined as its duplicate, and the entry still points at the content's key."""
    data = wav(2.0, 0.4)
    u = _write(tmp_path, "call.wav", data)
    key = MV.media_key(hashlib.sha256(data).hexdigest())
    bl = MV.validate_blacklists(_raw_bl(spark, [("E1", "voice", "", u, "2026-06-02T12:00:00Z")]), key=pseudonym_key(),
                                future_tolerance_minutes=10)
    items = MV.media_ref_items(_refs(spark, [("A1", "call", u)]), applications=_apps(spark, {"A1": _ts(9)})) \
        .unionByName(MV.blacklist_media_items(bl))
    flagged = MV.flag_duplicate_content(MV.probe_media_items(items, limits=LIMITS))
    kept, q = MV.split_media(flagged)
    assert [(r["application_id"], r["media_key"]) for r in kept.collect()] == [("A1", key)]
    assert [r["reason"] for r in q.collect()] == [f"duplicate_content:{key}"]
    good, bad = V.split_valid(MV.attach_blacklist_media(bl, flagged), source="blacklists",
                              bronze_columns=[c.name for c in S.BRONZE_BLACKLISTS])
    assert [(r["entry_id"], r["media_key"]) for r in good.collect()] == [("E1", key)] and bad.count() == 0


def test_reason_class_drops_unbounded_details(spark):
    df = spark.createDataFrame([("too_large:bytes=9000;orphan:application_id",), ("duplicate_content:m:ab",), ("missing_file",)], "reason string")
    assert [r[0] for r in df.select(MV.reason_class(F.col("reason"))).collect()] == \
        ["orphan:application_id;too_large", "duplicate_content", "missing_file"]


# ------------------------------------------------------------------ the job
def _csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_job_writes_bronze_media_blacklists_and_its_own_quarantine(spark, cfg_factory):
    from riskgraph import tables as T
    from riskgraph.jobs import ingest, ingest_media
    from riskgraph.runtime import JobContext
    from riskgraph.store import choose_store

    cfg = cfg_factory(**{"media.max_bytes.background": 60_000, "media.min_image_px": 16})
    root = Path(cfg.paths.root)
    app_cols = [c.name for c in S.RAW_APPLICATIONS]
    base = dict(application_id="A1", applicant_id="P1", application_ts=f"{DAY}T09:00:00Z", product="cash", amount="5000",
                term_months="12", channel="app", declared_income="8000", employer="acme", email="a@b.c", phone=PHONE,
                device_id="d1", ip="1.2.3.4", gps_lat="31.2", gps_lon="121.5", referrer_code="")
    apps = [base, dict(base, application_id="A2"), dict(base, application_id="A-bad", amount="-1")]
    _csv(root / "raw" / "applications" / f"dt={DAY}" / "part-00000.csv", app_cols, [[a[c] for c in app_cols] for a in apps])
    media = root / "raw" / "media" / f"dt={DAY}"
    media.mkdir(parents=True)
    (media / "A1_selfie.jpg").write_bytes(jpeg(seed=31))
    (media / "A1_call.wav").write_bytes(wav(2.0, 0.5))
    (media / "A2_selfie.jpg").write_bytes(jpeg(seed=31))  # the same photo twice
    (media / "A2_call.wav").write_bytes(wav(2.0, 0.0))
    (media / "bl_voice.wav").write_bytes(wav(1.5, 0.2))
    rel = f"raw/media/dt={DAY}"
    _csv(root / "raw" / "media_refs" / f"dt={DAY}" / "part-00000.csv", ["application_id", "kind", "uri"], [
        ["A1", "selfie", f"{rel}/A1_selfie.jpg"],          # relative to paths.root
        ["A1", "call", str(media / "A1_call.wav")],         # absolute
        ["A2", "selfie", f"file://{media}/A2_selfie.jpg"],  # file:// URI
        ["A2", "call", f"{rel}/A2_call.wav"],
        ["A2", "purpose", f"{rel}/A2_purpose.txt"],         # never landed
    ])
    _csv(root / "raw" / "blacklists" / f"dt={DAY}" / "part-00000.csv", ["entry_id", "kind", "value", "uri", "added_ts"], [
        ["E1", "voice", "", f"{rel}/bl_voice.wav", "2026-06-02T01:00:00Z"],
        ["E2", "phone", PHONE, "", "2026-06-02T01:00:00Z"],
        ["E3", "phone", "", "", "2026-06-02T01:00:00Z"],
    ])
    day = dt.date.fromisoformat(DAY)
    ingest.run(spark, JobContext(cfg=cfg, run_date=day, from_date=day, run_id="ingest-1"))
    details = ingest_media.run(spark, JobContext(cfg=cfg, run_date=day, from_date=day, run_id="media-1"))

    assert {k: details[k] for k in ("refs_in", "blacklist_samples_in", "items_in", "kept", "quarantined")} == \
        {"refs_in": 5, "blacklist_samples_in": 1, "items_in": 6, "kept": 3, "quarantined": 3}
    assert details["quarantined_by_reason"] == {"duplicate_content": 1, "missing_file": 1, "silent_audio": 1}
    assert details["blacklists"] == {"in": 3, "kept": 2, "quarantined": 1, "quarantined_by_reason": {"null_value:value": 1}}
    assert details["kept_by_modality"] == {"background": 1, "voice": 2}
    assert details["bytes_read"] == sum(f.stat().st_size for f in media.iterdir())

    store = choose_store(spark, cfg.store.backend)
    media_rows = store.read(spark, T.BRONZE_MEDIA.uri(cfg))
    assert sorted(((r["application_id"], r["blacklist_entry_id"], r["kind"]) for r in media_rows.collect()), key=str) == \
        [("A1", None, "call"), ("A1", None, "selfie"), (None, "E1", "blacklist_voice")]
    structured_q = store.read(spark, T.QUARANTINE.uri(cfg)).collect()
    assert [(r["source"], r["reason"]) for r in structured_q] == [("applications", "bad_value:amount")]

    # a re-run of the date (new run id) replaces media's rows with identical ones and leaves
    # the structured ingest's quarantine alone
    before = {t: store.read(spark, t.uri(cfg)).collect() for t in (T.BRONZE_MEDIA, T.BRONZE_BLACKLISTS, T.MEDIA_QUARANTINE)}
    again = ingest_media.run(spark, JobContext(cfg=cfg, run_date=day, from_date=day, run_id="media-2"))
    assert {k: again[k] for k in ("items_in", "kept", "quarantined")} == {"items_in": 6, "kept": 3, "quarantined": 3}
    for t, rows in before.items():
        assertDataFrameEqual(store.read(spark, t.uri(cfg)), spark.createDataFrame(rows, store.read(spark, t.uri(cfg)).schema))
    assert store.read(spark, T.QUARANTINE.uri(cfg)).collect() == structured_q

    # nothing written holds the raw phone
    for t in (T.BRONZE_MEDIA, T.BRONZE_BLACKLISTS, T.MEDIA_QUARANTINE):
        for row in store.read(spark, t.uri(cfg)).toJSON().collect():
            assert not _raw_phone_in(row, PHONE), row

"""Media references and blacklists → bronze media items; every bad item keeps its reason.

Two halves:

* :func:`probe_media` (pure Python, no Spark): what one file is — format from its magic
  bytes, a full decode (OpenCV for JPEG/PNG, the stdlib ``wave`` module for PCM WAV, strict
  UTF-8 for text), its dimensions / duration / level / length, SHA-256, and the first rule
  of ``conf media:`` (:class:`riskgraph.config.MediaIngest`) it breaks.
* Spark transforms that run the probe **on the executors** (``mapInPandas`` over the
  reference rows; each task opens its own URIs, so no file byte ever reaches the driver),
  drop exact-duplicate content deterministically, and split kept rows (``BRONZE_MEDIA``
  layout) from quarantine rows (``QUARANTINE`` layout, ``source = media``).

The chain a job runs (see ``jobs/ingest_media.py``)::

    refs  = media_ref_items(raw_refs, applications=apps)          # ref rows → items (+ ref reasons)
    bl    = validate_blacklists(raw_bl, key=key, future_tolerance_minutes=10)
    items = refs.unionByName(blacklist_media_items(bl))           # + blacklist samples
    probed  = probe_media_items(items, limits=cfg.media, base_uri=root)   # reads files (persist it)
    flagged = flag_duplicate_content(probed, existing=earlier_media)
    kept, quarantined = split_media(flagged)
    bl_kept, bl_quarantined = V.split_valid(attach_blacklist_media(bl, flagged), source="blacklists", ...)

``validate_media`` is the three middle steps in one call.

Reasons (one per item from the probe, the first rule broken, in this order):
``unknown_kind:<kind>``, ``missing_file``, ``zero_bytes``, ``too_large:bytes=<n>``,
``wrong_kind:<found format>``, ``undecodable``, ``too_large:px=<w>x<h>``,
``too_small:px=<w>x<h>``, ``undecodable`` (decode), ``too_short_audio:<seconds>``,
``too_large:seconds=<s>``, ``silent_audio:<dBFS>``, ``text_too_short``; then, across
items, ``duplicate_content:<media_key>``. Reference rows can also carry ``malformed_row``,
``null_key:application_id``, ``null_value:kind``, ``null_value:uri`` and
``orphan:application_id`` (the application is not in bronze/applications).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import struct
import urllib.parse
import wave
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from riskgraph import schemas as S
from riskgraph.config import MediaIngest
from riskgraph.landing import FILE, LINE
from riskgraph.features.validation import CORRUPT, RECORD, REASONS, require_columns, safe_record, structural_first, with_landing_columns
from riskgraph.pseudonym import NORMALISERS, hmac_column

# Blacklist samples are media items too: their kind says which modality they are matched in.
BLACKLIST_ITEM_KINDS = {"blacklist_voice": "voice", "blacklist_background": "background"}
ITEM_MODALITY = {**S.MEDIA_KINDS, **BLACKLIST_ITEM_KINDS}
# File formats each modality accepts (docs/media.md: JPEG photos, PCM WAV calls, UTF-8 text;
# PNG is accepted for photos because OpenCV decodes it losslessly and lenders' apps send it).
ACCEPTED_FORMATS = {"background": ("jpeg", "png"), "voice": ("wav",), "text": ("text",)}
MEDIA_KEY_PREFIX = "m:"
MEDIA_KEY_HEX = 32  # 128 bits of the SHA-256: collisions are negligible at any lender's scale
READ_CHUNK = 1 << 20

# Columns of a media item before probing (refs and blacklist samples share this layout).
ITEM_SCHEMA = StructType([
    StructField("application_id", StringType()),
    StructField("blacklist_entry_id", StringType()),
    StructField("kind", StringType()),
    StructField("uri", StringType()),
    StructField("item_ts", TimestampType()),
    StructField(S.DT, StringType()),
    StructField(REASONS, ArrayType(StringType())),
    StructField(RECORD, StringType()),  # JSON of the reference as landed (never file contents)
])
ITEM_COLUMNS = [f.name for f in ITEM_SCHEMA.fields]
# What the reference record JSON holds (application refs and blacklist samples alike).
_REF_RECORD = StructType([StructField(c, StringType()) for c in ("application_id", "blacklist_entry_id", "kind", "uri")])
# Columns the probe adds (the reason is appended to _reasons).
PROBE_FIELDS = [
    StructField("size_bytes", LongType()),
    StructField("content_sha256", StringType()),
    StructField("format", StringType()),
    StructField("width", IntegerType()),
    StructField("height", IntegerType()),
    StructField("duration_s", DoubleType()),
    StructField("sample_rate", IntegerType()),
    StructField("n_chars", IntegerType()),
    StructField("rms_dbfs", DoubleType()),
    StructField("_probe_reason", StringType()),
]
DUPLICATE_OF = "_duplicate_of"


# =========================================================================== probe (pure Python)
@dataclass(frozen=True)
class MediaProbe:
    """What one media file is. ``reason`` is None when the item passes every rule."""

    size_bytes: int | None = None
    sha256: str | None = None  # hex
    format: str | None = None  # jpeg, png, wav, text (or the foreign format found)
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    n_chars: int | None = None
    rms_dbfs: float | None = None  # RMS level re a full-scale square wave (a full-scale sine is -3.01)
    reason: str | None = None


def media_key(sha256_hex: str, *, kind: str | None = None, application_id: str | None = None,
              blacklist_entry_id: str | None = None) -> str:
    """The media item's id (the Python twin of :func:`media_key_col`): content-addressed for
    photos and recordings, so the same bytes have the same key everywhere; for a text (``kind``
    of the text modality) the hash of its owner, kind and content."""
    if kind is not None and modality_of(kind) == "text":
        owner = "|".join([application_id or "", blacklist_entry_id or "", kind, sha256_hex])
        return MEDIA_KEY_PREFIX + hashlib.sha256(owner.encode()).hexdigest()[:MEDIA_KEY_HEX]
    return MEDIA_KEY_PREFIX + sha256_hex[:MEDIA_KEY_HEX]


def modality_of(kind: str) -> str | None:
    return ITEM_MODALITY.get(kind)


def _read_limit(kind: str, limits: MediaIngest) -> int:
    """Bytes an item of ``kind`` may have; an unknown kind gets the largest (only to hash it)."""
    m = modality_of(kind)
    return limits.max_bytes[m] if m else max(limits.max_bytes.values())


# Formats recognised by their magic bytes. Foreign ones are named so that a quarantine row
# says "wrong_kind:heic" (an iPhone selfie) instead of a bare "undecodable".
def sniff_format(data: bytes) -> str | None:
    """jpeg, png, wav, text, a named foreign format, or None (unknown binary)."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WAVE": "wav", b"WEBP": "webp", b"AVI ": "avi"}.get(head[8:12], "riff")
    if head[4:8] == b"ftyp":
        return "heic" if head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis") else "mp4"
    for magic, name in ((b"GIF87a", "gif"), (b"GIF89a", "gif"), (b"%PDF-", "pdf"), (b"PK\x03\x04", "zip"),
                        (b"OggS", "ogg"), (b"fLaC", "flac"), (b"ID3", "mp3"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff")):
        if head.startswith(magic):
            return name
    if _decode_text(data) is not None:
        return "text"
    return None


def _decode_text(data: bytes) -> str | None:
    """Strict UTF-8 (a leading BOM allowed); text holding NUL is binary, not text."""
    try:
        text = data.decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _jpeg_dims(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame marker, without decoding (ITU T.81 B.2)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            i += 2
            continue
        if m in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        seg = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            return (w, h) if w > 0 and h > 0 else None
        if seg < 2:
            return None
        i += 2 + seg
    return None


def _png_dims(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, which PNG requires first (RFC 2083 §4.1.1)."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return (w, h) if w > 0 and h > 0 else None


def _fmt_db(x: float) -> str:
    return f"{x:.1f}"


def _probe_image(data: bytes, fmt: str, limits: MediaIngest, base: dict) -> MediaProbe:
    # Truncation: libjpeg "decodes" a cut JPEG (grey below the cut, a warning on stderr), so
    # a JPEG must also end with its EOI marker; a PNG must end with its IEND chunk.
    if fmt == "jpeg":
        dims = _jpeg_dims(data)
        complete = data.endswith(b"\xff\xd9")
    else:
        dims = _png_dims(data)
        complete = data.endswith(b"IEND\xaeB`\x82")
    if dims is None or not complete:
        return MediaProbe(**base, format=fmt, reason="undecodable")
    w, h = dims
    base = dict(base, format=fmt, width=w, height=h)
    # Before decoding: a few MB of PNG can inflate to gigabytes (a decompression bomb).
    if max(w, h) > limits.max_image_px:
        return MediaProbe(**base, reason=f"too_large:px={w}x{h}")
    if min(w, h) < limits.min_image_px:
        return MediaProbe(**base, reason=f"too_small:px={w}x{h}")
    import cv2

    cv2.setNumThreads(1)  # one Spark task = one core
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.shape[0] != h or img.shape[1] != w:
        return MediaProbe(**base, reason="undecodable")
    return MediaProbe(**base)


def _pcm_rms_dbfs(frames: bytes, sampwidth: int) -> float:
    """RMS of PCM samples (all channels) in dB re full scale; -inf for digital silence."""
    if sampwidth == 1:  # 8-bit WAV is unsigned, centred on 128
        x = (np.frombuffer(frames, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif sampwidth == 2:
        x = np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0
    elif sampwidth == 3:
        b = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    else:
        x = np.frombuffer(frames, dtype="<i4").astype(np.float64) / float(1 << 31)
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(x * x)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def _probe_wav(data: bytes, limits: MediaIngest, base: dict) -> MediaProbe:
    base = dict(base, format="wav")
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            ch, sw, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            frames = w.readframes(n) if rate > 0 and sw in (1, 2, 3, 4) and ch > 0 else b""
    except (wave.Error, EOFError, struct.error, ValueError):
        return MediaProbe(**base, reason="undecodable")
    # A truncated recording still has its header's frame count: the data must hold them all.
    if rate <= 0 or ch <= 0 or sw not in (1, 2, 3, 4) or len(frames) != n * ch * sw:
        return MediaProbe(**base, reason="undecodable")
    dur = n / rate
    dbfs = _pcm_rms_dbfs(frames, sw)
    base = dict(base, duration_s=dur, sample_rate=rate, rms_dbfs=dbfs)
    if dur < limits.min_audio_seconds:
        return MediaProbe(**base, reason=f"too_short_audio:{dur:.2f}")
    if dur > limits.max_audio_seconds:
        return MediaProbe(**base, reason=f"too_large:seconds={dur:.2f}")
    if dbfs < limits.silence_dbfs:
        return MediaProbe(**base, reason=f"silent_audio:{_fmt_db(dbfs)}")
    return MediaProbe(**base)


def too_large_bytes(size: int, sha256: str | None) -> MediaProbe:
    """The probe of a file over its modality's max_bytes (it is hashed, never decoded)."""
    return MediaProbe(size_bytes=size, sha256=sha256, reason=f"too_large:bytes={size}")


def probe_media(data: bytes | None, kind: str, limits: MediaIngest) -> MediaProbe:
    """Probe one media item. ``data`` is the file's bytes (None: the file does not exist),
    ``kind`` the item kind (selfie, id_photo, premises, call, purpose, blacklist_voice,
    blacklist_background). Returns size, SHA-256 and what the decode found, and the first
    rule of ``limits`` broken (see the module docstring for the order), or reason None."""
    if data is None:
        return MediaProbe(reason="missing_file" if modality_of(kind) else f"unknown_kind:{kind}")
    base = {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    modality = modality_of(kind)
    if modality is None:
        return MediaProbe(**base, reason=f"unknown_kind:{kind}")
    if not data:
        return MediaProbe(**base, reason="zero_bytes")
    if len(data) > limits.max_bytes[modality]:
        return too_large_bytes(len(data), base["sha256"])
    fmt = sniff_format(data)
    if fmt is None:
        return MediaProbe(**base, reason="undecodable")
    if fmt not in ACCEPTED_FORMATS[modality]:
        return MediaProbe(**base, format=fmt, reason=f"wrong_kind:{fmt}")
    if modality == "background":
        return _probe_image(data, fmt, limits, base)
    if modality == "voice":
        return _probe_wav(data, limits, base)
    text = _decode_text(data)  # sniff_format said it decodes
    n_chars = len(text.strip())
    if n_chars < limits.min_text_chars:
        return MediaProbe(**base, format="text", n_chars=n_chars, reason="text_too_short")
    return MediaProbe(**base, format="text", n_chars=n_chars)


# =========================================================================== reading files (executors)
def resolve_uri(uri: str, base_uri: str | None) -> str:
    """A relative reference (e.g. ``raw/media/dt=…/A1_selfie.jpg``) is relative to ``base_uri``
    (the lake root); absolute paths and URIs with a scheme are used as they are."""
    if "://" in uri or uri.startswith("/") or not base_uri:
        return uri
    return base_uri.rstrip("/") + "/" + uri


class _Reader:
    """Opens media files for one Spark task: local paths with ``open``; anything with a
    scheme (s3://, gs://, abfs://, hdfs://) through ``pyarrow.fs``, one filesystem object per
    scheme and authority (creating one can cost a metadata round trip)."""

    def __init__(self) -> None:
        self._fs: dict[str, tuple] = {}

    def _local(self, uri: str) -> str | None:
        if uri.startswith("file://"):
            return urllib.parse.unquote(urllib.parse.urlparse(uri).path)
        return None if "://" in uri else uri

    def _remote(self, uri: str):
        """(filesystem, path) for a URI with a scheme. ``FileSystem.from_uri`` once per
        scheme://authority; later URIs reuse its filesystem when its path rule is one of
        the two that pyarrow uses (bucket + key for object stores, the path for HDFS)."""
        from pyarrow import fs as pafs

        u = urllib.parse.urlparse(uri)
        key = f"{u.scheme}://{u.netloc}"
        if key in self._fs:
            fs, rule = self._fs[key]
            if rule == "netloc+path":
                return fs, u.netloc + u.path
            if rule == "path":
                return fs, u.path
            return pafs.FileSystem.from_uri(uri)
        fs, path = pafs.FileSystem.from_uri(uri)
        rule = "netloc+path" if path == u.netloc + u.path else "path" if path == u.path else "ask"
        self._fs[key] = (fs, rule)
        return fs, path

    def read(self, uri: str, max_bytes: int) -> tuple[bytes | None, int | None, str | None]:
        """(bytes, size, sha256 hex). bytes is None when the file does not exist (size None)
        or is larger than ``max_bytes`` (then hashed as a stream, never held whole).
        Errors other than "not found" (permissions, network) raise: they are not the
        data's fault, and quarantining every item of a run for them would hide the outage."""
        local = self._local(uri)
        if local is not None:
            if not os.path.isfile(local):
                return None, None, None
            fh = open(local, "rb")  # noqa: SIM115 - closed below
        else:
            from pyarrow import fs as pafs

            fs, path = self._remote(uri)
            if fs.get_file_info(path).type != pafs.FileType.File:
                return None, None, None
            fh = fs.open_input_stream(path)
        h, kept, size = hashlib.sha256(), [], 0
        with fh:
            while chunk := fh.read(READ_CHUNK):
                h.update(chunk)
                size += len(chunk)
                if size <= max_bytes:
                    kept.append(chunk)
        return (b"".join(kept) if size <= max_bytes else None), size, h.hexdigest()


def _probe_batches(limits: MediaIngest, base_uri: str | None):
    def probe(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        reader = _Reader()
        for pdf in batches:
            out = []
            for kind, uri in zip(pdf["kind"], pdf["uri"]):
                if uri is None or (isinstance(uri, float) and math.isnan(uri)):
                    out.append(MediaProbe())  # the reference already says null_value:uri
                    continue
                data, size, sha = reader.read(resolve_uri(uri, base_uri), _read_limit(kind, limits))
                if kind is None:
                    p = MediaProbe(size, sha)  # the reference already says null_value:kind
                elif size is not None and data is None:
                    p = too_large_bytes(size, sha) if modality_of(kind) else MediaProbe(size, sha, reason=f"unknown_kind:{kind}")
                else:
                    p = probe_media(data, kind, limits)
                out.append(p)
            rows = [asdict(p) for p in out]
            pdf = pdf.copy()
            pdf["size_bytes"] = pd.array([r["size_bytes"] for r in rows], dtype="Int64")
            pdf["content_sha256"] = [r["sha256"] for r in rows]
            pdf["format"] = [r["format"] for r in rows]
            pdf["width"] = pd.array([r["width"] for r in rows], dtype="Int32")
            pdf["height"] = pd.array([r["height"] for r in rows], dtype="Int32")
            pdf["duration_s"] = pd.array([r["duration_s"] for r in rows], dtype="Float64")
            pdf["sample_rate"] = pd.array([r["sample_rate"] for r in rows], dtype="Int32")
            pdf["n_chars"] = pd.array([r["n_chars"] for r in rows], dtype="Int32")
            # -inf (digital silence) is kept: it is the true level, and Spark doubles hold it
            pdf["rms_dbfs"] = pd.array([r["rms_dbfs"] for r in rows], dtype="Float64")
            pdf["_probe_reason"] = [r["reason"] for r in rows]
            yield pdf

    return probe


# =========================================================================== Spark transforms
def _blank_to_null(c: str) -> Column:
    v = F.trim(F.col(c))
    return F.when(F.length(v) > 0, v)


def _reasons(*checks: Column) -> Column:
    return F.filter(F.array(*checks), lambda x: x.isNotNull())


def _modality(kind: Column) -> Column:
    m = F.create_map(*[F.lit(x) for kv in sorted(ITEM_MODALITY.items()) for x in kv])
    return m[kind]


def media_ref_items(refs: DataFrame, *, applications: DataFrame) -> DataFrame:
    """Raw media references → media items (``ITEM_SCHEMA``) with the reference's own reasons.

    ``refs`` needs RAW_MEDIA_REFS columns + dt (+ optional _corrupt_record);
    ``applications`` needs application_id, application_ts (bronze/applications: the item's
    time is its application's time). Adds reasons malformed_row, null_key:application_id,
    null_value:kind, unknown_kind:<kind>, null_value:uri, orphan:application_id."""
    raw_cols = [c.name for c in S.RAW_MEDIA_REFS]
    require_columns(refs, raw_cols + [S.DT], "media_ref_items")
    require_columns(applications, ["application_id", "application_ts"], "media_ref_items(applications)")
    refs = with_landing_columns(refs)
    # one row per application whatever the input: a repeated id must not multiply references
    apps = applications.groupBy("application_id").agg(F.min("application_ts").alias("_app_ts"))
    app_id, kind, uri = _blank_to_null("application_id"), F.lower(_blank_to_null("kind")), _blank_to_null("uri")
    typed = refs.select(
        app_id.alias("application_id"), kind.alias("kind"), uri.alias("uri"), F.col(S.DT), F.col(CORRUPT),
        safe_record(F.to_json(F.struct(*[F.col(c) for c in raw_cols]))).alias(RECORD),
    ).join(apps, on="application_id", how="left")
    known_kind = F.col("kind").isin(*sorted(S.MEDIA_KINDS))
    reasons = structural_first(_reasons(
        F.col(CORRUPT),
        F.when(F.col("application_id").isNull(), F.lit("null_key:application_id")),
        F.when(F.col("kind").isNull(), F.lit("null_value:kind")),
        F.when(F.col("kind").isNotNull() & ~known_kind, F.concat(F.lit("unknown_kind:"), F.col("kind"))),
        F.when(F.col("uri").isNull(), F.lit("null_value:uri")),
        F.when(F.col("application_id").isNotNull() & F.col("_app_ts").isNull(), F.lit("orphan:application_id")),
    ))
    return typed.select(
        "application_id", F.lit(None).cast("string").alias("blacklist_entry_id"), "kind", "uri",
        F.col("_app_ts").alias("item_ts"), S.DT, reasons.alias(REASONS), RECORD,
    )


def blacklist_media_items(blacklists: DataFrame) -> DataFrame:
    """Samples of the good voice/background blacklist entries as media items (``ITEM_SCHEMA``:
    kind blacklist_voice / blacklist_background, application_id null, item time = added_ts).
    ``blacklists`` is the output of :func:`validate_blacklists`."""
    require_columns(blacklists, ["entry_id", "kind", "uri", "added_ts", S.DT, REASONS], "blacklist_media_items")
    kind = F.concat(F.lit("blacklist_"), F.col("kind"))
    return blacklists.filter((F.size(REASONS) == 0) & F.col("kind").isin("voice", "background")).select(
        F.lit(None).cast("string").alias("application_id"), F.col("entry_id").alias("blacklist_entry_id"),
        kind.alias("kind"), "uri", F.col("added_ts").alias("item_ts"), S.DT,
        F.array().cast("array<string>").alias(REASONS),
        F.to_json(F.struct(F.col("entry_id").alias("blacklist_entry_id"), kind.alias("kind"), "uri")).alias(RECORD),
    )


def probe_media_items(items: DataFrame, *, limits: MediaIngest, base_uri: str | None = None,
                      read_partitions: int | None = None) -> DataFrame:
    """Read and probe every item's file on the executors; adds PROBE_FIELDS columns and the
    probe's reason to _reasons. ``items`` has ``ITEM_SCHEMA`` columns. ``base_uri`` resolves
    relative URIs; ``read_partitions`` spreads the reads over that many tasks (references of
    a day land in one CSV, i.e. one task, otherwise).

    Lazy, and reading files is the expensive step: persist the result when more than one
    action uses it, so each file is read once per run (and every count sees the same bytes)."""
    require_columns(items, ITEM_COLUMNS, "probe_media_items")
    items = items.select(*[F.col(f.name).cast(f.dataType) for f in ITEM_SCHEMA.fields])
    if read_partitions:
        # an explicit count: AQE would coalesce a tiny reference table into one reading task
        items = items.repartition(int(read_partitions), "uri")
    schema = StructType(items.schema.fields + PROBE_FIELDS)
    probed = items.mapInPandas(_probe_batches(limits, base_uri), schema)
    reasons = F.array_distinct(F.filter(F.concat(F.col(REASONS), F.array(F.col("_probe_reason"))), lambda x: x.isNotNull()))
    return probed.withColumn(REASONS, reasons).drop("_probe_reason")


def media_key_col() -> Column:
    """The item's media key: ``m:`` + 32 hex digits of its content's SHA-256 for photos and
    recordings (exact re-use of one is what duplicate_content catches), and of (owner, kind,
    content) for texts: the same short loan purpose ("home renovation") is written by many
    strangers, so a text's content does not identify an item."""
    content = F.substring("content_sha256", 1, MEDIA_KEY_HEX)
    owner = F.concat_ws("|", F.coalesce(F.col("application_id"), F.lit("")), F.coalesce(F.col("blacklist_entry_id"), F.lit("")),
                        F.col("kind"), F.col("content_sha256"))
    item = F.substring(F.sha2(owner, 256), 1, MEDIA_KEY_HEX)
    return F.concat(F.lit(MEDIA_KEY_PREFIX), F.when(_modality(F.col("kind")) == "text", item).otherwise(content))


def flag_duplicate_content(probed: DataFrame, *, existing: DataFrame | None = None) -> DataFrame:
    """Among photos and recordings with no other reason, the same content (SHA-256) is kept once: the earliest
    by (item_ts, application_id, kind, blacklist_entry_id, uri, dt) - a total order, so the
    choice does not depend on partitioning. The others get ``duplicate_content:<media_key>``
    and ``_duplicate_of`` (the kept item's application_id, blacklist_entry_id, kind, dt).
    ``existing`` (bronze/media outside the run's dates: media_key, application_id,
    blacklist_entry_id, kind, dt) makes content already ingested a duplicate of that row."""
    require_columns(probed, ITEM_COLUMNS + ["content_sha256"], "flag_duplicate_content")
    # texts are never duplicates of each other: identical short purposes are ordinary
    ok = (F.size(REASONS) == 0) & (_modality(F.col("kind")) != "text")
    key = media_key_col()
    order = [F.col("item_ts").asc_nulls_last(), F.col("application_id").asc_nulls_last(), F.col("kind"),
             F.col("blacklist_entry_id").asc_nulls_last(), F.col("uri"), F.col(S.DT)]
    w = Window.partitionBy("content_sha256", ok).orderBy(*order)
    owner = F.struct(F.col("application_id"), F.col("blacklist_entry_id"), F.col("kind"), F.col(S.DT))
    out = (probed.withColumn("_rn", F.when(ok, F.row_number().over(w)))
           .withColumn("_first", F.when(ok, F.first(owner).over(w.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)))))
    dup_of = F.when(F.col("_rn") > 1, F.col("_first"))
    if existing is not None:
        require_columns(existing, ["media_key", "application_id", "blacklist_entry_id", "kind", S.DT], "flag_duplicate_content(existing)")
        seen = existing.groupBy("media_key").agg(
            F.min(F.struct(F.col(S.DT), "application_id", "blacklist_entry_id", "kind")).alias("_e"))
        seen = seen.select(F.col("media_key").alias("_seen_key"),
                           F.struct(F.col("_e.application_id").alias("application_id"),
                                    F.col("_e.blacklist_entry_id").alias("blacklist_entry_id"),
                                    F.col("_e.kind").alias("kind"), F.col(f"_e.{S.DT}").alias(S.DT)).alias("_seen"))
        out = out.join(seen, on=key == F.col("_seen_key"), how="left")
        dup_of = F.when(ok & F.col("_seen").isNotNull(), F.col("_seen")).otherwise(dup_of)
        out = out.drop("_seen_key")
    out = out.withColumn(DUPLICATE_OF, dup_of)
    dup = F.when(F.col(DUPLICATE_OF).isNotNull(), F.concat(F.lit("duplicate_content:"), key))
    out = out.withColumn(REASONS, F.filter(F.concat(F.col(REASONS), F.array(dup)), lambda x: x.isNotNull()))
    return out.drop("_rn", "_first", *(["_seen"] if existing is not None else []))


def split_media(flagged: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(kept rows in the BRONZE_MEDIA layout, quarantine rows in the QUARANTINE layout with
    source = media). A quarantine record is the reference as landed plus size_bytes,
    content_sha256 and (duplicates) duplicate_of - never file contents."""
    require_columns(flagged, ITEM_COLUMNS + [f.name for f in PROBE_FIELDS if f.name != "_probe_reason"] + [DUPLICATE_OF],
                    "split_media")
    derived = {
        "media_key": media_key_col(),
        "modality": _modality(F.col("kind")),
    }
    good = flagged.filter(F.size(REASONS) == 0).select(*[
        derived.get(c.name, F.col(c.name)).cast(c.dtype).alias(c.name, metadata={"comment": c.description})
        for c in S.BRONZE_MEDIA
    ])
    ref = F.from_json(F.col(RECORD), _REF_RECORD)
    record = F.to_json(F.struct(
        *[ref[f.name].alias(f.name) for f in _REF_RECORD.fields],
        F.col("size_bytes"), F.col("content_sha256"), F.col(DUPLICATE_OF).alias("duplicate_of"),
    ))
    bad = flagged.filter(F.size(REASONS) > 0).select(*[
        e.cast(c.dtype).alias(c.name, metadata={"comment": c.description}) for c, e in zip(S.QUARANTINE, [
            F.lit("media"), F.array_join(F.array_sort(F.array_distinct(REASONS)), ";"), record, F.col(S.DT),
            F.lit(None), F.lit(None)])
    ])
    return good, bad


# Reasons whose detail is unbounded (a content key, a measured value, a lender's typo): run
# metrics count them by their class alone, so a summary stays one line per kind of defect.
DETAILED_REASONS = ("duplicate_content", "too_large", "too_small", "too_short_audio", "silent_audio", "unknown_kind",
                    "bad_sample")


def reason_class(reason: Column) -> Column:
    """'too_large:bytes=9000;orphan:application_id' → 'orphan:application_id;too_large'."""
    parts = F.transform(F.split(reason, ";"), lambda x: F.when(
        F.substring_index(x, ":", 1).isin(*DETAILED_REASONS), F.substring_index(x, ":", 1)).otherwise(x))
    return F.array_join(F.array_sort(F.array_distinct(parts)), ";")


def validate_media(items: DataFrame, *, limits: MediaIngest, base_uri: str | None = None,
                   read_partitions: int | None = None, existing: DataFrame | None = None) -> tuple[DataFrame, DataFrame]:
    """probe → duplicate content → split: (BRONZE_MEDIA rows, QUARANTINE rows). ``items`` from
    :func:`media_ref_items` and/or :func:`blacklist_media_items`. Each action on the results
    re-reads the files unless the caller persists :func:`probe_media_items` itself (the job does)."""
    probed = probe_media_items(items, limits=limits, base_uri=base_uri, read_partitions=read_partitions)
    return split_media(flag_duplicate_content(probed, existing=existing))


# =========================================================================== blacklists
def validate_blacklists(raw: DataFrame, *, key: bytes, future_tolerance_minutes: int) -> DataFrame:
    """Raw blacklist rows → typed entries (entry_id, kind, value_key, uri, added_ts, dt) plus
    _reasons and _record, like ``features.validation.validate_*``.

    Needs RAW_BLACKLISTS columns + dt (+ optional _corrupt_record). A phone entry's value
    becomes the keyed pseudonym of its digits - the same normalisation and HMAC as
    applications' phone_key, so the two compare equal; the key travels inside the UDF,
    never in the plan. A device entry keeps the device id. The record never holds a raw
    value other than a device id. Reasons: malformed_row, null_key:entry_id,
    null_value:kind, unknown_kind:<kind>, null_value:added_ts, bad_timestamp:added_ts,
    future_ts:added_ts, null_value:value, bad_value:value (a phone without digits),
    null_value:uri (voice/background without a sample)."""
    raw_cols = [c.name for c in S.RAW_BLACKLISTS]
    require_columns(raw, raw_cols + [S.DT], "validate_blacklists")
    raw = with_landing_columns(raw)
    entry_id, kind = _blank_to_null("entry_id"), F.lower(_blank_to_null("kind"))
    value, uri = _blank_to_null("value"), _blank_to_null("uri")
    ts_text = _blank_to_null("added_ts")
    ts = ts_text.cast("timestamp")
    day_end = F.to_timestamp(F.date_add(F.to_date(F.col(S.DT)), 1))
    phone = NORMALISERS["phone"](F.col("value"))
    phone_key = hmac_column(phone, key)
    value_key = F.when(kind == "device", value).when(kind == "phone", phone_key)
    # what the quarantine may show of the value: a device id, else only a pseudonym
    record_value = F.when(kind == "device", value).when(kind == "phone", phone_key).otherwise(hmac_column(value, key))
    reasons = _reasons(
        F.col(CORRUPT),
        F.when(entry_id.isNull(), F.lit("null_key:entry_id")),
        F.when(kind.isNull(), F.lit("null_value:kind")),
        F.when(kind.isNotNull() & ~kind.isin(*S.BLACKLIST_KINDS), F.concat(F.lit("unknown_kind:"), kind)),
        F.when(ts_text.isNull(), F.lit("null_value:added_ts")),
        F.when(ts_text.isNotNull() & ts.isNull(), F.lit("bad_timestamp:added_ts")),
        F.when(ts > day_end + F.expr(f"INTERVAL {int(future_tolerance_minutes)} MINUTES"), F.lit("future_ts:added_ts")),
        F.when(kind.isin("device", "phone") & value.isNull(), F.lit("null_value:value")),
        F.when((kind == "phone") & value.isNotNull() & phone.isNull(), F.lit("bad_value:value")),
        F.when(kind.isin("voice", "background") & uri.isNull(), F.lit("null_value:uri")),
    )
    record = safe_record(F.to_json(F.struct(F.col("entry_id"), F.col("kind"), record_value.alias("value_key"), F.col("uri"), F.col("added_ts"))))
    return raw.select(
        entry_id.alias("entry_id"), kind.alias("kind"), value_key.alias("value_key"),
        F.when(kind.isin("voice", "background"), uri).alias("uri"), ts.alias("added_ts"), F.col(S.DT),
        structural_first(reasons).alias(REASONS), record.alias(RECORD), F.col(FILE), F.col(LINE),
    )


def attach_blacklist_media(blacklists: DataFrame, flagged: DataFrame) -> DataFrame:
    """Fill each voice/background entry's media_key from its probed sample.

    ``blacklists``: :func:`validate_blacklists` output (after duplicate flagging);
    ``flagged``: :func:`flag_duplicate_content` output holding the entries' samples. A
    sample kept in bronze/media, or dropped only as a duplicate (its content, hence its
    key, is in bronze/media under the kept item), gives the key; any other sample reason
    quarantines the entry with ``bad_sample:<the sample's reasons>``. Adds media_key."""
    require_columns(blacklists, ["entry_id", "kind", S.DT, REASONS, RECORD], "attach_blacklist_media")
    samples = flagged.filter(F.col("blacklist_entry_id").isNotNull()).select(
        F.col("blacklist_entry_id").alias("_entry"), F.col(S.DT).alias("_dt"),
        media_key_col().alias("_key"),
        F.filter(REASONS, lambda r: ~r.startswith("duplicate_content:")).alias("_bad"),
    )
    out = blacklists.join(samples, on=(F.col("entry_id") == F.col("_entry")) & (F.col(S.DT) == F.col("_dt")), how="left")
    needs = (F.size(REASONS) == 0) & F.col("kind").isin("voice", "background")
    bad = F.when(needs & F.col("_entry").isNull(), F.lit("bad_sample:not_probed")).when(
        needs & (F.size("_bad") > 0), F.concat(F.lit("bad_sample:"), F.array_join(F.array_sort("_bad"), ",")))
    return out.select(
        *[c for c in blacklists.columns if c != REASONS],
        F.when(needs & (F.size("_bad") == 0), F.col("_key")).alias("media_key"),
        F.filter(F.concat(F.col(REASONS), F.array(bad)), lambda x: x.isNotNull()).alias(REASONS),
    )

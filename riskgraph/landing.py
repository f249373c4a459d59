"""Landing files → one row per source record, mapped by header name, with its file and line.

Why by hand and not Spark's CSV reader: with a schema, Spark reads CSV columns by position
(a file with ``phone`` and ``email`` swapped in its header loads them swapped), drops or
pads fields of a row with the wrong field count, lets an unclosed quote swallow the good
rows after it, stores undecodable bytes as U+FFFD, parses gzip bytes as garbage rows, and
gives no line numbers. Each landing file is small next to an executor (one day of one
table; a file is read whole by one task, so split files beyond ~1 GB upstream), so a task
reads it with ``binaryFile`` and this module's Python parser, which:

* maps columns **by header name** (trimmed, case-insensitive, BOM removed). A header with a
  missing, unknown or repeated name is a file-level problem (``bad_header``): per
  ``ingest.bad_header`` the run fails naming the file and the difference, or every record
  of the file is quarantined with that reason;
* splits physical lines on ``\\n``, ``\\r\\n`` or ``\\r``, joins a record whose quotes are
  unbalanced with the next lines (an RFC 4180 quoted field may hold a line break), but at
  most ``MAX_LINES_PER_RECORD`` lines: beyond that the first line alone is an
  ``unbalanced_quote`` record and reading goes on with the next, so one stray quote never
  swallows good rows;
* quarantines a record with the wrong number of fields (``malformed_row``), with bytes that
  are not UTF-8 (``bad_encoding``: never silently replaced), and a file that is not text
  at all (``not_text:gzip|zip|binary``, one record for the whole file);
* counts per file: bytes, physical lines, the header line, blank lines (no data, so not
  records) and records; ``1 + blank + sum(record lines) == lines`` is checked for every file.

A structurally broken record's fields cannot be trusted to be in their columns (a phone may
sit under ``employer``), so its declared columns are null and only its **masked shape**
travels on (``_mask``: digits → 9, letters → a/A, punctuation, quotes and delimiters kept),
enough for an engineer to see a ``;`` delimiter, a stray quote or an unquoted ``1,000``
without seeing a value. Well-formed records carry their raw text values on to validation,
which pseudonymises PII before anything is stored.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from riskgraph import schemas as S
from riskgraph.io import landing_folders

CORRUPT = "_corrupt_record"  # structural problem of the record (null when well-formed)
MASK = "_mask"  # masked shape of a structurally broken record
FILE = "_file"
LINE = "_line"  # first physical line of the record (1 = the header)
KIND = "_kind"  # "record" or "file" (one summary row per file)
MAX_LINES_PER_RECORD = 5  # a quoted field may span lines; more than this is a stray quote
MAX_MASK_CHARS = 2000

FILE_FIELDS = [("bytes", LongType()), ("lines", LongType()), ("blank_lines", LongType()), ("records", LongType()),
               ("header_problem", StringType()), ("file_problem", StringType())]
_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
_DT_RE = re.compile(rf"/{S.DT}=([^/]+)/")


def mask(text: str) -> str:
    """A record's shape without its values: digits → 9, letters → a / A, the rest kept
    (punctuation, quotes, delimiters, spaces); control characters and undecodable bytes → ?."""
    out = []
    for ch in text[:MAX_MASK_CHARS]:
        if ch.isdigit():
            out.append("9")
        elif ch.isalpha():
            out.append("A" if ch.isupper() else "a")
        elif ch in "\r\n\t" or (ch.isprintable() and not 0xDC80 <= ord(ch) <= 0xDCFF):
            out.append(ch)
        else:
            out.append("?")
    return "".join(out) + ("…" if len(text) > MAX_MASK_CHARS else "")


def _not_text(content: bytes) -> str | None:
    if content[:2] == b"\x1f\x8b":
        return "not_text:gzip"
    if content[:4] == b"PK\x03\x04":
        return "not_text:zip"
    if b"\x00" in content[:65536]:
        return "not_text:binary"
    return None


def _physical_lines(text: str) -> list[str]:
    """Lines with their endings kept (so a quoted line break keeps its own bytes)."""
    return _LINE_RE.findall(text)


def _header_problem(names: list[str], declared: list[str]) -> str | None:
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    missing = [c for c in declared if c not in seen]
    unknown = [n for n in names if n not in declared and n not in dup]
    parts = []
    if missing:
        parts.append("missing " + ",".join(missing))
    if unknown:
        parts.append("unknown " + ",".join(sorted(set(unknown))))
    if dup:
        parts.append("repeated " + ",".join(dup))
    return "; ".join(parts) or None


@dataclass
class ParsedFile:
    records: list[dict]  # declared columns + CORRUPT, MASK, LINE
    summary: dict  # FILE_FIELDS


def parse_file(content: bytes, declared: list[str]) -> ParsedFile:
    """Parse one landing file (see the module doc). Pure Python: unit-tested directly."""
    n_bytes = len(content)
    summary = {"bytes": n_bytes, "lines": 0, "blank_lines": 0, "records": 0, "header_problem": None, "file_problem": None}
    if n_bytes == 0:
        summary["file_problem"] = "empty_file"
        return ParsedFile([], summary)
    nt = _not_text(content)
    if nt is not None:
        summary.update(file_problem=nt, records=1)
        rec = {c: None for c in declared}
        rec.update({CORRUPT: nt, MASK: f"<{nt.split(':')[1]} content, {n_bytes} bytes>", LINE: None})
        return ParsedFile([rec], summary)
    if content.startswith(b"\xef\xbb\xbf"):
        content = content[3:]
    text = content.decode("utf-8", errors="surrogateescape")  # undecodable bytes → lone surrogates, found per line
    lines = _physical_lines(text)
    summary["lines"] = len(lines)
    # header: the first line (a header cannot span lines)
    header_text = lines[0].rstrip("\r\n") if lines else ""
    header_bad = _has_surrogates(header_text)
    names = [n.strip().lstrip("\ufeff").lower() for n in next(csv.reader([header_text]), [])] if not header_bad else []
    problem = "header is not UTF-8" if header_bad else _header_problem(names, declared)
    summary["header_problem"] = problem
    col_of = {n: i for i, n in enumerate(names)}
    records, used = [], 1
    i = 1
    while i < len(lines):
        first = lines[i]
        if not first.strip():
            summary["blank_lines"] += 1
            i += 1
            continue
        # join lines while the record's quotes are unbalanced (a quoted line break), bounded
        j, rec_text = i, first
        while rec_text.count('"') % 2 == 1 and j + 1 < len(lines) and j + 1 - i < MAX_LINES_PER_RECORD:
            j += 1
            rec_text += lines[j]
        reason = None
        if rec_text.count('"') % 2 == 1:  # still unbalanced: the first line alone is the record
            j, rec_text, reason = i, first, "unbalanced_quote"
        body = rec_text.rstrip("\r\n") if rec_text.endswith(("\n", "\r")) else rec_text
        if reason is None and _has_surrogates(body):
            reason = "bad_encoding"
        if reason is None and problem is not None:
            reason = "bad_header"
        fields = None
        if reason is None:
            rows = list(csv.reader(io.StringIO(body, newline="")))
            if len(rows) != 1 or len(rows[0]) != len(names):
                reason = "malformed_row"
            else:
                fields = rows[0]
        if fields is None:
            rec = {c: None for c in declared}
            rec.update({CORRUPT: reason, MASK: mask(body), LINE: i + 1, "_span": j - i + 1})
        else:
            rec = {c: fields[col_of[c]] for c in declared}
            rec.update({CORRUPT: None, MASK: None, LINE: i + 1, "_span": j - i + 1})
        records.append(rec)
        used += j - i + 1
        i = j + 1
    summary["records"] = len(records)
    if used + summary["blank_lines"] != summary["lines"]:  # every physical line is accounted for exactly once
        raise AssertionError(f"landing parser lost lines: {used} + {summary['blank_lines']} blank != {summary['lines']}")
    return ParsedFile(records, summary)


def _has_surrogates(s: str) -> bool:
    return any(0xDC80 <= ord(ch) <= 0xDCFF for ch in s)


def _out_schema(declared: list[str]) -> StructType:
    return StructType([StructField(c, StringType()) for c in declared] + [
        StructField(S.DT, StringType()), StructField(FILE, StringType()), StructField(LINE, LongType()),
        StructField(CORRUPT, StringType()), StructField(MASK, StringType()), StructField(KIND, StringType()),
        *[StructField(n, t) for n, t in FILE_FIELDS]])


def _parser(declared: list[str], schema: StructType):
    arrow_schema = pa.schema([pa.field(f.name, pa.int64() if isinstance(f.dataType, LongType) else pa.string())
                              for f in schema.fields])

    def parse(batches):
        for batch in batches:
            for path, content in zip(batch.column("path").to_pylist(), batch.column("content").to_pylist()):
                m = _DT_RE.search(path)
                dt = m.group(1) if m else None
                parsed = parse_file(content, declared)
                cols = {f.name: [] for f in schema.fields}
                for rec in parsed.records:
                    for c in declared:
                        cols[c].append(rec[c])
                    for k, v in ((S.DT, dt), (FILE, path), (LINE, rec[LINE]), (CORRUPT, rec[CORRUPT]),
                                 (MASK, rec[MASK]), (KIND, "record")):
                        cols[k].append(v)
                    for n, _ in FILE_FIELDS:
                        cols[n].append(None)
                for c in declared:
                    cols[c].append(None)
                for k, v in ((S.DT, dt), (FILE, path), (LINE, None), (CORRUPT, None), (MASK, None), (KIND, "file")):
                    cols[k].append(v)
                for n, _ in FILE_FIELDS:
                    cols[n].append(parsed.summary[n])
                yield pa.RecordBatch.from_pydict(cols, schema=arrow_schema)

    return parse


def read_landing(spark: SparkSession, base: str, columns: list[S.Column], dates: list[str]) -> tuple[DataFrame | None, list[str]]:
    """Read the landing folders ``base/dt=<date>`` that exist. Returns (frame or None, dates
    without a folder). The frame has one ``_kind = 'record'`` row per source record (declared
    columns as text, ``dt``, ``_file``, ``_line``, ``_corrupt_record``, ``_mask``) and one
    ``_kind = 'file'`` row per file with its counts (``FILE_FIELDS``); split it with
    :func:`records` and :func:`file_summaries`. Persist it: each action re-parses otherwise."""
    paths, missing = landing_folders(spark, base, dates)
    if not paths:
        return None, missing
    declared = [c.name for c in columns]
    schema = _out_schema(declared)
    # hidden files (_SUCCESS, .crc, ...) are skipped by the file source itself
    files = spark.read.format("binaryFile").load(paths).select("path", "content")
    return files.mapInArrow(_parser(declared, schema), schema), missing


def records(parsed: DataFrame) -> DataFrame:
    """The source records of a :func:`read_landing` frame (without the file counters)."""
    return parsed.filter(F.col(KIND) == "record").drop(KIND, *[n for n, _ in FILE_FIELDS])


def file_summaries(parsed: DataFrame) -> list[dict]:
    """One dict per file (path, dt and FILE_FIELDS). Bounded: one row per landing file."""
    rows = parsed.filter(F.col(KIND) == "file").select(F.col(FILE).alias("file"), S.DT, *[n for n, _ in FILE_FIELDS]).collect()
    return sorted((r.asDict() for r in rows), key=lambda r: r["file"])


def describe_problem(summary: dict) -> str | None:
    """A file's problem in words, or None."""
    if summary.get("file_problem"):
        return summary["file_problem"]
    if summary.get("header_problem"):
        return "bad header: " + summary["header_problem"]
    return None


def record_json_for_mask(mask_col, reason_col):
    """Quarantine record of a structurally broken row: its masked shape and what was wrong."""
    return F.to_json(F.struct(F.col(reason_col).alias("problem"), F.col(mask_col).alias("masked_record")))



class LandingError(RuntimeError):
    """A landing file the configured policy refuses (``ingest.bad_header: fail``)."""


@dataclass
class Landing:
    """One raw table's landing files for a run window, read once."""

    records: DataFrame | None  # source records (persisted), None when no folder landed
    missing: list[str]  # dates without a landing folder
    files: list[dict]  # per-file counts and problems (file_summaries)
    _parsed: DataFrame | None = None

    def problems(self) -> list[dict]:
        return [{"file": f["file"], "problem": describe_problem(f)} for f in self.files if describe_problem(f)]

    def unpersist(self) -> None:
        if self._parsed is not None:
            self._parsed.unpersist()


def read_table_landing(spark: SparkSession, base: str, columns: list[S.Column], dates: list[str], *, table: str,
                       bad_header: str = "quarantine") -> Landing:
    """:func:`read_landing` for one raw table, parsed once (persisted), with its file
    summaries, problem files logged, and the header policy applied: ``fail`` raises
    :class:`LandingError` naming every file whose header differs and how."""
    from pyspark import StorageLevel

    import logging

    log = logging.getLogger("riskgraph.landing")
    parsed, missing = read_landing(spark, base, columns, dates)
    if parsed is None:
        return Landing(None, missing, [])
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
    files = file_summaries(parsed)  # runs the parse once for the whole window
    landing = Landing(records(parsed), missing, files, parsed)
    bad = [f for f in files if f["header_problem"]]
    if bad and bad_header == "fail":
        landing.unpersist()
        raise LandingError(f"{table}: {len(bad)} landing file(s) with a header that is not the declared one "
                           f"({', '.join(c.name for c in columns)}): "
                           + "; ".join(f"{f['file']}: {f['header_problem']}" for f in bad[:10])
                           + ". Fix the export, or set ingest.bad_header: quarantine to quarantine their rows")
    for p in landing.problems():
        log.warning("%s: %s: %s (its records are quarantined with that reason)", table, p["file"], p["problem"])
    log.info("%s: %d landing file(s), %d bytes, %d records", table, len(files), sum(f["bytes"] for f in files),
             sum(f["records"] for f in files))
    return landing


class ReconciliationError(RuntimeError):
    """A landing file's records do not add up to what was kept and quarantined."""


def reconcile_files(q: DataFrame, landings: dict, by_table: dict) -> tuple[dict, list[dict]]:
    """Per landing file, in source records: records = kept + quarantined (every record
    counted once), and the files' records add up to the table's ``in``. Returns
    ({table: [file rows]}, [files with a problem]). Used by every ingest (tables, transfers)."""
    # bounded: one row per landing file
    quarantined = {(r["source"], r["file"]): r["count"] for r in q.filter(F.col("file").isNotNull())
                   .groupBy("source", "file").count().collect()}
    files, problems = {}, []
    for name, landing in landings.items():
        rows = []
        for f in landing.files:
            n_bad = quarantined.get((name, f["file"]), 0)
            if n_bad > f["records"]:
                raise ReconciliationError(f"{name}: {f['file']}: {n_bad} quarantined rows but only {f['records']} records")
            rows.append({**f, "kept": f["records"] - n_bad, "quarantined": n_bad})
        if name in by_table and sum(f["records"] for f in rows) != by_table[name]["in"]:
            raise ReconciliationError(f"{name}: landing files hold {sum(f['records'] for f in rows)} records but "
                                      f"{by_table[name]['in']} went into validation")
        files[name] = rows
        problems += [{"table": name, **p} for p in landing.problems()]
    return files, problems

"""Hostile landing files and rows (issue 13): for every kind, nothing lost (every physical
line accounted for, records = kept + quarantined per file), nothing silently altered
(columns by header name, no U+FFFD, no NaN/Infinity amounts, no (0, 0) GPS), and no raw PII
in any table, its Parquet statistics or its Delta log; the quarantine says what was wrong
and where (file, line)."""
from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.landing import MAX_LINES_PER_RECORD, LandingError, mask, parse_file
from riskgraph.pseudonym import hmac_python, pseudonym_key
from riskgraph.runtime import JobContext
from riskgraph.store import DeltaRsStore

COLS = [c.name for c in S.RAW_APPLICATIONS]
HEADER = ",".join(COLS)
DAY = "2026-01-05"


def _row(app_id: str, *, phone: str = "+44 7700 900123", email: str = "jane.doe@example.org", **over) -> dict:
    r = dict(application_id=app_id, applicant_id="P" + app_id, application_ts=f"{DAY}T10:00:00Z", product="cash",
             amount="5000", term_months="12", channel="app", declared_income="3000", employer="ACME", email=email,
             phone=phone, device_id="dev-" + app_id, ip="10.0.0.1", gps_lat="51.5", gps_lon="-0.12", referrer_code="")
    r.update(over)
    return r


def _line(r: dict, cols=COLS, sep=",") -> str:
    def q(v):
        return f'"{v}"' if any(ch in v for ch in ',"\n\r') and sep == "," else v
    return sep.join(q(r[c]) if '"' not in r[c] else '"' + r[c].replace('"', '""') + '"' for c in cols)


def _csv(rows: list[dict], cols=COLS, sep=",", nl="\n", header: str | None = None) -> bytes:
    head = header if header is not None else sep.join(cols)
    return (nl.join([head] + [_line(r, cols, sep) for r in rows]) + nl).encode()


def _records(content: bytes):
    p = parse_file(content, COLS)
    # nothing lost: the header, the blank lines and every record's lines are all the lines
    return p, [(r["_line"], r["_corrupt_record"]) for r in p.records]


# --------------------------------------------------------------------------- the parser, kind by kind
A, B, C = _row("A1"), _row("A2", phone="+44 7700 900456", email="sam.lee@example.org"), _row("A3", employer="ACME, Inc.")
KINDS = {
    "clean": (_csv([A, B]), [(2, None), (3, None)]),
    "header reordered (phone and email swapped)": (_csv([A, B], cols=COLS[::-1]), [(2, None), (3, None)]),
    "header in capitals with spaces and a BOM": (b"\xef\xbb\xbf" + _csv([A], header=", ".join(c.upper() for c in COLS)), [(2, None)]),
    "CRLF line ends": (_csv([A, B], nl="\r\n"), [(2, None), (3, None)]),
    "CR line ends": (_csv([A, B], nl="\r"), [(2, None), (3, None)]),
    "no final line end": (_csv([A, B])[:-1], [(2, None), (3, None)]),
    "blank and whitespace-only lines": (_csv([A]) + b"\n   \n" + _csv([B])[len(HEADER) + 1:], [(2, None), (5, None)]),
    "quoted comma": (_csv([C]), [(2, None)]),
    "doubled quotes inside a quoted field": (_csv([_row("A4", employer='The "Best" Ltd')]), [(2, None)]),
    "quoted line break inside a field": (_csv([_row("A5", employer="ACME\nEast"), B]), [(2, None), (4, None)]),
    "stray quote (never closed)": (_csv([_row("A6", employer='ACME "East'), B, A, B, A, B]).replace(b'"ACME ""East"', b'ACME "East'),
                                   [(2, "unbalanced_quote"), (3, None), (4, None), (5, None), (6, None), (7, None)]),
    "unquoted 1,000 (one field too many)": (_csv([A]).replace(b",5000,", b",5,000,") + _csv([B])[len(HEADER) + 1:],
                                            [(2, "malformed_row"), (3, None)]),
    "a field missing": (_csv([A]) + (",".join(_line(B).split(",")[:-1]) + "\n").encode(), [(2, None), (3, "malformed_row")]),
    "unquoted line break (one row split in two)": (_csv([A]).replace(b"ACME", b"AC\nME"), [(2, "malformed_row"), (3, "malformed_row")]),
    "latin-1 bytes": (_csv([_row("A7", employer="Café")]).replace("Café".encode(), "Café".encode("latin-1")), [(2, "bad_encoding")]),
    "semicolon-delimited file": (_csv([A, B], sep=";"), [(2, "bad_header"), (3, "bad_header")]),
    "header misses a column": (_csv([A], cols=COLS[:-1]), [(2, "bad_header")]),
    "header with an unknown column (loan_amount)": (_csv([A]).replace(b",amount,", b",loan_amount,", 1), [(2, "bad_header")]),
    "header repeats a column": (_csv([A]).replace(b",email,", b",phone,", 1), [(2, "bad_header")]),
    "header not UTF-8": (_csv([A]).replace(b"employer", "employér".encode("latin-1"), 1), [(2, "bad_header")]),
    "gzip bytes named .csv": (gzip.compress(_csv([A, B])), [(None, "not_text:gzip")]),
    "zip bytes named .csv": (None, [(None, "not_text:zip")]),  # built below
    "binary with NUL bytes": (b"\x00\x01\x02" + _csv([A]), [(None, "not_text:binary")]),
    "empty file": (b"", []),
    "header only (a quiet day)": ((HEADER + "\n").encode(), []),
    f"quoted field spanning more than {MAX_LINES_PER_RECORD} lines": (
        _csv([_row("A8", employer="x\n" * MAX_LINES_PER_RECORD + "y")]),
        [(2, "unbalanced_quote")] + [(i, "malformed_row") for i in range(3, 2 + MAX_LINES_PER_RECORD)]
        + [(2 + MAX_LINES_PER_RECORD, "unbalanced_quote")]),
}
_zip = io.BytesIO()
with zipfile.ZipFile(_zip, "w") as z:
    z.writestr("part.csv", _csv([A]))
KINDS["zip bytes named .csv"] = (_zip.getvalue(), KINDS["zip bytes named .csv"][1])
PII = ["7700 900123", "447700900123", "7700900456", "jane.doe", "sam.lee", "example.org"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_hostile_file_kind(kind):
    content, expected = KINDS[kind]
    p, got = _records(content)
    assert got == expected, kind
    s = p.summary
    if s["file_problem"] is None:  # every physical line is the header, a blank line or in exactly one record
        assert 1 + s["blank_lines"] + sum(r["_span"] for r in p.records) == s["lines"]
        assert s["records"] == len(p.records)
    for r in p.records:
        if r["_corrupt_record"]:  # broken: no field values travel on, only a masked shape without PII
            assert all(r[c] is None for c in COLS)
            assert not any(v in r["_mask"] for v in PII), r["_mask"]
        else:  # well-formed: every value exactly as written, under its own column
            assert r["phone"].startswith("+44") and "@" in r["email"] and r["application_id"].startswith("A")


def test_columns_follow_the_header_not_the_position():
    p = parse_file(_csv([A], cols=COLS[::-1]), COLS)
    assert {c: p.records[0][c] for c in COLS} == A


def test_values_are_kept_exactly():
    p = parse_file(_csv([_row("A5", employer='ACME\r\n"East"')], nl="\r\n"), COLS)
    assert p.records[0]["employer"] == 'ACME\r\n"East"'


def test_mask_keeps_shape_not_values():
    assert mask('A1,"Jane Doe",+44 7700 900123;x@y.org') == 'A9,"Aaaa Aaa",+99 9999 999999;a@a.aaa'


# --------------------------------------------------------------------------- the ingest job on hostile files
def _write(root: Path, name: str, content: bytes) -> Path:
    d = root / f"dt={DAY}"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(content)
    return d / name


def _strings_in_tables(root: Path) -> str:
    """Everything a reader of the output folder can see: every Parquet value and column
    statistic, and every Delta log entry (its JSON stats included)."""
    out = []
    for f in sorted(root.rglob("*")):
        if f.suffix == ".parquet":
            t = pq.read_table(f)
            out += [json.dumps(t.to_pylist(), default=str)]
            md = pq.ParquetFile(f).metadata
            for g in range(md.num_row_groups):
                for c in range(md.num_columns):
                    st = md.row_group(g).column(c).statistics
                    if st is not None and st.has_min_max:
                        out += [str(st.min), str(st.max)]
        elif "_delta_log" in f.parts and f.is_file():
            out.append(f.read_text(errors="replace"))
    return "\n".join(out)


def test_ingest_of_hostile_files_loses_nothing_and_leaks_nothing(spark, cfg_factory):
    from riskgraph.jobs import ingest

    cfg = cfg_factory()
    land = Path(T.raw_dir(cfg, "applications"))
    good = [_row(f"G{i}", phone=f"+44 7700 90{i:04d}", email=f"good{i}@example.org") for i in range(4)]
    files = {
        "a_clean.csv": _csv(good[:2]),
        "b_swapped.csv": _csv(good[2:], cols=COLS[::-1]),  # phone and email (and everything) swapped in the header
        "c_semicolon.csv": _csv([A], sep=";"),
        "d_shifted.csv": _csv([B]).replace(b",5000,", b",5,000,") + _csv([C])[len(HEADER) + 1:],
        "e_latin1.csv": _csv([_row("L1", employer="Café", phone="+44 7700 900789", email="lat@example.org")]).replace(
            "Café".encode(), "Café".encode("latin-1")),
        "f_gzip.csv": gzip.compress(_csv([A])),
        "g_values.csv": _csv([
            _row("V1", amount="NaN"), _row("V2", amount="Infinity"), _row("V3", amount="1e400"),
            _row("V4", gps_lat="0", gps_lon="0"), _row("V5", phone="+44 ７７００ ９００９９９", email="wide@example.org"),
            _row("V6", phone="+44 ٧٧٠٠ ٩٠٠٩٩٨", email="arab@example.org")]),
        "h_split_row.csv": _csv([_row("S1", phone="+44 7700 900321", email="split@example.org")]).replace(b"ACME", b"AC\nME"),
    }
    for name, content in files.items():
        _write(land, name, content)
    ctx = JobContext(cfg=cfg, run_date=dt.date.fromisoformat(DAY), from_date=dt.date.fromisoformat(DAY), run_id="hostile")
    metrics = ingest.run(spark, ctx)

    # per file, in source records: records = kept + quarantined; the files add up to the table
    per_file = {Path(f["file"]).name: f for f in metrics["files"]["applications"]}
    assert set(per_file) == set(files)
    expect = {"a_clean.csv": (2, 2, 0), "b_swapped.csv": (2, 2, 0), "c_semicolon.csv": (1, 0, 1), "d_shifted.csv": (2, 1, 1),
              "e_latin1.csv": (1, 0, 1), "f_gzip.csv": (1, 0, 1), "g_values.csv": (6, 2, 4), "h_split_row.csv": (2, 0, 2)}
    assert {n: (f["records"], f["kept"], f["quarantined"]) for n, f in per_file.items()} == expect
    t = metrics["by_table"]["applications"]
    assert t["in"] == sum(e[0] for e in expect.values()) == t["kept"] + t["quarantined"]
    problems = {Path(p["file"]).name: p["problem"] for p in metrics["file_problems"]}
    assert problems == {"c_semicolon.csv": f"bad header: missing {','.join(COLS)}; unknown {';'.join(COLS)}",
                        "f_gzip.csv": "not_text:gzip"}

    store = DeltaRsStore()
    bronze = store.read(spark, T.BRONZE_APPLICATIONS.uri(cfg))
    key = pseudonym_key()
    kept = {r["application_id"]: r for r in bronze.collect()}
    assert set(kept) == {"G0", "G1", "G2", "G3", "V5", "V6", "A3"}
    # the swapped header: each column by its name
    assert kept["G2"]["phone_key"] == hmac_python("447700900002", key)
    assert kept["G2"]["email_key"] == hmac_python("good2@example.org", key)
    # full-width and Arabic-Indic digits are the same phone as ASCII digits
    assert kept["V5"]["phone_key"] == hmac_python("447700900999", key)
    assert kept["V6"]["phone_key"] == hmac_python("447700900998", key)
    assert kept["A3"]["employer"] == "ACME, INC."

    q = store.read(spark, T.QUARANTINE.uri(cfg)).select("reason", "file", "line", "record").collect()
    where = sorted((Path(r["file"]).name, r["line"], r["reason"]) for r in q)
    assert where == [
        ("c_semicolon.csv", 2, "bad_header"),
        ("d_shifted.csv", 2, "malformed_row"),
        ("e_latin1.csv", 2, "bad_encoding"),
        ("f_gzip.csv", None, "not_text:gzip"),
        ("g_values.csv", 2, "bad_type:amount"),
        ("g_values.csv", 3, "bad_type:amount"),
        ("g_values.csv", 4, "bad_type:amount"),
        ("g_values.csv", 5, "bad_gps:gps_lat,gps_lon"),
        ("h_split_row.csv", 2, "malformed_row"),
        ("h_split_row.csv", 3, "malformed_row"),
    ]
    shifted = json.loads(next(r["record"] for r in q if r["reason"] == "malformed_row"))
    assert shifted["problem"] == "malformed_row" and ",9,999," in shifted["masked_record"]  # the unquoted 5,000, masked

    # no raw PII anywhere a reader of the output can look: values, Parquet stats, Delta logs
    seen = _strings_in_tables(Path(cfg.paths.root) / "bronze")
    planted = ["7700 900", "77009000", "7700900", "example.org", "jane.doe", "sam.lee", "Café", "Caf\\u00e9"]
    assert "dev-G0" in seen and '"stats"' in seen and kept["G0"]["phone_key"] in seen  # the scan does see the tables
    assert not [p for p in planted if p in seen]
    assert "\ufffd" not in seen


def test_bad_header_policy_fail_names_the_file(spark, cfg_factory):
    from riskgraph.jobs import ingest

    cfg = cfg_factory(**{"ingest.bad_header": "fail"})
    land = Path(T.raw_dir(cfg, "applications"))
    _write(land, "ok.csv", _csv([A]))
    bad = _write(land, "renamed.csv", _csv([B]).replace(b",amount,", b",loan_amount,", 1))
    ctx = JobContext(cfg=cfg, run_date=dt.date.fromisoformat(DAY), from_date=dt.date.fromisoformat(DAY), run_id="strict")
    with pytest.raises(LandingError, match=re.escape(f"{bad}: missing amount; unknown loan_amount")):
        ingest.run(spark, ctx)
    assert DeltaRsStore().version(T.BRONZE_APPLICATIONS.uri(cfg)) is None  # nothing written

"""Find raw PII in what the pipeline wrote (shared by the pipeline and media privacy tests).

The raw values come from the world's landing files: applicants' phones, e-mails, names and
national ids, and blacklisted phones. They are searched as written and as the pipeline
normalises them before hashing (a normalised raw value is still raw), inside any text.
"""
from __future__ import annotations

import glob
import os
import re
import sqlite3

import pandas as pd
import pyarrow.parquet as pq

from riskgraph import tables as T

# (landing table, its PII columns, how each is normalised before hashing)
_NORMALISED = {"email": lambda v: v.strip().lower(), "phone": lambda v: re.sub(r"[^0-9]", "", v),
               "national_id": lambda v: re.sub(r"[^0-9A-Za-z]", "", v).upper(), "full_name": lambda v: v}


def raw_pii(cfg) -> tuple[set[str], set[str]]:
    """(values to find inside any text, normalised names to find as whole cells). A normalised
    name ('ZHOU XIN') also spells ordinary words of company names, so names are searched as
    written inside text, and normalised only as whole cells."""
    values: set[tuple[str, str]] = set()
    for table, cols in (("applications", ["email", "phone"]), ("applicants", ["full_name", "national_id"])):
        for f in glob.glob(os.path.join(T.raw_dir(cfg, table), "dt=*", "*.csv")):
            df = pd.read_csv(f, dtype=str, usecols=cols)
            values |= {(col, v) for col in cols for v in df[col].dropna()}
    for f in glob.glob(os.path.join(T.raw_dir(cfg, "blacklists"), "dt=*", "*.csv")):
        df = pd.read_csv(f, dtype=str, usecols=["kind", "value"])
        values |= {("phone", v) for v in df[df.kind == "phone"].value.dropna()}
    pii = {x for col, v in values for x in (v, _NORMALISED[col](v)) if len(x) >= 6}
    names = {" ".join(v.upper().split()) for col, v in values if col == "full_name"}
    return pii, names


def pii_finder(pii: set[str]):
    """A fast exact matcher for many strings: index them by their first k characters and
    check only the positions where such a prefix occurs (one pass per text, instead of one
    substring search per PII value)."""
    k = min(len(v) for v in pii)
    by_prefix: dict[str, list[str]] = {}
    for v in pii:
        by_prefix.setdefault(v[:k], []).append(v)

    def find(text: str) -> list[str]:
        hits = []
        for i in range(len(text) - k + 1):
            cands = by_prefix.get(text[i:i + k])
            if cands:
                hits += [v for v in cands if text.startswith(v, i)]
        return hits

    return find


def sqlite_text(path: str) -> str:
    """Every value of every table of an SQLite database (MLflow: params, tags, metrics,
    registered models and their version tags), as text."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        parts = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in con.execute(f'SELECT * FROM "{table}"'):
                parts.append("\t".join("" if v is None else (v.decode("utf-8", "ignore") if isinstance(v, bytes) else str(v))
                                       for v in row))
        return "\n".join(parts)
    finally:
        con.close()


def outputs(root: str) -> list[str]:
    """Every file the pipeline wrote under the data root (not the landing files or the truth)."""
    return [p for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
            if os.path.isfile(p) and not p.startswith((os.path.join(root, "raw"), os.path.join(root, "truth")))]


def pii_in_file(path: str, find, names: set[str]) -> list[str]:
    """Raw PII in one output file: in every string cell of a Parquet file (anywhere inside a
    cell: JSON records, vertex ids), in any other file read as text (run records, quality
    reports, Delta logs and their min/max statistics, checksums)."""
    if not path.endswith(".parquet"):
        return [f"{path}: {hit}" for hit in find(open(path, "rb").read().decode("utf-8", "ignore"))]
    tbl = pq.read_table(path)
    found = []
    for name in tbl.column_names:
        if str(tbl.schema.field(name).type) == "string":
            cells = [v for v in tbl.column(name).unique().to_pylist() if v]
            found += [f"{path}:{name}: {hit}" for hit in find("\n".join(cells)) + sorted(names.intersection(cells))[:1]]
    return found

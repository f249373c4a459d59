"""Landing: the world's raw rows as one CSV per table and date, and the ground truth as Parquet.

What lands (the contract ``features.validation`` / ingest reads)::

    {root}/raw/{applications,applicants,outcomes}/dt=YYYY-MM-DD/part-00000.csv
    {root}/truth/gang_membership.parquet   application_id, gang_id, is_bad, outcome
    {root}/truth/dirty_rows.parquet        source, dt, key, defect

No randomness here: every draw was made while generating the world and planning its rows.
Text is built ``_BLOCK_ROWS`` rows at a time, so memory stays bounded for 1M applications.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskgraph.schemas import OUTCOMES, RAW_APPLICANTS, RAW_APPLICATIONS, RAW_OUTCOMES
from riskgraph.simulator.calendar import Calendar
from riskgraph.simulator.defects import LandingPlan, _code, _Rows
from riskgraph.simulator.formatting import _csv_lines, _fmt_fixed6, _fmt_id, _fmt_int, _fmt_ip, _fmt_ts, _replace, _take
from riskgraph.simulator.reference import _DAY, BAD_OUTCOME_LABELS, CHANNELS, GOOD, PRODUCTS, TERM_WORDS
from riskgraph.simulator.world import World

_BLOCK_ROWS = 200_000  # rows turned into text at once while writing (bounds memory)


# ---------------------------------------------------------------- text of a block of raw rows
def _application_block(w: World, rows: _Rows, a: int, b: int) -> list[pa.Array]:
    """Columns (``RAW_APPLICATIONS`` order) of application rows ``a:b``, defects applied."""
    src, defect, variant = rows.src[a:b], rows.defect[a:b], rows.variant[a:b]
    amount = w.amount[src].copy()
    is_dup = defect == _code("applications", "duplicate_id")
    altered = is_dup & (variant % 2 == 1)  # a re-submission with another amount
    amount[altered] = np.maximum(500, np.rint(amount[altered] * (0.5 + (variant[altered] % 11) / 10) / 100) * 100)
    c = {
        "application_id": _fmt_id("A", src + 1),
        "applicant_id": _fmt_id("C", w.person_rank[w.person[src]] + 1),
        "application_ts": _fmt_ts(w.ts[src]),
        "product": _take(pa.array(PRODUCTS), w.product[src]),
        "amount": _fmt_int(amount),
        "term_months": _fmt_int(w.term[src]),
        "channel": _take(pa.array(CHANNELS), w.channel[src]),
        "declared_income": _fmt_int(w.income[src]),
        "employer": _take(w.employer_names, np.where(w.employer[src] < 0, len(w.employer_names) - 1, w.employer[src])),
        "email": _take(w.email, w.person[src]),
        "phone": _fmt_int(w.phone[src]),
        "device_id": _take(w.device_ids, np.where(w.device[src] < 0, len(w.device_ids) - 1, w.device[src])),
        "ip": _fmt_ip(w.ip[src]),
        "gps_lat": _fmt_fixed6(w.lat[src]),
        "gps_lon": _fmt_fixed6(w.lon[src]),
        "referrer_code": _take(w.referrer_codes, np.where(w.referrer[src] < 0, len(w.referrer_codes) - 1, w.referrer[src])),
    }
    # defects: few rows, so their text is built row by row
    def rows_of(kind: str) -> np.ndarray:
        return np.flatnonzero(defect == _code("applications", kind))

    m = rows_of("null_key")
    c["application_id"] = _replace(c["application_id"], np.isin(np.arange(b - a), m), [""] * len(m))
    m = rows_of("bad_gps")
    lat_bad = m[variant[m] % 2 == 0]
    lon_bad = m[variant[m] % 2 == 1]
    c["gps_lat"] = _replace(c["gps_lat"], np.isin(np.arange(b - a), lat_bad), ["123.4"] * len(lat_bad))
    c["gps_lon"] = _replace(c["gps_lon"], np.isin(np.arange(b - a), lon_bad), ["250"] * len(lon_bad))
    m = rows_of("future_ts")
    c["application_ts"] = _replace(c["application_ts"], np.isin(np.arange(b - a), m),
                                   _fmt_ts(w.ts[src[m]] + (2 + variant[m] % 5) * _DAY).to_pylist())
    m = rows_of("bad_type")
    amt_bad = m[variant[m] % 2 == 0]
    term_bad = m[variant[m] % 2 == 1]
    c["amount"] = _replace(c["amount"], np.isin(np.arange(b - a), amt_bad),
                           [s[:2] + "a" + s[3:] for s in _fmt_int(amount[amt_bad]).to_pylist()])
    c["term_months"] = _replace(c["term_months"], np.isin(np.arange(b - a), term_bad),
                                [TERM_WORDS[int(t)] for t in w.term[src[term_bad]]])
    m = rows_of("bad_value")
    c["amount"] = _replace(c["amount"], np.isin(np.arange(b - a), m), ["-" + s for s in _fmt_int(amount[m]).to_pylist()])
    m = rows_of("bad_timestamp")
    bad_ts = []
    for s, v in zip(_fmt_ts(w.ts[src[m]]).to_pylist(), variant[m]):
        y, mo, d, hh, mi = s[0:4], s[5:7], int(s[8:10]), s[11:13], s[14:16]
        bad_ts.append(f"{y}-13-{d + 31} 25:{mi}" if v % 2 == 0 else f"{d + 31}/{mo}/{y} {hh}:{int(mi) + 60}")
    c["application_ts"] = _replace(c["application_ts"], np.isin(np.arange(b - a), m), bad_ts)
    return [c[col.name] for col in RAW_APPLICATIONS]


def _outcome_block(w: World, rows: _Rows, a: int, b: int) -> list[pa.Array]:
    """Columns (``RAW_OUTCOMES`` order) of outcome rows ``a:b``, defects applied."""
    src, defect, variant, ts = rows.src[a:b], rows.defect[a:b], rows.variant[a:b], rows.ts[a:b]
    orphan = src < 0
    n_apps = len(w.ts)
    app_no = np.where(orphan, n_apps + 1 + variant, src + 1)  # orphans: ids no application has
    label = np.where(orphan, variant % 3, w.outcome[np.maximum(src, 0)])
    c = {
        "application_id": _fmt_id("A", app_no),
        "outcome": _take(pa.array(OUTCOMES), label),
        "known_ts": _fmt_ts(ts),
    }
    m = np.flatnonzero(defect == _code("outcomes", "bad_value"))
    c["outcome"] = _replace(c["outcome"], np.isin(np.arange(b - a), m),
                            [BAD_OUTCOME_LABELS[int(v) % len(BAD_OUTCOME_LABELS)] for v in variant[m]])
    return [c[col.name] for col in RAW_OUTCOMES]


def _applicant_block(w: World, rows: _Rows, a: int, b: int) -> list[pa.Array]:
    """Columns (``RAW_APPLICANTS`` order) of applicant rows ``a:b``, defects applied."""
    src, defect = rows.src[a:b], rows.defect[a:b]
    c = {
        "applicant_id": _fmt_id("C", w.person_rank[src] + 1),
        "full_name": _take(w.full_name, src),
        "national_id": _take(w.national_id, src),
        "birth_date": _take(w.birth_date, src),
        "region": _take(w.region, src),
    }
    m = defect == _code("applicants", "null_key")
    c["applicant_id"] = _replace(c["applicant_id"], m, [""] * int(m.sum()))
    return [c[col.name] for col in RAW_APPLICANTS]


def _write_table(root: Path, table: str, rows: _Rows, cal: Calendar, block: Callable[[World, _Rows, int, int], list], w: World) -> int:
    """One CSV per landing date (header only on a quiet day); text is built ~_BLOCK_ROWS rows at a time."""
    header = ",".join(c.name for c in {"applications": RAW_APPLICATIONS, "applicants": RAW_APPLICANTS, "outcomes": RAW_OUTCOMES}[table])
    bounds = np.searchsorted(rows.land, np.arange(cal.n_days + 1))
    d = 0
    while d < cal.n_days:
        e = d + 1
        while e < cal.n_days and bounds[e + 1] - bounds[d] <= _BLOCK_ROWS:
            e += 1
        a, b = int(bounds[d]), int(bounds[e])
        lines = _csv_lines(block(w, rows, a, b)) if b > a else None
        for day in range(d, e):
            lo, hi = int(bounds[day]) - a, int(bounds[day + 1]) - a
            body = "".join(s + "\n" for s in lines.slice(lo, hi - lo).to_pylist()) if hi > lo else ""
            out = root / "raw" / table / f"dt={cal.date_str(day)}"
            out.mkdir(parents=True, exist_ok=True)
            (out / "part-00000.csv").write_bytes((header + "\n" + body).encode("utf-8"))
        d = e
    return len(rows.src)


def clear_landing(root: Path) -> None:
    """Remove ``{root}/raw`` and ``{root}/truth`` (a world replaces the previous one); nothing else."""
    for sub in ("raw", "truth"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)


def write_raw(root: Path, w: World, plan: LandingPlan) -> dict[str, int]:
    """Every table's landing CSVs under ``{root}/raw``; returns rows written per table."""
    return {
        "applications": _write_table(root, "applications", plan.applications, w.cal, _application_block, w),
        "applicants": _write_table(root, "applicants", plan.applicants, w.cal, _applicant_block, w),
        "outcomes": _write_table(root, "outcomes", plan.outcomes, w.cal, _outcome_block, w),
    }


def write_truth(root: Path, w: World, dirty: list[tuple]) -> None:
    """``{root}/truth/gang_membership.parquet`` (every application's gang and outcome) and
    ``{root}/truth/dirty_rows.parquet`` (``dirty``: (source, dt, key, defect) tuples)."""
    truth_dir = root / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth = pa.table({
        "application_id": w.application_ids(),
        "gang_id": w.gang_ids(),
        "is_bad": pa.array(w.outcome != GOOD),
        "outcome": _take(pa.array(OUTCOMES), w.outcome),
    })
    pq.write_table(truth, truth_dir / "gang_membership.parquet")
    pq.write_table(pa.table({
        "source": pa.array([r[0] for r in dirty], pa.string()),
        "dt": pa.array([r[1] for r in dirty], pa.string()),
        "key": pa.array([r[2] for r in dirty], pa.string()),
        "defect": pa.array([r[3] for r in dirty], pa.string()),
    }), truth_dir / "dirty_rows.parquet")
    pq.write_table(relation_truth(w), truth_dir / "relations.parquet")


def relation_truth(w: World) -> pa.Table:
    """Who is related to whom, per application (its applicant's), for scoring relationship
    inference: ``household_id`` (the applicant id of the household's head; the applicant's own
    when living alone), ``kin`` (the head or the head's family: two members of one household
    are family when both are, flatmates otherwise), ``employer_id`` (the real employer, -1
    none: colleagues share it, whatever a gang member declares) and ``referral_group`` (the
    honest friends' referral code the application used, -1 none or a gang's code). Derived
    from the world without a draw."""
    p = w.person
    hh_rank = w.person_rank[w.person_household]
    ref = np.where(w.gang < 0, w.referrer, -1)
    return pa.table({
        "application_id": w.application_ids(),
        "applicant_id": w.applicant_ids(),
        "household_id": _fmt_id("C", hh_rank[p] + 1),
        "kin": pa.array(w.person_kin[p]),
        "employer_id": pa.array(w.person_employer[p].astype(np.int64)),
        "referral_group": pa.array(ref.astype(np.int64)),
    })

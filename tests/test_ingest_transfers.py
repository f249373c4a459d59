"""Transfer ingest (jobs/ingest_transfers.py + features/money_validation.py) on a simulated world
with the money layer on, and on a hand-made hostile landing file.

* Nothing lost: in = kept + quarantined; every planted dirty row (truth/dirty_transfers.parquet)
  is quarantined with its reason, and only those rows are; every other row reaches
  bronze/transfers with exactly the values of its CSV line.
* No raw account number anywhere in bronze/transfers or bronze/transfer_quarantine (values,
  Parquet statistics, Delta logs); the pseudonyms are ``hmac_python`` of the number.
* Re-running the window gives the same rows.
* Hostile rows (header in another order, negative / zero / text amounts, a disbursement
  without its loan, a loan on a non-disbursement, an unknown channel, ...) get their reasons.
* trace_funds runs on the world's bronze and its hop audit finds no violation (the tracing
  itself is tested in tests/test_fund_flow.py).
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from riskgraph import tables as T
from riskgraph.config import load_config
from riskgraph.pseudonym import hmac_python, pseudonym_key
from riskgraph.runtime import JobContext
from riskgraph.schemas import RAW_TRANSFERS
from riskgraph.simulator import simulate_world
from riskgraph.store import choose_store

HEADER = [c.name for c in RAW_TRANSFERS]
FROM, TO = dt.date(2026, 3, 2), dt.date(2026, 3, 6)  # the ingest window
WINDOW = [(FROM + dt.timedelta(days=i)).isoformat() for i in range((TO - FROM).days + 1)]
SIMULATION = {  # conf/test.yaml's world, smaller, money from March (background from February), many dirty rows
    "simulation.n_applications": 2000,
    "simulation.transfers.enabled": True,
    "simulation.transfers.from_date": "2026-03-01",
    "simulation.transfers.background_days": 28,
    "simulation.transfers.dirty_rate": 0.005,
    "simulation.transfers.patterns_per_kind": 3,
    "simulation.transfers.cycles": 20,
    "simulation.transfers.decoy_cycles": 10,
}
# the simulator's defects -> the reason ingest must give (bad_amount: a negative amount is a
# number that is not > 0, the other kind is no number at all)
REASON = {
    "missing_id": "null_key:transfer_id",
    "bad_timestamp": "bad_timestamp:transfer_ts",
    "same_account": "bad_value:to_account",
    "unknown_sector": "unknown_sector:to_sector",
    "duplicate_id": "duplicate_id:transfer_id",
}


def _config(root: Path, **overrides):
    """As tests/conftest.py's cfg_factory, for a world shared by the tests of this module."""
    return load_config("test", overrides={
        "paths.root": str(root / "root"), "paths.checkpoint_dir": str(root / "ckpt"),
        "mlflow.tracking_uri": f"sqlite:///{root}/mlflow.db", "mlflow.artifact_root": str(root / "mlflow-art"), **overrides})


def read_window(raw: Path, dates: list[str]) -> list[dict]:
    """Every data row landed for ``dates``, with its ``dt`` and ``line`` (the header is line 1)."""
    rows = []
    for d in dates:
        with (raw / f"dt={d}" / "part-00000.csv").open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            assert next(reader) == HEADER
            rows += [{**dict(zip(HEADER, v)), "dt": d, "line": i} for i, v in enumerate(reader, start=2)]
    return rows


def strings_in(folder: Path) -> str:
    """Everything a reader of ``folder`` can see: every Parquet value and column statistic, every
    Delta log entry, and the raw bytes of every file."""
    out = []
    for f in sorted(folder.rglob("*")):
        if not f.is_file():
            continue
        if f.suffix == ".parquet":
            out.append(json.dumps(pq.read_table(f).to_pylist(), default=str))
            md = pq.ParquetFile(f).metadata
            for g in range(md.num_row_groups):
                for c in range(md.num_columns):
                    st = md.row_group(g).column(c).statistics
                    if st is not None and st.has_min_max:
                        out += [str(st.min), str(st.max)]
        out.append(f.read_bytes().decode("latin-1"))
    return "\n".join(out)


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """A simulated world with money, its structured ingest and its transfer ingest for WINDOW."""
    from riskgraph.jobs import ingest, ingest_transfers

    cfg = _config(tmp_path_factory.mktemp("money-ingest"), **SIMULATION)
    summary = simulate_world(cfg.simulation, cfg.paths.root)
    structured = ingest.run(spark, JobContext(cfg=cfg, run_date=TO, from_date=FROM, run_id="ingest-1"))
    metrics = ingest_transfers.run(spark, JobContext(cfg=cfg, run_date=TO, from_date=FROM, run_id="ingest-1"))
    store = choose_store(spark, cfg.store.backend)
    return dict(cfg=cfg, summary=summary, structured=structured, metrics=metrics, store=store,
                rows=read_window(Path(T.raw_dir(cfg, "transfers")), WINDOW),
                dirty=pq.read_table(Path(cfg.paths.root) / "truth" / "dirty_transfers.parquet").to_pylist())


def _bronze(spark, w) -> list[tuple]:
    df = w["store"].read(spark, T.BRONZE_TRANSFERS.uri(w["cfg"]))
    return sorted(tuple(r) for r in df.select(
        "transfer_id", F.date_format("transfer_ts", "yyyy-MM-dd'T'HH:mm:ss'Z'"), "from_account_key", "to_account_key",
        "amount", "channel", "application_id", "from_sector", "to_sector", "dt").collect())


def _quarantine(spark, w) -> list[dict]:
    df = w["store"].read(spark, T.TRANSFER_QUARANTINE.uri(w["cfg"]))
    return [r.asDict() for r in df.select("source", "reason", "record", "dt", "file", "line").collect()]


def test_every_planted_dirty_row_is_quarantined_with_its_reason_and_nothing_else(spark, world):
    rows, m = world["rows"], world["metrics"]
    assert m["in"] == len(rows) == m["kept"] + m["quarantined"] and m["quarantined"] > 0
    dirty = {r["transfer_id"]: r for r in world["dirty"] if r["dt"] in WINDOW}
    assert {r["defect"] for r in dirty.values()} == set(REASON) | {"bad_amount"}  # every kind lands in the window

    # the expected reason of each line: by id from the truth, a blank id is the missing one
    expect, dup_lines = {}, {}
    for r in rows:
        kind = dirty.get(r["transfer_id"], {}).get("defect") if r["transfer_id"] else "missing_id"
        if kind == "duplicate_id":
            dup_lines.setdefault(r["transfer_id"], []).append((r["dt"], r["line"]))
        elif kind == "bad_amount":
            expect[r["dt"], r["line"]] = "bad_value:amount" if r["amount"].startswith("-") else "bad_type:amount"
        elif kind:
            expect[r["dt"], r["line"]] = REASON[kind]
    assert sum(k == "missing_id" for k in (d["defect"] for d in dirty.values())) == \
        sum(v == "null_key:transfer_id" for v in expect.values())
    assert {"bad_value:amount", "bad_type:amount"} <= set(expect.values())

    q = _quarantine(spark, world)
    assert {r["source"] for r in q} == {"transfers"} and len(q) == m["quarantined"]
    assert all(Path(r["file"]).name == "part-00000.csv" and Path(r["file"]).parent.name == f"dt={r['dt']}" for r in q)
    got = {(r["dt"], r["line"]): r["reason"] for r in q if r["reason"] != "duplicate_id:transfer_id"}
    assert got == expect
    # a duplicate: one of its two identical lines is quarantined, the other kept
    dups = [r for r in q if r["reason"] == "duplicate_id:transfer_id"]
    assert len(dup_lines) == len(dups) > 0 and all(len(v) == 2 for v in dup_lines.values())
    for r in dups:
        assert (r["dt"], r["line"]) in dup_lines[json.loads(r["record"])["transfer_id"]]
    assert m["reasons"] == dict(Counter(r["reason"] for r in q))
    # the structured ingest before it kept its own tables: no transfer in its quarantine, none of its rows in ours
    assert set(world["structured"]["by_table"]) == {"applications", "applicants", "outcomes"}
    structured_q = world["store"].read(spark, T.QUARANTINE.uri(world["cfg"])).select("source").distinct().collect()
    assert {r["source"] for r in structured_q} <= {"applications", "applicants", "outcomes"}
    assert world["structured"]["by_table"]["applications"]["kept"] > 0

    # every other line is in bronze, once, with its own values
    key = pseudonym_key()
    first_copy = {min(v) for v in dup_lines.values()}  # the two copies are the same line: either one stands for both
    clean = [r for r in rows if (r["dt"], r["line"]) not in expect
             and (r["transfer_id"] not in dup_lines or (r["dt"], r["line"]) in first_copy)]
    expected_bronze = sorted((r["transfer_id"], r["transfer_ts"], hmac_python(r["from_account"], key),
                              hmac_python(r["to_account"], key), float(r["amount"]), r["channel"], r["application_id"] or None,
                              r["from_sector"], r["to_sector"], r["dt"]) for r in clean)
    assert _bronze(spark, world) == expected_bronze
    assert len(expected_bronze) == m["kept"] and sum(r[5] == "disbursement" for r in expected_bronze) > 50


def test_no_raw_account_number_reaches_bronze_and_pseudonyms_are_the_keyed_hash(spark, world):
    cfg, rows = world["cfg"], world["rows"]
    numbers = {r[c] for r in rows for c in ("from_account", "to_account")}
    assert len(numbers) > 500 and all(re.fullmatch(r"\d{16}", n) for n in numbers)
    seen = ""
    for t in (T.BRONZE_TRANSFERS, T.TRANSFER_QUARANTINE):
        text = strings_in(Path(t.uri(cfg)))
        assert len(text) > 10_000, t.uri(cfg)
        # no number in any value, statistic or log entry, alone or inside a longer run of digits
        leaked = {run[i:i + 16] for run in re.findall(r"\d{16,}", text) for i in range(len(run) - 15)} & numbers
        assert not leaked, sorted(leaked)[:3]
        seen += text
    # the scan does see the tables: ids and the pseudonyms of the numbers are there
    key = pseudonym_key()
    disb = next(r for r in rows if r["channel"] == "disbursement")
    assert hmac_python(disb["from_account"], key) in seen and disb["transfer_id"] in seen
    assert json.loads(_quarantine(spark, world)[0]["record"])["to_account_key"] in seen
    # the quarantine's records hold the pseudonyms, never the numbers
    for r in _quarantine(spark, world):
        rec = json.loads(r["record"])
        assert "from_account" not in rec and re.fullmatch(r"[0-9a-f]{32}", rec["from_account_key"]), rec
    same = [r for r in rows if r["transfer_id"] and r["from_account"] == r["to_account"]]
    q_same = {json.loads(r["record"])["transfer_id"]: json.loads(r["record"]) for r in _quarantine(spark, world)
              if r["reason"] == "bad_value:to_account"}
    assert same and all(q_same[r["transfer_id"]]["to_account_key"] == hmac_python(r["to_account"], key) for r in same)


def test_rerunning_the_window_is_idempotent(spark, world):
    from riskgraph.jobs import ingest_transfers

    cfg = world["cfg"]
    before_b, before_q = _bronze(spark, world), sorted(map(str, _quarantine(spark, world)))
    again = ingest_transfers.run(spark, JobContext(cfg=cfg, run_date=TO, from_date=FROM, run_id="ingest-2"))
    assert {k: again[k] for k in ("in", "kept", "quarantined", "reasons")} == \
        {k: world["metrics"][k] for k in ("in", "kept", "quarantined", "reasons")}
    assert _bronze(spark, world) == before_b
    assert sorted(map(str, _quarantine(spark, world))) == before_q


def test_trace_funds_runs_on_the_world_and_its_audit_is_clean(spark, world):
    """As on a lender's data: the world's truth is moved aside for the run, so the step does not
    score itself against it (tests/test_fund_flow.py does that). Only real estate is flagged
    here: securities is not traced, so its share is null (unknown), not 0."""
    from riskgraph.jobs import trace_funds

    cfg = world["cfg"]
    cfg = cfg.model_copy(update={"money": cfg.money.model_copy(update={"flagged_sectors": ("real_estate",)})})
    truth = Path(T.truth_dir(cfg))
    aside = truth.with_name("truth-aside")
    truth.rename(aside)
    try:
        out = trace_funds.run(spark, JobContext(cfg=cfg, run_date=TO, from_date=FROM, run_id="ingest-1"))
    finally:
        aside.rename(truth)
    assert "diversion_quality" not in out
    disbursed = {r["application_id"] for r in world["rows"] if r["channel"] == "disbursement"}
    assert 0 < out["loans_traced"] <= len(disbursed)
    assert out["audit"]["violations"] == 0 and out["audit"]["path_hops_checked"] > 0
    assert out["transfers_followed"] > 0
    loans = DeltaTable(T.LOAN_MONEY.uri(cfg)).to_pandas()
    assert len(loans) == out["loans_traced"]
    assert loans.share_securities.isna().all() and loans.share_real_estate.notna().all()
    assert loans.share_flagged.tolist() == pytest.approx(loans.share_real_estate.tolist())


# ---------------------------------------------------------------- a hand-made landing file
DAY = "2026-06-02"
ACC = {"lender": "6200000007340033", "me": "6211112222333344", "shop": "6299998888777766", "dev": "6255554444333322"}


def _t(tid, ts="10:00:00", src="me", dst="shop", amount="12.50", channel="card", app="", fs="personal", ts_="retail"):
    return dict(transfer_id=tid, transfer_ts=f"{DAY}T{ts}Z", from_account=ACC.get(src, src), to_account=ACC.get(dst, dst),
                amount=amount, channel=channel, application_id=app, from_sector=fs, to_sector=ts_)


HOSTILE = {  # transfer_id -> (row, expected reason or None when kept)
    "K1": (_t("K1", src="lender", dst="me", amount="5000.00", channel="disbursement", app="A1", fs="lender", ts_="personal"),
           None),
    "K2": (_t("K2"), None),
    "K3": (_t("K3", src="6211 1122-2233 3344", dst="dev", amount="4900", channel="Transfer", ts_="Real_Estate"), None),
    "B1": (_t("B1", amount="-12.50"), "bad_value:amount"),
    "B2": (_t("B2", amount="0.00"), "bad_value:amount"),
    "B3": (_t("B3", amount="12,50"), "bad_type:amount"),
    "B4": (_t("B4", amount="NaN"), "bad_type:amount"),
    "B5": (_t("B5", src="lender", dst="me", amount="5000.00", channel="disbursement", fs="lender", ts_="personal"),
           "null_value:application_id"),
    "B6": (_t("B6", channel="salary", app="A1", fs="employer", ts_="personal"), "bad_value:application_id"),
    "B7": (_t("B7", channel="crypto"), "unknown_channel:crypto"),
    "B8": (_t("B8", channel=""), "null_value:channel"),
    "B9": (_t("B9", ts_="casino"), "unknown_sector:to_sector"),
    "B10": (_t("B10", fs=""), "null_value:from_sector"),
    "B11": (_t("B11", dst="me"), "bad_value:to_account"),
    "B12": (_t("B12", dst=""), "null_value:to_account"),
    "B13": (dict(_t("B13"), transfer_ts="2026-06-02 25:00"), "bad_timestamp:transfer_ts"),
    "B14": (dict(_t("B14"), transfer_ts="2026-06-04T10:00:00Z"), "future_ts:transfer_ts"),
    "B15": (_t("B15", amount="-1", channel="crypto"), "bad_value:amount;unknown_channel:crypto"),
    "": (_t(""), "null_key:transfer_id"),
}


def test_hostile_rows_get_their_reasons_whatever_the_header_order(spark, cfg_factory, tmp_path):
    from riskgraph.jobs import ingest_transfers

    cfg = cfg_factory(**{"paths.root": str(tmp_path / "hostile")})
    folder = Path(T.raw_dir(cfg, "transfers")) / f"dt={DAY}"
    folder.mkdir(parents=True)
    items = list(HOSTILE.items())
    files = {"a_standard.csv": (HEADER, items[::2]), "b_reordered.csv": (HEADER[::-1], items[1::2])}
    where = {}
    for name, (cols, part) in files.items():
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(cols)
            for line, (tid, (row, reason)) in enumerate(part, start=2):
                w.writerow([row[c] for c in cols])
                where[name, line] = (tid, reason)
    day = dt.date.fromisoformat(DAY)
    out = ingest_transfers.run(spark, JobContext(cfg=cfg, run_date=day, from_date=day, run_id="hostile"))

    kept_ids = {tid for tid, reason in where.values() if reason is None}
    assert (out["in"], out["kept"], out["quarantined"]) == (len(HOSTILE), len(kept_ids), len(HOSTILE) - len(kept_ids))
    assert out["file_problems"] == []
    store = choose_store(spark, cfg.store.backend)
    q = store.read(spark, T.TRANSFER_QUARANTINE.uri(cfg)).collect()
    assert {(Path(r["file"]).name, r["line"]): r["reason"] for r in q} == \
        {k: reason for k, (tid, reason) in where.items() if reason is not None}
    assert out["reasons"] == dict(Counter(r["reason"] for r in q))

    key = pseudonym_key()
    bronze = {r["transfer_id"]: r for r in store.read(spark, T.BRONZE_TRANSFERS.uri(cfg)).collect()}
    assert set(bronze) == kept_ids
    k1, k3 = bronze["K1"], bronze["K3"]
    assert (k1["application_id"], k1["amount"], k1["channel"], k1["from_sector"]) == ("A1", 5000.0, "disbursement", "lender")
    assert k1["from_account_key"] == hmac_python(ACC["lender"], key) and k1["to_account_key"] == hmac_python(ACC["me"], key)
    # a number written with spaces and dashes is the same account; channel and sector are case-folded
    assert k3["from_account_key"] == k1["to_account_key"]
    assert (k3["channel"], k3["to_sector"], k3["amount"], k3["application_id"]) == ("transfer", "real_estate", 4900.0, None)
    assert bronze["K2"]["application_id"] is None
    text = strings_in(Path(cfg.paths.root) / "bronze")
    assert not [n for n in ACC.values() if n in text] and "1122-2233" not in text

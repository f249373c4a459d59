"""The simulator's money layer (riskgraph/simulator/transfers.py), checked against the files it lands.

* It is an extra layer: turning it on leaves every base-world file byte-identical, and it is
  deterministic per seed (same seed -> same bytes, another seed -> other bytes).
* Its truth agrees with its CSVs, read back with Python's ``csv`` (not with the simulator's
  arrays): loans are disbursed only for booked applications, 1-48 h after they were made; each
  planted diversion is a simple, time-ordered chain of real transfers from the borrower's
  account into a real-estate / securities account, keeping 90-100 % per hop; each planted
  cycle is time-ordered and closes; no decoy cycle has a rotation in time order; the dirty rows
  are exactly the rows that are bad in the files; every day has a file.
* Account numbers: 16 digits, never shared by two accounts.

Two tests pin bugs found while writing them (fixed since): repayments dated after the period
were counted but never landed, and deposit decoys could be planted dirty.

No Spark.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from riskgraph.config import Simulation
from riskgraph.schemas import ACCOUNT_SECTORS, RAW_TRANSFERS, TRANSFER_CHANNELS
from riskgraph.simulator import simulate_world
from riskgraph.simulator.transfers import DEFECTS, FLAGGED_SECTORS, account_numbers

# A small world, written out (not read from conf/test.yaml) so tuning that file does not move these tests.
BASE = dict(
    seed=42, n_applications=4000, start_date="2026-01-01", end_date="2026-03-31", gang_share=0.1, gang_size_min=4,
    gang_size_max=60, gang_size_alpha=1.8, gang_burst_days=10, household_share=0.25, nat_ip_share=0.1, n_nat_ips=12,
    default_device_share=0.01, n_employers=4000, employer_zipf=1.3, referral_share=0.05, honest_bad_rate=0.06,
    gang_bad_rate=0.55, gang_fraud_share=0.6, performance_days=30, hub_noise=1.0, shared_dealer_share=0.3,
    dirty_rate=0.01,
)
FROM_DATE = dt.date(2026, 2, 1)
# dirty_rate is high (1 % per kind) so every kind of defect lands many times in a small world
TRANSFERS = dict(enabled=True, from_date=FROM_DATE.isoformat(), background_days=30, dirty_rate=0.01,
                 patterns_per_kind=4, cycles=30, decoy_cycles=15, cycle_len_max=6)
HEADER = [c.name for c in RAW_TRANSFERS]
BASE_FILES = ("raw/applications", "raw/applicants", "raw/outcomes", "truth/gang_membership.parquet", "truth/dirty_rows.parquet",
              "truth/relations.parquet")
LAYER_FILES = ("raw/transfers", "truth/diversions.parquet", "truth/transfer_patterns.parquet",
               "truth/transfer_decoys.parquet", "truth/dirty_transfers.parquet")
ID_RE = re.compile(r"T\d{10}")
AMOUNT_RE = re.compile(r"\d+\.\d\d")
ACCOUNT_RE = re.compile(r"\d{16}")


def make_sim(*, transfers: bool = True, **overrides) -> Simulation:
    return Simulation(**{**BASE, **overrides, "transfers": {**TRANSFERS, "enabled": transfers}})


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under raw/ and truth/, by path relative to ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("raw", "truth") for p in sorted((root / sub).rglob("*")) if p.is_file()}


def _under(digests: dict[str, str], prefixes) -> dict[str, str]:
    return {k: v for k, v in digests.items() if k.startswith(tuple(prefixes))}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The same world without and with the money layer, the latter twice, and another seed's."""
    base = tmp_path_factory.mktemp("money-worlds")
    out = {}
    for name, sim in (("plain", make_sim(transfers=False)), ("first", make_sim()), ("again", make_sim()),
                      ("other", make_sim(seed=43))):
        out[name] = (base / name, simulate_world(sim, str(base / name)))
    return out


# ---------------------------------------------------------------- the files read back
def read_transfers(root: Path) -> list[dict]:
    """Every data row of raw/transfers, with its landing ``dt`` and 1-based ``line`` (header = 1)."""
    rows = []
    for f in sorted((root / "raw" / "transfers").glob("dt=*/part-00000.csv")):
        with f.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            assert next(reader) == HEADER, f
            for i, values in enumerate(reader, start=2):
                assert len(values) == len(HEADER), (f, i, values)
                rows.append({**dict(zip(HEADER, values)), "dt": f.parent.name[3:], "line": i})
    return rows


def _ts(text: str) -> dt.datetime | None:
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text):
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def problems(r: dict) -> list[str]:
    """What is wrong with a raw row, by the simulator's defect names (the duplicate check needs
    every row, so it is done by the caller)."""
    out = []
    if r["transfer_id"] == "":
        out.append("missing_id")
    elif not ID_RE.fullmatch(r["transfer_id"]):
        out.append("malformed_id")
    if not AMOUNT_RE.fullmatch(r["amount"]) or Decimal(r["amount"]) <= 0:
        out.append("bad_amount")
    ts = _ts(r["transfer_ts"])
    if ts is None:
        out.append("bad_timestamp")
    elif ts.date().isoformat() != r["dt"]:
        out.append("landed_on_another_day")
    if not (ACCOUNT_RE.fullmatch(r["from_account"]) and ACCOUNT_RE.fullmatch(r["to_account"])):
        out.append("bad_account_number")
    if r["from_account"] == r["to_account"]:
        out.append("same_account")
    if r["to_sector"] not in ACCOUNT_SECTORS:
        out.append("unknown_sector")
    if r["from_sector"] not in ACCOUNT_SECTORS:
        out.append("unknown_from_sector")
    if r["channel"] not in TRANSFER_CHANNELS:
        out.append("unknown_channel")
    if (r["channel"] == "disbursement") != (r["application_id"] != ""):
        out.append("application_id_vs_channel")
    return out


@pytest.fixture(scope="module")
def landed(worlds):
    """The first world's transfers: rows, clean rows by id, its truth tables and summary."""
    root, summary = worlds["first"]
    rows = read_transfers(root)
    seen: set[str] = set()
    for r in rows:  # a later copy of an id already seen is a duplicate (the simulator appends the copy)
        r["problems"] = problems(r) + (["duplicate_id"] if r["transfer_id"] and r["transfer_id"] in seen else [])
        seen.add(r["transfer_id"])
    clean = {r["transfer_id"]: r for r in rows if not r["problems"]}
    truth = {n: pd.read_parquet(root / "truth" / f"{n}.parquet")
             for n in ("diversions", "transfer_patterns", "transfer_decoys", "dirty_transfers", "gang_membership", "dirty_rows")}
    return dict(root=root, summary=summary["transfers"], rows=rows, clean=clean, truth=truth)


def amount(r: dict) -> Decimal:
    return Decimal(r["amount"])


def in_band(prev: Decimal, cur: Decimal, lo: str = "0.9", hi: str = "1.0") -> bool:
    return Decimal(lo) * prev <= cur <= Decimal(hi) * prev


# ---------------------------------------------------------------- 1. an extra layer
def test_the_money_layer_leaves_the_base_world_byte_identical(worlds):
    (plain, s_plain), (first, s_first) = worlds["plain"], worlds["first"]
    d_plain, d_first = file_digests(plain), file_digests(first)
    assert _under(d_plain, BASE_FILES) and _under(d_plain, BASE_FILES) == d_plain  # the plain world is the base files
    assert _under(d_first, BASE_FILES) == d_plain  # every one of them, byte for byte
    assert set(d_first) - set(d_plain) == set(_under(d_first, LAYER_FILES))  # the layer adds only its own files
    assert {Path(k).parts[2] for k in _under(d_first, ["raw/transfers"])} == \
        {f"dt={dt.date(2026, 1, 1) + dt.timedelta(days=i)}" for i in range(90)}
    s_plain, s_first = dict(s_plain), dict(s_first)
    for s in (s_plain, s_first):
        s.pop("seconds"), s.pop("root")
    assert s_first.pop("transfers")["transfers"] > 0
    assert s_first == s_plain


def test_the_money_layer_is_deterministic_per_seed(worlds):
    first, again, other = (file_digests(worlds[k][0]) for k in ("first", "again", "other"))
    layer = _under(first, LAYER_FILES)
    assert len(layer) == 90 + 4
    assert _under(again, LAYER_FILES) == layer
    assert worlds["again"][1]["transfers"] == worlds["first"][1]["transfers"]
    theirs = _under(other, LAYER_FILES)
    assert set(theirs) == set(layer)  # the same files, other bytes
    # every truth table and every day's file differ, but a day on which nothing landed (header only)
    root = worlds["first"][0]
    empty = {k for k in layer if k.startswith("raw/") and len((root / k).read_text().splitlines()) == 1}
    assert {k for k in layer if theirs[k] == layer[k]} == empty and len(empty) < 5


# ---------------------------------------------------------------- 2. truth vs the CSVs
def test_every_day_has_a_file_and_the_counts_match_the_summary(landed):
    root, s, rows = landed["root"], landed["summary"], landed["rows"]
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(90)]
    with_rows = 0
    for d in days:
        f = root / "raw" / "transfers" / f"dt={d}" / "part-00000.csv"
        lines = f.read_text(encoding="utf-8").split("\n")
        assert lines[0] == ",".join(HEADER) and lines[-1] == "", f  # header first, newline at the end
        with_rows += len(lines) > 2
    assert with_rows == s["days_with_rows"]
    # background starts background_days before from_date: nothing lands before it, every day after has rows
    first_day = FROM_DATE - dt.timedelta(days=TRANSFERS["background_days"])
    assert {r["dt"] for r in rows} == {d.isoformat() for d in days if d >= first_day}
    assert len(rows) == s["raw_rows"]
    assert sum(r["channel"] == "disbursement" for r in rows) == s["loans_disbursed"]


def test_every_transfer_the_summary_counts_lands_in_the_period(landed):
    rows, s, truth = landed["rows"], landed["summary"], landed["truth"]["dirty_transfers"]
    assert truth.dt.max() <= "2026-03-31"  # every planted bad row is in a file
    assert len(rows) == s["transfers"] + s["dirty_rows"]["duplicate_id"]
    missing = set(truth.transfer_id[truth.defect == "missing_id"])
    # nothing lost: the ids in the files plus the blanked ones are T1..Tn, n = transfers
    assert {r["transfer_id"] for r in rows} - {""} | missing == {f"T{i:010d}" for i in range(1, s["transfers"] + 1)}


def test_dirty_rows_are_exactly_the_bad_rows_in_the_files(landed):
    rows, s, truth = landed["rows"], landed["summary"], landed["truth"]["dirty_transfers"]
    assert set(DEFECTS) == set(truth.defect) and all(v > 0 for v in s["dirty_rows"].values())
    assert dict(Counter(truth.defect)) == s["dirty_rows"]
    assert (truth.dt <= "2026-03-31").all()  # every planted bad row is dated in the period
    bad = [r for r in rows if r["problems"]]
    assert all(len(r["problems"]) == 1 for r in bad), [r for r in bad if len(r["problems"]) > 1][:3]
    assert Counter(r["problems"][0] for r in bad) == Counter(truth.defect)

    # by id: every named bad row is the truth's row with the truth's defect, on the truth's day
    named = {(r["transfer_id"], r["problems"][0]): r["dt"] for r in bad if r["problems"] != ["missing_id"]}
    expected = {(t, k): d for t, k, d in zip(truth.transfer_id, truth.defect, truth.dt) if k != "missing_id"}
    assert named == expected
    # a missing id: the truth's id is nowhere in the files, and each day has as many blank ids as the truth says
    missing = truth[truth.defect == "missing_id"]
    present = {r["transfer_id"] for r in rows}
    assert not set(missing.transfer_id) & present
    assert Counter(r["dt"] for r in bad if r["problems"] == ["missing_id"]) == Counter(missing.dt)
    # ids follow time order: the ids in the files plus the blanked ones are T1..Tm, with no gap
    ids = present - {""} | set(missing.transfer_id)
    assert ids == {f"T{i:010d}" for i in range(1, len(ids) + 1)}
    # a duplicate is the very same line twice, in the same day's file
    by_id = defaultdict(list)
    for r in rows:
        by_id[r["transfer_id"]].append(r)
    for t in truth.transfer_id[truth.defect == "duplicate_id"]:
        a, b = by_id[t]
        assert {k: a[k] for k in HEADER + ["dt"]} == {k: b[k] for k in HEADER + ["dt"]} and a["line"] < b["line"]
    # the bad amounts are of both kinds: a negative number and text that is no number
    amounts = [r["amount"] for r in bad if r["problems"] == ["bad_amount"]]
    assert any(a.startswith("-") for a in amounts) and any(not re.fullmatch(r"-?[\d.]+", a) for a in amounts)


def test_disbursements_pay_booked_loans_1_to_48_hours_after_the_application(landed):
    root, clean, truth = landed["root"], landed["clean"], landed["truth"]
    apps = {}
    for f in sorted((root / "raw" / "applications").glob("dt=*/part-00000.csv")):
        with f.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r["application_id"]:
                    apps.setdefault(r["application_id"], r["application_ts"])
    d = truth["dirty_rows"]
    never_booked = set(d.key[(d.source == "applications") & (d.defect != "duplicate_id") & d.key.notna()])
    booked = {a: _ts(t) for a, t in apps.items() if a not in never_booked}
    disb = [r for r in clean.values() if r["channel"] == "disbursement"]
    lender = {r["from_account"] for r in disb}
    assert len(lender) == 1 and {(r["from_sector"], r["to_sector"]) for r in disb} == {("lender", "personal")}
    paid = Counter(r["application_id"] for r in disb)
    assert max(paid.values()) == 1  # one disbursement per loan
    assert set(paid) <= set(booked)  # only booked applications
    end = dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
    start = dt.datetime.combine(FROM_DATE, dt.time(), dt.timezone.utc)
    for r in disb:
        lag = _ts(r["transfer_ts"]) - booked[r["application_id"]]
        assert dt.timedelta(hours=1) <= lag < dt.timedelta(hours=48), r
        assert booked[r["application_id"]] >= start, r
    # every booked loan made on/after from_date is paid, unless its payment would fall after the period
    due = {a for a, t in booked.items() if start <= t < end - dt.timedelta(hours=48)}
    assert due <= set(paid) and len(due) > 1000


def test_each_diversion_is_a_simple_time_ordered_chain_of_real_transfers(landed):
    clean, truth, s = landed["clean"], landed["truth"], landed["summary"]
    div = truth["diversions"]
    gangs = truth["gang_membership"].set_index("application_id").gang_id
    disb = {r["application_id"]: r for r in clean.values() if r["channel"] == "disbursement"}
    assert div.application_id.nunique() == s["diversion_chains"] > 10
    sectors_of = defaultdict(set)  # every account number's sector, as the clean rows report it
    for r in clean.values():
        sectors_of[r["from_account"]].add(r["from_sector"])
        sectors_of[r["to_account"]].add(r["to_sector"])
    assert all(len(v) == 1 for v in sectors_of.values())
    traffic = defaultdict(set)  # account number -> ids of the clean transfers it is on
    for r in clean.values():
        traffic[r["from_account"]].add(r["transfer_id"])
        traffic[r["to_account"]].add(r["transfer_id"])
    busy = 0
    for app, g in div.groupby("application_id"):
        g = g.sort_values("hop")
        assert g.hop.tolist() == list(range(1, len(g) + 1)) and set(g.n_hops) == {len(g)} and 2 <= len(g) <= 4, app
        assert set(g.gang_loan) == {bool(pd.notna(gangs[app]))}, app
        hops = [clean[t] for t in g.transfer_id]  # KeyError: a hop that is not a clean row of the files
        prev = disb[app]
        path = [prev["to_account"]]
        for h in hops:
            assert h["channel"] == "transfer" and h["application_id"] == "", h
            assert h["from_account"] == prev["to_account"], (app, h)
            assert _ts(h["transfer_ts"]) > _ts(prev["transfer_ts"]), (app, h)
            assert in_band(amount(prev), amount(h)), (app, prev["amount"], h["amount"])
            path.append(h["to_account"])
            prev = h
        assert len(set(path)) == len(path), app  # simple: no account twice
        assert hops[-1]["to_sector"] in FLAGGED_SECTORS and set(g.sector) == {hops[-1]["to_sector"]}, app
        assert all(h["to_sector"] == "personal" for h in hops[:-1]), app
        # an intermediary with traffic of its own (a busy stranger's account), not only the chain's
        busy += any(traffic[a] - set(g.transfer_id) for a in path[1:-1])
    assert set(div.n_hops) == {2, 3, 4}
    assert set(div.gang_loan) == {True, False}
    assert busy > 0


def _ring(hops: list[dict]) -> bool:
    """Hops in role order form one closed ring through distinct accounts."""
    accts = [h["from_account"] for h in hops]
    return (all(a["to_account"] == b["from_account"] for a, b in zip(hops, hops[1:] + hops[:1]))
            and len(set(accts)) == len(accts))


def _rotations_in_time_order(hops: list[dict]) -> list[int]:
    """Start hops from which walking the ring is strictly later at every hop."""
    t = [_ts(h["transfer_ts"]) for h in hops]
    n = len(t)
    return [s for s in range(n) if all(t[(s + i) % n] < t[(s + i + 1) % n] for i in range(n - 1))]


def test_planted_cycles_are_time_ordered_and_close_and_decoy_cycles_never_are(landed):
    clean, pat = landed["clean"], landed["truth"]["transfer_patterns"]
    cycles, decoys = pat[pat.kind == "cycle"], pat[pat.kind == "decoy_cycle"]
    assert cycles.pattern_id.nunique() > 10 and decoys.pattern_id.nunique() == landed["summary"]["decoy_cycles"] > 5
    assert (~cycles.decoy).all() and decoys.decoy.all()
    lengths = set()
    for pid, g in cycles.groupby("pattern_id"):
        g = g.sort_values("role", key=lambda r: r.str[3:].astype(int))
        n = len(g)
        assert g.role.tolist() == [f"hop{i}" for i in range(1, n + 1)] and set(g.cycle_length) == {n}, pid
        hops = [clean[t] for t in g.transfer_id]
        assert _ring(hops), pid
        assert 0 in _rotations_in_time_order(hops), pid  # from its first hop, each hop later than the last
        assert all(in_band(amount(a), amount(b)) for a, b in zip(hops, hops[1:])), pid
        lengths.add(n)
    assert lengths == set(range(2, TRANSFERS["cycle_len_max"] + 1))
    for pid, g in decoys.groupby("pattern_id"):
        g = g.sort_values("role", key=lambda r: r.str[3:].astype(int))
        hops = [clean[t] for t in g.transfer_id]
        assert len(hops) >= 3 and set(g.cycle_length) == {len(hops)} and _ring(hops), pid
        assert _rotations_in_time_order(hops) == [], (pid, [h["transfer_ts"] for h in hops])


def test_planted_laundering_shapes_are_clean_rows_of_the_files(landed):
    clean, pat = landed["clean"], landed["truth"]["transfer_patterns"]
    assert set(pat.kind) == {"fan_out", "fan_in", "scatter_gather", "gather_scatter", "cycle", "bipartite", "stack",
                             "decoy_cycle"}
    assert pat.transfer_id.is_unique and set(pat.transfer_id) <= set(clean)
    assert pat[~pat.decoy].pattern_id.nunique() == landed["summary"]["pattern_instances"]
    for kind, hub, spoke in (("fan_out", "from_account", "to_account"), ("fan_in", "to_account", "from_account")):
        for pid, g in pat[pat.kind == kind].groupby("pattern_id"):  # one hub, many spokes
            hops = [clean[t] for t in g.transfer_id]
            assert len({h[hub] for h in hops}) == 1 < len({h[spoke] for h in hops}) == len(hops), pid


def test_deposit_decoys_are_payments_from_honest_borrowers_into_a_flagged_sector(landed):
    clean, truth = landed["clean"], landed["truth"]
    dec = truth["transfer_decoys"]
    gangs = truth["gang_membership"].set_index("application_id").gang_id
    disb = {r["application_id"]: r for r in clean.values() if r["channel"] == "disbursement"}
    assert len(dec) == landed["summary"]["deposit_decoys"] > 10 and dec.transfer_id.is_unique
    assert not set(dec.application_id) & set(truth["diversions"].application_id)
    assert gangs[dec.application_id].isna().all()
    landed_clean = [(a, t) for a, t in zip(dec.application_id, dec.transfer_id) if t in clean]
    assert len(landed_clean) == len(dec) > 10  # decoys are never made dirty
    for app, t in landed_clean:
        r = clean[t]
        assert r["channel"] == "transfer" and r["from_account"] == disb[app]["to_account"], (app, r)
        assert r["to_sector"] in FLAGGED_SECTORS, (app, r)


def test_deposit_decoys_are_never_planted_dirty(landed):
    dec, dirty = landed["truth"]["transfer_decoys"], landed["truth"]["dirty_transfers"]
    assert not set(dec.transfer_id) & set(dirty.transfer_id)
    assert set(dec.transfer_id) <= set(landed["clean"])


# ---------------------------------------------------------------- 3. account numbers
def test_account_numbers_are_16_digits_and_never_shared():
    # a contiguous million and a spread of far ids (a lender's account ids stay far below 10^9)
    ids = np.unique(np.concatenate([np.arange(0, 1_000_000), np.random.default_rng(0).choice(10**9, 300_000, replace=False)]))
    nums = account_numbers(ids)
    assert len(nums) == len(ids) == pc.count_distinct(nums).as_py()
    assert pc.all(pc.match_substring_regex(nums, r"^62[0-9]{14}$")).as_py()
    back = account_numbers(ids[::-1])  # no draws: an id's number depends on the id alone
    assert pc.all(pc.equal(back, nums.take(np.arange(len(ids))[::-1]))).as_py()
    assert account_numbers(np.array([0, 1])).to_pylist() == ["6200000007340033", "6200000989791686"]

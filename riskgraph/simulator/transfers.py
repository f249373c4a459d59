"""The money layer: accounts, the loans' disbursements and the transfers around them, with
planted loan diversion, laundering shapes and decoys (the second source article).

An extra layer (``riskgraph.simulator.layers``): it draws only from ``layer_rng(seed,
"transfers")`` and runs after the base world (and the media layer) is written, so every
existing file stays byte-identical. What lands::

    {root}/raw/transfers/dt=YYYY-MM-DD/part-00000.csv   RAW_TRANSFERS columns, one file per day
    {root}/truth/diversions.parquet         one row per hop of each planted diversion chain
    {root}/truth/transfer_patterns.parquet  one row per transfer of each planted laundering shape
                                            (and of each time-disordered decoy cycle)
    {root}/truth/transfer_decoys.parquet    honest loans whose borrower paid a developer / broker
    {root}/truth/dirty_transfers.parquet    dt, transfer_id, defect of every planted bad row

The world of money
------------------
* Accounts: the lender's disbursement account; each person's own account; counterparties by
  sector (retail merchants, utilities, each employer, payroll providers that pay the salaries
  of many employers - the big legitimate hubs -, real-estate developers, securities
  brokers); mule accounts (gangs' intermediaries) and the accounts of laundering shapes.
  Account numbers are 16 digits (PII: ingest pseudonymises them).
* Loans: every booked application made on/after ``transfers.from_date`` is disbursed to the
  borrower's account 1-48 h later (if that is before the period ends).
* Background, for every borrower and the people living with them, from ``background_days``
  before ``from_date`` to the end: a monthly salary (from the employer, or its payroll
  provider), monthly bills by direct debit, card purchases at retail merchants, transfers
  between household members, the loan's monthly repayment; most borrowers spend part of the
  loan at a merchant within days (a big purchase).
* Planted diversion (positives): a share of gang loans (and a few honest ones) is moved from
  the borrower's account through 1-3 intermediary accounts (gang mules, sometimes a busy
  stranger's account) to a real-estate developer or a securities broker; each hop 1 h-2 days
  after the last, keeping 95-99 % of the amount. A chain of ``k`` intermediaries has ``k + 1``
  hops after the disbursement.
* Laundering shapes (FinBench's): fan-out, fan-in, scatter-gather, gather-scatter, cycle,
  bipartite, stack; half of their main accounts are busy merchant accounts (a degree cut
  would delete them). Cycles are time-ordered, amounts within 90-100 % per hop, 2-6 hops.
* Decoys: honest borrowers paying a developer / broker a deposit from their own savings
  (any time around the loan, any amount), cycles whose hops are not in time order (never a
  valid temporal cycle, whichever account it starts from), the payroll providers' hubs.
* Dirty rows (``dirty_rate`` per kind, background rows only, so the truth stays intact):
  missing id, bad amount, bad timestamp, the same account on both sides, an unknown sector,
  a duplicated transfer id.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskgraph.schemas import ACCOUNT_SECTORS, RAW_TRANSFERS, TRANSFER_CHANNELS
from riskgraph.simulator.formatting import _csv_lines, _fmt_id, _fmt_ts
from riskgraph.simulator.layers import LayerContext, layer_rng
from riskgraph.simulator.reference import _DAY

log = logging.getLogger(__name__)

NAME = "transfers"
SECTORS = ACCOUNT_SECTORS
FLAGGED_SECTORS = ("real_estate", "securities")
CHANNELS = TRANSFER_CHANNELS
PATTERN_KINDS = ("fan_out", "fan_in", "scatter_gather", "gather_scatter", "cycle", "bipartite", "stack")
DEFECTS = ("missing_id", "bad_amount", "bad_timestamp", "same_account", "unknown_sector", "duplicate_id")
_HOUR = 3600
_SEC = {s: i for i, s in enumerate(SECTORS)}
_CH = {c: i for i, c in enumerate(CHANNELS)}


class _Transfers:
    """Transfers as growing numeric columns (account ids, seconds, cents, codes)."""

    def __init__(self):
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in ("src", "dst", "ts", "cents", "channel", "app")}

    def add(self, src, dst, ts, amount, channel: str, app=None) -> np.ndarray:
        """Append transfers; returns their positions (before the final time sort)."""
        src, dst, ts = (np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (src, dst, ts))
        n = len(ts)
        start = sum(len(a) for a in self.cols["ts"])
        self.cols["src"].append(np.broadcast_to(src, n).copy())
        self.cols["dst"].append(np.broadcast_to(dst, n).copy())
        self.cols["ts"].append(ts)
        self.cols["cents"].append(np.maximum(1, np.rint(np.atleast_1d(np.asarray(amount, dtype=float)) * 100)).astype(np.int64)
                                  if np.ndim(amount) else np.full(n, max(1, int(round(amount * 100)))))
        self.cols["channel"].append(np.full(n, _CH[channel], dtype=np.int64))
        self.cols["app"].append(np.full(n, -1, dtype=np.int64) if app is None else np.broadcast_to(np.asarray(app, dtype=np.int64), n).copy())
        return np.arange(start, start + n)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: (np.concatenate(v) if v else np.empty(0, dtype=np.int64)) for k, v in self.cols.items()}


class _Accounts:
    """Account ids by sector: 0 the lender, 1..n_persons the persons' own accounts, then the rest."""

    def __init__(self, n_persons: int):
        self.sector: list[np.ndarray] = [np.array([_SEC["lender"]]), np.full(n_persons, _SEC["personal"])]
        self.n = 1 + n_persons

    def new(self, count: int, sector: str) -> np.ndarray:
        ids = np.arange(self.n, self.n + count)
        self.sector.append(np.full(count, _SEC[sector]))
        self.n += count
        return ids

    def sectors(self) -> np.ndarray:
        return np.concatenate(self.sector)


def account_numbers(ids: np.ndarray) -> pa.Array:
    """16-digit account numbers: ``62`` + an affine bijection of the id modulo 10^14 (the
    multiplier is prime, so distinct ids never share a number). No draws."""
    v = (np.asarray(ids, dtype=np.int64) * 982_451_653 + 7_340_033) % 10**14
    return pa.array(np.strings.add("62", np.strings.zfill(v.astype(str), 14)))


def _fmt_amount(cents: np.ndarray) -> pa.Array:
    c = np.asarray(cents, dtype=np.int64)
    return pa.array(np.strings.add(np.strings.add((c // 100).astype(str), "."), np.strings.zfill((c % 100).astype(str), 2)))


def simulate_transfers(ctx: LayerContext) -> dict:
    """Write raw/transfers and truth/{diversions,transfer_patterns,transfer_decoys,dirty_transfers}.parquet."""
    cfg = ctx.sim.transfers
    rng = layer_rng(ctx.sim.seed, NAME)
    w, cal, root = ctx.world, ctx.calendar, Path(ctx.root)
    n_persons = w.n_applicants
    from_s = cal.epoch0 if cfg.from_date is None else max(cal.epoch0, (cfg.from_date - cal.start).days * _DAY + cal.epoch0)
    bg_start = max(cal.epoch0, from_s - cfg.background_days * _DAY)
    end_s = cal.end_s
    acc = _Accounts(n_persons)
    tr = _Transfers()
    person_acct = 1 + np.arange(n_persons)

    # ---- counterparties
    retail = acc.new(cfg.n_retail, "retail")
    utilities = acc.new(cfg.n_utilities, "utilities")
    n_emp = max(1, len(w.employer_names) - 1)
    employers = acc.new(n_emp, "employer")
    payroll = acc.new(cfg.n_payroll_providers, "payroll")
    developers = acc.new(cfg.n_developers, "real_estate")
    brokers = acc.new(cfg.n_brokers, "securities")
    emp_payroll = np.where(rng.random(n_emp) < cfg.payroll_share, rng.integers(0, len(payroll), n_emp), -1)

    # ---- loans: booked applications on/after from_date, disbursed 1-48 h later
    apps = np.flatnonzero(ctx.applications.booked & (w.ts >= from_s))
    disb_ts = w.ts[apps] + rng.integers(_HOUR, 48 * _HOUR, len(apps))
    ok = disb_ts <= end_s
    apps, disb_ts = apps[ok], disb_ts[ok]
    borrower = w.person[apps]
    loan_amount = w.amount[apps].astype(float)
    tr.add(0, person_acct[borrower], disb_ts, loan_amount, "disbursement", app=apps)

    # ---- who is active: borrowers and their household members
    head = w.person_household
    active_heads = np.unique(head[borrower])
    active = np.flatnonzero(np.isin(head, active_heads))
    income = np.zeros(n_persons)
    income[w.person] = w.income
    span = end_s - bg_start
    months = span / (30 * _DAY)

    # salary: monthly, from the employer or its payroll provider (the hubs)
    emp = w.person_employer[active]
    paid = active[emp >= 0]
    emp = emp[emp >= 0]
    offset = rng.integers(0, 30 * _DAY, len(paid))
    k = np.maximum(0, np.ceil((span - offset) / (30 * _DAY))).astype(np.int64)
    who = np.repeat(np.arange(len(paid)), k)
    nth = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    payer = np.where(emp_payroll[emp] >= 0, payroll[np.maximum(emp_payroll[emp], 0)], employers[emp])
    tr.add(payer[who], person_acct[paid[who]], bg_start + offset[who] + nth * 30 * _DAY,
           np.maximum(income[paid[who]], 300) * rng.uniform(0.97, 1.03, len(who)), "salary")

    def events(persons: np.ndarray, per_month: float) -> tuple[np.ndarray, np.ndarray]:
        n = rng.poisson(per_month * months, len(persons))
        return np.repeat(persons, n), bg_start + rng.integers(0, span, int(n.sum()))

    who, ts = events(active, cfg.card_per_month)
    tr.add(person_acct[who], retail[rng.zipf(1.5, len(who)) % len(retail)], ts, rng.lognormal(3.6, 0.9, len(who)), "card")
    who, ts = events(active, cfg.bills_per_month)
    tr.add(person_acct[who], utilities[rng.integers(0, len(utilities), len(who))], ts, rng.lognormal(4.3, 0.5, len(who)), "direct_debit")
    # household transfers: to another member of the household
    order = np.argsort(head, kind="stable")
    h_sorted = head[order]
    first = np.searchsorted(h_sorted, head)
    size = np.searchsorted(h_sorted, head, side="right") - first
    shared = active[size[active] > 1]
    who, ts = events(shared, cfg.family_per_month)
    pick = order[first[who] + rng.integers(0, size[who])]
    mate = pick != who
    tr.add(person_acct[who[mate]], person_acct[pick[mate]], ts[mate], rng.lognormal(5.0, 0.8, int(mate.sum())), "transfer")
    # repayments: monthly from 30 days after the disbursement
    term = np.maximum(w.term[apps], 1)
    k = np.clip(np.floor((end_s - disb_ts) / (30 * _DAY)).astype(np.int64), 0, term)
    idx = np.repeat(np.arange(len(apps)), k)
    nth = 1 + np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    ts = disb_ts[idx] + nth * 30 * _DAY + rng.integers(0, 2 * _DAY, len(idx))
    keep = ts <= end_s  # a repayment drawn past the period's end has not happened yet
    tr.add(person_acct[borrower[idx[keep]]], 0, ts[keep], (loan_amount[idx] / term[idx] * 1.05)[keep], "direct_debit")
    # spending the loan: a big purchase at a merchant within days
    spend = rng.random(len(apps)) < cfg.loan_spend_share
    ts = disb_ts[spend] + rng.integers(_HOUR, 10 * _DAY, int(spend.sum()))
    keep = ts <= end_s
    tr.add(person_acct[borrower[spend][keep]], retail[rng.integers(0, len(retail), int(spend.sum()))][keep], ts[keep],
           loan_amount[spend][keep] * rng.uniform(0.3, 1.0, int(spend.sum()))[keep], "card")
    n_background = sum(len(a) for a in tr.cols["ts"])

    # ---- planted diversion chains
    is_gang = w.gang[apps] >= 0
    p_div = np.where(is_gang, cfg.diversion_gang_share, cfg.diversion_honest_share)
    divert = rng.random(len(apps)) < p_div
    gang_mules: dict[int, np.ndarray] = {}
    busy_pool = person_acct[active]
    div_rows: list[tuple] = []
    planted: list[int] = []  # transfer positions of planted rows (never made dirty)
    for j in np.flatnonzero(divert):
        a, t, amt = int(apps[j]), int(disb_ts[j]), float(loan_amount[j])
        g = int(w.gang[a])
        n_int = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        if g >= 0 and g not in gang_mules:
            gang_mules[g] = acc.new(int(rng.integers(2, 4)), "personal")
        mids = []
        for _ in range(n_int):
            if rng.random() < cfg.busy_intermediary_share:
                mids.append(int(busy_pool[rng.integers(0, len(busy_pool))]))
            elif g >= 0:
                mids.append(int(gang_mules[g][rng.integers(0, len(gang_mules[g]))]))
            else:
                mids.append(int(acc.new(1, "personal")[0]))
        sector = "real_estate" if rng.random() < 0.6 else "securities"
        end_acct = int((developers if sector == "real_estate" else brokers)[rng.integers(0, cfg.n_developers if sector == "real_estate" else cfg.n_brokers)])
        path = [int(person_acct[borrower[j]]), *mids, end_acct]
        if len(set(path)) != len(path):  # a busy account drawn twice: not a simple chain; skip this loan
            continue
        hops, amt_h = [], amt * rng.uniform(0.97, 1.0)
        for h in range(len(path) - 1):
            t = t + int(rng.integers(_HOUR if h else 2 * _HOUR, 2 * _DAY))
            hops.append((path[h], path[h + 1], t, amt_h))
            amt_h *= 1 - rng.uniform(0.01, 0.05)
        if hops[-1][2] > end_s:
            continue
        for h, (s, d, th, ah) in enumerate(hops):
            pos = tr.add(s, d, th, ah, "transfer")
            planted.append(int(pos[0]))
            div_rows.append((a, len(hops), h + 1, int(pos[0]), sector, g >= 0))

    # ---- decoys: honest borrowers paying a deposit to a developer / broker from their savings
    honest = np.flatnonzero(~is_gang & ~divert)
    dec = honest[rng.random(len(honest)) < cfg.deposit_decoy_share]
    ts = disb_ts[dec] + rng.integers(-20 * _DAY, 20 * _DAY, len(dec))
    to = np.where(rng.random(len(dec)) < 0.6, developers[rng.integers(0, len(developers), len(dec))],
                  brokers[rng.integers(0, len(brokers), len(dec))])
    ok = (ts >= bg_start) & (ts <= end_s)
    dec_pos = tr.add(person_acct[borrower[dec][ok]], to[ok], ts[ok],
                     np.maximum(income[borrower[dec][ok]], 300) * rng.uniform(2, 12, int(ok.sum())), "transfer")
    decoy_apps = apps[dec][ok]
    planted += dec_pos.tolist()  # decoys are truth too: never made dirty

    # ---- laundering shapes and time-disordered decoy cycles
    pat_rows: list[tuple] = []
    merchants = retail

    def main_account() -> int:
        return int(merchants[rng.integers(0, len(merchants))]) if rng.random() < cfg.busy_main_share else int(acc.new(1, "personal")[0])

    def t0_for(days: float) -> int:
        return int(rng.integers(bg_start, max(bg_start + 1, end_s - int(days * _DAY))))

    pid = 0
    for kind in PATTERN_KINDS:
        for _ in range(cfg.cycles if kind == "cycle" else cfg.patterns_per_kind):
            pid += 1
            hops: list[tuple[int, int, int, float, str]] = []  # src, dst, ts, amount, role
            amt = float(rng.lognormal(8.5, 0.6))
            t = t0_for(8)
            if kind == "cycle":
                length = int(rng.integers(2, cfg.cycle_len_max + 1))
                ring = [main_account(), *acc.new(length - 1, "personal").tolist()]
                for h in range(length):
                    t += int(rng.integers(_HOUR, 36 * _HOUR))
                    hops.append((ring[h], ring[(h + 1) % length], t, amt, f"hop{h + 1}"))
                    amt *= 1 - rng.uniform(0.0, 0.05)
            elif kind in ("fan_out", "fan_in"):
                hub, spokes = main_account(), acc.new(int(rng.integers(5, 16)), "personal")
                for s in spokes.tolist():
                    t += int(rng.integers(_HOUR, 12 * _HOUR))
                    share = amt / len(spokes) * rng.uniform(0.9, 1.1)
                    hops.append((hub, s, t, share, "out") if kind == "fan_out" else (s, hub, t, share, "in"))
            elif kind in ("scatter_gather", "gather_scatter"):
                k = int(rng.integers(3, 8))
                ends = [main_account(), int(acc.new(1, "personal")[0])]
                side = acc.new(k, "personal").tolist()
                if kind == "scatter_gather":  # src -> k -> dst
                    for s in side:
                        hops.append((ends[0], s, t + int(rng.integers(_HOUR, 24 * _HOUR)), amt / k, "scatter"))
                    for s in side:
                        hops.append((s, ends[1], t + int(rng.integers(36 * _HOUR, 72 * _HOUR)), amt / k * 0.98, "gather"))
                else:  # k -> mid -> k
                    other = acc.new(k, "personal").tolist()
                    for s in side:
                        hops.append((s, ends[0], t + int(rng.integers(_HOUR, 24 * _HOUR)), amt / k, "gather"))
                    for s in other:
                        hops.append((ends[0], s, t + int(rng.integers(36 * _HOUR, 72 * _HOUR)), amt / k * 0.98, "scatter"))
            elif kind == "bipartite":
                left, right = [main_account(), *acc.new(2, "personal").tolist()], acc.new(3, "personal").tolist()
                for s in left:
                    for d in right:
                        hops.append((s, d, t + int(rng.integers(_HOUR, 96 * _HOUR)), amt / 9, "edge"))
            else:  # stack: 3 layers fully connected layer to layer
                layers = [[main_account(), *acc.new(2, "personal").tolist()], acc.new(3, "personal").tolist(), acc.new(3, "personal").tolist()]
                for li in range(2):
                    for s in layers[li]:
                        for d in layers[li + 1]:
                            hops.append((s, d, t + li * 48 * _HOUR + int(rng.integers(_HOUR, 24 * _HOUR)), amt / 9, f"layer{li + 1}"))
            if max(h[2] for h in hops) > end_s:
                continue
            for s, d, th, a, role in hops:
                pos = tr.add(s, d, th, a, "transfer")
                planted.append(int(pos[0]))
                pat_rows.append((f"P{pid:05d}", kind, role, len(hops) if kind == "cycle" else 0, int(pos[0]), False))
    for _ in range(cfg.decoy_cycles):
        pid += 1
        length = int(rng.integers(3, cfg.cycle_len_max + 1))
        ring = [main_account(), *acc.new(length - 1, "personal").tolist()]
        t = t0_for(8)
        # times with two or more cyclic descents: no rotation of the ring is in time order
        times = np.sort(t + rng.integers(_HOUR, 6 * _DAY, length))
        order_t = np.concatenate([times[1:2], times[0:1], times[3:], times[2:3]]) if length >= 4 else times[[1, 0, 2]]
        amt = float(rng.lognormal(8.5, 0.6))
        for h in range(length):
            pos = tr.add(ring[h], ring[(h + 1) % length], int(order_t[h]), amt, "transfer")
            planted.append(int(pos[0]))
            pat_rows.append((f"P{pid:05d}", "decoy_cycle", f"hop{h + 1}", length, int(pos[0]), True))
            amt *= 1 - rng.uniform(0.0, 0.05)

    # ---- time order, ids, landing
    t_arr = tr.arrays()
    order = np.lexsort((np.arange(len(t_arr["ts"])), t_arr["ts"]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    tid = _fmt_id("T", rank + 1, 10)  # position -> transfer id (ids follow time order)
    sectors = acc.sectors()
    dirty = _plan_dirty(rng, len(order), np.asarray(planted, dtype=np.int64), t_arr["channel"], cfg.dirty_rate)
    n_rows, days = _write_raw(root, cal, t_arr, order, tid, sectors, w, dirty)
    _write_truth(root, cal, w, tid, t_arr, div_rows, pat_rows, decoy_apps, dec_pos, dirty)
    n_chains = len({r[0] for r in div_rows})
    summary = {
        "transfers": int(len(order)), "raw_rows": n_rows, "background": n_background, "loans_disbursed": int(len(apps)),
        "accounts": int(acc.n), "diversion_chains": n_chains, "pattern_instances": len({r[0] for r in pat_rows if not r[5]}),
        "decoy_cycles": len({r[0] for r in pat_rows if r[5]}), "deposit_decoys": int(len(decoy_apps)),
        "dirty_rows": {k: int(sum(1 for d in dirty.values() if d == k)) for k in DEFECTS}, "days_with_rows": days,
    }
    log.info("transfers: %s transfers (%s loans disbursed, %d diversion chains, %d laundering shapes, %d decoy cycles)",
             f"{summary['transfers']:,}", f"{summary['loans_disbursed']:,}", n_chains, summary["pattern_instances"], summary["decoy_cycles"])
    return summary


def _plan_dirty(rng, n: int, planted: np.ndarray, channel: np.ndarray, rate: float) -> dict[int, str]:
    """Position -> defect for ``rate`` of the rows per kind; background rows only (never a
    disbursement or a planted row, so the truth stays intact)."""
    eligible = np.ones(n, dtype=bool)
    eligible[planted] = False
    eligible[channel == _CH["disbursement"]] = False
    pool = np.flatnonzero(eligible)
    per_kind = int(round(rate * n))
    if per_kind == 0 or len(pool) < per_kind * len(DEFECTS):
        return {}
    chosen = rng.choice(pool, per_kind * len(DEFECTS), replace=False)
    return {int(p): DEFECTS[i // per_kind] for i, p in enumerate(chosen)}


def _write_raw(root: Path, cal, t: dict, order: np.ndarray, tid: pa.Array, sectors: np.ndarray, w, dirty: dict) -> tuple[int, int]:
    """One CSV per calendar day (header only when nothing landed); rows in time order."""
    import pyarrow.compute as pc

    base = root / "raw" / "transfers"
    if base.exists():
        import shutil

        shutil.rmtree(base)
    header = ",".join(c.name for c in RAW_TRANSFERS)
    sec = pa.array(SECTORS)
    day = cal.day_of(t["ts"][order])
    n_rows, days = 0, 0
    for d in range(cal.n_days):
        out = base / f"dt={cal.date_str(d)}"
        out.mkdir(parents=True, exist_ok=True)
        lo, hi = np.searchsorted(day, d), np.searchsorted(day, d, side="right")
        lines = [header]
        if hi > lo:
            days += 1
            pos = order[lo:hi]
            cols = {
                "transfer_id": pc.take(tid, pa.array(pos)),
                "transfer_ts": _fmt_ts(t["ts"][pos]),
                "from_account": account_numbers(t["src"][pos]),
                "to_account": account_numbers(t["dst"][pos]),
                "amount": _fmt_amount(t["cents"][pos]),
                "channel": pc.take(pa.array(CHANNELS), pa.array(t["channel"][pos])),
                "application_id": pc.if_else(pa.array(t["app"][pos] >= 0), w.application_ids(np.maximum(t["app"][pos], 0)),
                                             pa.scalar("", pa.string())),
                "from_sector": pc.take(sec, pa.array(sectors[t["src"][pos]])),
                "to_sector": pc.take(sec, pa.array(sectors[t["dst"][pos]])),
            }
            text = _csv_lines([cols[c.name] for c in RAW_TRANSFERS]).to_pylist()
            extra = []
            for i, p in enumerate(pos.tolist()):
                kind = dirty.get(p)
                if kind is None:
                    continue
                f = dict(zip([c.name for c in RAW_TRANSFERS], text[i].split(",")))
                if kind == "missing_id":
                    f["transfer_id"] = ""
                elif kind == "bad_amount":
                    f["amount"] = ("-" + f["amount"]) if p % 2 else f["amount"].replace("0", "O", 1).replace("1", "l", 1) + "x"
                elif kind == "bad_timestamp":
                    f["transfer_ts"] = f["transfer_ts"][:5] + "13-45" + f["transfer_ts"][10:]
                elif kind == "same_account":
                    f["to_account"] = f["from_account"]
                elif kind == "unknown_sector":
                    f["to_sector"] = "casino_offshore"
                elif kind == "duplicate_id":
                    extra.append(",".join(f.values()))  # the same row lands twice
                    continue
                text[i] = ",".join(f.values())
            lines += text + extra
            n_rows += len(text) + len(extra)
        (out / "part-00000.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return n_rows, days


def _write_truth(root: Path, cal, w, tid: pa.Array, t: dict, div_rows, pat_rows, decoy_apps, decoy_pos, dirty: dict) -> None:
    import pyarrow.compute as pc

    truth = root / "truth"
    truth.mkdir(parents=True, exist_ok=True)

    def ids(pos) -> pa.Array:
        return pc.take(tid, pa.array(np.asarray(pos, dtype=np.int64)))

    def app_ids(a) -> pa.Array:
        return w.application_ids(np.asarray(a, dtype=np.int64)) if len(a) else pa.array([], pa.string())

    pq.write_table(pa.table({
        "application_id": app_ids([r[0] for r in div_rows]),
        "n_hops": pa.array([r[1] for r in div_rows], pa.int32()),
        "hop": pa.array([r[2] for r in div_rows], pa.int32()),
        "transfer_id": ids([r[3] for r in div_rows]),
        "sector": pa.array([r[4] for r in div_rows], pa.string()),
        "gang_loan": pa.array([r[5] for r in div_rows], pa.bool_()),
    }), truth / "diversions.parquet")
    pq.write_table(pa.table({
        "pattern_id": pa.array([r[0] for r in pat_rows], pa.string()),
        "kind": pa.array([r[1] for r in pat_rows], pa.string()),
        "role": pa.array([r[2] for r in pat_rows], pa.string()),
        "cycle_length": pa.array([r[3] for r in pat_rows], pa.int32()),
        "transfer_id": ids([r[4] for r in pat_rows]),
        "decoy": pa.array([r[5] for r in pat_rows], pa.bool_()),
    }), truth / "transfer_patterns.parquet")
    pq.write_table(pa.table({"application_id": app_ids(decoy_apps), "transfer_id": ids(decoy_pos)}),
                   truth / "transfer_decoys.parquet")
    pos = np.array(sorted(dirty), dtype=np.int64)
    pq.write_table(pa.table({
        "dt": pa.array([cal.date_str(int(d)) for d in cal.day_of(t["ts"][pos])], pa.string()),
        "transfer_id": ids(pos),
        "defect": pa.array([dirty[int(p)] for p in pos], pa.string()),
    }), truth / "dirty_transfers.parquet")


simulate_transfers.name = NAME

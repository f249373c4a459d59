"""Fund-flow tracing and temporal cycles (features/fund_flow.py) against brute force.

Two references on small random transfer graphs, neither sharing code with the Spark version:
* without truncation (k larger than any fan-out): networkx's own enumeration
  (``all_simple_edge_paths``, ``simple_cycles``) filtered by the time / amount / window rules;
* with truncation: a plain depth-first search applying the same rules in Python.
Amounts are drawn so the 90-100 % band matches often and ties occur (the tie-break is part of
the rules), and k is small enough that truncation bites.
"""
from __future__ import annotations

import datetime as dt
import itertools

import networkx as nx
import numpy as np
import pytest
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph.features import fund_flow as FF
from riskgraph.features import money_quality as MQ

T0 = 1_780_000_000  # seconds; an arbitrary UTC instant
DAY = 86_400
UTC = dt.timezone.utc


def random_world(seed: int, n_accounts: int = 24, n_transfers: int = 420, n_loans: int = 6):
    """Transfers among personal accounts, a few flagged-sector payees, one lender account."""
    rng = np.random.default_rng(seed)
    sector = {f"a{i:02d}": "personal" for i in range(n_accounts)}
    for i in range(n_accounts - 4, n_accounts):
        sector[f"a{i:02d}"] = "real_estate" if i % 2 else "securities"
    sector["L"] = "lender"
    accts = [a for a in sector if a != "L"]
    rows = []
    for i in range(n_transfers):
        s, d = rng.choice(accts, 2, replace=False)
        if sector[s] != "personal" and rng.random() < 0.8:  # developers rarely pay out
            s, d = d, s
        ts = T0 + int(rng.integers(0, 20 * DAY)) // 3600 * 3600  # whole hours: equal times happen
        amount = float(rng.choice([100.0, 98.0, 96.5, 95.0, 93.0, 91.0, 90.0, 88.0, 85.0, 99.0]))
        rows.append((f"t{i:04d}", ts, str(s), str(d), amount, "transfer", None))
    for j in range(6):  # repayments into the lender: never followed
        rows.append((f"r{j:04d}", T0 + j * DAY, f"a{j:02d}", "L", 95.0, "direct_debit", None))
    loans = []
    for j in range(n_loans):
        b = f"a{j:02d}"
        ts = T0 + int(rng.integers(0, 6 * DAY))
        rows.append((f"d{j:04d}", ts, "L", b, 100.0, "disbursement", f"A{j:03d}"))
        loans.append((f"A{j:03d}", b, ts, 100.0))
    return rows, loans, sector


def to_frames(spark, rows, loans, sector):
    data = [(tid, dt.datetime.fromtimestamp(ts, UTC), s, d, amt, ch, app, sector[s], sector[d])
            for tid, ts, s, d, amt, ch, app in rows]
    cols = ["transfer_id", "transfer_ts", "from_account_key", "to_account_key", "amount", "channel", "application_id",
            "from_sector", "to_sector"]
    transfers = spark.createDataFrame(data, S.struct([c for c in S.BRONZE_TRANSFERS if c.name in cols]))
    disb = spark.createDataFrame([(a, b, dt.datetime.fromtimestamp(ts, UTC), amt) for a, b, ts, amt in loans],
                                 "application_id string, borrower_account_key string, disbursed_ts timestamp, disbursed_amount double")
    return transfers, disb


def followable(rows, sector):
    return [r for r in rows if r[5] != "disbursement" and sector[r[2]] != "lender" and sector[r[3]] != "lender"]


def in_band(prev: float, amount: float, band) -> bool:
    return prev * band[0] <= amount <= prev * band[1]


def sort_key(order: str):
    if order == "largest":
        return lambda r: (-r[4], r[1], r[0])
    if order == "earliest":
        return lambda r: (r[1], r[0])
    return lambda r: (-r[1], r[0])


# ---------------------------------------------------------------- references
def dfs_paths(rows, loans, sector, rules: FF.TraceRules) -> set:
    """Depth-first search with the truncation: (application_id, transfer ids, terminal)."""
    out_edges: dict[str, list] = {}
    for r in followable(rows, sector):
        out_edges.setdefault(r[2], []).append(r)
    window = int(rules.window_days * DAY)
    found = set()
    for app, b, t0, amt in loans:
        def walk(acct, t_prev, a_prev, visited, hops):
            cand = [r for r in out_edges.get(acct, []) if t_prev < r[1] <= t0 + window and in_band(a_prev, r[4], rules.band)
                    and r[3] not in visited]
            for r in sorted(cand, key=sort_key(rules.order))[:rules.k]:
                path = hops + (r[0],)
                terminal = sector[r[3]] in rules.terminal_sectors
                found.add((app, path, terminal))
                if not terminal and len(path) < rules.max_hops:
                    walk(r[3], r[1], r[4], visited | {r[3]}, path)
        walk(b, t0, amt, {b}, ())
    return found


def nx_paths(rows, loans, sector, rules: FF.TraceRules) -> set:
    """No truncation: every simple edge path of <= max_hops from the borrower (networkx),
    kept when every prefix obeys the rules and no inner account is a terminal sector."""
    g = nx.MultiDiGraph()
    for r in followable(rows, sector):
        g.add_edge(r[2], r[3], key=r[0], row=r)
    window = int(rules.window_days * DAY)
    found = set()
    for app, b, t0, amt in loans:
        if b not in g:
            continue
        targets = [n for n in g.nodes if n != b]
        for epath in nx.all_simple_edge_paths(g, b, targets, cutoff=rules.max_hops):
            hops = [g.edges[e]["row"] for e in epath]
            t_prev, a_prev, ok = t0, amt, True
            for i, r in enumerate(hops):
                if not (t_prev < r[1] <= t0 + window and in_band(a_prev, r[4], rules.band)):
                    ok = False
                    break
                if i < len(hops) - 1 and sector[r[3]] in rules.terminal_sectors:
                    ok = False  # money stops at a flagged sector
                    break
                t_prev, a_prev = r[1], r[4]
            if ok:
                found.add((app, tuple(r[0] for r in hops), sector[hops[-1][3]] in rules.terminal_sectors))
    return found


def dfs_cycles(rows, sector, *, starts, max_len, window_days, band, k, order) -> set:
    out_edges: dict[str, list] = {}
    rs = followable(rows, sector)
    for r in rs:
        out_edges.setdefault(r[2], []).append(r)
    window = int(window_days * DAY)
    found = set()
    for e0 in rs:
        if not starts[0] <= e0[1] <= starts[1]:
            continue
        start, t_start = e0[2], e0[1]

        def walk(acct, t_prev, a_prev, visited, hops):
            depth = len(hops) + 1
            cand = [r for r in out_edges.get(acct, []) if t_prev < r[1] <= t_start + window and in_band(a_prev, r[4], band)
                    and (r[3] == start or (r[3] not in visited and depth < max_len))]
            for r in sorted(cand, key=sort_key(order))[:k]:
                if r[3] == start:
                    found.add(hops + (r[0],))
                else:
                    walk(r[3], r[1], r[4], visited | {r[3]}, hops + (r[0],))
        walk(e0[3], e0[1], e0[4], {e0[2], e0[3]}, (e0[0],))
    return found


def nx_cycles(rows, sector, *, starts, max_len, window_days, band) -> set:
    """No truncation: networkx's simple cycles of <= max_len accounts, every choice of
    parallel transfers, every rotation; kept when in time order from its first transfer,
    within the window and the band."""
    rs = followable(rows, sector)
    g = nx.DiGraph()
    par: dict[tuple, list] = {}
    for r in rs:
        g.add_edge(r[2], r[3])
        par.setdefault((r[2], r[3]), []).append(r)
    window = int(window_days * DAY)
    found = set()
    for nodes in nx.simple_cycles(g, length_bound=max_len):
        for rot in range(len(nodes)):
            ring = nodes[rot:] + nodes[:rot]
            legs = [par[(ring[i], ring[(i + 1) % len(ring)])] for i in range(len(ring))]
            for combo in itertools.product(*legs):
                if not starts[0] <= combo[0][1] <= starts[1] or combo[-1][1] > combo[0][1] + window:
                    continue
                if all(combo[i][1] < combo[i + 1][1] and in_band(combo[i][4], combo[i + 1][4], band) for i in range(len(combo) - 1)):
                    found.add(tuple(r[0] for r in combo))
    return found


def spark_paths(paths_df) -> set:
    return {(r["application_id"], tuple(r["tids"]), r["terminal"])
            for r in paths_df.select("application_id", F.col("hops.transfer_id").alias("tids"), "terminal").collect()}


def spark_cycles(cycles_df) -> set:
    return {tuple(r["tids"]) for r in cycles_df.select(F.col("hops.transfer_id").alias("tids")).collect()}


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tracing_without_truncation_equals_networkx_enumeration(spark, seed):
    rows, loans, sector = random_world(seed)
    transfers, disb = to_frames(spark, rows, loans, sector)
    rules = FF.TraceRules(max_hops=3, window_days=10, band=(0.9, 1.0), k=10_000, order="largest")
    got = spark_paths(FF.trace_loans(disb, FF.graph_edges(transfers), rules))
    want = nx_paths(rows, loans, sector, rules)
    assert len(want) > 30  # the world is dense enough for the comparison to mean something
    assert any(t for _, _, t in want) and any(len(p) == 3 for _, p, _ in want)
    assert got == want


@pytest.mark.parametrize("seed,order,k", [(4, "largest", 2), (5, "earliest", 1), (6, "latest", 3), (7, "largest", 1)])
def test_tracing_with_truncation_equals_reference_search(spark, seed, order, k):
    rows, loans, sector = random_world(seed)
    transfers, disb = to_frames(spark, rows, loans, sector)
    rules = FF.TraceRules(max_hops=3, window_days=10, band=(0.9, 1.0), k=k, order=order)
    got = spark_paths(FF.trace_loans(disb, FF.graph_edges(transfers), rules))
    want = dfs_paths(rows, loans, sector, rules)
    untruncated = dfs_paths(rows, loans, sector, FF.TraceRules(3, 10, (0.9, 1.0), 10_000, order))
    assert want < untruncated  # truncation did cut branches here
    assert got == want


@pytest.mark.parametrize("seed", [8, 9])
def test_cycles_without_truncation_equal_networkx_simple_cycles(spark, seed):
    rows, _, sector = random_world(seed, n_accounts=14, n_transfers=500)
    transfers, _ = to_frames(spark, rows, [], sector)
    starts = (dt.datetime.fromtimestamp(T0 + 2 * DAY, UTC), dt.datetime.fromtimestamp(T0 + 15 * DAY, UTC))
    got = spark_cycles(FF.temporal_cycles(FF.graph_edges(transfers), starts_from=starts[0], starts_to=starts[1], max_len=4,
                                          window_days=5, band=(0.9, 1.0), k=10_000))
    want = nx_cycles(rows, sector, starts=(T0 + 2 * DAY, T0 + 15 * DAY), max_len=4, window_days=5, band=(0.9, 1.0))
    assert len(want) > 5 and any(len(c) >= 3 for c in want)
    assert got == want


@pytest.mark.parametrize("seed,k,order", [(10, 1, "largest"), (11, 2, "earliest")])
def test_cycles_with_truncation_equal_reference_search(spark, seed, k, order):
    rows, _, sector = random_world(seed, n_accounts=14, n_transfers=500)
    transfers, _ = to_frames(spark, rows, [], sector)
    lo, hi = T0, T0 + 20 * DAY
    got = spark_cycles(FF.temporal_cycles(FF.graph_edges(transfers), starts_from=dt.datetime.fromtimestamp(lo, UTC),
                                          starts_to=dt.datetime.fromtimestamp(hi, UTC), max_len=4, window_days=5,
                                          band=(0.9, 1.0), k=k, order=order))
    want = dfs_cycles(rows, sector, starts=(lo, hi), max_len=4, window_days=5, band=(0.9, 1.0), k=k, order=order)
    assert want and got == want


def test_busy_account_is_truncated_not_dropped_and_disordered_cycle_is_never_found(spark):
    """A loan's money passes through a payroll-like hub with 300 other transfers out: the
    planted path is still found with k=3 (its hop is the eligible one), and a cycle whose hops
    are not in time order is not a cycle from any start."""
    sector = {"b": "personal", "hub": "personal", "dev": "real_estate", "L": "lender", "x": "personal", "y": "personal", "z": "personal"}
    rows = [("d0", T0, "L", "b", 1000.0, "disbursement", "A1"),
            ("h1", T0 + 3600, "b", "hub", 980.0, "transfer", None),
            ("h2", T0 + 7200, "hub", "dev", 950.0, "transfer", None)]
    for i in range(300):  # the hub's own busy traffic: out of the band, or before the money arrived
        sector[f"p{i}"] = "personal"
        rows.append((f"n{i:03d}", T0 + (i % 50) * 600, "hub", f"p{i}", 20.0 + i, "transfer", None))
    # times along the ring x->y, y->z, z->x = (2 h, 1 h, 3 h): two descents (2>1, and 3>2 across
    # the wrap), so no rotation of it is in time order
    rows += [("c1", T0 + 2 * 3600, "x", "y", 500.0, "transfer", None), ("c2", T0 + 1 * 3600, "y", "z", 495.0, "transfer", None),
             ("c3", T0 + 3 * 3600, "z", "x", 490.0, "transfer", None)]
    transfers, disb = to_frames(spark, rows, [("A1", "b", T0, 1000.0)], sector)
    edges = FF.graph_edges(transfers)
    paths = FF.trace_loans(disb, edges, FF.TraceRules(max_hops=3, window_days=14, band=(0.9, 1.0), k=3))
    assert ("A1", ("h1", "h2"), True) in spark_paths(paths)
    shares = FF.loan_shares(paths, disb, ("real_estate", "securities")).first()
    assert shares["share_real_estate"] == pytest.approx(0.95) and shares["share_securities"] == 0.0
    assert shares["share_flagged"] == pytest.approx(0.95) and shares["hops_to_flagged"] == 2
    cycles = FF.temporal_cycles(edges, starts_from=dt.datetime.fromtimestamp(T0 - DAY, UTC),
                                starts_to=dt.datetime.fromtimestamp(T0 + DAY, UTC), max_len=4, window_days=7,
                                band=(0.9, 1.0), k=10)
    assert cycles.count() == 0


def test_shares_sum_distinct_last_transfers_capped_at_one_and_top_paths_rank(spark):
    sector = {"b": "personal", "m1": "personal", "m2": "personal", "dev": "real_estate", "brk": "securities", "L": "lender"}
    rows = [("d0", T0, "L", "b", 100.0, "disbursement", "A1"),
            ("t1", T0 + 100, "b", "m1", 99.0, "transfer", None),
            ("t2", T0 + 200, "b", "m2", 98.0, "transfer", None),
            ("t3", T0 + 300, "m1", "dev", 97.0, "transfer", None),   # via m1
            ("t4", T0 + 400, "m2", "dev", 96.0, "transfer", None),   # via m2: same money twice -> capped
            ("t5", T0 + 500, "b", "brk", 95.0, "transfer", None)]    # one hop to a broker
    transfers, disb = to_frames(spark, rows, [("A1", "b", T0, 100.0)], sector)
    paths = FF.trace_loans(disb, FF.graph_edges(transfers), FF.TraceRules(max_hops=3, window_days=14, band=(0.9, 1.0), k=10))
    s = FF.loan_shares(paths, disb, ("real_estate", "securities")).first()
    assert s["share_real_estate"] == 1.0  # (97 + 96) / 100 capped
    assert s["share_securities"] == pytest.approx(0.95)
    assert s["share_flagged"] == 1.0 and s["hops_to_flagged"] == 1 and s["paths_traced"] == 5
    top = [(r["path_rank"], r["sector"], tuple(r["tids"])) for r in
           FF.top_paths(paths, 2).select("path_rank", "sector", F.col("hops.transfer_id").alias("tids")).orderBy("path_rank").collect()]
    assert top == [(1, "real_estate", ("t1", "t3")), (2, "real_estate", ("t2", "t4"))]


def test_audit_catches_a_tampered_hop(spark):
    sector = {"b": "personal", "m": "personal", "dev": "real_estate", "L": "lender"}
    rows = [("d0", T0, "L", "b", 100.0, "disbursement", "A1"), ("t1", T0 + 100, "b", "m", 99.0, "transfer", None),
            ("t2", T0 + 200, "m", "dev", 97.0, "transfer", None)]
    transfers, disb = to_frames(spark, rows, [("A1", "b", T0, 100.0)], sector)
    paths = FF.trace_loans(disb, FF.graph_edges(transfers), FF.TraceRules(max_hops=3, window_days=14, band=(0.9, 1.0), k=10))
    top = FF.top_paths(paths, 3).select(F.col("application_id").alias("key"), "hops")
    clean = MQ.audit_hops(top, transfers, (0.9, 1.0))
    assert clean == {"hops_checked": 2, "not_in_transfers": 0, "broken_chain": 0, "time_not_increasing": 0, "amount_out_of_band": 0}
    tampered = top.withColumn("hops", F.transform("hops", lambda h: h.withField("amount", F.when(h["transfer_id"] == "t2", F.lit(50.0))
                                                                                        .otherwise(h["amount"]))))
    bad = MQ.audit_hops(tampered, transfers, (0.9, 1.0))
    assert bad["not_in_transfers"] == 1 and bad["amount_out_of_band"] == 1

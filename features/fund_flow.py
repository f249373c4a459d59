"""Where the loan money went, and money that comes back: temporal path tracing and cycles on
Spark DataFrames (docs/money.md).

Both walk the transfers graph one hop per round (a join of the frontier with the transfers
leaving its accounts), as LDBC FinBench's fund-flow and cycle queries define them:

* **time-respecting**: each hop is strictly later than the one before, and every hop lies
  inside a window from the start (``window_days``);
* **amount-preserving**: each hop moves between ``band[0]`` and ``band[1]`` times the amount of
  the hop before (the disbursement for a loan's first hop) - a few % taken per hop;
* **simple**: no account is visited twice (a cycle returns only to its start);
* **truncated**: from each path state only the ``k`` best eligible transfers are followed
  (``order``: ``largest`` amount, ``earliest`` or ``latest`` time; ties by time, then transfer
  id). This bounds the blow-up at busy accounts without ever dropping a busy account: its
  transfers stay in the graph, only the excess branches of one path are cut (FinBench's
  "truncation"). Truncation applies after the time / amount / revisit rules, so an eligible
  transfer is never crowded out by ineligible ones.

Nothing here collects transfers to the driver; the work per round is one join and one window
per frontier. A pure-Python enumeration with the same rules (tests/test_fund_flow.py, on
networkx) must give exactly the same paths and cycles.

Written by hand on DataFrames because GraphFrames' motif finding has no time or amount
predicates across hops and its JVM core is not available here (stack notes); this runs the
same on a cluster.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

ORDERS = ("largest", "earliest", "latest")
# Accounts money is never followed through: a repayment into the lender is not a hop on to
# the lender's other loans.
NEVER_FOLLOWED = ("lender",)


@dataclass(frozen=True)
class TraceRules:
    max_hops: int
    window_days: float
    band: tuple[float, float]
    k: int
    order: str = "largest"
    terminal_sectors: tuple[str, ...] = ("real_estate", "securities")

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"truncation order {self.order!r}: one of {ORDERS}")
        lo, hi = self.band
        if not 0 < lo <= hi:
            raise ValueError(f"amount band {self.band}: need 0 < low <= high")
        if self.max_hops < 1 or self.k < 1 or self.window_days <= 0:
            raise ValueError("max_hops, k and window_days must be positive")


def _rank_order(order: str) -> list[Column]:
    if order == "largest":
        return [F.col("e_amount").desc(), F.col("e_ts").asc(), F.col("e_tid").asc()]
    if order == "earliest":
        return [F.col("e_ts").asc(), F.col("e_tid").asc()]
    return [F.col("e_ts").desc(), F.col("e_tid").asc()]


def _hop() -> Column:
    return F.struct(F.col("e_tid").alias("transfer_id"), F.col("e_src").alias("from_account_key"),
                    F.col("e_dst").alias("to_account_key"), F.col("e_ts").alias("transfer_ts"),
                    F.col("e_amount").alias("amount"), F.col("e_dst_sector").alias("to_sector"))


def graph_edges(transfers: DataFrame) -> DataFrame:
    """The transfers money can be followed along: every transfer but disbursements, and none
    into or out of the lender's own accounts. Columns e_tid, e_src, e_dst, e_ts, e_amount,
    e_dst_sector."""
    return (transfers.filter((F.col("channel") != "disbursement") & ~F.col("from_sector").isin(*NEVER_FOLLOWED)
                             & ~F.col("to_sector").isin(*NEVER_FOLLOWED))
            .select(F.col("transfer_id").alias("e_tid"), F.col("from_account_key").alias("e_src"),
                    F.col("to_account_key").alias("e_dst"), F.col("transfer_ts").alias("e_ts"),
                    F.col("amount").alias("e_amount"), F.col("to_sector").alias("e_dst_sector")))


def _expand(frontier: DataFrame, edges: DataFrame, *, window_s: float, band: tuple[float, float], k: int, order: str,
            allowed: Column) -> DataFrame:
    """One round: frontier (state_id, acct, t_prev, a_prev, t_start, visited, ...) x the transfers
    leaving acct that keep the rules and ``allowed``; the ``k`` best per state."""
    lo, hi = band
    j = frontier.join(edges, (F.col("acct") == F.col("e_src")) & (F.col("e_ts") > F.col("t_prev"))
                      & (F.unix_micros("e_ts") <= F.unix_micros("t_start") + F.lit(int(round(window_s * 1e6))))
                      & (F.col("e_amount") >= F.col("a_prev") * lo) & (F.col("e_amount") <= F.col("a_prev") * hi))
    j = j.filter(allowed)
    w = Window.partitionBy("state_id").orderBy(*_rank_order(order))
    return j.withColumn("_rank", F.row_number().over(w)).filter(F.col("_rank") <= k).drop("_rank")


def trace_loans(disbursements: DataFrame, edges: DataFrame, rules: TraceRules, keep: list | None = None) -> DataFrame:
    """Every valid path of each loan's money, up to ``rules.max_hops`` hops after the
    disbursement, with the truncation. One row per path (every prefix counts):
    application_id, disbursed_amount, n_hops, hops (array of hop structs), end_sector,
    terminal (the last hop entered a terminal sector: the path stops there).

    ``disbursements``: application_id, borrower_account_key, disbursed_ts, disbursed_amount.
    Each round's frontier is persisted; those frames are appended to ``keep`` (unpersist them
    when done)."""
    window_s = rules.window_days * 86400.0
    state = disbursements.select(
        "application_id", "disbursed_amount",
        F.col("application_id").alias("state_id"), F.col("borrower_account_key").alias("acct"),
        F.col("disbursed_ts").alias("t_prev"), F.col("disbursed_ts").alias("t_start"),
        F.col("disbursed_amount").alias("a_prev"), F.array(F.col("borrower_account_key")).alias("visited"),
        F.array().cast("array<struct<transfer_id:string,from_account_key:string,to_account_key:string,"
                       "transfer_ts:timestamp,amount:double,to_sector:string>>").alias("hops"))
    paths, persisted = [], keep if keep is not None else []
    for depth in range(1, rules.max_hops + 1):
        step = _expand(state, edges, window_s=window_s, band=rules.band, k=rules.k, order=rules.order,
                       allowed=~F.array_contains(F.col("visited"), F.col("e_dst")))
        step = step.select(
            "application_id", "disbursed_amount", "t_start",
            F.concat_ws(">", F.col("state_id"), F.col("e_tid")).alias("state_id"),
            F.col("e_dst").alias("acct"), F.col("e_ts").alias("t_prev"), F.col("e_amount").alias("a_prev"),
            F.concat(F.col("visited"), F.array(F.col("e_dst"))).alias("visited"),
            F.concat(F.col("hops"), F.array(_hop())).alias("hops"),
            F.col("e_dst_sector").isin(*rules.terminal_sectors).alias("terminal"),
            F.col("e_dst_sector").alias("end_sector"),
        ).persist(StorageLevel.MEMORY_AND_DISK)
        persisted.append(step)
        paths.append(step.select("application_id", "disbursed_amount", F.lit(depth).alias("n_hops"), "hops", "end_sector", "terminal"))
        state = step.filter(~F.col("terminal")).drop("terminal", "end_sector")
    out = paths[0]
    for p in paths[1:]:
        out = out.unionByName(p)
    return out


def loan_shares(paths: DataFrame, disbursements: DataFrame, sectors: tuple[str, ...]) -> DataFrame:
    """Per loan: share of the disbursement that reached each sector of ``sectors`` (sum of the
    distinct last transfers into it over every valid path, capped at 1: two branches may carry
    the same money, so this is an upper estimate of the money that arrived), any of them
    (``share_flagged``), the fewest hops to one, and the number of paths followed."""
    last = paths.filter(F.col("terminal")).select("application_id", F.element_at("hops", -1).alias("h"), "n_hops")
    reached = (last.select("application_id", F.col("h.transfer_id").alias("tid"), F.col("h.to_sector").alias("sector"),
                           F.col("h.amount").alias("amount"), "n_hops")
               .groupBy("application_id", "tid", "sector").agg(F.first("amount").alias("amount"), F.min("n_hops").alias("n_hops")))
    per = reached.groupBy("application_id").agg(
        *[F.sum(F.when(F.col("sector") == s, F.col("amount")).otherwise(0.0)).alias(f"_to_{s}") for s in sectors],
        F.sum("amount").alias("_to_flagged"), F.min("n_hops").alias("hops_to_flagged"))
    n_paths = paths.groupBy("application_id").agg(F.count(F.lit(1)).alias("paths_traced"))
    d = disbursements.join(per, "application_id", "left").join(n_paths, "application_id", "left")
    cap = lambda c: F.least(F.lit(1.0), F.coalesce(F.col(c), F.lit(0.0)) / F.col("disbursed_amount"))  # noqa: E731
    return d.select(
        "application_id", "borrower_account_key", "disbursed_ts", "disbursed_amount",
        *[cap(f"_to_{s}").alias(f"share_{s}") for s in sectors],
        cap("_to_flagged").alias("share_flagged"), F.col("hops_to_flagged").cast("int"),
        F.coalesce(F.col("paths_traced"), F.lit(0)).cast("long").alias("paths_traced"))


def top_paths(paths: DataFrame, n: int) -> DataFrame:
    """The ``n`` paths per loan carrying the most money into a terminal sector (ties: fewer
    hops, then the transfer ids): application_id, path_rank, sector, n_hops, hops."""
    t = paths.filter(F.col("terminal")).withColumn("_last", F.element_at("hops", -1))
    w = Window.partitionBy("application_id").orderBy(F.col("_last.amount").desc(), F.col("n_hops").asc(),
                                                     F.concat_ws(">", F.col("hops.transfer_id")).asc())
    return (t.withColumn("path_rank", F.row_number().over(w)).filter(F.col("path_rank") <= n)
            .select("application_id", F.col("path_rank").cast("int"), F.col("_last.to_sector").alias("sector"),
                    F.col("n_hops").cast("int"), "hops"))


def temporal_cycles(edges: DataFrame, *, starts_from, starts_to, max_len: int, window_days: float,
                    band: tuple[float, float], k: int, order: str = "largest", keep: list | None = None) -> DataFrame:
    """Every simple, time-ordered cycle of 2..``max_len`` transfers whose first transfer is in
    [``starts_from``, ``starts_to``] and whose last is within ``window_days`` of the first,
    each hop within ``band`` of the one before, truncated to the ``k`` best continuations per
    path state. A cycle is found once: only the rotation starting at its earliest transfer is
    in time order. Columns: cycle_id, start_account_key, length, start_ts, end_ts,
    amount_out, amount_back, hops. Persisted round frames are appended to ``keep``."""
    if max_len < 2:
        raise ValueError("a cycle has at least 2 transfers")
    window_s = window_days * 86400.0
    first = edges.filter((F.col("e_ts") >= F.lit(starts_from)) & (F.col("e_ts") <= F.lit(starts_to)))
    state = first.select(
        F.col("e_tid").alias("state_id"), F.col("e_src").alias("start"), F.col("e_dst").alias("acct"),
        F.col("e_ts").alias("t_prev"), F.col("e_ts").alias("t_start"), F.col("e_amount").alias("a_prev"),
        F.array(F.col("e_src"), F.col("e_dst")).alias("visited"), F.array(_hop()).alias("hops"))
    found = []
    for depth in range(2, max_len + 1):
        closing = F.col("e_dst") == F.col("start")
        allowed = closing | (~F.array_contains(F.col("visited"), F.col("e_dst")) & F.lit(depth < max_len))
        step = _expand(state, edges, window_s=window_s, band=band, k=k, order=order, allowed=allowed)
        step = step.select(
            F.concat_ws(">", F.col("state_id"), F.col("e_tid")).alias("state_id"), "start", "t_start",
            F.col("e_dst").alias("acct"), F.col("e_ts").alias("t_prev"), F.col("e_amount").alias("a_prev"),
            F.concat(F.col("visited"), F.array(F.col("e_dst"))).alias("visited"),
            F.concat(F.col("hops"), F.array(_hop())).alias("hops"), closing.alias("closed"),
        ).persist(StorageLevel.MEMORY_AND_DISK)
        if keep is not None:
            keep.append(step)
        found.append(step.filter(F.col("closed")).select("start", F.lit(depth).alias("length"), "hops"))
        state = step.filter(~F.col("closed")).drop("closed")
    cycles = found[0]
    for f in found[1:]:
        cycles = cycles.unionByName(f)
    return cycles.select(
        F.concat(F.lit("c:"), F.substring(F.sha2(F.concat_ws(">", F.col("hops.transfer_id")), 256), 1, 16)).alias("cycle_id"),
        F.col("start").alias("start_account_key"), F.col("length").cast("int"),
        F.element_at("hops", 1)["transfer_ts"].alias("start_ts"), F.element_at("hops", -1)["transfer_ts"].alias("end_ts"),
        F.element_at("hops", 1)["amount"].alias("amount_out"), F.element_at("hops", -1)["amount"].alias("amount_back"),
        "hops")

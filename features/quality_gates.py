"""Quality gates for the feature store: checks on staged features before they are committed.

Four gates, each a pure function of DataFrames (no reads, no writes, no config loading):

* **null rate** per column: nulls (and NaN) / rows must not exceed ``max_null_rate`` (or the
  column's override). Key columns may never be null.
* **range** per column: the valid range declared once with the column in
  ``riskgraph.schemas`` (``FeatureSpec.min_value`` / ``max_value``); any row outside fails.
* **row count** vs. the previous table version, compared *per day* (see
  :func:`choose_baseline` and :func:`check_row_count`): a nightly run owns one day and an
  initial load a year, so totals are not comparable, rows per day are.
* **PSI drift** per numeric feature vs. the same baseline rows, with warn / fail
  thresholds (credit-risk convention: < 0.1 stable, 0.1-0.25 shift, > 0.25 major shift).
  Bins and PSI are the ones of ``features.evaluation`` (toad's quantile bins, where a value
  holding a tenth of the rows, such as the 0 of a count, gets a bin of its own), computed
  here inside Spark: only bin counts reach the driver.

Everything heavy runs as Spark aggregations; what is collected is bounded by the number of
columns, bins and dates, never by rows. :func:`run_quality_gates` runs all four and returns
a :class:`QualityReport` (a table: check, column, value, threshold, status, detail) that the
job keeps as a file and logs.
"""
from __future__ import annotations

import datetime as dt
import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, FloatType, NumericType

from riskgraph.features.evaluation import MISSING_BIN, bin_edges_from_summary, psi_from_counts, quantile_grid
from riskgraph.features.validation import require_columns

PASS, WARN, FAIL, SKIPPED = "pass", "warn", "fail", "skipped"
_SEVERITY = {FAIL: 3, WARN: 2, PASS: 1, SKIPPED: 0}
NO_PREVIOUS_RUN = "skipped: no previous run"
TABLE = "*"  # the "column" of a table-level check

_COLUMN, _VALUE, _SIDE, _BIN = "_qg_column", "_qg_value", "_qg_side", "_qg_bin"


@dataclass(frozen=True)
class CheckResult:
    """One row of the report."""

    check: str  # null_rate | range | row_count | psi
    column: str  # a column, or "*" for the table
    value: float | None
    threshold: str
    status: str  # pass | warn | fail | skipped
    detail: str = ""


@dataclass(frozen=True)
class Baseline:
    """Which rows of the previous table version a run is compared with.

    ``kind``: ``replaced`` (the rows this run replaces: a re-run or backfill of dates that
    exist), ``trailing`` (the last ``baseline_days`` days before the run's first date: a
    nightly run of a new day), or ``none`` (first run, or nothing comparable).
    """

    kind: str
    dates: tuple[str, ...]
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "none":
            return self.reason
        span = f"{self.dates[0]}..{self.dates[-1]}" if self.dates else "-"
        what = "the rows this run replaces" if self.kind == "replaced" else "the trailing days before the run"
        return f"{what}: {len(self.dates)} day(s) {span}"


@dataclass(frozen=True)
class QualityReport:
    results: tuple[CheckResult, ...]
    context: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """fail if any check failed, else warn if any warned, else pass."""
        worst = max((r.status for r in self.results), key=_SEVERITY.__getitem__, default=PASS)
        return worst if worst in (FAIL, WARN) else PASS

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == WARN]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (PASS, WARN, FAIL, SKIPPED)}
        for r in self.results:
            out[r.status] += 1
        return out

    def to_dict(self) -> dict:
        return {"status": self.status, "counts": self.counts(), "context": self.context,
                "results": [asdict(r) for r in self.results]}

    def summary(self) -> dict:
        """Small enough for a run record: status, counts and the rows that did not pass."""
        return {"status": self.status, "counts": self.counts(),
                "not_passed": [asdict(r) for r in self.results if r.status in (FAIL, WARN)],
                "skipped": sorted({f"{r.check}: {r.detail or r.threshold}" for r in self.results if r.status == SKIPPED})}

    def to_markdown(self, only: Iterable[str] | None = None) -> str:
        """The report as a markdown table, failures first (``only``: restrict to statuses)."""
        keep = set(only) if only else None
        rows = sorted((r for r in self.results if keep is None or r.status in keep),
                      key=lambda r: (-_SEVERITY[r.status], r.check, r.column))
        lines = [f"quality gate: **{self.status.upper()}** "
                 + ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)]
        lines += [f"- {k}: {v}" for k, v in self.context.items()]
        lines += ["", "| check | column | value | threshold | status | detail |", "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.check} | {r.column} | {format_value(r.value)} | {r.threshold} | {r.status} | {r.detail} |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def format_value(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _is_float(df: DataFrame, c: str) -> bool:
    return isinstance(df.schema[c].dataType, (DoubleType, FloatType))


# --------------------------------------------------------------------------- null rate and range
def profile_columns(df: DataFrame, columns: Sequence[str], ranges: Mapping[str, tuple[float | None, float | None]]) -> dict:
    """Rows, and per column: nulls; for ``ranges`` columns also rows below / above the range
    and the observed min / max. One Spark aggregation; one row reaches the driver.

    Needs ``columns`` (and every ``ranges`` key) in ``df``. Returns ``{"rows": n,
    "columns": {name: {"nulls", "below", "above", "min", "max"}}}``.
    """
    require_columns(df, [*columns, *ranges], "profile_columns")
    # Plain aggregates (count, count_if, min, max): one wide aggregation of ~200 expressions
    # whose generated code stays small; NaN is guarded only on floating columns.
    aggs = [F.count(F.lit(1)).alias("rows")]
    names = list(dict.fromkeys([*columns, *ranges]))
    for i, c in enumerate(names):
        col, is_float = F.col(c), _is_float(df, c)
        aggs.append(F.count_if(col.isNull() | F.isnan(col)).alias(f"n{i}") if is_float
                    else (F.count(F.lit(1)) - F.count(col)).alias(f"n{i}"))
        if c in ranges:
            lo, hi = ranges[c]
            value = F.when(~F.isnan(col), col) if is_float else col  # NaN counts as missing, not as out of range
            aggs.append(F.count_if(value < F.lit(lo)).alias(f"b{i}") if lo is not None else F.lit(0).alias(f"b{i}"))
            aggs.append(F.count_if(value > F.lit(hi)).alias(f"a{i}") if hi is not None else F.lit(0).alias(f"a{i}"))
            aggs.append(F.min(value).cast("double").alias(f"lo{i}"))
            aggs.append(F.max(value).cast("double").alias(f"hi{i}"))
    row = df.agg(*aggs).first()  # one row: a handful of numbers per column
    out = {"rows": int(row["rows"]), "columns": {}}
    for i, c in enumerate(names):
        d = {"nulls": int(row[f"n{i}"] or 0)}
        if c in ranges:
            d.update(below=int(row[f"b{i}"] or 0), above=int(row[f"a{i}"] or 0), min=row[f"lo{i}"], max=row[f"hi{i}"])
        out["columns"][c] = d
    return out


def check_null_rates(profile: dict, columns: Sequence[str], *, max_null_rate: float,
                     overrides: Mapping[str, float] | None = None, keys: Sequence[str] = ()) -> list[CheckResult]:
    """Null rate per column against ``overrides[column]`` or ``max_null_rate``; ``keys``
    may never be null (no override)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(columns))
    if unknown:
        raise ValueError(f"quality.null_rate_overrides names unknown column(s) {unknown}; columns: {list(columns)}")
    keyed = sorted(set(overrides) & set(keys))
    if keyed:
        raise ValueError(f"quality.null_rate_overrides cannot loosen key column(s) {keyed}: a key is never null")
    n = profile["rows"]
    out = []
    for c in columns:
        limit = 0.0 if c in keys else overrides.get(c, max_null_rate)
        threshold = f"<= {limit:g}" + (" (key)" if c in keys else " (override)" if c in overrides else "")
        if n == 0:
            out.append(CheckResult("null_rate", c, None, threshold, SKIPPED, "no rows"))
            continue
        nulls = profile["columns"][c]["nulls"]
        rate = nulls / n
        out.append(CheckResult("null_rate", c, rate, threshold, FAIL if rate > limit else PASS,
                               f"{nulls} of {n} rows null" if nulls else ""))
    return out


def check_ranges(profile: dict, ranges: Mapping[str, tuple[float | None, float | None]]) -> list[CheckResult]:
    """Rows outside each column's declared range (inclusive bounds); any such row fails."""
    out = []
    for c, (lo, hi) in ranges.items():
        p = profile["columns"][c]
        bad = p["below"] + p["above"]
        threshold = f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
        seen = "no values" if p["min"] is None else f"observed {p['min']:g}..{p['max']:g}"
        detail = seen + (f"; {p['below']} below, {p['above']} above" if bad else "")
        out.append(CheckResult("range", c, float(bad), threshold, FAIL if bad else PASS, detail))
    return out


# --------------------------------------------------------------------------- row count
def rows_per_day(df: DataFrame, date_col: str) -> dict[str, int]:
    """Rows per value of ``date_col`` (a yyyy-MM-dd partition column). One Spark job; the
    driver gets one row per date."""
    require_columns(df, [date_col], "rows_per_day")
    counts = df.groupBy(date_col).count().collect()  # bounded: one row per date, not per row
    return {str(r[0]): int(r[1]) for r in counts}


def _day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def baseline_window(owned_dates: Sequence[str], baseline_days: int) -> list[str]:
    """The dates whose rows of the previous version can be a baseline: the ``baseline_days``
    days before the run's first date, and the run's own dates."""
    first = min(_day(d) for d in owned_dates)
    before = [(first - dt.timedelta(days=i)).isoformat() for i in range(baseline_days, 0, -1)]
    return before + sorted(owned_dates)


def choose_baseline(previous_per_day: Mapping[str, int] | None, owned_dates: Sequence[str], *,
                    baseline_days: int) -> Baseline:
    """The previous version's rows a run is compared with.

    * No previous version: none (first run: drift and row-count checks are skipped).
    * Every date the run owns already has rows: ``replaced``. A re-run or backfill should
      reproduce (almost) the rows it replaces, so they are the sharpest comparison.
    * Otherwise the days with rows among the ``baseline_days`` days before the run's first
      date: ``trailing`` (a nightly run of a new day vs. the recent past; 28 days = four
      whole weeks, so the weekday mix matches).
    * Otherwise the owned dates that do exist (a range partly new, partly re-run), else none.
    """
    if previous_per_day is None:
        return Baseline("none", (), NO_PREVIOUS_RUN)
    have = {d for d, n in previous_per_day.items() if n > 0}
    owned = sorted(owned_dates)
    if owned and all(d in have for d in owned):
        return Baseline("replaced", tuple(owned))
    first = min(_day(d) for d in owned)
    lo = first - dt.timedelta(days=baseline_days)
    trailing = sorted(d for d in have if lo <= _day(d) < first)
    if trailing:
        return Baseline("trailing", tuple(trailing))
    partly = sorted(d for d in owned if d in have)
    if partly:
        return Baseline("replaced", tuple(partly))
    return Baseline("none", (), f"skipped: the previous version has no rows in the {baseline_days} days before {first} "
                                "nor on the run's dates")


def check_row_count(current_per_day: Mapping[str, int], previous_per_day: Mapping[str, int] | None,
                    owned_dates: Sequence[str], baseline: Baseline, *, max_drop: float, max_rise: float) -> CheckResult:
    """Relative change in rows per day vs. the baseline; fails below ``-max_drop`` or above
    ``+max_rise``.

    ``replaced``: total staged rows on the baseline's dates / the rows they replace - 1 (the
    same days, so exact). ``trailing``: staged rows per owned day (a day without rows counts
    0) / the median rows of the baseline's days - 1 (the median, so one burst day in the
    baseline does not move it).
    """
    threshold = f"change in [-{max_drop:.0%}, +{max_rise:.0%}]"
    if baseline.kind == "none":
        return CheckResult("row_count", TABLE, None, threshold, SKIPPED, baseline.reason)
    prev = previous_per_day or {}
    if baseline.kind == "replaced":
        now = sum(current_per_day.get(d, 0) for d in baseline.dates)
        ref = sum(prev[d] for d in baseline.dates)
        what = f"{now} rows vs {ref} replaced on {len(baseline.dates)} day(s)"
    else:
        now = sum(current_per_day.get(d, 0) for d in owned_dates) / len(owned_dates)
        ref = statistics.median(prev[d] for d in baseline.dates)
        what = f"{now:.1f} rows/day vs median {ref:g} over {len(baseline.dates)} trailing day(s)"
    change = now / ref - 1.0
    status = FAIL if (change < -max_drop or change > max_rise) else PASS
    return CheckResult("row_count", TABLE, change, threshold, status, what)


# --------------------------------------------------------------------------- PSI
def numeric_columns(df: DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if isinstance(df.schema[c].dataType, NumericType)]


def _long(df: DataFrame, columns: Sequence[str]) -> DataFrame:
    """(column name, value as double) per row and column; NaN as null."""
    kv = F.explode(F.array(*[F.struct(F.lit(c).alias(_COLUMN), F.col(c).cast("double").alias(_VALUE)) for c in columns]))
    long = df.select(kv.alias("kv")).select(f"kv.{_COLUMN}", f"kv.{_VALUE}")
    return long.withColumn(_VALUE, F.when(~F.isnan(_VALUE), F.col(_VALUE)))


def bin_edges_spark(baseline: DataFrame, columns: Sequence[str], *, bins: int) -> dict[str, list[float]]:
    """The stability bins of each column (``features.evaluation.bin_edges(...,
    split_point_masses=True)``), computed by Spark: exact quantiles (``percentile``: linear
    interpolation, as numpy/toad) at toad's grid and the distinct values when there are at
    most ``bins``. Needs ``columns`` in ``baseline``."""
    require_columns(baseline, list(columns), "bin_edges_spark")
    grid = [float(q) for q in quantile_grid(bins)]
    # Spark's exact percentile buffers one (value -> count) map per column: memory grows with
    # a column's distinct values in the baseline window (few for counts), never with columns.
    stats = (_long(baseline, columns).filter(F.col(_VALUE).isNotNull()).groupBy(_COLUMN)
             .agg(F.percentile(_VALUE, grid).alias("q"),
                  F.slice(F.array_sort(F.collect_set(_VALUE)), 1, bins + 1).alias("distinct"))
             .collect())  # bounded: one row per column, <= 2 * bins + 1 numbers each
    edges = {c: [] for c in columns}  # a column with no values in the baseline: one bin
    for r in stats:
        distinct = r["distinct"] if len(r["distinct"]) <= bins else None
        edges[r[_COLUMN]] = [float(e) for e in bin_edges_from_summary(distinct, r["q"], split_point_masses=True)]
    return edges


def psi_by_column(current: DataFrame, baseline: DataFrame, columns: Sequence[str], *, bins: int) -> dict[str, dict]:
    """PSI of each numeric column of ``current`` against ``baseline``, on the baseline's
    bins (:func:`bin_edges_spark`; missing values a bin of their own), with
    ``features.evaluation.psi_from_counts``.

    Needs ``columns`` in both frames. Returns ``{column: {"psi", "bins", "n_current",
    "n_baseline"}}``. One Spark job over the baseline (the bins), one over both samples
    (the counts); the driver gets bin counts only.
    """
    require_columns(current, list(columns), "psi_by_column(current)")
    require_columns(baseline, list(columns), "psi_by_column(baseline)")
    if not columns:
        return {}
    edges = bin_edges_spark(baseline, columns, bins=bins)
    edge_map = F.create_map(*[x for c in columns
                              for x in (F.lit(c), F.array(*[F.lit(e) for e in edges[c]]).cast("array<double>"))])
    value = F.col(_VALUE)
    bin_expr = F.when(value.isNull(), F.lit(MISSING_BIN)).otherwise(
        F.size(F.filter(F.element_at(edge_map, F.col(_COLUMN)), lambda e: e <= value)))  # = np.digitize(x, edges)
    both = (_long(current, columns).withColumn(_SIDE, F.lit("current"))
            .unionByName(_long(baseline, columns).withColumn(_SIDE, F.lit("baseline"))))
    rows = both.groupBy(_SIDE, _COLUMN, bin_expr.alias(_BIN)).count().collect()  # bounded: 2 sides x columns x (<= 2 * bins + 2) bins
    counts: dict[tuple[str, str], dict[int, int]] = {}
    for r in rows:
        counts.setdefault((r[_SIDE], r[_COLUMN]), {})[int(r[_BIN])] = int(r["count"])
    out = {}
    for c in columns:
        cur, base = counts.get(("current", c), {}), counts.get(("baseline", c), {})
        out[c] = {"psi": psi_from_counts(base, cur) if cur and base else None, "bins": len(edges[c]) + 1,
                  "n_current": sum(cur.values()), "n_baseline": sum(base.values())}
    return out


def check_psi(psi: Mapping[str, dict] | None, columns: Sequence[str], *, warn: float, fail: float,
              skipped: str = NO_PREVIOUS_RUN) -> list[CheckResult]:
    """PSI per column: warn at ``>= warn``, fail at ``>= fail``; ``psi`` None → every
    column reported as ``skipped`` with the reason ``skipped``."""
    threshold = f"warn >= {warn:g}, fail >= {fail:g}"
    if psi is None:
        return [CheckResult("psi", c, None, threshold, SKIPPED, skipped) for c in columns]
    out = []
    for c in columns:
        p = psi[c]
        detail = f"{p['bins']} bins; {p['n_current']} rows vs {p['n_baseline']} baseline rows"
        if p["psi"] is None:
            out.append(CheckResult("psi", c, None, threshold, SKIPPED, p.get("reason", "skipped: no rows on one side")))
            continue
        v = p["psi"]
        status = FAIL if v >= fail else WARN if v >= warn else PASS
        out.append(CheckResult("psi", c, v, threshold, status, detail))
    return out


# --------------------------------------------------------------------------- all gates
def run_quality_gates(staged: DataFrame, previous: DataFrame | None, *, owned_dates: Sequence[str], specs: Sequence,
                      settings, date_col: str) -> QualityReport:
    """Every gate on ``staged`` (the rows about to be committed) against ``previous`` (the
    table's current version, or None before the first write).

    ``specs``: the table's column declarations (``riskgraph.schemas.FeatureSpec``: name,
    dtype, ``as_of == "key"`` for keys, ``min_value``/``max_value``); ``settings``: the
    ``quality`` config section; ``owned_dates``: the ``date_col`` values this run replaces.
    Needs every spec column in ``staged`` (and ``date_col`` in ``previous``).
    """
    names = [s.name for s in specs]
    require_columns(staged, names + [date_col], "run_quality_gates(staged)")
    keys = [s.name for s in specs if s.as_of == "key"]
    ranges = {s.name: (s.min_value, s.max_value) for s in specs if s.min_value is not None or s.max_value is not None}
    features = numeric_columns(staged, [s.name for s in specs if s.as_of != "key"])

    profile = profile_columns(staged, names, ranges)
    results = check_null_rates(profile, names, max_null_rate=settings.max_null_rate,
                               overrides=settings.null_rate_overrides, keys=keys)
    results += check_ranges(profile, ranges)

    current_days = rows_per_day(staged, date_col)
    previous_days = None
    if previous is not None:
        require_columns(previous, [date_col], "run_quality_gates(previous)")
        window = baseline_window(owned_dates, settings.baseline_days)  # bounded: baseline_days + owned dates
        previous_days = rows_per_day(previous.filter(F.col(date_col).isin(window)), date_col)
    baseline = choose_baseline(previous_days, owned_dates, baseline_days=settings.baseline_days)
    results.append(check_row_count(current_days, previous_days, owned_dates, baseline,
                                   max_drop=settings.row_count_max_drop, max_rise=settings.row_count_max_rise))

    n_now = sum(current_days.values())
    n_base = sum((previous_days or {}).get(d, 0) for d in baseline.dates)
    if baseline.kind == "none":
        psi, reason = None, baseline.reason
    elif min(n_now, n_base) < settings.psi_min_rows:
        psi, reason = None, (f"skipped: too few rows ({n_now} staged, {n_base} baseline; "
                             f"quality.psi_min_rows = {settings.psi_min_rows})")
    else:
        missing = [c for c in features if c not in previous.columns]  # a feature added since the last write
        base = previous.filter(F.col(date_col).isin(list(baseline.dates)))
        psi = psi_by_column(staged, base, [c for c in features if c not in missing], bins=settings.psi_bins)
        psi.update({c: {"psi": None, "bins": 0, "n_current": n_now, "n_baseline": 0,
                        "reason": "skipped: column not in the previous version"} for c in missing})
        reason = ""
    results += check_psi(psi, features, warn=settings.psi_warn, fail=settings.psi_fail, skipped=reason)
    context = {"rows": profile["rows"], "dates": f"{min(owned_dates)}..{max(owned_dates)} ({len(owned_dates)} day(s))",
               "baseline": baseline.describe()}
    return QualityReport(tuple(results), context)

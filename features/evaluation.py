"""Credit-model evaluation: KS, lift, out-of-time splits, baseline vs. enriched LightGBM, feature ablation.

Everything here is a pure function: no session, no reads or writes, no config loading.
The Spark part (:func:`build_labelled_spine`) is a DataFrame transform; the rest works on
numpy arrays and pandas frames, because the credit model trains on one machine by design.

KS convention (the credit-risk one, as in ``toad.metrics.KS``): the maximum distance
between the empirical CDFs of the model score among bads (label 1) and among goods
(label 0), taken over every score threshold. It equals the two-sample Kolmogorov-Smirnov
statistic ``scipy.stats.ks_2samp(score[y == 1], score[y == 0]).statistic``, which is also
exactly what ``toad.metrics.KS`` computes. Tied scores are one threshold: a cut can never
separate two applications with the same score. (A row-wise cumulative sum over sorted
scores, a common hand-rolled KS, evaluates inside a block of ties too and can overstate KS
when scores tie; without ties all of these agree.)
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

LABEL = "is_bad"
TIME_COL = "application_ts"
# LightGBM thread count is part of the model's identity: with deterministic=True the same
# data, seed and thread count give bit-identical trees; another count may not. One thread:
# on a busy 2-core machine (Spark workers, other jobs) OpenMP threads spin and starve each
# other; measured 100k rows × 41 features, 300 rounds: 5.2 s on 1 thread vs 33.9 s on 2
# under load. Pass ``num_threads`` in params to change it.
NUM_THREADS = 1
EARLY_STOPPING_ROUNDS = 30
# Row/feature subsampling so that the seeds in evaluate.seeds actually vary the model
# (without it LightGBM ignores the seed and every "seed" is the same model, making the
# reported sd a meaningless 0). Overridable through ``params``.
SEED_SENSITIVE_DEFAULTS = {"feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1}


class FeatureStoreIncompleteError(RuntimeError):
    """A matured application has no row in the feature table, or a row that is not its own."""


# --------------------------------------------------------------------------- KS and lift
def _as_label_score(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=float)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y_true and score must be 1-D of equal length; got shapes {y.shape} and {s.shape}")
    if np.isnan(s).any():
        raise ValueError(f"score has {int(np.isnan(s).sum())} NaN value(s); KS needs a score for every row")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"y_true must hold only 0 (good) and 1 (bad); found {sorted(values)[:10]}")
    y = y.astype(np.int64)
    n_bad = int(y.sum())
    if n_bad == 0 or n_bad == len(y):
        raise ValueError(f"KS needs both bads and goods; got {n_bad} bad of {len(y)}")
    return y, s


def _cdfs(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct thresholds, CDF of bads, CDF of goods) at each threshold: share with score <= t."""
    thresholds = np.unique(s)
    bad = np.sort(s[y == 1])
    good = np.sort(s[y == 0])
    cdf_bad = np.searchsorted(bad, thresholds, side="right") / len(bad)
    cdf_good = np.searchsorted(good, thresholds, side="right") / len(good)
    return thresholds, cdf_bad, cdf_good


def ks_statistic(y_true, score) -> float:
    """KS of ``score`` between bads (``y_true == 1``) and goods (``y_true == 0``).

    ``max_t |P(score <= t | bad) - P(score <= t | good)|`` over the distinct scores ``t``;
    equals ``scipy.stats.ks_2samp(score[y == 1], score[y == 0]).statistic``. Raises
    ``ValueError`` when a class is empty, labels are not 0/1, or a score is NaN.
    """
    y, s = _as_label_score(y_true, score)
    _, cdf_bad, cdf_good = _cdfs(y, s)
    return float(np.max(np.abs(cdf_bad - cdf_good)))


def _binned(y_true, score, bins: int | None) -> pd.DataFrame:
    """Score bands, riskiest (highest score) first; tied scores always share a band."""
    y, s = _as_label_score(y_true, score)
    df = pd.DataFrame({"score": s, "bad": y})
    if bins is None:
        # one band per distinct score: the table's max KS is then exactly ks_statistic
        codes = pd.Series(pd.factorize(s, sort=True)[0], index=df.index)
    elif bins < 1:
        raise ValueError(f"bins must be >= 1 or None, got {bins}")
    elif np.unique(s).size == 1:
        codes = pd.Series(0, index=df.index)
    else:
        # quantile bands of the score; duplicate edges (heavy ties) merge bands
        codes = pd.qcut(df["score"], q=bins, labels=False, duplicates="drop").astype(int)
    df["band"] = codes.max() - codes + 1
    g = df.groupby("band", sort=True)
    out = pd.DataFrame({
        "min_score": g["score"].min(),
        "max_score": g["score"].max(),
        "n": g["bad"].size(),
        "bads": g["bad"].sum(),
    }).reset_index()
    out["goods"] = out["n"] - out["bads"]
    n_bad, n_good = out["bads"].sum(), out["goods"].sum()
    overall = n_bad / (n_bad + n_good)
    out["bad_rate"] = out["bads"] / out["n"]
    out["cum_n"] = out["n"].cumsum()
    out["cum_bads"] = out["bads"].cumsum()
    out["cum_bad_share"] = out["cum_bads"] / n_bad
    out["cum_good_share"] = out["goods"].cumsum() / n_good
    out["ks"] = (out["cum_bad_share"] - out["cum_good_share"]).abs()
    out["lift"] = out["bad_rate"] / overall
    out["cum_bad_rate"] = out["cum_bads"] / out["cum_n"]
    out["cum_lift"] = out["cum_bad_rate"] / overall
    return out


def ks_table(y_true, score, bins: int | None = 10) -> pd.DataFrame:
    """KS by score band (toad's ``KS_bucket`` layout), riskiest band first.

    Columns: band (1 = highest scores), min_score, max_score, n, bads, goods, bad_rate,
    cum_bad_share / cum_good_share (share of all bads / goods at or above the band), ks
    (their distance). ``bins`` quantile bands (fewer when ties merge edges); ``None`` = one
    band per distinct score, whose max ``ks`` equals :func:`ks_statistic`.
    """
    t = _binned(y_true, score, bins)
    return t[["band", "min_score", "max_score", "n", "bads", "goods", "bad_rate",
              "cum_bad_share", "cum_good_share", "ks"]]


def lift_by_decile(y_true, score) -> pd.DataFrame:
    """Lift table by score decile, riskiest decile first.

    Columns: decile (1 = highest scores), min_score, max_score, n, bads, bad_rate, lift
    (bad_rate / overall bad rate), cum_bad_share (share of all bads caught at or above the
    decile), cum_bad_rate, cum_lift. Fewer than 10 rows when ties merge deciles.
    """
    t = _binned(y_true, score, 10).rename(columns={"band": "decile"})
    return t[["decile", "min_score", "max_score", "n", "bads", "bad_rate", "lift",
              "cum_bad_share", "cum_bad_rate", "cum_lift"]]


def ks_curve_figure(y_true, score, title: str = "KS curve"):
    """A matplotlib Figure: CDFs of the score among bads and goods, the KS gap marked.

    Built on ``matplotlib.figure.Figure`` (not pyplot), so it holds no global state and
    needs no display.
    """
    from matplotlib.figure import Figure

    y, s = _as_label_score(y_true, score)
    thresholds, cdf_bad, cdf_good = _cdfs(y, s)
    gap = np.abs(cdf_bad - cdf_good)
    i = int(np.argmax(gap))
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.step(thresholds, cdf_bad, where="post", color="tab:red", label=f"bad (n={int(y.sum())})")
    ax.step(thresholds, cdf_good, where="post", color="tab:blue", label=f"good (n={int((1 - y).sum())})")
    ax.vlines(thresholds[i], min(cdf_bad[i], cdf_good[i]), max(cdf_bad[i], cdf_good[i]),
              colors="black", linestyles="--", label=f"KS = {gap[i]:.4f} at score {thresholds[i]:.4g}")
    ax.set_xlabel("score (higher = riskier)")
    ax.set_ylabel("cumulative share with score <= x")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- IV and PSI
# One binning and one PSI for the whole project: the evaluation's per-feature IV/PSI and
# the feature store's drift gate (features/quality_gates.py, which computes the same bins
# and counts inside Spark) both end in bin_edges_from_summary and psi_from_counts.
DEFAULT_BINS = 10  # toad.merge's DEFAULT_BINS
MISSING_BIN = -1  # missing values (None / NaN) form a bin of their own
# Share given to a bin that is empty in one sample. toad.metrics.PSI leaves such a bin out
# (its log ratio is NaN and the sum skips it), so a bin appearing from nowhere (nulls the
# baseline never had, a value range it never saw) would add nothing; flooring its share
# at 1e-4 (a common PSI convention) makes it count as the drift it is.
PSI_EMPTY_SHARE = 1e-4
# Siddiqi's rule of thumb for IV, and the PSI bands of credit-risk practice.
IV_BANDS = ((0.02, "useless"), (0.1, "weak"), (0.3, "medium"), (0.5, "strong"), (float("inf"), "suspicious"))
PSI_BANDS = ((0.1, "stable"), (0.25, "shift"), (float("inf"), "major shift"))


def _numeric(values) -> np.ndarray:
    """Floats with NaN for missing (None, NaN, pandas NA); non-numeric text raises."""
    return pd.to_numeric(pd.Series(values), errors="raise").to_numpy(dtype=float, na_value=np.nan)


def quantile_grid(bins: int = DEFAULT_BINS) -> np.ndarray:
    """The quantile levels toad's QuantileMerge uses: ``np.arange(0, 1, 1 / bins)``."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    return np.arange(0, 1, 1 / bins)


def bin_edges_from_summary(distinct_values, quantiles, *, split_point_masses: bool = False) -> np.ndarray:
    """Cut points from a feature's summary: ``distinct_values`` (sorted, when the feature has
    at most ``bins`` of them, else None) and its ``quantiles`` at :func:`quantile_grid`.

    toad's bins (``split_point_masses=False``, the IV convention): few distinct values get
    one bin per value (edges = every value but the smallest), as ``toad.stats.IV`` leaves
    such a feature unbinned; otherwise toad's QuantileMerge: the quantiles made unique, minus
    the first (the minimum).

    Stability bins (``split_point_masses=True``, used for PSI): the same, plus an edge just
    above every point mass, i.e. a value that two or more quantiles land on (it holds about
    1/bins of the rows or more), so that value gets a bin of its own; and, with few distinct
    values, an edge just above the largest, so values the baseline never reached get a bin.
    Why: our network features are counts that are 0 for most applications. With 90% zeros
    every decile is 0 and toad's bins collapse into one, so a wave that turns 5% non-zero
    into 30% would show PSI 0. Where no value holds a tenth of the rows (continuous
    features) both give the same bins.
    """
    if distinct_values is not None:
        d = np.asarray(sorted(float(v) for v in distinct_values), dtype=float)
        if split_point_masses and d.size:
            d = np.append(d, np.nextafter(d[-1], np.inf))
        return d[1:]
    q = np.asarray(quantiles, dtype=float)
    values, hits = np.unique(q, return_counts=True)
    if split_point_masses:
        values = np.unique(np.concatenate([values, np.nextafter(values[hits >= 2], np.inf)]))
    return values[1:]


def bin_edges(values, bins: int = DEFAULT_BINS, *, split_point_masses: bool = False) -> np.ndarray:
    """Cut points of a numeric feature (see :func:`bin_edges_from_summary`: toad's bins, or
    stability bins with ``split_point_masses``); missing values are left out of the
    quantiles (they get :data:`MISSING_BIN`)."""
    x = _numeric(values)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return np.empty(0)
    distinct = np.unique(x)
    return bin_edges_from_summary(distinct if distinct.size <= bins else None, np.quantile(x, quantile_grid(bins)),
                                  split_point_masses=split_point_masses)


def assign_bins(values, edges) -> np.ndarray:
    """Bin index per value: ``np.digitize(x, edges)`` (bin i holds ``edges[i-1] <= x <
    edges[i]``, as toad's ``bin_by_splits``); :data:`MISSING_BIN` for None / NaN."""
    x = _numeric(values)
    out = np.digitize(x, np.asarray(edges, dtype=float)).astype(np.int64)
    out[np.isnan(x)] = MISSING_BIN
    return out


def _category_bins(values) -> np.ndarray:
    """A categorical's bins: its levels as text, missing as :data:`MISSING_BIN`."""
    s = pd.Series(np.asarray(values, dtype=object))
    return np.asarray([MISSING_BIN if pd.isna(v) else str(v) for v in s], dtype=object)


def psi_from_counts(expected: dict, actual: dict, *, empty_share: float = PSI_EMPTY_SHARE) -> float:
    """Population stability index from rows per bin: ``sum_b (a_b - e_b) * ln(a_b / e_b)``
    where ``e_b``/``a_b`` are the shares of the expected (baseline) and actual samples in
    bin b, over the union of bins. A bin empty in one sample gets ``empty_share`` there
    (see :data:`PSI_EMPTY_SHARE`; toad drops it). Raises on an empty sample."""
    n_e, n_a = sum(expected.values()), sum(actual.values())
    if n_e <= 0 or n_a <= 0:
        raise ValueError(f"PSI needs rows in both samples; got {n_e} expected and {n_a} actual")
    total = 0.0
    for b in set(expected) | set(actual):
        e = expected.get(b, 0) / n_e or empty_share
        a = actual.get(b, 0) / n_a or empty_share
        total += (a - e) * np.log(a / e)
    return float(total)


def _counts(bins: np.ndarray) -> dict:
    """Rows per bin, keys as plain Python values (what the Spark path collects)."""
    vc = pd.Series(bins, dtype=object).value_counts(dropna=False)
    return {(k.item() if hasattr(k, "item") else k): int(n) for k, n in vc.items()}


def psi(expected, actual, *, bins: int = DEFAULT_BINS, categorical: bool = False) -> float:
    """PSI of ``actual`` against ``expected`` (the baseline). Numeric: the baseline's
    stability bins (:func:`bin_edges` with ``split_point_masses``), missing values their own
    bin; categorical: one bin per level. Equals ``toad.metrics.PSI(actual_bins,
    expected_bins)`` on the same bins whenever every bin holds rows in both samples."""
    if categorical:
        return psi_from_counts(_counts(_category_bins(expected)), _counts(_category_bins(actual)))
    edges = bin_edges(expected, bins, split_point_masses=True)
    return psi_from_counts(_counts(assign_bins(expected, edges)), _counts(assign_bins(actual, edges)))


def _woe_table(bins: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame({"bin": bins, "bad": y})
    g = df.groupby("bin", sort=False)["bad"].agg(["size", "sum"]).rename(columns={"size": "n", "sum": "bads"})
    g["goods"] = g["n"] - g["bads"]
    # toad's probability(): a zero count (bin or total) counts as one, so WoE stays finite
    n_bad = max(int(y.sum()), 1)
    n_good = max(int((1 - y).sum()), 1)
    g["bad_share"] = g["bads"].where(g["bads"] > 0, 1) / n_bad
    g["good_share"] = g["goods"].where(g["goods"] > 0, 1) / n_good
    g["woe"] = np.log(g["bad_share"] / g["good_share"])
    g["iv"] = (g["bad_share"] - g["good_share"]) * g["woe"]
    return g.reset_index()


def information_value(feature, target, *, bins: int = DEFAULT_BINS, edges=None, categorical: bool = False,
                      return_table: bool = False):
    """Information value of a feature for a 0/1 target (1 = bad), on :func:`bin_edges`
    bins (or the given ``edges``, e.g. the training split's); categorical: one bin per
    level; missing values are a bin of their own.

    ``WoE_b = ln(bad_share_b / good_share_b)``, ``IV = sum_b (bad_share_b - good_share_b) *
    WoE_b``, with toad's convention that a zero count counts as one. Equals
    ``toad.stats.IV(feature, target, method="quantile", n_bins=bins)`` on data without
    missing values (toad fills them with -1 before binning). ``return_table`` adds the
    per-bin table (bin, n, bads, goods, bad_share, good_share, woe, iv).
    """
    y = np.asarray(target)
    if y.ndim != 1 or len(y) != len(feature):
        raise ValueError(f"feature and target must be 1-D of equal length; got {len(feature)} and {y.shape}")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError(f"target must hold only 0 (good) and 1 (bad); found {sorted(set(np.unique(y).tolist()))[:10]}")
    y = y.astype(np.int64)
    if categorical:
        b = _category_bins(feature)
    else:
        b = assign_bins(feature, bin_edges(feature, bins) if edges is None else edges)
    table = _woe_table(b, y)
    iv = float(table["iv"].sum())
    return (iv, table) if return_table else iv


def band(value: float, bands) -> str:
    """The label of the first band whose upper bound exceeds ``value`` (IV_BANDS, PSI_BANDS)."""
    for upper, label in bands:
        if value < upper:
            return label
    return bands[-1][1]


def feature_stability(train: pd.DataFrame, test: pd.DataFrame, features: Sequence[str], categorical: Sequence[str],
                      *, label: str = LABEL, bins: int = DEFAULT_BINS) -> pd.DataFrame:
    """Per feature: IV on the training split, IV on the test split and PSI from train to
    test (out-of-time stability), all on the training split's stability bins
    (:func:`bin_edges_from_summary` with ``split_point_masses``), with toad's formulas; and,
    for comparison with ``toad.quality`` / ``toad.stats.IV(..., method="quantile")``, the
    training IV on toad's own quantile bins (``iv_train_toad``). The two IVs differ only
    where a value holds a tenth of the rows: for a count that is 0 for 90% of applications
    toad's deciles collapse into one bin and its IV is 0 whatever the signal.

    Needs ``features`` and ``label`` in both frames. Columns: feature, kind (numeric /
    categorical), bins (non-missing bins from train), iv_train, iv_band, iv_test,
    iv_train_toad, psi_train_test, psi_band, missing_train, missing_test (shares); sorted
    by iv_train, largest first.
    """
    _require(train, [*features, label], "feature_stability train")
    _require(test, [*features, label], "feature_stability test")
    cats = set(categorical)
    y_tr, y_te = train[label].to_numpy().astype(np.int64), test[label].to_numpy().astype(np.int64)
    rows = []
    for f in features:
        if f in cats:
            b_tr, b_te = _category_bins(train[f]), _category_bins(test[f])
            t_tr = b_tr
            n_bins = len({v for v in b_tr if v != MISSING_BIN})
        else:
            stable = bin_edges(train[f], bins, split_point_masses=True)
            b_tr, b_te = assign_bins(train[f], stable), assign_bins(test[f], stable)
            t_tr = assign_bins(train[f], bin_edges(train[f], bins))
            n_bins = len(stable) + 1
        iv_tr = float(_woe_table(b_tr, y_tr)["iv"].sum())
        p = psi_from_counts(_counts(b_tr), _counts(b_te))
        rows.append({"feature": f, "kind": "categorical" if f in cats else "numeric", "bins": n_bins,
                     "iv_train": iv_tr, "iv_band": band(iv_tr, IV_BANDS), "iv_test": float(_woe_table(b_te, y_te)["iv"].sum()),
                     "iv_train_toad": float(_woe_table(t_tr, y_tr)["iv"].sum()),
                     "psi_train_test": p, "psi_band": band(p, PSI_BANDS),
                     "missing_train": float(train[f].isna().mean()), "missing_test": float(test[f].isna().mean())})
    out = pd.DataFrame(rows)
    return out.sort_values(["iv_train", "feature"], ascending=[False, True]).reset_index(drop=True)


# --------------------------------------------------------------------------- splits
def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what}: missing column(s) {missing}; present: {list(df.columns)}")


def _bound(value, like: pd.Series) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    tz = getattr(like.dtype, "tz", None)
    if tz is not None and ts.tzinfo is None:
        ts = ts.tz_localize("UTC")  # naive bounds are UTC, like every riskgraph timestamp
    elif tz is None and ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def canonical_order(df: pd.DataFrame, time_col: str = TIME_COL, key: str = "application_id") -> pd.DataFrame:
    """Rows in time order, ties by ``key``, index reset. LightGBM's bagging depends on row
    order, and a spine collected from Spark comes in the order of the feature table's files, so
    a change to the network features alone would otherwise move the baseline's KS too."""
    _require(df, [time_col, key], "canonical_order")
    return df.sort_values([time_col, key], kind="mergesort").reset_index(drop=True)


def oot_split(df: pd.DataFrame, time_col: str, train_until, valid_until) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Out-of-time split: train ``t < train_until <= `` valid ``t < valid_until <=`` test.

    Needs ``time_col`` (datetime; naive values are taken as UTC). A row exactly at a
    boundary goes to the later split. Dates mean midnight UTC. Rows with no time raise.
    """
    _require(df, [time_col], "oot_split")
    t = pd.to_datetime(df[time_col])
    lo, hi = _bound(train_until, t), _bound(valid_until, t)
    if not lo < hi:
        raise ValueError(f"train_until ({train_until}) must be before valid_until ({valid_until})")
    if t.isna().any():
        raise ValueError(f"{time_col} is null in {int(t.isna().sum())} row(s); they cannot be placed in time")
    return df[t < lo].copy(), df[(t >= lo) & (t < hi)].copy(), df[t >= hi].copy()


# --------------------------------------------------------------------------- models
def prepare_features(df: pd.DataFrame, features: Sequence[str], categorical: Sequence[str],
                     categories: dict[str, list] | None = None) -> pd.DataFrame:
    """The model's design matrix: ``features`` in order, numeric as float64 (missing →
    NaN), ``categorical`` as pandas categories. ``categories`` fixes each categorical's
    levels (from the training split, so an unseen level is missing, never a new code)."""
    _require(df, features, "prepare_features")
    X = pd.DataFrame(index=df.index)
    for c in features:
        if c in categorical:
            levels = (categories or {}).get(c)
            if levels is None:
                levels = sorted(df[c].dropna().astype(str).unique().tolist())
            known = set(levels)
            values = [None if pd.isna(v) or str(v) not in known else str(v) for v in df[c].astype("object")]
            X[c] = pd.Categorical(values, categories=levels)  # a level unseen in training → missing
        else:
            X[c] = pd.to_numeric(df[c], errors="raise").astype("float64")
    return X


def fit_lgbm(train: pd.DataFrame, valid: pd.DataFrame, features: Sequence[str], categorical: Sequence[str],
             params: dict, seed: int, *, label: str = LABEL):
    """Fit a binary LightGBM (``lightgbm.Booster``) on ``train``, early-stopped on ``valid`` AUC.

    Needs ``features`` and ``label`` (0/1) in both frames. ``params``: LightGBM parameters;
    ``n_estimators`` is the round cap and ``early_stopping_rounds`` (default 30) the
    patience. Deterministic: ``deterministic=True``, ``force_row_wise``, a fixed
    ``num_threads`` and ``seed``. Category levels come from ``train`` only. The booster
    predicts at its best iteration and stores the levels (``pandas_categorical``).
    """
    import lightgbm as lgb

    features = list(features)
    cats = [c for c in features if c in set(categorical)]
    _require(train, [*features, label], "fit_lgbm train")
    _require(valid, [*features, label], "fit_lgbm valid")
    for name, part in (("train", train), ("valid", valid)):
        n_bad = int(part[label].sum())
        if n_bad == 0 or n_bad == len(part):
            raise ValueError(f"fit_lgbm: the {name} split needs bads and goods; it has {n_bad} bad of {len(part)}")
    p = dict(params)
    rounds = int(p.pop("n_estimators", p.pop("num_boost_round", 100)))
    patience = int(p.pop("early_stopping_rounds", EARLY_STOPPING_ROUNDS))
    p = {**SEED_SENSITIVE_DEFAULTS, **p}
    p.update(objective="binary", metric="auc", deterministic=True, force_row_wise=True,
             num_threads=int(p.get("num_threads", NUM_THREADS)), seed=int(seed), verbosity=-1)
    levels = {c: sorted(train[c].dropna().astype(str).unique().tolist()) for c in cats}
    X_tr = prepare_features(train, features, cats, levels)
    X_va = prepare_features(valid, features, cats, levels)
    d_tr = lgb.Dataset(X_tr, label=train[label].astype(int).to_numpy(), categorical_feature=cats or "auto",
                       free_raw_data=False)
    d_va = lgb.Dataset(X_va, label=valid[label].astype(int).to_numpy(), reference=d_tr)
    return lgb.train(p, d_tr, num_boost_round=rounds, valid_sets=[d_va], valid_names=["valid"],
                     callbacks=[lgb.early_stopping(patience, first_metric_only=True, verbose=False)])


def predict_score(model, df: pd.DataFrame) -> np.ndarray:
    """P(bad) from a booster of :func:`fit_lgbm`.

    Needs the model's feature columns in ``df``; the non-numeric ones are its categoricals,
    mapped onto the training levels the booster stored (``pandas_categorical``).
    """
    features = model.feature_name()
    _require(df, features, "predict_score")
    cats = [f for f in features
            if isinstance(df[f].dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(df[f])]
    stored = model.pandas_categorical or []
    if len(stored) != len(cats):
        raise ValueError(f"predict_score: the model was trained with {len(stored)} categorical feature(s) but "
                         f"{len(cats)} non-numeric column(s) were given: {cats}")
    return np.asarray(model.predict(prepare_features(df, features, cats, dict(zip(cats, stored)))), dtype=float)


def feature_importance(model) -> pd.DataFrame:
    """Gain and split importance of a booster, largest gain first (columns feature, gain,
    gain_share, split)."""
    names = model.feature_name()
    gain = model.feature_importance(importance_type="gain")
    split = model.feature_importance(importance_type="split")
    total = float(gain.sum()) or 1.0
    out = pd.DataFrame({"feature": names, "gain": gain, "gain_share": gain / total, "split": split})
    return out.sort_values(["gain", "feature"], ascending=[False, True]).reset_index(drop=True)


def _sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _check_test_split(test: pd.DataFrame, features: Sequence[str], label: str, what: str) -> np.ndarray:
    _require(test, [*features, label], f"{what} test")
    n_bad = int(test[label].sum())
    if n_bad == 0 or n_bad == len(test):
        raise ValueError(f"{what}: the test split needs bads and goods; it has {n_bad} bad of {len(test)}")
    return test[label].astype(int).to_numpy()


def fit_seeds(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, features: Sequence[str],
              categorical: Sequence[str], params: dict, seeds: Sequence[int], *, label: str = LABEL) -> dict:
    """One feature set: one LightGBM per seed, fit on train (early-stopped on valid, see
    :func:`fit_lgbm`) and scored once on test. Nothing is tuned on test.

    Needs ``features`` and ``label`` in all three frames; the ``categorical`` columns that
    are in ``features`` are treated as categories. Returns ``features`` and ``seeds`` (as
    given), per-seed lists ``ks``, ``auc``, ``best_iteration``, ``models`` (boosters) and
    ``test_scores`` (P(bad) on test), all in seed order, and ``ks_mean``, ``ks_sd``,
    ``auc_mean``, ``auc_sd`` (sd over seeds, ddof=1; 0 with one seed).
    """
    from sklearn.metrics import roc_auc_score

    features = list(features)
    if not seeds:
        raise ValueError("fitting needs at least one seed")
    y_test = _check_test_split(test, features, label, "fit_seeds")
    cats = [c for c in categorical if c in features]
    out: dict = {"features": features, "seeds": [int(s) for s in seeds], "ks": [], "auc": [], "best_iteration": [],
                 "models": [], "test_scores": []}
    for seed in out["seeds"]:
        model = fit_lgbm(train, valid, features, cats, params, seed, label=label)
        s = predict_score(model, test)
        out["ks"].append(ks_statistic(y_test, s))
        out["auc"].append(float(roc_auc_score(y_test, s)))
        out["best_iteration"].append(int(model.best_iteration or model.current_iteration()))
        out["models"].append(model)
        out["test_scores"].append(s)
    out.update(ks_mean=float(np.mean(out["ks"])), ks_sd=_sd(out["ks"]),
               auc_mean=float(np.mean(out["auc"])), auc_sd=_sd(out["auc"]))
    return out


def paired_uplift(after: dict, before: dict, metric: str = "ks") -> tuple[float, float]:
    """Uplift of one per-seed fit over another: the mean over seeds of the per-seed
    difference ``after[metric][i] − before[metric][i]`` and its sd (ddof=1; 0 with one seed).

    Needs two :func:`fit_seeds`-like dicts with ``seeds`` and ``metric`` lists. Pairing by
    seed removes the seed-to-seed spread both models share, so the sd is the uplift's own
    spread; raises ``ValueError`` when the two were fit with different seeds.
    """
    if list(after["seeds"]) != list(before["seeds"]):
        raise ValueError(f"uplift needs fits with the same seeds; got {after['seeds']} and {before['seeds']}")
    d = np.asarray(after[metric], dtype=float) - np.asarray(before[metric], dtype=float)
    return float(d.mean()), _sd(d)


def compare_models(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame,
                   baseline_features: Sequence[str], enriched_features: Sequence[str],
                   categorical: Sequence[str], params: dict, seeds: Sequence[int], *, label: str = LABEL) -> dict:
    """Baseline vs. enriched LightGBM, each fit per seed on train (early-stopped on valid)
    and scored once on test (:func:`fit_seeds`). Nothing is tuned on test.

    Needs ``label`` and every feature in all three frames; the enriched set must contain the
    baseline set. Returns ``seeds``; ``baseline`` and ``enriched``, each with per-seed lists
    ``ks``, ``auc``, ``best_iteration`` and ``ks_mean``, ``ks_sd``, ``auc_mean``, ``auc_sd``
    (sd over seeds, ddof=1; 0 with one seed); ``ks_uplift`` = mean KS enriched − mean KS
    baseline and ``auc_uplift`` likewise, with ``ks_uplift_sd``/``auc_uplift_sd`` the sd of
    the per-seed (paired) differences; ``n_train``/``n_valid``/``n_test``; ``models`` and
    ``test_scores``: per model, one booster / score array per seed, in seed order.
    """
    baseline_features, enriched_features = list(baseline_features), list(enriched_features)
    if not seeds:
        raise ValueError("compare_models needs at least one seed")
    lost = [c for c in baseline_features if c not in enriched_features]
    if lost:
        raise ValueError(f"the enriched feature set must contain the baseline set; it lacks {lost}")
    stray = [c for c in categorical if c not in enriched_features]
    if stray:
        raise ValueError(f"categorical column(s) {stray} are not features")
    _check_test_split(test, enriched_features, label, "compare_models")

    out: dict = {"seeds": [int(s) for s in seeds], "n_train": len(train), "n_valid": len(valid), "n_test": len(test),
                 "models": {}, "test_scores": {}}
    fits = {name: fit_seeds(train, valid, test, feats, categorical, params, seeds, label=label)
            for name, feats in (("baseline", baseline_features), ("enriched", enriched_features))}
    for name, fit in fits.items():
        out["models"][name] = fit["models"]
        out["test_scores"][name] = fit["test_scores"]
        out[name] = {k: v for k, v in fit.items() if k not in ("features", "seeds", "models", "test_scores")}
    b, e = out["baseline"], out["enriched"]
    out["ks_uplift"] = e["ks_mean"] - b["ks_mean"]
    out["auc_uplift"] = e["auc_mean"] - b["auc_mean"]
    out["ks_uplift_sd"] = paired_uplift(fits["enriched"], fits["baseline"], "ks")[1]
    out["auc_uplift_sd"] = paired_uplift(fits["enriched"], fits["baseline"], "auc")[1]
    return out


# --------------------------------------------------------------------------- ablation
# Feature-store groups in ablation order: each step adds one group to the step before it,
# so "structured" says what attribute sharing / components / GPS bursts add to ordinary
# credit features, "shared_neighbours" what shared neighbours and attribute reuse (sn_*,
# reuse_*) add to those, and "multimodal" what media similarity adds on top.
FEATURE_GROUPS = ("structured", "shared_neighbours", "multimodal")
NOT_IN_CATALOG = "not in the feature catalog"


def ablation_steps(baseline: Sequence[str], specs: Iterable) -> tuple[list[tuple[str, list[str]]], dict[str, str]]:
    """The nested ablation steps a feature catalog allows.

    ``baseline``: the ordinary credit features; ``specs``: the feature-store catalog
    (objects with ``name``, ``as_of`` and ``group``, i.e. ``riskgraph.schemas.FeatureSpec``).
    Keys (``as_of == "key"``) are not features. Returns ``(steps, skipped)``: ``steps`` is
    ``[("baseline", baseline), (group, previous step's features + that group's columns),
    ...]`` for each group of :data:`FEATURE_GROUPS` that has a column, in catalog order;
    ``skipped`` maps each group without a column to :data:`NOT_IN_CATALOG`. Raises
    ``ValueError`` for a group outside :data:`FEATURE_GROUPS` or a feature-store column that
    shadows a baseline feature.
    """
    baseline = list(baseline)
    by_group: dict[str, list[str]] = {g: [] for g in FEATURE_GROUPS}
    for s in specs:
        if s.as_of == "key":
            continue
        if s.group not in by_group:
            raise ValueError(f"feature {s.name!r} has group {s.group!r}; expected one of {list(FEATURE_GROUPS)}")
        if s.name in baseline:
            raise ValueError(f"feature-store column {s.name!r} has the name of a baseline feature")
        by_group[s.group].append(s.name)
    steps, skipped, current = [("baseline", baseline)], {}, baseline
    for g in FEATURE_GROUPS:
        if by_group[g]:
            current = current + by_group[g]
            steps.append((g, current))
        else:
            skipped[g] = NOT_IN_CATALOG
    return steps, skipped


def _check_steps(steps: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[str, list[str]]]:
    steps = [(str(name), list(feats)) for name, feats in steps]
    if not steps:
        raise ValueError("an ablation needs at least one step")
    names = [n for n, _ in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"ablation step names repeat: {names}")
    base_name, base = steps[0]
    seen: dict[frozenset, str] = {}
    for name, feats in steps:
        if len(set(feats)) != len(feats):
            raise ValueError(f"ablation step {name!r} lists a feature twice: {feats}")
        lost = [c for c in base if c not in feats]
        if lost:
            raise ValueError(f"ablation step {name!r} must contain the first step {base_name!r}; it lacks {lost}")
        key = frozenset(feats)
        if key in seen:  # the same model twice under two names
            raise ValueError(f"ablation steps {seen[key]!r} and {name!r} have the same features")
        seen[key] = name
    return steps


def _reference(steps: list[tuple[str, list[str]]], i: int) -> int | None:
    """Index of the step that step ``i`` is compared with: the nearest earlier step whose
    features it extends (the previous step in a nested chain; the first step for a side
    branch such as the oracle, baseline + planted truth)."""
    feats = set(steps[i][1])
    return next((j for j in range(i - 1, -1, -1) if set(steps[j][1]) < feats), None)


def ablation_table(steps: Sequence[tuple[str, Sequence[str]]], fits: dict[str, dict]) -> pd.DataFrame:
    """One row per ablation step, from per-step fits made with the same seeds.

    ``steps``: ``[(name, features), ...]`` as given to :func:`ablation`; ``fits``: name →
    a :func:`fit_seeds` result (needs ``seeds``, ``ks``, ``auc``). Columns: ``step``;
    ``previous``, the step it is compared with (the nearest earlier step whose features it
    extends; None for the first); ``n_features``; ``n_added`` (features beyond
    ``previous``); ``ks_mean``, ``ks_sd``, ``auc_mean``, ``auc_sd`` over seeds;
    ``ks_uplift_vs_previous`` (mean over seeds of the per-seed KS difference: step − previous,
    paired by seed), ``ks_uplift_vs_previous_sd`` (sd of those differences, ddof=1),
    ``auc_uplift_vs_previous``; ``ks_uplift_vs_baseline`` and its ``_sd``, against the
    first step. The first step's uplifts vs previous are NaN; vs itself 0.
    """
    steps = _check_steps(steps)
    missing = [n for n, _ in steps if n not in fits]
    if missing:
        raise KeyError(f"ablation_table: no fit for step(s) {missing}; fits: {list(fits)}")
    base_name = steps[0][0]
    rows = []
    for i, (name, feats) in enumerate(steps):
        j = _reference(steps, i)
        prev = steps[j][0] if j is not None else None
        f = fits[name]
        # paired_uplift raises when a step was fit with other seeds than the one it is compared with
        ks_prev, ks_prev_sd = paired_uplift(f, fits[prev], "ks") if prev else (float("nan"), float("nan"))
        auc_prev = paired_uplift(f, fits[prev], "auc")[0] if prev else float("nan")
        ks_base, ks_base_sd = paired_uplift(f, fits[base_name], "ks")
        rows.append({
            "step": name, "previous": prev, "n_features": len(feats),
            "n_added": len(set(feats) - set(steps[j][1])) if prev else len(feats),
            "ks_mean": float(np.mean(f["ks"])), "ks_sd": _sd(f["ks"]),
            "auc_mean": float(np.mean(f["auc"])), "auc_sd": _sd(f["auc"]),
            "ks_uplift_vs_previous": ks_prev, "ks_uplift_vs_previous_sd": ks_prev_sd, "auc_uplift_vs_previous": auc_prev,
            "ks_uplift_vs_baseline": ks_base, "ks_uplift_vs_baseline_sd": ks_base_sd,
        })
    return pd.DataFrame(rows)


def ablation(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame,
             steps: Sequence[tuple[str, Sequence[str]]], categorical: Sequence[str], params: dict,
             seeds: Sequence[int], *, label: str = LABEL) -> tuple[pd.DataFrame, dict[str, dict]]:
    """A feature ablation: each step's feature set fit once per seed (:func:`fit_seeds`) on
    the same splits with the same seeds, and compared with the step it extends.

    ``steps``: ``[(name, features), ...]``, the first the reference every other step must
    contain (e.g. baseline → + structured → + multimodal, and a side branch baseline +
    oracle); no two steps may have the same feature set. Needs every feature and ``label``
    in all three frames; each ``categorical`` column must be a feature of some step.
    Returns ``(table, fits)``: ``table`` from :func:`ablation_table` (one row per step, in
    order) and ``fits``, step name → its :func:`fit_seeds` result (boosters and test scores
    included, so a caller logs or registers a step's model without fitting it again).
    """
    steps = _check_steps(steps)
    if not seeds:
        raise ValueError("an ablation needs at least one seed")
    every = list(dict.fromkeys(c for _, feats in steps for c in feats))
    stray = [c for c in categorical if c not in every]
    if stray:
        raise ValueError(f"categorical column(s) {stray} are not features of any step")
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        _require(part, [*every, label], f"ablation {name}")
    fits = {name: fit_seeds(train, valid, test, feats, categorical, params, seeds, label=label) for name, feats in steps}
    return ablation_table(steps, fits), fits


# --------------------------------------------------------------------------- Spark spine
BASELINE_NUMERIC = ("amount", "term_months", "declared_income", "amount_to_income", "age")
BASELINE_CATEGORICAL = ("channel", "product", "region")
BASELINE_FEATURES = BASELINE_NUMERIC + BASELINE_CATEGORICAL
HAS_FEATURE_ROW = "_has_feature_row"
FEATURE_AS_OF = "_feature_as_of_ts"


def build_labelled_spine(applications, applicants, outcomes, features, *, run_date: dt.date, target_days: int,
                         network_features: Sequence[str]):
    """One row per application whose performance window has matured by ``run_date``.

    Needs applications (application_id, applicant_id, application_ts, amount, term_months,
    declared_income, channel, product), applicants (applicant_id, birth_year, region),
    outcomes (application_id, outcome, known_ts) and the feature table (application_id,
    as_of_ts, ``network_features``). Matured: ``application_ts + target_days`` days falls on
    or before ``run_date`` (UTC). Label ``is_bad`` = 1 when the earliest fraud_confirmed /
    default outcome became known within ``target_days`` days of the application, else 0.
    Adds the baseline credit features (amount_to_income = amount / (declared_income ×
    term_months), null when that is 0; age = application year − birth_year), the network
    features (left join: a missing feature row stays visible as ``_has_feature_row`` null)
    and ``_feature_as_of_ts``. Timestamps are read in the session time zone, UTC.
    """
    from pyspark.sql import functions as F

    from riskgraph.schemas import BAD_OUTCOMES

    def need(df, cols, what):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise KeyError(f"build_labelled_spine {what}: missing column(s) {missing}; present: {df.columns}")

    need(applications, ["application_id", "applicant_id", TIME_COL, "amount", "term_months", "declared_income",
                        "channel", "product"], "applications")
    need(applicants, ["applicant_id", "birth_year", "region"], "applicants")
    need(outcomes, ["application_id", "outcome", "known_ts"], "outcomes")
    need(features, ["application_id", "as_of_ts", *network_features], "feature table")

    horizon = F.col(TIME_COL) + F.expr(f"INTERVAL {int(target_days)} DAYS")
    matured = applications.filter(F.to_date(horizon) <= F.lit(run_date)).withColumn("_horizon_ts", horizon)
    first_bad = (outcomes.filter(F.col("outcome").isin(list(BAD_OUTCOMES)))
                 .groupBy("application_id").agg(F.min("known_ts").alias("_first_bad_ts")))
    people = applicants.select("applicant_id", "birth_year", "region")
    feats = features.select("application_id", F.col("as_of_ts").alias(FEATURE_AS_OF), *network_features,
                            F.lit(True).alias(HAS_FEATURE_ROW))
    income_over_term = F.col("declared_income") * F.col("term_months")
    return (
        matured.join(first_bad, "application_id", "left")
        .join(people, "applicant_id", "left")
        .join(feats, "application_id", "left")
        .select(
            "application_id",
            TIME_COL,
            F.when(F.col("_first_bad_ts").isNotNull() & (F.col("_first_bad_ts") <= F.col("_horizon_ts")), 1)
            .otherwise(0).cast("int").alias(LABEL),
            F.col("amount").cast("double").alias("amount"),
            F.col("term_months").cast("double").alias("term_months"),
            F.col("declared_income").cast("double").alias("declared_income"),
            (F.col("amount") / F.when(income_over_term != 0, income_over_term)).alias("amount_to_income"),
            (F.year(TIME_COL) - F.col("birth_year")).cast("double").alias("age"),
            "channel", "product", "region",
            *[F.col(c).cast("double").alias(c) for c in network_features],
            FEATURE_AS_OF, HAS_FEATURE_ROW,
        )
    )


def check_spine(spine: pd.DataFrame, *, feature_table: str, feature_version) -> None:
    """Fail loudly when the collected spine cannot give an honest evaluation.

    Needs application_id, application_ts, ``_has_feature_row``, ``_feature_as_of_ts``.
    Raises :class:`FeatureStoreIncompleteError` when a matured application has no feature
    row (the feature store is incomplete: counted, with dates and examples) or a feature row
    computed as of another time (not point-in-time for this application); ``ValueError``
    on an empty spine or a duplicated application_id (a join multiplied rows).
    """
    _require(spine, ["application_id", TIME_COL, HAS_FEATURE_ROW, FEATURE_AS_OF], "check_spine")
    if spine.empty:
        raise ValueError("no matured applications: nothing to evaluate (is the run date at least "
                         "evaluate.target_days after the first application?)")
    dup = spine["application_id"].duplicated(keep=False)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} spine rows share an application_id (e.g. "
                         f"{spine.loc[dup, 'application_id'].head(3).tolist()}): duplicated keys in bronze or the feature table")
    missing = spine[spine[HAS_FEATURE_ROW].isna()]
    if len(missing):
        days = sorted(pd.to_datetime(missing[TIME_COL]).dt.strftime("%Y-%m-%d").unique().tolist())
        raise FeatureStoreIncompleteError(
            f"feature store incomplete: {len(missing)} of {len(spine)} matured applications have no row in "
            f"{feature_table} (version {feature_version}); application dates {days[:5]}{'…' if len(days) > 5 else ''} "
            f"(e.g. {missing['application_id'].head(3).tolist()}). Build the features for those dates before evaluating.")
    t = pd.to_datetime(spine[TIME_COL])
    a = pd.to_datetime(spine[FEATURE_AS_OF])
    off = spine[(t != a).to_numpy()]
    if len(off):
        raise FeatureStoreIncompleteError(
            f"{len(off)} feature row(s) in {feature_table} (version {feature_version}) have as_of_ts different from the "
            f"application time (e.g. {off['application_id'].head(3).tolist()}); they are not point-in-time features "
            "for that application")
